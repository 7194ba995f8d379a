"""One case from raw to training-ready and back: reorient, crop, TI-norm, resample; and the inverse.

``preprocess_canonical`` and ``restore_phases`` are pure array functions; the predictor uses the same two,
so a case is treated identically at training and prediction time.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from iterdce.preprocessing.case_io import CanonicalCase
from iterdce.preprocessing.case_properties import CaseProperties, matrix_rows
from iterdce.preprocessing.cropping import crop, nonzero_box, paste
from iterdce.preprocessing.normalization import apply_ti_norm, ti_norm_stats, undo_ti_norm
from iterdce.preprocessing.orientation import inverse_transform, reorient
from iterdce.preprocessing.resampling import resample_mask, resample_phases, shape_for_spacing


@dataclass
class PreprocessedCase:
    """Arrays in plan space plus the properties needed to undo every step."""

    data: np.ndarray
    lesion: np.ndarray
    mask: np.ndarray
    properties: CaseProperties


def preprocess_canonical(canonical: CanonicalCase, target_spacing: Sequence[float], reference_phase: int,
                         mask_kind: str) -> PreprocessedCase:
    """Crop to the nonzero box of all phases, TI-norm on the reference phase, resample to the plan spacing."""
    image = canonical.image
    box = nonzero_box(image)
    cropped = crop(image, box)
    mask = crop(canonical.norm_mask, box).astype(bool)
    stats = ti_norm_stats(cropped, mask, reference_phase)
    new_shape = shape_for_spacing(cropped.shape[1:], canonical.spacing, target_spacing)
    data = resample_phases(apply_ti_norm(cropped, stats), canonical.spacing, new_shape)
    lesion = np.zeros(cropped.shape[1:], np.int16) if canonical.lesion is None else crop(canonical.lesion, box)
    case = canonical.case
    properties = CaseProperties(
        case=case.case_id,
        original_shape=tuple(int(s) for s in case.image.shape[1:]),
        original_affine=matrix_rows(case.geometry.affine),
        qform_code=int(case.geometry.qform_code),
        sform_code=int(case.geometry.sform_code),
        orientation_transform=matrix_rows(canonical.transform),
        canonical_shape=tuple(int(s) for s in image.shape[1:]),
        canonical_affine=matrix_rows(canonical.affine),
        canonical_spacing=tuple(float(s) for s in canonical.spacing),
        crop_box=tuple((int(a), int(b)) for a, b in box),
        cropped_shape=tuple(int(s) for s in cropped.shape[1:]),
        target_spacing=tuple(float(s) for s in target_spacing),
        resampled_shape=tuple(int(s) for s in new_shape),
        ti_norm=stats,
        ti_norm_mask=mask_kind,
        phase_times_s=tuple(float(t) for t in case.times_s),
        has_lesion_labels=canonical.lesion is not None,
    )
    return PreprocessedCase(data=data, lesion=resample_mask(lesion.astype(np.int16), new_shape),
                            mask=resample_mask(mask.astype(np.uint8), new_shape).astype(bool),
                            properties=properties)


def restore_phases(normalized: np.ndarray, properties: CaseProperties, background: float | None = 0.0
                   ) -> np.ndarray:
    """Undo resampling, TI-norm, cropping and reorientation for phases [P, x, y, z] in plan space.

    Voxels outside the crop box get ``background`` (the raw images were zero there).
    """
    cropped_shape = properties.cropped_shape
    resampled_spacing = properties.target_spacing
    phases = resample_phases(normalized, resampled_spacing, cropped_shape)
    stats = properties.ti_norm
    phases = undo_ti_norm(phases, stats)
    full = paste(phases, properties.crop_box, properties.canonical_shape, fill=background or 0.0)
    return reorient(full, inverse_transform(np.asarray(properties.orientation_transform)))
