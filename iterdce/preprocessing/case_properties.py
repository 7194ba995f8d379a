"""The typed record of how one case was preprocessed: what undoing every step needs (``restore_phases``, the
native composition) and what a preprocessed case's sidecar ``<case>.json`` holds beside the archive.

It crosses two boundaries: the sidecar file, and the worker processes of ``iterdce_predict -np`` (pickled).
``to_dict`` is the sidecar's JSON form (unchanged from the untyped record it replaces); ``from_dict`` reads it back
and names a missing or malformed key.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from iterdce.preprocessing.normalization import TINormStats

Box = tuple[tuple[int, int], ...]
Matrix = tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class CaseProperties:
    """Every preprocessing step of one case, as undoing it needs them (canonical = RAS-reoriented grid)."""

    case: str
    original_shape: tuple[int, ...]
    original_affine: Matrix
    qform_code: int
    sform_code: int
    orientation_transform: Matrix  # original voxel axes -> canonical axes (orientation.py)
    canonical_shape: tuple[int, ...]
    canonical_affine: Matrix
    canonical_spacing: tuple[float, ...]
    crop_box: Box  # [lo, hi) per canonical axis
    cropped_shape: tuple[int, ...]
    target_spacing: tuple[float, ...]  # the plan's spacing
    resampled_shape: tuple[int, ...]
    ti_norm: TINormStats
    ti_norm_mask: str  # which mask the TI-norm statistics were taken in
    phase_times_s: tuple[float, ...]
    has_lesion_labels: bool

    def to_dict(self) -> dict[str, Any]:
        """The sidecar's JSON form."""
        return {
            "case": self.case, "original_shape": list(self.original_shape),
            "original_affine": [list(row) for row in self.original_affine], "qform_code": self.qform_code,
            "sform_code": self.sform_code, "orientation_transform": [list(row) for row in self.orientation_transform],
            "canonical_shape": list(self.canonical_shape),
            "canonical_affine": [list(row) for row in self.canonical_affine],
            "canonical_spacing": list(self.canonical_spacing), "crop_box": [list(b) for b in self.crop_box],
            "cropped_shape": list(self.cropped_shape), "target_spacing": list(self.target_spacing),
            "resampled_shape": list(self.resampled_shape),
            "ti_norm": {**self.ti_norm.to_dict(), "mask": self.ti_norm_mask},
            "phase_times_s": list(self.phase_times_s), "has_lesion_labels": self.has_lesion_labels,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CaseProperties:
        """Read the JSON form back; ValueError names the key that is missing or malformed (other keys of a sidecar,
        e.g. its plan key and archive digest, are ignored)."""
        try:
            ti_norm = raw["ti_norm"]
            return cls(
                case=str(raw["case"]), original_shape=_ints(raw["original_shape"]),
                original_affine=_matrix(raw["original_affine"]), qform_code=int(raw["qform_code"]),
                sform_code=int(raw["sform_code"]), orientation_transform=_matrix(raw["orientation_transform"]),
                canonical_shape=_ints(raw["canonical_shape"]), canonical_affine=_matrix(raw["canonical_affine"]),
                canonical_spacing=_floats(raw["canonical_spacing"]),
                crop_box=tuple((int(lo), int(hi)) for lo, hi in raw["crop_box"]),
                cropped_shape=_ints(raw["cropped_shape"]), target_spacing=_floats(raw["target_spacing"]),
                resampled_shape=_ints(raw["resampled_shape"]),
                ti_norm=TINormStats(float(ti_norm["mean"]), float(ti_norm["std"]), int(ti_norm["reference_phase"])),
                ti_norm_mask=str(ti_norm["mask"]), phase_times_s=_floats(raw["phase_times_s"]),
                has_lesion_labels=bool(raw["has_lesion_labels"]))
        except KeyError as exc:
            raise ValueError(f"missing key {exc.args[0]}") from exc
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed preprocessing record ({exc})") from exc


def _ints(values: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _matrix(rows: Any) -> Matrix:
    return tuple(tuple(float(v) for v in row) for row in rows)


@dataclass(frozen=True)
class CaseSidecar:
    """What ``<case>.json`` beside ``<case>.npz`` holds: the case's properties, the key of the plan it was
    preprocessed for and the archive's size and SHA-256 (None in a sidecar written without them)."""

    properties: CaseProperties
    plan_key: str | None = None
    npz_size: int | None = None
    npz_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the properties' keys, then the plan key and the archive digest."""
        extra = {"plan_key": self.plan_key, "npz_size": self.npz_size, "npz_sha256": self.npz_sha256}
        return {**self.properties.to_dict(), **{k: v for k, v in extra.items() if v is not None}}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CaseSidecar:
        """Read the JSON form; ValueError names what is missing or malformed."""
        size = raw.get("npz_size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
            raise ValueError(f"npz_size must be an integer, got {size!r}")
        key, digest = raw.get("plan_key"), raw.get("npz_sha256")
        return cls(CaseProperties.from_dict(raw), None if key is None else str(key), size,
                   None if digest is None else str(digest))
