"""Which inference tile a case gets: the training patch, a size the user forces, or ``auto``.

``auto`` is the largest tile, up to the whole plan-space volume rounded up to the network's total pooling,
whose forward pass fits a memory budget: on CUDA a fraction of the free GPU memory, on the CPU a fixed number
of GiB. Fewer, larger tiles do far less redundant work than training-patch tiles (the network is fully
convolutional). The default stays ``patch``: reports/performance_sessions.md has the measured speed and the
effect on the output, which on a cross-site test exceeded the documented tolerance.

The memory of a forward pass is estimated from the tile's voxels and the network's widths, not measured:
the estimate is cheap, needs no warm-up forward and is the same on every run, so the tile of a case (and so
its output) does not depend on what else happened to be in memory. ``FORWARD_BYTES_PER_FEATURE_VOXEL`` is
calibrated against measured peaks (reports/performance_sessions.md) and errs on the large side.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from iterdce.inference.sliding_window import tile_starts
from iterdce.network.config import NetworkConfig

AUTO = "auto"
PATCH = "patch"
TILE_CHOICES = (AUTO, PATCH)

CPU_BUDGET_GB = 4.0  # default budget of one forward pass on the CPU (--tile-memory-gb)
CUDA_FREE_FRACTION = 0.5  # default share of the free GPU memory one forward pass may use
BYTES_PER_FLOAT = 4
# float32 values alive at the peak of an inference forward, per feature channel and voxel of each stage
# (skip tensors, convolution / norm temporaries, ConvLSTM gates and state); measured and rounded up
FORWARD_BYTES_PER_FEATURE_VOXEL = 20 * BYTES_PER_FLOAT


@dataclass(frozen=True)
class NetworkShape:
    """What the tile memory estimate needs of a network: widths, pooling, input and output channels."""

    features_per_stage: tuple[int, ...]
    pool_per_stage: tuple[tuple[int, ...], ...]
    in_channels: int
    out_channels: int

    @classmethod
    def from_config(cls, network: NetworkConfig, out_channels: int) -> NetworkShape:
        """From a checkpoint's typed network config."""
        return cls(network.features_per_stage, network.pool_per_stage, network.in_channels, int(out_channels))

    @property
    def divisor(self) -> tuple[int, ...]:
        """The network's total pooling per axis: every tile size must be a multiple of it."""
        total = [1, 1, 1]
        for pool in self.pool_per_stage:
            total = [t * p for t, p in zip(total, pool)]
        return tuple(total)


def round_up(shape: Sequence[int], divisor: Sequence[int]) -> list[int]:
    """Each size rounded up to a multiple of its divisor (at least one divisor)."""
    return [max(1, math.ceil(int(s) / int(d))) * int(d) for s, d in zip(shape, divisor)]


def forward_bytes(tile: Sequence[int], tiles_per_forward: int, net: NetworkShape) -> int:
    """Estimated peak bytes of one inference forward pass over ``tiles_per_forward`` tiles of size ``tile``.

    Every stage's feature maps count with its voxels (the tile shrunk by the pooling above it) times its width,
    plus the input and output channels at full resolution; all of it scales with the number of tiles.
    """
    voxels = math.prod(int(t) for t in tile)
    scale = [1, 1, 1]
    feature_voxels = 0.0
    for stage, features in enumerate(net.features_per_stage):
        if stage > 0:
            scale = [s * p for s, p in zip(scale, net.pool_per_stage[stage - 1])]
        feature_voxels += features * voxels / math.prod(scale)
    per_tile = feature_voxels * FORWARD_BYTES_PER_FEATURE_VOXEL + voxels * (net.in_channels + net.out_channels) \
        * BYTES_PER_FLOAT
    return int(per_tile * tiles_per_forward)


def tiles_along(volume: Sequence[int], tile: Sequence[int], step_fraction: float) -> int:
    """Number of tiles covering ``volume`` (the grid of ``sliding_window.tile_starts``)."""
    return math.prod(len(tile_starts(int(size), int(length), step_fraction)) for size, length in zip(volume, tile))


def choose_tile(volume: Sequence[int], patch: Sequence[int], net: NetworkShape, budget_bytes: float,
                tile_batch: int, step_fraction: float = 0.5) -> list[int]:
    """The largest tile for a plan-space ``volume`` whose forward pass fits ``budget_bytes``.

    Starts from the whole volume rounded up to the network's pooling; while the estimate (``forward_bytes``
    for as many tiles per forward as the tile grid and ``tile_batch`` give) is over the budget, the axis that
    is largest relative to the training patch shrinks by one pooling step. A tile never shrinks below the
    training patch (rounded up to the pooling, or the volume where that is smaller): when even that does not
    fit, it is returned as it is, which is what training ran with.
    """
    divisor = net.divisor
    tile = round_up(volume, divisor)
    floor = [min(t, p) for t, p in zip(tile, round_up(patch, divisor))]

    def fits(candidate: list[int]) -> bool:
        per_forward = min(tile_batch, tiles_along(volume, candidate, step_fraction))
        return forward_bytes(candidate, per_forward, net) <= budget_bytes

    while not fits(tile):
        shrinkable = [axis for axis in range(3) if tile[axis] - divisor[axis] >= floor[axis]]
        if not shrinkable:
            return floor
        axis = max(shrinkable, key=lambda a: (tile[a] / floor[a], tile[a]))
        tile[axis] -= divisor[axis]
    return tile


def memory_budget(device_type: str, cpu_budget_gb: float | None = None, free_cuda_bytes: int | None = None) -> float:
    """Bytes one forward pass may use: ``cpu_budget_gb`` (default ``CPU_BUDGET_GB``) on the CPU, or
    ``CUDA_FREE_FRACTION`` of ``free_cuda_bytes`` on CUDA (``cpu_budget_gb``, when given, caps it there too)."""
    if device_type == "cuda" and free_cuda_bytes is not None:
        budget = CUDA_FREE_FRACTION * free_cuda_bytes
        return min(budget, cpu_budget_gb * 2**30) if cpu_budget_gb is not None else budget
    return (CPU_BUDGET_GB if cpu_budget_gb is None else cpu_budget_gb) * 2**30
