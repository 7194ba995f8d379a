"""Sliding-window building blocks: tile grid, padding, Gaussian importance map and weighted blending.

Pure pieces in the spirit of MONAI's ``sliding_window_inference`` and nnU-Net's predictor; the
predictor (``predictor.py``) composes them. Spatial axes are always the *last* ``len(patch_size)`` axes,
so channel / phase axes in front are carried along unchanged.
"""
from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

DEFAULT_SIGMA_SCALE = 1.0 / 8.0
DEFAULT_MIN_WEIGHT = 1e-3


def _check_positive_ints(values: Sequence[int], name: str) -> tuple[int, ...]:
    out = tuple(int(v) for v in values)
    if any(v < 1 for v in out) or any(int(v) != v for v in values):
        raise ValueError(f"{name} must be positive integers, got {tuple(values)}")
    return out


def tile_starts(image_size: int, patch_size: int, step_fraction: float = 0.5) -> list[int]:
    """Start indices of the tiles along one axis: first at 0, last at ``image_size - patch_size``.

    nnU-Net's rule with an integer target step ``s = max(1, floor(patch_size * step_fraction))``:
    ``n = ceil((image_size - patch_size) / s) + 1`` starts spread evenly (rounded linspace), so every
    step is <= s. ``image_size <= patch_size`` gives ``[0]`` (pad the volume first, see pad_to_patch).
    """
    image_size, patch_size = _check_positive_ints((image_size, patch_size), "image_size and patch_size")
    if not 0.0 < step_fraction <= 1.0:
        raise ValueError(f"step_fraction must be in (0, 1], got {step_fraction}")
    if image_size <= patch_size:
        return [0]
    span = image_size - patch_size
    target_step = max(1, math.floor(patch_size * step_fraction))
    n_tiles = math.ceil(span / target_step) + 1
    actual_step = span / (n_tiles - 1)
    starts = [int(round(actual_step * i)) for i in range(n_tiles)]
    starts[-1] = span
    return starts


def tile_grid(
    image_shape: Sequence[int], patch_size: Sequence[int], step_fraction: float = 0.5
) -> list[tuple[slice, ...]]:
    """All tiles (cartesian product of per-axis starts) as tuples of spatial slices, C order.

    Every axis of ``image_shape`` must be at least the patch size: pad smaller volumes with pad_to_patch.
    Index a tensor with channels in front as ``tensor[(..., *tile)]``.
    """
    image_shape = _check_positive_ints(image_shape, "image_shape")
    patch_size = _check_positive_ints(patch_size, "patch_size")
    if len(image_shape) != len(patch_size):
        raise ValueError(f"image_shape {image_shape} and patch_size {patch_size} differ in length")
    if any(i < p for i, p in zip(image_shape, patch_size)):
        raise ValueError(
            f"image_shape {image_shape} is smaller than patch_size {patch_size} along some axis; "
            "pad it first with pad_to_patch"
        )
    per_axis = [
        [slice(s, s + p) for s in tile_starts(i, p, step_fraction)]
        for i, p in zip(image_shape, patch_size)
    ]
    return [tuple(tile) for tile in itertools.product(*per_axis)]


def pad_to_patch(
    array: ArrayT, patch_size: Sequence[int], value: float = 0.0
) -> tuple[ArrayT, tuple[slice, ...]]:
    """Pad the last ``len(patch_size)`` axes symmetrically (constant ``value``) up to the patch size.

    Returns ``(padded, undo)`` with ``padded[undo]`` equal to the input; axes already at least as large
    as the patch are not padded, and an input needing no padding is returned as is (same object).
    """
    patch_size = _check_positive_ints(patch_size, "patch_size")
    n_spatial = len(patch_size)
    if array.ndim < n_spatial:
        raise ValueError(f"array has {array.ndim} axes, fewer than the {n_spatial} of patch_size {patch_size}")
    spatial = tuple(int(s) for s in array.shape[-n_spatial:])
    before = [max(p - s, 0) // 2 for s, p in zip(spatial, patch_size)]
    after = [max(p - s, 0) - b for s, p, b in zip(spatial, patch_size, before)]
    undo = (slice(None),) * (array.ndim - n_spatial) + tuple(
        slice(b, b + s) for b, s in zip(before, spatial)
    )
    if not any(before) and not any(after):
        return array, undo
    if isinstance(array, torch.Tensor):
        torch_pad: list[int] = []
        for b, a in zip(reversed(before), reversed(after)):  # F.pad lists the last axis first
            torch_pad += [b, a]
        return F.pad(array, torch_pad, mode="constant", value=value), undo
    widths = [(0, 0)] * (array.ndim - n_spatial) + list(zip(before, after))
    return np.pad(array, widths, mode="constant", constant_values=value), undo


@functools.lru_cache(maxsize=8)
def _importance_numpy(patch_size: tuple[int, ...], sigma_scale: float, min_weight: float) -> np.ndarray:
    """Read-only float64 Gaussian map (cached): separable, centred between the middle voxels."""
    weights: np.ndarray = np.ones((), dtype=np.float64)
    for p in patch_size:
        centred = np.arange(p, dtype=np.float64) - (p - 1) / 2.0
        sigma = p * sigma_scale
        axis = np.exp(-0.5 * (centred / sigma) ** 2)
        weights = np.multiply.outer(weights, axis / axis.max())
    weights = np.maximum(weights / weights.max(), min_weight)
    weights.flags.writeable = False
    return weights


def gaussian_importance_map(
    patch_size: Sequence[int],
    sigma_scale: float = DEFAULT_SIGMA_SCALE,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    min_weight: float = DEFAULT_MIN_WEIGHT,
) -> torch.Tensor:
    """Gaussian tile weights (sigma = patch * sigma_scale per axis), max 1, every value >= min_weight.

    Centred exactly (mirror-symmetric along each axis, also for even sizes). The map is computed once per
    (patch_size, sigma_scale, min_weight) and cached as a read-only array; each call returns a *new*
    tensor on ``device``, so callers may modify it in place without touching the cache.
    """
    patch = _check_positive_ints(patch_size, "patch_size")
    if sigma_scale <= 0:
        raise ValueError(f"sigma_scale must be positive, got {sigma_scale}")
    if not 0.0 < min_weight <= 1.0:
        raise ValueError(f"min_weight must be in (0, 1], got {min_weight}")
    weights = _importance_numpy(patch, float(sigma_scale), float(min_weight))
    return torch.tensor(weights, dtype=dtype, device=device)


def finalize(accumulator: torch.Tensor, weight_sum: torch.Tensor) -> torch.Tensor:
    """Weighted average ``accumulator / weight_sum`` (a new tensor); every voxel must have been covered."""
    if not bool((weight_sum > 0).all()):
        raise ValueError("some voxels were covered by no tile (weight_sum == 0); the tile grid is incomplete")
    return accumulator / weight_sum.to(accumulator.dtype)
