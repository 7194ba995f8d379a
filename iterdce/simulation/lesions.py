"""Placing designed lesions inside the breast and giving them their internal enhancement pattern."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from iterdce.core.errors import IterdceError
from iterdce.simulation.anatomy import Anatomy, Tissue
from iterdce.simulation.fields import smooth_field
from iterdce.simulation.lesion_design import LesionSpec
from iterdce.simulation.lesion_shapes import make_shape, scaled_mask

MAX_SHRINKS = 12
MIN_VOXELS_ACROSS = 2.5
HOST_TISSUE = {"fgt": Tissue.FGT, "fat": Tissue.FAT}


class LesionPlacementError(IterdceError, RuntimeError):
    """No room for a lesion in the breast: the field of view is too small for the requested geometry."""


@dataclass
class PlacedLesion:
    """A lesion in the volume: its voxels, per-voxel perfusion modulation and (rim pattern) core voxels."""

    spec: LesionSpec
    voxels: tuple[np.ndarray, np.ndarray, np.ndarray]
    modulation: np.ndarray
    core: np.ndarray

    @property
    def n_voxels(self) -> int:
        return int(self.voxels[0].size)


def morphology_text(spec: LesionSpec) -> str:
    """Short description of a lesion design for messages."""
    return f"{spec.morphology} {spec.curve_type}"


def _local_offsets(local: np.ndarray) -> np.ndarray:
    """Voxel offsets of the voxels of a local mask (argwhere order) from the box's centre voxel."""
    return np.argwhere(local) - (np.array(local.shape) // 2)


def _choose_centre(
    rng: np.random.Generator,
    anatomy: Anatomy,
    host: str,
    reach_mm: float,
    taken: list[tuple[np.ndarray, float]],
    spacing: np.ndarray,
) -> tuple[np.ndarray | None, str]:
    """A random voxel deep enough in the breast interior, in the host tissue if possible, clear of others."""
    deep = anatomy.interior & (anatomy.interior_depth_mm >= reach_mm)
    for tissue_name in (host, "fat" if host == "fgt" else "fgt"):
        cand = np.argwhere(deep & (anatomy.tissue == HOST_TISSUE[tissue_name]))
        for centre, other_reach in taken:
            dist = np.linalg.norm((cand - centre) * spacing, axis=1)
            cand = cand[dist >= reach_mm + other_reach + 1.0]
        if len(cand):
            return cand[int(rng.integers(len(cand)))], tissue_name
    return None, host


def _septations(rng: np.random.Generator, local: np.ndarray, spacing: np.ndarray, radius_mm: float) -> np.ndarray:
    """Flags of the voxels of ``local`` on 1-3 thin planes through the lesion: the dark internal septations
    of a fibroadenoma. Each plane is one voxel thick along its normal, at least 0.8 mm."""
    offsets = (np.argwhere(local) - np.array(local.shape) // 2) * spacing
    core = np.zeros(len(offsets), dtype=bool)
    for _ in range(int(rng.integers(1, 4))):
        normal = rng.standard_normal(3)
        normal /= np.linalg.norm(normal)
        half = max(0.5 * float(np.abs(normal) @ spacing), 0.4)
        core |= np.abs(offsets @ normal - rng.uniform(-0.4, 0.4) * radius_mm) <= half
    return core


def _pattern(
    rng: np.random.Generator, spec: LesionSpec, local: np.ndarray, spacing: np.ndarray, radius_mm: float
) -> tuple[np.ndarray, np.ndarray, str]:
    """Perfusion modulation and core flags for the voxels of ``local`` (in argwhere order)."""
    field = smooth_field(rng, local.shape, spacing, correlation_mm=max(0.5 * radius_mm, 1.0))[local]
    field = (field - field.mean()) / max(float(field.std()), 1e-6) if field.size > 1 else field * 0
    core = np.zeros(field.shape, dtype=bool)
    pattern = spec.pattern
    if pattern == "rim":
        depth = ndimage.distance_transform_edt(np.pad(local, 1), sampling=spacing)[1:-1, 1:-1, 1:-1][local]
        level = np.quantile(depth, 1.0 - rng.uniform(0.12, 0.30))
        core = (depth >= level) & (depth > float(spacing.min()) * 1.01)
        if not core.any() or core.all():
            pattern, core = "heterogeneous", np.zeros(field.shape, dtype=bool)
    if pattern == "septated":
        core = _septations(rng, local, spacing, radius_mm)
        if not core.any() or core.mean() > 0.35:
            pattern, core = "homogeneous", np.zeros(field.shape, dtype=bool)
    amplitude = {"homogeneous": 0.08, "heterogeneous": 0.45, "rim": 0.12, "septated": 0.08}[pattern]
    modulation = np.clip(1.0 + amplitude * field, 0.3, 2.0)
    return modulation, core, pattern


def _fit(
    rng: np.random.Generator, anatomy: Anatomy, spec: LesionSpec, spacing: np.ndarray,
    taken: list[tuple[np.ndarray, float]],
) -> tuple[np.ndarray, float, np.ndarray, float, np.ndarray | None, str]:
    """Shape ``spec`` and find a centre for it, shrinking it (down to the smallest size) until one fits.

    Returns the local mask, radius (mm), voxel offsets, reach (mm), centre (None if none fits) and host.
    """
    max_depth = float(anatomy.interior_depth_mm.max())
    shape_fn, extent = make_shape(rng, spec.morphology)
    smallest = MIN_VOXELS_ACROSS * float(spacing.max())
    diameter = max(min(spec.diameter_mm, 1.9 * max_depth / extent), smallest)
    for _ in range(MAX_SHRINKS):
        local, radius = scaled_mask(shape_fn, extent, diameter, spacing)
        offsets = _local_offsets(local)
        # thin spike tips may be clipped by the breast interior; the bulk must fit
        reach = float(np.quantile(np.linalg.norm(offsets * spacing, axis=1), 0.9)) + 0.5 * float(spacing.max())
        centre, host = _choose_centre(rng, anatomy, spec.host, reach, taken, spacing)
        if centre is not None or diameter <= smallest:
            break
        diameter = max(0.8 * diameter, smallest)
    return local, radius, offsets, reach, centre, host


def place_lesions(
    rng: np.random.Generator, anatomy: Anatomy, specs: Sequence[LesionSpec], spacing: Sequence[float] | np.ndarray
) -> list[PlacedLesion]:
    """Shape, size and place each lesion entirely inside the breast interior, without overlaps.

    Lesions that do not fit are shrunk step by step (recorded in their spec's ``diameter_mm``).
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    shape = np.array(anatomy.tissue.shape)
    max_depth = float(anatomy.interior_depth_mm.max())
    occupied = np.zeros(anatomy.tissue.shape, dtype=bool)
    taken: list[tuple[np.ndarray, float]] = []
    placed = []
    smallest = MIN_VOXELS_ACROSS * float(spacing.max())
    for spec in specs:
        local, radius, offsets, reach, centre, host = _fit(rng, anatomy, spec, spacing, taken)
        if centre is None and spec.morphology == "nonmass":
            # a segment-long region does not fit a small breast; a mass of the same volume may
            spec = replace(spec, morphology="irregular", pattern="heterogeneous")
            local, radius, offsets, reach, centre, host = _fit(rng, anatomy, spec, spacing, taken)
        if centre is None:
            raise LesionPlacementError(
                f"no room for lesion {spec.label} ({morphology_text(spec)}) of at least {smallest:.1f} mm "
                f"({MIN_VOXELS_ACROSS} voxels of {spacing.max():g} mm) in breasts only {max_depth:.1f} mm deep; "
                "use a larger --shape or --spacing")
        modulation, core, pattern = _pattern(rng, spec, local, spacing, radius)
        coords = offsets + centre
        valid = np.all((coords >= 0) & (coords < shape), axis=1)
        inside = tuple(coords[valid].T)
        valid[valid] = anatomy.interior[inside] & ~occupied[inside]
        voxels = tuple(coords[valid].T)
        if not valid.any():
            raise LesionPlacementError(f"lesion {spec.label} has no voxel inside the breast interior")
        modulation, core = modulation[valid], core[valid]
        occupied[voxels] = True
        taken.append((centre, reach))
        volume_diameter = float((6.0 / np.pi * len(voxels[0]) * np.prod(spacing)) ** (1 / 3))
        new_spec = replace(spec, host=host, pattern=pattern, diameter_mm=volume_diameter)
        placed.append(PlacedLesion(new_spec, voxels, modulation, core))
    return placed
