"""TI-norm: every phase normalized with the mean and std of one reference phase inside a mask.

Normalizing each phase by its own statistics would erase the enhancement between phases; one shared
pair of numbers keeps the ratios of enhancement intact while removing the scanner's arbitrary scale.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from iterdce.core.errors import IterdceError

MIN_RELATIVE_STD = 1e-7  # std below this fraction of the largest |value|: the phase is constant


class NormalizationError(IterdceError, ValueError):
    """TI-norm statistics cannot be computed (empty mask, constant reference phase)."""


@dataclass(frozen=True)
class TINormStats:
    """What is needed to apply and undo TI-norm for one case."""

    mean: float
    std: float
    reference_phase: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ti_norm_stats(image: np.ndarray, mask: np.ndarray, reference_phase: int) -> TINormStats:
    """Mean and std of ``image[reference_phase]`` inside ``mask``."""
    values = image[reference_phase][mask.astype(bool)]
    if values.size < 2:
        raise NormalizationError(f"TI-norm mask holds {values.size} voxel(s); cannot compute statistics")
    values = values.astype(np.float64)
    mean, std = float(values.mean()), float(values.std())
    if not np.isfinite(std) or std <= MIN_RELATIVE_STD * float(np.abs(values).max()):
        raise NormalizationError(f"reference phase {reference_phase} is constant inside the mask (std {std:g})")
    return TINormStats(mean=mean, std=std, reference_phase=reference_phase)


def apply_ti_norm(image: np.ndarray, stats: TINormStats) -> np.ndarray:
    """(image - mean) / std for every phase, float32 (one new array; the input is left as it is)."""
    out = image.astype(np.float32, copy=True)
    out -= np.float32(stats.mean)
    out /= np.float32(stats.std)
    return out


def undo_ti_norm(normalized: np.ndarray, stats: TINormStats) -> np.ndarray:
    """Back to the input's intensity scale (one new array; the input is left as it is)."""
    out = normalized.astype(np.float32, copy=True)
    out *= np.float32(stats.std)
    out += np.float32(stats.mean)
    return out
