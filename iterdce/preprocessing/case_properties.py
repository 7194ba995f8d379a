"""The typed record of how one case was preprocessed: what undoing every step needs (``restore_phases``, the
native composition) and what a preprocessed case's sidecar ``<case>.json`` holds beside the archive.

It crosses two boundaries: the sidecar file, and the worker processes of ``iterdce_predict -np`` (pickled).
``to_dict`` is the sidecar's JSON form (unchanged from the untyped record it replaces); ``from_dict`` reads it back
and names a missing or malformed key.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from iterdce.core.dataclass_json import build_dataclass, to_json
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
        """The sidecar's JSON form (the TI-norm mask inside ``ti_norm``, as the record has always had it)."""
        raw: dict[str, Any] = to_json(self)
        raw["ti_norm"]["mask"] = raw.pop("ti_norm_mask")
        return raw

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CaseProperties:
        """Read the JSON form back; ValueError names every key that is missing or malformed (other keys of a
        sidecar, e.g. its plan key and archive digest, are ignored)."""
        ti_norm = raw.get("ti_norm") if isinstance(raw, Mapping) else None
        if not isinstance(ti_norm, Mapping):
            raise ValueError("missing key ti_norm")
        names = {f.name for f in dataclasses.fields(cls)}
        record = {k: v for k, v in raw.items() if k in names}
        record["ti_norm"] = {k: v for k, v in ti_norm.items() if k != "mask"}
        if "mask" in ti_norm:
            record["ti_norm_mask"] = ti_norm["mask"]
        problems: list[str] = []
        properties = build_dataclass(cls, record, "", problems, "the preprocessing record")
        if problems or properties is None:
            raise ValueError("; ".join(problems))
        return properties


def matrix_rows(matrix: Any) -> Matrix:
    """A 2-D array (an affine, an orientation transform) as rows of Python floats."""
    return tuple(tuple(float(v) for v in row) for row in np.asarray(matrix).tolist())


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
