"""Network topology and training-memory estimate for a patch: pooling per axis, widths, memory in GB.

The estimate counts activations kept for backpropagation at every stage, multiplied by the number of
unrolled recursion steps (backpropagation through time keeps every step), plus the ConvLSTM at full
resolution, the Med3D perceptual network and the optimizer state. The per-stage factors are rough counts
of saved tensors per stage, not measurements; the planner uses the estimate to compare candidates.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from iterdce.network.config import INPUT_CHANNELS
from iterdce.network.iterunet import IterUNet

MIN_FEATURE_MAP = 4
SAVED_TENSORS_ENCODER = 6  # two conv -> norm -> activation chains
SAVED_TENSORS_DECODER = 8  # the same plus the upsampled tensor and the concatenation
SAVED_TENSORS_CONVLSTM = 10  # four gates, cell, hidden, their nonlinearities
ACTIVATION_BYTES = 2  # bf16 autocast on the GPU
PERCEPTUAL_CHANNELS_PER_VOXEL = 64 * 3 / 8 + 64 * 7 / 64 + (128 + 256 + 512) * 7 / 512


@dataclass(frozen=True)
class Topology:
    """Pooling per stage transition and features per stage."""

    pool_per_stage: list[list[int]]
    features_per_stage: list[int]

    @property
    def divisor(self) -> list[int]:
        """Patch size must be a multiple of this per axis."""
        if not self.pool_per_stage:
            return [1, 1, 1]
        return [int(v) for v in np.prod(np.array(self.pool_per_stage), axis=0)]


def plan_pooling(patch: Sequence[int], spacing: Sequence[float], max_stages: int) -> list[list[int]]:
    """Pool an axis while its feature map stays >= 2x the minimum and it is not > 2x coarser than the finest.

    Anisotropic axes are thus pooled only once the in-plane resolution has caught up, as nnU-Net does.
    """
    size = np.array(patch, dtype=float)
    current = np.array(spacing, dtype=float)
    pools: list[list[int]] = []
    while len(pools) < max_stages - 1:
        finest = current.min()
        pool = [2 if size[a] >= 2 * MIN_FEATURE_MAP and current[a] <= 2 * finest else 1 for a in range(3)]
        if not any(p == 2 for p in pool):
            break
        pools.append(pool)
        size = size / np.array(pool)
        current = current * np.array(pool)
    return pools


def plan_topology(patch: Sequence[int], spacing: Sequence[float], max_stages: int, base_features: int,
                  max_features: int) -> Topology:
    """Pooling for ``patch`` and features doubling per stage up to ``max_features``."""
    pools = plan_pooling(patch, spacing, max_stages)
    features = [min(base_features * 2**i, max_features) for i in range(len(pools) + 1)]
    return Topology(pools, features)


def conform_patch(patch: Sequence[int], divisor: Sequence[int]) -> list[int]:
    """Round each axis down to a multiple of its divisor (never below one divisor)."""
    return [max(int(d), int(p) // int(d) * int(d)) for p, d in zip(patch, divisor)]


def count_parameters(topology: Topology, time_embedding_dim: int = 64) -> int:
    """Parameters of the iterU-Net with this topology, counted on the real network (built on the meta device,
    so nothing is allocated)."""
    return _count_parameters(tuple(topology.features_per_stage),
                             tuple(tuple(p) for p in topology.pool_per_stage), time_embedding_dim)


@functools.lru_cache(maxsize=256)
def _count_parameters(features: tuple[int, ...], pools: tuple[tuple[int, ...], ...], time_embedding_dim: int
                      ) -> int:
    with torch.device("meta"):
        network = IterUNet(INPUT_CHANNELS, features, pools, time_embedding_dim)
    return sum(p.numel() for p in network.parameters())


def estimate_memory_gb(patch: Sequence[int], topology: Topology, batch_size: int, recursion_steps: int,
                       perceptual: bool = True) -> float:
    """Training memory (GB) for one step of the optimizer with ``recursion_steps`` unrolled steps."""
    voxels = float(np.prod(patch))
    per_step = 0.0
    scale = 1.0
    for stage, channels in enumerate(topology.features_per_stage):
        if stage > 0:
            scale /= float(np.prod(topology.pool_per_stage[stage - 1]))
        saved = SAVED_TENSORS_ENCODER + (SAVED_TENSORS_DECODER if stage < len(topology.features_per_stage) - 1 else 0)
        per_step += voxels * scale * channels * saved
    per_step += voxels * topology.features_per_stage[0] * SAVED_TENSORS_CONVLSTM
    if perceptual:
        per_step += voxels * PERCEPTUAL_CHANNELS_PER_VOXEL
    activations = per_step * batch_size * recursion_steps * ACTIVATION_BYTES
    weights_and_optimizer = count_parameters(topology) * 4 * 4  # weights, grads, two AdamW moments (fp32)
    workspace = 0.5e9  # CUDA context and cuDNN workspace
    return (activations + weights_and_optimizer + workspace) / 1e9
