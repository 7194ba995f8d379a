"""Loading a raw case in canonical orientation with the mask used for TI-norm."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from iterdce.dataset.case import DCECase, load_case
from iterdce.dataset.layout import CaseFiles
from iterdce.dataset.masks import derive_foreground_mask, nonzero_mask
from iterdce.preprocessing.orientation import inverse_transform, reorient_view, to_canonical
from iterdce.preprocessing.plan_schema import BREAST_MASK


@dataclass
class CanonicalCase:
    """A case reoriented to RAS+ voxel order, with its orientation transform kept for undoing."""

    case: DCECase
    image: np.ndarray
    affine: np.ndarray
    transform: np.ndarray
    lesion: np.ndarray | None
    norm_mask: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]


def normalization_mask(case: DCECase, mask_kind: str, input_phases: Sequence[int] = (0, 1)) -> np.ndarray:
    """The breast mask when asked and present; else the ``nonzero`` or body ``foreground`` mask of the input phases.

    Only the input phases exist at prediction time, so the derived masks use those alone: the same
    voxels, hence the same TI-norm statistics, whether a case is preprocessed for training or predicted.
    """
    if mask_kind == BREAST_MASK and case.breast_mask is not None and case.breast_mask.any():
        return case.breast_mask
    if mask_kind == "nonzero":
        return nonzero_mask(case.image[list(input_phases)])
    return derive_foreground_mask(case.image[list(input_phases)])


def to_canonical_case(case: DCECase, mask_kind: str, input_phases: Sequence[int] = (0, 1)) -> CanonicalCase:
    """Reorient phases and masks of ``case`` to canonical order (the mask first: its temporaries are freed
    before the phases are copied, which lowers the peak memory)."""
    mask = to_canonical(normalization_mask(case, mask_kind, input_phases), case.geometry.affine)[0]
    lesion = None if case.lesion is None else to_canonical(case.lesion, case.geometry.affine)[0]
    image, affine, transform = to_canonical(case.image, case.geometry.affine)
    return CanonicalCase(case, image, affine, transform, lesion, mask)


def load_canonical(files: CaseFiles, phase_times_s: tuple[float, ...], mask_kind: str,
                   input_phases: Sequence[int] = (0, 1)) -> CanonicalCase:
    """Read a raw case and reorient it.

    The case's own ``image`` is then replaced by a view of the canonical array in the original voxel order
    (the same values), so that only one copy of the phases stays in memory.
    """
    case = load_case(files, phase_times_s)
    canonical = to_canonical_case(case, mask_kind, input_phases)
    case.image = reorient_view(canonical.image, inverse_transform(canonical.transform))
    return canonical
