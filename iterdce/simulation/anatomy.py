"""Per-case anatomy of a prone axial breast slab: breasts, skin, fat, FGT, chest wall, heart and vessels.

Array axes follow RAS: axis 0 runs towards the patient's right (+x), axis 1 from posterior (thorax) to
anterior (breasts), axis 2 from inferior to superior. The anatomy is laid out in
fractions of the field of view, so any grid shape and spacing gives two complete breasts.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from scipy import ndimage

from iterdce.simulation.fields import axis_coordinates, smooth_field

DENSITY_FRACTIONS = {"a": (0.05, 0.2), "b": (0.2, 0.45), "c": (0.45, 0.7), "d": (0.7, 0.9)}
DENSITY_PROBS = {"a": 0.1, "b": 0.4, "c": 0.4, "d": 0.1}


class Tissue(IntEnum):
    """Tissue classes of the phantom (internal codes, not written to disk)."""

    AIR = 0
    LUNG = 1
    BLOOD = 2
    MUSCLE = 3
    FAT = 4
    SKIN = 5
    FGT = 6
    LESION = 7
    CYST = 8


@dataclass
class Anatomy:
    """Tissue map and masks of one case.

    ``interior`` is where lesions may lie (breast parenchyma region, away from skin and chest wall);
    ``interior_depth_mm`` is each interior voxel's distance to the interior's boundary.
    """

    tissue: np.ndarray
    breast_mask: np.ndarray
    interior: np.ndarray
    interior_depth_mm: np.ndarray
    density: str
    fgt_fraction: float


def _erode_anisotropic(mask: np.ndarray, spacing: Sequence[float], depth_mm: float) -> np.ndarray:
    """Erode ``mask`` by about ``depth_mm`` along each axis; grid borders count as inside."""
    out = mask
    for axis, s in enumerate(spacing):
        steps = int(round(depth_mm / float(s)))
        if steps <= 0:
            continue
        structure = np.zeros((3, 3, 3), dtype=bool)
        index = [1, 1, 1]
        for k in (0, 1, 2):
            index[axis] = k
            structure[tuple(index)] = True
        out = ndimage.binary_erosion(out, structure=structure, iterations=steps, border_value=1)
    return out


def _depth_mm(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distance (mm) of each mask voxel to the nearest voxel outside, computed on the mask's bounding box."""
    depth = np.zeros(mask.shape, dtype=np.float32)
    if not mask.any():
        return depth
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    padded = np.pad(mask[box], 1)
    depth[box] = ndimage.distance_transform_edt(padded, sampling=spacing)[1:-1, 1:-1, 1:-1]
    return depth


