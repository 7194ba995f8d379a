"""Writing synthesized phases back in the exact geometry of the input, and the voxel-wise kinetic map."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from iterdce.core.atomic import write_json_atomic
from iterdce.core.file_names import kinetic_map_name, phase_file_name, sidecar_name
from iterdce.core.kinetics_rule import classify_ratio, curve_ratio, early_index
from iterdce.dataset.masks import derive_foreground_mask
from iterdce.dataset.nifti_io import Geometry, write_image

ENHANCING_THRESHOLD = 0.5  # initial relative enhancement (50 %) for a voxel to count as enhancing


def write_phases(phases: np.ndarray, geometry: Geometry, out_dir: Path, case_id: str,
                 target_phases: Sequence[int], description: str | None = None) -> list[Path]:
    """``<case>_<pppp>.nii.gz`` per target phase, float32, each written atomically (``description``: the
    provenance mark of the model that made them)."""
    paths = []
    for phase, volume in zip(target_phases, phases):
        path = out_dir / phase_file_name(case_id, phase)
        write_image(path, volume.astype(np.float32), geometry, description=description)
        paths.append(path)
    return paths


def write_times(out_dir: Path, case_id: str, times_s: Sequence[float] | np.ndarray, first_synthesized: int,
                description: str | None = None, record: dict[str, Any] | None = None) -> Path:
    """``<case>.json`` of a prediction: ``phase_times_s`` of every phase (inputs first), which phases were
    synthesized, the provenance mark (a file without it is never overwritten) and ``record`` (how the case
    was predicted: its inference tile)."""
    path = out_dir / sidecar_name(case_id)
    write_json_atomic(path, {"phase_times_s": [float(t) for t in times_s],
                             "synthesized_phases": list(range(first_synthesized, len(times_s))),
                             "written_by": description, **(record or {})})
    return path


def kinetic_map(all_phases: np.ndarray, times_s: Sequence[float] | np.ndarray) -> np.ndarray:
    """Curve code per voxel (0 none, 1 persistent, 2 plateau, 3 washout) inside enhancing tissue.

    Enhancing: inside the body foreground and with initial enhancement (S_early - S_pre) / S_pre >= 50 %.
    """
    pre = all_phases[0].astype(np.float64)
    early = all_phases[early_index(times_s)].max(axis=0).astype(np.float64)
    body = derive_foreground_mask(all_phases[:2])
    with np.errstate(divide="ignore", invalid="ignore"):
        initial = (early - pre) / np.abs(pre)
    enhancing = body & np.isfinite(initial) & (initial >= ENHANCING_THRESHOLD)
    codes = classify_ratio(curve_ratio(all_phases, times_s))
    codes[~enhancing] = 0
    return codes.astype(np.uint8)


def write_kinetic_map(all_phases: np.ndarray, times_s: Sequence[float] | np.ndarray, geometry: Geometry, out_dir: Path,
                      case_id: str, description: str | None = None) -> Path:
    """``<case>_kinetics.nii.gz`` (uint8 curve codes) in the input geometry."""
    path = out_dir / kinetic_map_name(case_id)
    write_image(path, kinetic_map(all_phases, times_s), geometry, dtype=np.uint8, description=description)
    return path
