"""Writing the phantom as a raw dataset: NIfTI files per case, timing sidecars, cases.csv, dataset.json."""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from iterdce.core.atomic import write_atomic, write_json_atomic
from iterdce.core.file_names import NIFTI_ENDING, case_file_name, phase_file_name, sidecar_name
from iterdce.core.folder_names import IMAGES_TR, LABELS_TR, MASKS_TR, TIMES_TR
from iterdce.dataset.nifti_io import Geometry, write_image
from iterdce.simulation.case import SimulatedCase
from iterdce.simulation.config import SimulationConfig
from iterdce.simulation.early_frames import input_phases

CASE_COLUMNS = (
    "case", "lesion", "curve_type", "ktrans_per_min", "ve", "vp", "volume_ml", "morphology", "pattern",
    "curve_ratio", "diameter_mm", "host_tissue", "t10_s", "bolus_arrival_s", "breast_density", "malignant",
)
ACQUISITION_COLUMNS = (
    "case", "orientation", "axcodes", "spacing_mm", "fov_mm", "oblique_deg", "body_fill", "snr", "bias_amplitude",
    "fat_suppression", "fat_factor", "field_strength_t", "agent", "flip_angle_deg", "tr_ms", "phase_times_s",
    "bolus_arrival_s", "aif_scale", "aif_stretch", "motion_mm", "max_shift_mm", "vessels", "cysts", "heart",
)
OUTPUTS = (IMAGES_TR, LABELS_TR, MASKS_TR, TIMES_TR, "dataset.json", "cases.csv", "acquisition.csv")
MAX_LESIONS = 2


def write_case(dataset_dir: Path, case: SimulatedCase, write_times: bool) -> None:
    """Write one case's phases, lesion labels, breast mask and (if asked) its timing sidecar, with its affine.

    The affine is the scanner's (qform/sform code 1); the grid is centred on the scanner origin.
    """
    geometry = Geometry(shape=tuple(int(s) for s in case.labels.shape), affine=case.affine)
    for phase, volume in enumerate(case.images):
        write_image(dataset_dir / IMAGES_TR / phase_file_name(case.case_id, phase), volume, geometry, np.float32)
    write_image(dataset_dir / LABELS_TR / case_file_name(case.case_id), case.labels, geometry, np.uint8)
    write_image(dataset_dir / MASKS_TR / case_file_name(case.case_id), case.breast_mask, geometry, np.uint8)
    if write_times:
        write_json_atomic(dataset_dir / TIMES_TR / sidecar_name(case.case_id),
                          {"phase_times_s": [float(t) for t in case.times_s]})


def write_table(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """A CSV table with ``columns``, rows sorted by case (then lesion), written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: (r["case"], r.get("lesion", 0))):
        writer.writerow({key: row[key] for key in columns})
    write_atomic(path, lambda tmp: tmp.write_text(buffer.getvalue()))


def write_cases_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Ground-truth table, one row per lesion, in case then label order."""
    write_table(path, rows, CASE_COLUMNS)


def dataset_name(dataset_dir: Path) -> str:
    """``Phantom`` for ``Dataset001_Phantom``; the folder name itself otherwise."""
    match = re.match(r"^Dataset\d{3}_(.+)$", dataset_dir.name)
    return match.group(1) if match else dataset_dir.name


def write_dataset_json(
    dataset_dir: Path, num_cases: int, seed: int, config: SimulationConfig, name_from: Path | None = None
) -> None:
    """dataset.json of DATA_FORMAT.md plus a ``simulation`` block recording how the data were made; the dataset's
    name comes from ``name_from`` (the destination folder) when the files are written elsewhere first."""
    site = "" if config.site is None else f" Site profile {config.site.name}: {config.site.description}."
    payload = {
        "name": dataset_name(name_from or dataset_dir),
        "description": "Synthetic physics-based breast DCE-MRI phantom (iterdce.simulation): Parker AIF, "
                       "extended Tofts kinetics, spoiled gradient-echo signal, Rician noise." + site,
        "file_ending": NIFTI_ENDING,
        "phase_times_s": [float(t) for t in config.acquired(config.phase_times_s)],
        "numTraining": int(num_cases),
        "input_phases": input_phases(config.early_frames),
        "labels": {"background": 0, **{f"lesion_{k}": k for k in range(1, MAX_LESIONS + 1)}},
        "simulation": {"seed": int(seed), **config.to_json()},
    }
    write_json_atomic(dataset_dir / "dataset.json", payload)
