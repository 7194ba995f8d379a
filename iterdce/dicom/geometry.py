"""Stacking 2D DICOM slices into a volume with a RAS affine, refusing what cannot be a regular grid.

Slices are sorted by their distance along the slice normal (ImagePositionPatient . normal), never by
InstanceNumber. Voxel (i, j, k) is column i, row j of the k-th slice in that order, so the LPS affine has
columns ``row direction * column spacing``, ``column direction * row spacing``, the step between slice
positions, and the first slice's position; RAS flips the first two world axes.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from iterdce.core.errors import IterdceError
from iterdce.dicom.headers import Slice

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
ORIENTATION_ATOL = 1e-4  # direction cosines: slices of one volume must agree to this
SPACING_ATOL_MM = 1e-3  # pixel spacing and duplicate positions
IRREGULAR_FRACTION = 0.01  # a slice step differing from the median step by more than 1 % is irregular
MISSING_FACTOR = 1.5  # a step longer than 1.5 median steps means slices are missing
SHEAR_ATOL_MM = 0.01  # slice positions off the normal line by more than this: gantry tilt / sheared stack
GRID_ATOL = 1e-3  # two grids are the same when affines agree to 1 micrometre


class GeometryError(IterdceError, ValueError):
    """The slices do not form one regular volume; the message says why (no file name: callers add the series)."""


@dataclass
class Stack:
    """Slices sorted along the normal, the volume shape (columns, rows, slices) and its RAS affine."""

    slices: list[Slice]
    shape: tuple[int, int, int]
    affine: np.ndarray

    def same_grid(self, other: Stack) -> bool:
        """Same shape and the same affine within 1 micrometre."""
        return self.shape == other.shape and bool(np.allclose(self.affine, other.affine, atol=GRID_ATOL))


def _check_in_plane(slices: Sequence[Slice]) -> None:
    first = slices[0]
    if any((s.rows, s.columns) != (first.rows, first.columns) for s in slices):
        raise GeometryError("slices of different matrix sizes (Rows/Columns) in one volume")
    if any(not np.allclose(s.pixel_spacing, first.pixel_spacing, atol=SPACING_ATOL_MM) for s in slices):
        raise GeometryError("slices with different PixelSpacing in one volume")
    if any(not np.allclose(s.orientation, first.orientation, atol=ORIENTATION_ATOL) for s in slices):
        raise GeometryError("mixed orientations (ImageOrientationPatient differs between slices of one volume)")
    row, col = first.orientation[:3], first.orientation[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise GeometryError(f"ImageOrientationPatient {list(first.orientation)} is not orthonormal")


def _check_steps(distances: np.ndarray) -> float:
    """The regular slice step (mm) of sorted distances along the normal, or GeometryError."""
    steps = np.diff(distances)
    if np.any(steps < SPACING_ATOL_MM):
        count = int(np.sum(steps < SPACING_ATOL_MM))
        raise GeometryError(f"{count} duplicate slice position(s) along the normal")
    step = float(np.median(steps))
    gaps = np.flatnonzero(steps > MISSING_FACTOR * step)
    if gaps.size:
        missing = int(sum(round(steps[g] / step) - 1 for g in gaps))
        where = ", ".join(f"{distances[g]:.2f}..{distances[g + 1]:.2f} mm" for g in gaps[:3])
        raise GeometryError(f"missing slice(s): about {missing} gone at {where} along the normal "
                            f"(slice spacing {step:.3f} mm)")
    if np.max(np.abs(steps - step)) > IRREGULAR_FRACTION * step:
        raise GeometryError(f"irregular slice spacing: steps from {steps.min():.3f} to {steps.max():.3f} mm")
    return step


def stack_slices(slices: Sequence[Slice]) -> Stack:
    """Sort ``slices`` along their normal, check they form one regular volume, and compute its RAS affine."""
    if len(slices) < 2:
        raise GeometryError(f"{len(slices)} slice(s): not a volume")
    _check_in_plane(slices)
    normal = slices[0].normal
    ordered = sorted(slices, key=lambda s: float(s.position @ normal))
    positions = np.stack([s.position for s in ordered])
    distances = positions @ normal
    _check_steps(distances)
    offsets = positions - positions[0]
    off_normal = offsets - np.outer(offsets @ normal, normal)
    shear = float(np.max(np.linalg.norm(off_normal, axis=1)))
    if shear > SHEAR_ATOL_MM:
        span = float(distances[-1] - distances[0])
        angle = float(np.degrees(np.arctan2(float(np.linalg.norm(off_normal[-1])), span)))
        raise GeometryError(f"gantry tilt / sheared slices: positions leave the slice normal by up to "
                            f"{shear:.3f} mm (about {angle:.2f} degrees); not supported")
    first = ordered[0]
    row_spacing, column_spacing = first.pixel_spacing
    lps = np.eye(4)
    lps[:3, 0] = first.orientation[:3] * column_spacing
    lps[:3, 1] = first.orientation[3:] * row_spacing
    lps[:3, 2] = (positions[-1] - positions[0]) / (len(ordered) - 1)
    lps[:3, 3] = positions[0]
    return Stack(slices=list(ordered), shape=(first.columns, first.rows, len(ordered)), affine=LPS_TO_RAS @ lps)


def to_template_grid(volume: np.ndarray, affine: np.ndarray, template: Stack) -> np.ndarray:
    """``volume`` (with RAS ``affine``) in the voxel order of ``template``'s grid; GeometryError if the two
    grids are not the same grid up to flipping and permuting axes (e.g. a dcm2niix conversion of the template)."""
    transform = ornt_transform(io_orientation(affine), io_orientation(template.affine))
    data = apply_orientation(volume, transform)
    moved = affine @ inv_ornt_aff(transform, volume.shape)
    if tuple(data.shape) != template.shape or not np.allclose(moved, template.affine, atol=GRID_ATOL):
        raise GeometryError(f"image grid (shape {tuple(volume.shape)}) is not the DICOM series' grid "
                            f"(shape {template.shape}); affines differ by up to "
                            f"{float(np.max(np.abs(moved - template.affine))):.4g}")
    return np.ascontiguousarray(data)
