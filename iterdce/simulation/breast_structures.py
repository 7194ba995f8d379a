"""Structures inside the breast that are not lesions: enhancing vessels and non-enhancing cysts.

They are what makes a real breast hard to read: vessels enhance strongly and early like a washout lesion,
and cysts are round masses that never enhance. Neither carries a lesion label. Both are added after the
lesions are placed, never over a lesion voxel.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from iterdce.simulation.anatomy import Anatomy, Tissue

VESSEL_RADIUS_MM = (0.6, 1.5)
VESSEL_STEP_MM = 2.0
CYST_DIAMETER_MM = (3.0, 15.0)


def _ball(radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Voxel offsets within ``radius_mm`` of a voxel centre (the centre itself always included)."""
    half = np.maximum(np.floor(radius_mm / spacing), 0).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij"), axis=-1).reshape(-1, 3)
    return grid[np.linalg.norm(grid * spacing, axis=1) <= max(radius_mm, 1e-6)]


def _stamp(points_vox: np.ndarray, offsets: np.ndarray, shape: Sequence[int]) -> tuple[np.ndarray, ...]:
    """Unique in-grid voxel indices of ``offsets`` placed at every point (rounded to the nearest voxel)."""
    coords = (np.round(points_vox).astype(int)[:, None, :] + offsets[None]).reshape(-1, 3)
    coords = coords[np.all((coords >= 0) & (coords < np.asarray(shape)), axis=1)]
    return tuple(np.unique(coords, axis=0).T)


def add_vessels(rng: np.random.Generator, anatomy: Anatomy, spacing: Sequence[float], count: int,
                free: np.ndarray) -> int:
    """Draw ``count`` tortuous vessels running from the chest wall towards the nipple; returns voxels set.

    Each vessel is a random walk of 2 mm steps, anteriorly biased, 0.6-1.5 mm in radius; its blood follows
    the arterial input. Only voxels of the breast interior where ``free`` is set become vessel.
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    cand = np.argwhere(anatomy.interior & free)
    if count <= 0 or not len(cand):
        return 0
    posterior = cand[cand[:, 1] <= np.quantile(cand[:, 1], 0.25)]
    total = 0
    for _ in range(count):
        start = posterior[int(rng.integers(len(posterior)))] * spacing
        direction = np.array([rng.normal(0, 0.4), 1.0, rng.normal(0, 0.4)])
        points, point = [], start.astype(np.float64)
        for _step in range(int(rng.integers(15, 40))):
            direction = direction / np.linalg.norm(direction) + rng.normal(0.0, 0.35, size=3)
            direction[1] = abs(direction[1]) * 0.8 + 0.2  # keep heading anteriorly
            direction /= np.linalg.norm(direction)
            for sub in np.linspace(0.0, VESSEL_STEP_MM, 5, endpoint=False):
                points.append(point + sub * direction)
            point = point + VESSEL_STEP_MM * direction
        voxels = _stamp(np.array(points) / spacing, _ball(rng.uniform(*VESSEL_RADIUS_MM), spacing),
                        anatomy.tissue.shape)
        keep = anatomy.interior[voxels] & free[voxels]
        voxels = tuple(v[keep] for v in voxels)
        anatomy.tissue[voxels] = Tissue.BLOOD
        total += int(keep.sum())
    return total


def add_cysts(rng: np.random.Generator, anatomy: Anatomy, spacing: Sequence[float], count: int,
              free: np.ndarray) -> int:
    """Place ``count`` simple cysts (3-15 mm ellipsoids of fluid) in the breast interior; returns voxels set."""
    spacing = np.asarray(spacing, dtype=np.float64)
    total = 0
    for _ in range(count):
        diameter = float(np.exp(rng.uniform(*np.log(CYST_DIAMETER_MM))))
        axes = diameter / 2.0 * rng.uniform(0.8, 1.25, size=3)
        deep = np.argwhere(anatomy.interior & free & (anatomy.interior_depth_mm >= axes.max()))
        if not len(deep):
            continue
        centre = deep[int(rng.integers(len(deep)))]
        half = np.ceil(axes / spacing).astype(int)
        box = np.stack(np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij"), axis=-1).reshape(-1, 3)
        box = box[np.sum((box * spacing / axes) ** 2, axis=1) <= 1.0] + centre
        box = box[np.all((box >= 0) & (box < np.asarray(anatomy.tissue.shape)), axis=1)]
        voxels = tuple(box.T)
        keep = anatomy.interior[voxels] & free[voxels]
        voxels = tuple(v[keep] for v in voxels)
        anatomy.tissue[voxels] = Tissue.CYST
        free[voxels] = False
        total += int(keep.sum())
    return total