def _half_ellipsoid(
    coords: Sequence[np.ndarray], centre: Sequence[float], axes: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised radius of an ellipsoid and the anterior half-space mask (y >= base)."""
    x, y, z = coords
    rho2 = ((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2 + ((z - centre[2]) / axes[2]) ** 2
    return np.sqrt(rho2), y >= centre[1]


def _thorax(
    rng: np.random.Generator, coords: Sequence[np.ndarray], lengths: Sequence[float], y_inner: np.ndarray
) -> np.ndarray:
    """Tissue codes posterior to the chest wall: lung, heart and two internal thoracic vessels."""
    x, y, z = coords
    lx, ly, _ = lengths
    heart_c = (lx * rng.uniform(0.34, 0.42), float(np.min(y_inner)) - ly * rng.uniform(0.06, 0.12))
    heart_r = (lx * rng.uniform(0.16, 0.22), ly * rng.uniform(0.10, 0.15))
    heart = ((x - heart_c[0]) / heart_r[0]) ** 2 + ((y - heart_c[1]) / heart_r[1]) ** 2 <= 1.0
    thorax = np.where(heart, np.uint8(Tissue.BLOOD), np.uint8(Tissue.LUNG))
    radius = rng.uniform(1.2, 2.0)
    for side in (-1, 1):
        vx = lx / 2 + side * lx * rng.uniform(0.07, 0.11)
        vy = y_inner - radius - 1.5
        vessel = (x - vx) ** 2 + (y - vy) ** 2 <= radius**2
        thorax = np.where(vessel, np.uint8(Tissue.BLOOD), thorax)
    return np.broadcast_to(thorax, np.broadcast_shapes(x.shape, y.shape, z.shape))


def build_anatomy(
    rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float], body_fill: float = 1.0,
    heart: bool = True
) -> Anatomy:
    """Draw one case's anatomy: two half-ellipsoid breasts with skin, fat and FGT on a chest wall.

    The breasts span ``body_fill`` of the field of view left-right and inferior-superior (1: the whole).
    Without ``heart`` the thorax behind the chest wall is lung only (a slab above the heart: no blood pool
    that enhances with the arterial input and washes out); the random draws are the same either way.
    """
    shape = tuple(int(s) for s in shape)
    coords = axis_coordinates(shape, spacing)
    x, y, z = coords
    lx, ly, lz = (n * float(s) for n, s in zip(shape, spacing))
    xn = (x - lx / 2) / (lx / 2)
    bx, bz = body_fill * lx, body_fill * lz

    # chest wall: anterior muscle surface curving posteriorly towards the sides
    wall_y0, wall_bend = ly * rng.uniform(0.36, 0.44), ly * rng.uniform(0.03, 0.07)
    y_wall = wall_y0 - wall_bend * xn**2
    muscle_t = max(ly * rng.uniform(0.04, 0.07), 1.5 * float(spacing[1]))
    subcut_t = max(ly * rng.uniform(0.015, 0.035), float(spacing[1]))
    skin_t = rng.uniform(1.2, 2.2)
    y_body = y_wall + subcut_t

    # breasts: two half-ellipsoids on the chest wall, mildly asymmetric
    offset = bx * rng.uniform(0.22, 0.26)
    ax = min(bx * rng.uniform(0.17, 0.21), 0.92 * offset)
    base_axes = np.array([ax, ax * rng.uniform(1.1, 1.7), bz * rng.uniform(0.34, 0.46)])
    breasts = []
    for side in (-1, 1):
        cx = lx / 2 + side * offset
        axes = base_axes * rng.uniform(0.92, 1.08, size=3)
        cy = float(wall_y0 - wall_bend * ((cx - lx / 2) / (lx / 2)) ** 2 + 0.5 * subcut_t)
        axes[1] = min(axes[1], 0.97 * ly - cy - skin_t)
        axes[2] = min(axes[2], 0.49 * lz)
        centre = (cx, cy, lz / 2 + lz * rng.uniform(-0.03, 0.03))
        breasts.append((centre, axes))

    breast_any = np.zeros(shape, dtype=bool)
    inner_any = np.zeros(shape, dtype=bool)
    rho_inner = np.full(shape, np.inf, dtype=np.float32)
    margin = skin_t + subcut_t
    for centre, axes in breasts:
        rho, front = _half_ellipsoid(coords, centre, axes)
        breast_any |= (rho <= 1.0) & front
        rho_i, _ = _half_ellipsoid(coords, centre, np.maximum(axes - margin, 0.5 * axes))
        inner = (rho_i <= 1.0) & (y >= y_body + 0.5 * subcut_t)
        inner_any |= inner
        rho_inner = np.where(inner, np.minimum(rho_inner, rho_i), rho_inner)

    body = breast_any | np.broadcast_to(y <= y_body, shape)
    skin = body & ~_erode_anisotropic(body, spacing, skin_t)
    tissue = np.full(shape, np.uint8(Tissue.AIR), dtype=np.uint8)
    tissue[body] = Tissue.FAT
    wall = np.broadcast_to((y < y_wall) & (y >= y_wall - muscle_t), shape)
    tissue[wall] = Tissue.MUSCLE
    thorax_region = np.broadcast_to(y < y_wall - muscle_t, shape)
    thorax = _thorax(rng, coords, (lx, ly, lz), y_wall - muscle_t)
    if not heart:
        thorax = np.where(thorax == Tissue.BLOOD, np.uint8(Tissue.LUNG), thorax)
    tissue[thorax_region] = thorax[thorax_region]
    interior = inner_any & ~skin
    tissue[skin] = Tissue.SKIN

    # fibroglandular tissue: smooth field, denser towards the centre of each breast, thresholded to density
    density = str(rng.choice(list(DENSITY_PROBS), p=list(DENSITY_PROBS.values())))
    fraction = float(rng.uniform(*DENSITY_FRACTIONS[density]))
    field = 0.8 * smooth_field(rng, shape, spacing, correlation_mm=rng.uniform(3.5, 6.0))
    field += 0.45 * smooth_field(rng, shape, spacing, correlation_mm=rng.uniform(1.2, 2.0))
    score = field + rng.uniform(1.0, 2.0) * (1.0 - np.minimum(rho_inner, 1.0))
    if interior.any():
        level = np.quantile(score[interior], 1.0 - fraction)
        tissue[interior & (score > level)] = Tissue.FGT

    lateral = np.zeros((shape[0], 1, 1), dtype=bool)
    for centre, axes in breasts:
        lateral |= np.abs(x - centre[0]) <= axes[0]
    breast_mask = body & np.broadcast_to((y >= y_wall) & lateral, shape)
    interior &= breast_mask
    depth = _depth_mm(interior, spacing)
    return Anatomy(tissue, breast_mask, interior, depth, density, fraction)
