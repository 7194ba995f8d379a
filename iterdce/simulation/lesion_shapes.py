"""Lesion shapes as indicator functions of radius-normalised coordinates, so one design scales to any size.

round (ellipsoid), lobulated (a few broad bumps), irregular (ragged angular and radial modulation),
spiculated (a core with thin tapering spikes) and nonmass (clumped enhancement scattered through an
elongated, segment-like region, as in non-mass enhancement).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

MORPHOLOGIES = ("round", "lobulated", "irregular", "spiculated", "nonmass")
Shape = Callable[[np.ndarray], np.ndarray]


def _unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def _directions(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norm = np.linalg.norm(q, axis=-1)
    return norm, q / np.maximum(norm, 1e-6)[..., None]


def _round(rng: np.random.Generator) -> tuple[Shape, float]:
    scales = rng.uniform(0.75, 1.3, size=3)
    scales /= np.prod(scales) ** (1 / 3)
    rot = _rotation(rng)
    return (lambda q: np.sum((q @ rot / scales) ** 2, axis=-1) <= 1.0), float(scales.max())


def _lobulated(rng: np.random.Generator) -> tuple[Shape, float]:
    dirs = _unit_vectors(rng, int(rng.integers(3, 6)))
    amps = rng.uniform(0.25, 0.5, size=len(dirs))

    def inside(q: np.ndarray) -> np.ndarray:
        norm, u = _directions(q)
        bumps = np.maximum(u @ dirs.T, 0.0) ** 3
        return norm <= 0.85 + bumps @ amps

    return inside, float(0.85 + amps.sum())


def _irregular(rng: np.random.Generator) -> tuple[Shape, float]:
    ang_dirs, ang_freq = _unit_vectors(rng, 6), rng.uniform(2.0, 5.0, size=6)
    ang_phase, ang_amp = rng.uniform(0, 2 * np.pi, size=6), rng.uniform(0.5, 1.0, size=6)
    ang_amp *= 0.30 / ang_amp.sum()
    rad_dirs, rad_freq = _unit_vectors(rng, 5), rng.uniform(5.0, 9.0, size=5)
    rad_phase = rng.uniform(0, 2 * np.pi, size=5)

    def inside(q: np.ndarray) -> np.ndarray:
        norm, u = _directions(q)
        angular = np.cos((u @ ang_dirs.T) * ang_freq + ang_phase) @ ang_amp
        ragged = 0.03 * np.cos((q @ rad_dirs.T) * rad_freq + rad_phase).sum(axis=-1)
        return norm <= 1.0 + 2.0 * angular + ragged

    return inside, 1.0 + 0.6 + 0.15


def _spiculated(rng: np.random.Generator) -> tuple[Shape, float]:
    n = int(rng.integers(10, 21))
    dirs, lengths = _unit_vectors(rng, n), rng.uniform(0.6, 1.3, size=n)
    width = rng.uniform(0.3, 0.45)
    core_dirs, core_phase = _unit_vectors(rng, 3), rng.uniform(0, 2 * np.pi, size=3)

    def inside(q: np.ndarray) -> np.ndarray:
        norm, u = _directions(q)
        core = norm <= 0.9 + 0.08 * np.cos(3.0 * (u @ core_dirs.T) + core_phase).sum(axis=-1)
        along = q @ dirs.T
        perp = np.sqrt(np.maximum(norm[..., None] ** 2 - along**2, 0.0))
        tip = 0.9 + lengths
        spike = (along >= 0) & (along <= tip) & (perp <= width * (1.0 - along / tip))
        return core | spike.any(axis=-1)

    return inside, float(0.9 + lengths.max())


def _nonmass(rng: np.random.Generator) -> tuple[Shape, float]:
    """Clumps (a thresholded sum of 8 random plane waves, about a third of the volume) in a long ellipsoid."""
    scales = np.array([rng.uniform(2.0, 3.0), rng.uniform(0.8, 1.1), rng.uniform(0.6, 0.9)])
    rot = _rotation(rng)
    waves = _unit_vectors(rng, 8) * rng.uniform(2.5, 4.5, size=(8, 1))
    phases = rng.uniform(0, 2 * np.pi, size=8)

    def inside(q: np.ndarray) -> np.ndarray:
        region = np.sum((q @ rot / scales) ** 2, axis=-1) <= 1.0
        return region & (np.cos(q @ waves.T + phases).sum(axis=-1) > 0.9)

    return inside, float(scales.max())


SHAPE_MAKERS = {"round": _round, "lobulated": _lobulated, "irregular": _irregular, "spiculated": _spiculated,
                "nonmass": _nonmass}


def make_shape(rng: np.random.Generator, morphology: str) -> tuple[Shape, float]:
    """An indicator of normalised coordinates for ``morphology`` and its extent (in radii) from the centre."""
    if morphology not in SHAPE_MAKERS:
        raise ValueError(f"unknown lesion morphology {morphology!r}; expected one of {MORPHOLOGIES}")
    return SHAPE_MAKERS[morphology](rng)


def rasterise(shape: Shape, extent: float, radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Voxelise ``shape`` at ``radius_mm`` on a box centred on a voxel; the box half-width covers ``extent``."""
    half = [int(np.ceil(extent * radius_mm / float(s))) + 1 for s in spacing]
    axes = [np.arange(-h, h + 1, dtype=np.float64) * float(s) / radius_mm for h, s in zip(half, spacing)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    return shape(grid)


def scaled_mask(
    shape: Shape, extent: float, diameter_mm: float, spacing: Sequence[float]
) -> tuple[np.ndarray, float]:
    """Rasterise with the radius that gives a volume close to a sphere of ``diameter_mm``.

    Returns the local mask and the radius used (mm).
    """
    voxel = float(np.prod(spacing))
    target = np.pi / 6.0 * diameter_mm**3
    radius = diameter_mm / 2.0
    for _ in range(3):
        count = int(rasterise(shape, extent, radius, spacing).sum())
        if count == 0:
            radius *= 1.5
            continue
        radius *= float(np.clip((target / (count * voxel)) ** (1 / 3), 0.5, 2.0))
    return rasterise(shape, extent, radius, spacing), radius
