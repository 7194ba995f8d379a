"""The typed dataset fingerprint: what ``dataset_fingerprint.json`` holds and what the planner reads.

``to_dict`` is the file's JSON form; ``from_dict`` reads it back (a fingerprint reused across runs, or made by hand)
and names a missing or malformed key.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iterdce.core.dataclass_json import build_dataclass, to_json


@dataclass(frozen=True)
class PhaseStatistics:
    """Intensity statistics of one phase inside the TI-norm mask."""

    mean: float
    std: float
    median: float
    percentile_00_5: float
    percentile_99_5: float


@dataclass(frozen=True)
class CaseFingerprint:
    """Geometry, timing, intensities and lesions of one case (canonical orientation)."""

    case: str
    spacing: tuple[float, ...]
    shape: tuple[int, ...]
    shape_after_crop: tuple[int, ...]
    phase_times_s: tuple[float, ...]
    phases: tuple[PhaseStatistics, ...]
    mask_voxels: int
    has_lesion_labels: bool
    lesion_count: int
    lesion_volume_ml: float
    lesion_relative_enhancement: tuple[float, ...] | None  # per phase; None without lesion voxels
    breast_relative_enhancement: tuple[float, ...] | None
    oblique_deg: float | None = None  # tilt of the grid from the scanner axes; None in fingerprints made before it
    # from the case's timing sidecar when it says (dataset/schema.py AcquisitionFacts), else None
    field_strength_t: float | None = None
    fat_suppression: bool | None = None


@dataclass(frozen=True)
class ProtocolSummary:
    """The cases of one phase count: how many, and the earliest and latest time of each phase among them."""

    num_phases: int
    cases: int
    times_min_s: tuple[float, ...]
    times_max_s: tuple[float, ...]


@dataclass(frozen=True)
class DatasetFingerprint:
    """Every case's fingerprint and the dataset-wide facts the planner needs."""

    dataset: str
    layout: str
    num_phases: int
    phase_times_s: tuple[float, ...]
    protocols: tuple[ProtocolSummary, ...]
    input_phases: tuple[int, ...]
    reference_phase: int | None  # dataset.json's; None: the planner's rule
    mask_kind: str
    has_breast_masks: bool
    orientation: str
    cases: tuple[CaseFingerprint, ...]
    source_signature: str | None = None  # the raw files it was computed from (a rerun reuses it when equal)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of ``dataset_fingerprint.json``."""
        raw: dict[str, Any] = to_json(self)
        if self.source_signature is None:
            del raw["source_signature"]
        return raw

    @classmethod
    def from_dict(cls, raw: Any) -> DatasetFingerprint:
        """Read the JSON form; ValueError names every key that is missing, unknown or malformed."""
        problems: list[str] = []
        fingerprint = build_dataclass(cls, raw, "", problems, "the fingerprint", defaults_optional=True)
        if problems or fingerprint is None:
            raise ValueError("; ".join(problems))
        return fingerprint
