"""Smooth random fields and voxel-centre coordinates, the raw material of the phantom's anatomy."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def smooth_field(
    rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float] | np.ndarray, correlation_mm: float
) -> np.ndarray:
    """Gaussian-filtered white noise with a physical correlation length, standardised to mean 0, std 1.

    Filtering in mm (not voxels) keeps structures the same physical size for any anisotropic spacing.
    """
    noise = rng.standard_normal(tuple(int(s) for s in shape), dtype=np.float32)
    sigma = [max(correlation_mm / float(s), 0.3) for s in spacing]
    field = ndimage.gaussian_filter(noise, sigma=sigma, mode="reflect", truncate=3.0)
    field -= field.mean()
    std = float(field.std())
    return field / std if std > 0 else field


def axis_coordinates(shape: Sequence[int], spacing: Sequence[float]) -> tuple[np.ndarray, ...]:
    """Voxel-centre coordinates in mm along each axis (0 at the grid corner), shaped to broadcast in 3D."""
    coords = []
    for axis, (n, s) in enumerate(zip(shape, spacing)):
        view = [1, 1, 1]
        view[axis] = int(n)
        coords.append(((np.arange(int(n), dtype=np.float32) + 0.5) * float(s)).reshape(view))
    return tuple(coords)


def quantile_bins(values: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``values`` into at most ``n_bins`` equally populated bins: (bin index per value, bin means).

    Used to solve the kinetic model once per bin instead of once per voxel.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return np.zeros(0, dtype=np.int32), np.zeros(0)
    n_bins = max(1, min(int(n_bins), values.size))
    edges = np.quantile(values, np.linspace(0.0, 1.0, n_bins + 1)[1:-1])
    bins = np.searchsorted(edges, values, side="right").astype(np.int32)
    used, index = np.unique(bins, return_inverse=True)
    sums = np.bincount(index, weights=values, minlength=used.size)
    counts = np.bincount(index, minlength=used.size)
    return index.astype(np.int32), sums / counts
