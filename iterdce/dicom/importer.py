"""``iterdce_import_dicom``: a DICOM tree -> a raw dataset (flat layout) with per-case timing from the headers.

The dataset is assembled in a hidden folder beside the output and renamed into place at the end, so an
interrupted import leaves no half-written dataset; ``--overwrite`` replaces only a dataset this command wrote
(owned_outputs.py), and the output never overlaps the DICOM tree. Every study is reported in ``import_report.csv``.
"""
from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from iterdce.core.atomic import write_json_atomic
from iterdce.core.errors import IterdceError
from iterdce.core.file_names import NIFTI_ENDING, phase_file_name, sidecar_name
from iterdce.core.folder_names import DATASET_PATTERN, IMAGES_TR, TIMES_TR
from iterdce.core.owned_outputs import (
    check_replaceable,
    move_into_place,
    refuse_overlap,
    staging_folder,
    write_manifest,
)
from iterdce.dataset.nifti_io import write_image
from iterdce.dicom.phases import Acquisition, StudyRefused, find_acquisition
from iterdce.dicom.report import REPORT_NAME, StudyRow, case_id_for, write_report
from iterdce.dicom.scan import Study, scan_tree
from iterdce.dicom.volume import VolumeError, read_volume


class DicomImportError(IterdceError, ValueError):
    """The import cannot produce a dataset; the message names the folder and the reason."""


@dataclass
class ImportSettings:
    """How studies become cases."""

    case_id_from: str = "StudyInstanceUID"
    keep_ids: bool = False
    include_derived: bool = False
    salt: str = ""
    overwrite: bool = False
    progress: bool = True


@dataclass
class ImportSummary:
    """What an import wrote: the dataset folder, the imported case ids and the report rows."""

    dataset_dir: Path
    cases: list[str]
    rows: list[StudyRow]

    @property
    def skipped(self) -> list[StudyRow]:
        return [r for r in self.rows if r.status != "imported"]


def _row(study: Study, case: str, status: str, settings: ImportSettings, **kwargs: object) -> StudyRow:
    ids = {"study_uid": study.uid, "folder": str(study.folder)} if settings.keep_ids else {}
    return StudyRow(case, status, **ids, source=str(study.folder), **kwargs)  # type: ignore[arg-type]


def _choose(scan_studies: dict[str, Study], settings: ImportSettings
            ) -> tuple[list[tuple[str, Study, Acquisition]], list[StudyRow]]:
    """Find every study's acquisition and case id; keep the studies of the most common phase count."""
    found: list[tuple[str, Study, Acquisition]] = []
    rows: list[StudyRow] = []
    used: dict[str, str] = {}
    for study in scan_studies.values():
        try:
            case = case_id_for(study, settings.case_id_from, settings.keep_ids, settings.salt)
        except ValueError as exc:
            rows.append(_row(study, "", "skipped", settings, notes=[str(exc)]))
            continue
        try:
            acquisition = find_acquisition(study, settings.include_derived)
        except StudyRefused as exc:
            rows.append(_row(study, case, "skipped", settings, skipped=exc.skipped, notes=[str(exc)]))
            continue
        if case in used:
            rows.append(_row(study, case, "skipped", settings, acquisition=acquisition, notes=[
                f"case id {case} already taken by another study (same {settings.case_id_from}); "
                f"use --case-id-from StudyInstanceUID"]))
            continue
        used[case] = study.uid
        found.append((case, study, acquisition))
    counts = Counter(len(a.stacks) for _, _, a in found)
    if len(counts) > 1:
        keep = max(counts, key=lambda n: (counts[n], n))
        for case, study, acquisition in [f for f in found if len(f[2].stacks) != keep]:
            rows.append(_row(study, case, "skipped", settings, acquisition=acquisition, notes=[
                f"{len(acquisition.stacks)} phases; the dataset's protocol has {keep} (one phase count per "
                f"dataset: import the other studies into their own dataset)"]))
        found = [f for f in found if len(f[2].stacks) == keep]
    return found, rows


def _write_case(staging: Path, case: str, acquisition: Acquisition) -> None:
    """The phases of one case as imagesTr/<case>_<pppp>.nii.gz and its timing as timesTr/<case>.json."""
    affine = acquisition.stacks[0].affine
    for phase, stack in enumerate(acquisition.stacks):
        volume = read_volume(stack)
        if not np.all(np.isfinite(volume)):
            raise VolumeError(f"phase {phase}: NaN/inf voxels after rescaling")
        write_image(staging / IMAGES_TR / phase_file_name(case, phase), volume, affine, np.float32)
    write_json_atomic(staging / TIMES_TR / sidecar_name(case), {
        "phase_times_s": acquisition.times_s,
        "time_tags": acquisition.time_tags,
        "time_reference": acquisition.time_reference,
        "convention": acquisition.convention,
    })


def _dataset_json(out_dir: Path, cases: list[str], times: list[list[float]]) -> dict[str, Any]:
    match = DATASET_PATTERN.match(out_dir.name)
    median = np.median(np.asarray(times, dtype=np.float64), axis=0)
    return {
        "name": match[2] if match else out_dir.name,
        "description": "imported from DICOM by iterdce_import_dicom (per-case times in timesTr/)",
        "file_ending": NIFTI_ENDING,
        "phase_times_s": [round(float(t), 3) for t in median],
        "numTraining": len(cases),
        "input_phases": [0, 1],
    }


COMMAND = "iterdce_import_dicom"


def import_dicom(root: Path, out_dir: Path, settings: ImportSettings | None = None) -> ImportSummary:
    """Import every study under ``root`` with a DCE acquisition into the raw dataset ``out_dir``."""
    settings = settings or ImportSettings()
    root, out_dir = Path(root), Path(out_dir)
    refuse_overlap(out_dir, "-o", [("DICOM input folder -i", root)])
    check_replaceable(out_dir, COMMAND, settings.overwrite)
    try:
        scan = scan_tree(root, settings.progress)
    except FileNotFoundError as exc:
        raise DicomImportError(str(exc)) from exc
    if not scan.studies:
        raise DicomImportError(f"{root}: no DICOM images found ({len(scan.not_dicom)} other file(s))")
    found, rows = _choose(scan.studies, settings)
    staging = staging_folder(out_dir)
    imported: list[tuple[str, Acquisition]] = []
    try:
        for case, study, acquisition in tqdm(found, desc="importing studies", unit="study",
                                             disable=not settings.progress):
            try:
                _write_case(staging, case, acquisition)
            except VolumeError as exc:
                for leftover in (staging / IMAGES_TR).glob(f"{case}_*.nii.gz"):
                    leftover.unlink()
                rows.append(_row(study, case, "skipped", settings, acquisition=acquisition,
                                 skipped=acquisition.skipped, notes=[str(exc)]))
                continue
            rows.append(_row(study, case, "imported", settings, acquisition=acquisition,
                             skipped=acquisition.skipped, notes=acquisition.notes))
            imported.append((case, acquisition))
        if not imported:
            reasons = "; ".join(f"{r.case or 'a study'} ({r.source}): {r.notes[0] if r.notes else 'skipped'}"
                                for r in rows)
            raise DicomImportError(f"{root}: no study could be imported ({reasons})")
        rows.sort(key=lambda r: (r.status != "imported", r.case))
        write_report(staging / REPORT_NAME, rows)
        cases = sorted(case for case, _ in imported)
        write_json_atomic(staging / "dataset.json", _dataset_json(out_dir, cases, [a.times_s for _, a in imported]))
        write_manifest(staging, COMMAND)
        move_into_place(staging, out_dir, COMMAND)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return ImportSummary(out_dir, cases, rows)
