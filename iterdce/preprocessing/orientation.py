"""Reorientation to the closest canonical (RAS+) voxel order and back, through the affine.

Scanners store axial, sagittal or coronal slabs in any axis order and direction. Working in canonical
order makes array axis 0/1/2 mean left-right / posterior-anterior / inferior-superior for every case, so
the plan's spacing and patch size describe the same anatomy whatever the source orientation.
"""
from __future__ import annotations

from typing import cast

import nibabel.orientations as nio
import numpy as np


def canonical_transform(affine: np.ndarray) -> np.ndarray:
    """The nibabel orientation transform (axis permutation and flips) from ``affine``'s order to RAS+."""
    return cast(np.ndarray, nio.ornt_transform(nio.io_orientation(affine), nio.axcodes2ornt("RAS")))


def reorient_view(array: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """``reorient`` without the copy: a strided view of ``array`` (may be non-contiguous, negative strides)."""
    lead = array.ndim - 3
    full = np.concatenate([np.array([[i, 1] for i in range(lead)], dtype=float).reshape(lead, 2),
                           transform + np.array([[lead, 0]])]) if lead else transform
    return cast(np.ndarray, nio.apply_orientation(array, full))


def reorient(array: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Apply an orientation ``transform`` to the last three (spatial) axes of ``array`` (C-contiguous result)."""
    return np.ascontiguousarray(reorient_view(array, transform))


def reoriented_affine(affine: np.ndarray, shape: tuple[int, ...], transform: np.ndarray) -> np.ndarray:
    """Affine of the array obtained by ``reorient(array of spatial shape, transform)``."""
    return cast(np.ndarray, affine @ nio.inv_ornt_aff(transform, shape[-3:]))


def inverse_transform(transform: np.ndarray) -> np.ndarray:
    """The orientation transform that undoes ``transform``."""
    inverse = np.zeros_like(transform)
    for source_axis, (target_axis, flip) in enumerate(transform):
        inverse[int(target_axis)] = [source_axis, flip]
    return inverse


def to_canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(canonical array, canonical affine, transform used) for an array whose last 3 axes are spatial."""
    transform = canonical_transform(affine)
    return reorient(array, transform), reoriented_affine(affine, array.shape, transform), transform


def obliquity_deg(affine: np.ndarray) -> float:
    """How far the voxel grid is tilted from the scanner axes: the largest angle (degrees) between a voxel axis
    and the scanner axis closest to it (0 for a grid aligned with the scanner, whatever its axis order)."""
    columns = np.asarray(affine, dtype=np.float64)[:3, :3]
    unit = columns / np.maximum(np.linalg.norm(columns, axis=0), 1e-12)
    cosines = np.clip(np.abs(unit).max(axis=0), 0.0, 1.0)
    return float(np.degrees(np.arccos(cosines)).max())
