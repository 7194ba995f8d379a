"""From the patient-ordered (RAS) arrays the phantom is built on to the arrays and affine a scanner writes.

Anatomy, lesions and physics are built on a canonical grid: axis 0 towards the patient's right, axis 1
posterior to anterior, axis 2 inferior to superior. A case acquired sagittally, or stored in LPS order, or
slightly oblique, is the same anatomy with its axes permuted and flipped and its affine rotated; reading it
back and reorienting to the closest canonical order (as preprocessing does) gives the canonical arrays.
"""
from __future__ import annotations

from collections.abc import Sequence

import nibabel.orientations as nio
import numpy as np

from iterdce.simulation.protocol import CaseProtocol


def centred_affine(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """Diagonal RAS affine with the grid centre on the scanner origin."""
    affine = np.diag([float(s) for s in spacing] + [1.0])
    affine[:3, 3] = -(np.asarray(shape, dtype=np.float64) - 1.0) / 2.0 * np.asarray(spacing, dtype=np.float64)
    return affine


def _transform(protocol: CaseProtocol) -> np.ndarray:
    """nibabel orientation transform from the canonical RAS order to the stored order."""
    return nio.ornt_transform(nio.axcodes2ornt(("R", "A", "S")), nio.axcodes2ornt(protocol.stored_codes))


def stored_affine(protocol: CaseProtocol) -> np.ndarray:
    """The affine of the stored arrays: permuted/flipped canonical affine, rotated by the oblique angle."""
    canonical_shape = protocol.canonical_shape
    affine = centred_affine(canonical_shape, protocol.canonical_spacing)
    affine = affine @ nio.inv_ornt_aff(_transform(protocol), canonical_shape)
    rotation = np.eye(4)
    rotation[:3, :3] = protocol.rotation()
    return rotation @ affine


def to_stored(array: np.ndarray, protocol: CaseProtocol) -> np.ndarray:
    """Reorder the last three (canonical) axes of ``array`` into the stored order (C-contiguous copy)."""
    transform = _transform(protocol)
    lead = array.ndim - 3
    if lead:
        transform = np.concatenate([np.array([[i, 1] for i in range(lead)], dtype=float),
                                    transform + np.array([[lead, 0]])])
    return np.ascontiguousarray(nio.apply_orientation(array, transform))
