"""Resampling of phases and masks to a target spacing with scikit-image.

Images: cubic splines (order 3). When one axis is much coarser than the others (anisotropic acquisition),
the in-plane axes are resampled slice by slice with order 3 and the coarse axis separately with linear
interpolation, so that few thick slices are not smeared by a cubic spline across them (as nnU-Net does).
Masks: nearest neighbour.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
from skimage.transform import resize

ANISOTROPY_THRESHOLD = 3.0


def shape_for_spacing(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> tuple[int, ...]:
    """Voxel grid that covers the same extent at the ``target`` spacing (at least 1 voxel per axis)."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target))


def coarse_axis(spacing: Sequence[float] | np.ndarray) -> int | None:
    """The axis whose spacing exceeds 3x every other axis, if any."""
    spacing = np.asarray(spacing, dtype=float)
    axis = int(np.argmax(spacing))
    others = np.delete(spacing, axis)
    return axis if spacing[axis] > ANISOTROPY_THRESHOLD * others.max() else None


def _resize(volume: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    if tuple(volume.shape) == tuple(shape):
        return volume.astype(np.float32, copy=False)
    return cast(np.ndarray, resize(volume.astype(np.float32, copy=False), tuple(shape), order=order, mode="edge",
                                   anti_aliasing=False, preserve_range=True).astype(np.float32))


def resample_volume(volume: np.ndarray, new_shape: Sequence[int], separate_axis: int | None) -> np.ndarray:
    """One 3D image to ``new_shape``; ``separate_axis`` (the coarse one) gets linear interpolation alone."""
    new_shape = tuple(int(s) for s in new_shape)
    if separate_axis is None:
        return _resize(volume, new_shape, order=3)
    moved = np.moveaxis(volume, separate_axis, 0)
    in_plane_shape = tuple(s for i, s in enumerate(new_shape) if i != separate_axis)
    slices = np.stack([_resize(plane, in_plane_shape, order=3) for plane in moved])
    full_shape = (new_shape[separate_axis],) + in_plane_shape
    return np.moveaxis(_resize(slices, full_shape, order=1), 0, separate_axis)


def resample_phases(image: np.ndarray, spacing: Sequence[float], new_shape: Sequence[int]) -> np.ndarray:
    """Every phase of ``image`` [P, X, Y, Z] to ``new_shape``; separate coarse axis when the grid is anisotropic."""
    if tuple(image.shape[1:]) == tuple(new_shape):
        return image.astype(np.float32, copy=False)
    separate = coarse_axis(spacing)
    out = np.empty((image.shape[0], *new_shape), dtype=np.float32)
    for index, phase in enumerate(image):
        out[index] = resample_volume(phase, new_shape, separate)
    return out


def resample_mask(mask: np.ndarray, new_shape: Sequence[int]) -> np.ndarray:
    """Label volume to ``new_shape`` by nearest neighbour, keeping its dtype and label values."""
    if tuple(mask.shape) == tuple(new_shape):
        return mask
    resized = resize(mask, tuple(new_shape), order=0, mode="edge", anti_aliasing=False, preserve_range=True)
    return cast(np.ndarray, resized.astype(mask.dtype))
