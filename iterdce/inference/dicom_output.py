"""``iterdce_predict --output-format dicom``: synthesized phases (and the kinetic map) as derived DICOM series.

Two ways in: the input folder is a DICOM tree (each study's first input phases are found as by
``iterdce_import_dicom`` and predicted), or the input folder holds NIfTI inputs and ``--dicom-template DIR``
the DICOM studies they came from. Either way the phases are predicted to NIfTI in a hidden staging folder by
``IterativePredictor.predict_folder`` and then written as DICOM series on the template's grid:
``<output>/<case>/SYNTHETIC_phase_<pppp>_t<time>s/IM_<kkkk>.dcm`` and ``<output>/<case>/SYNTHETIC_kinetics/``.
Every input and template is checked before anything is written.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iterdce import __version__
from iterdce.core.file_names import kinetic_map_name, phase_file_name, sidecar_name
from iterdce.dataset.layout import CaseFiles
from iterdce.dataset.nifti_io import ImageReadError, read_header, read_image, write_image
from iterdce.dicom.derived import DerivedSeries, write_derived_series
from iterdce.dicom.geometry import GeometryError, to_template_grid
from iterdce.dicom.phases import Acquisition, StudyRefused, find_acquisition
from iterdce.dicom.report import CASE_ID_SOURCES, case_id_for
from iterdce.dicom.scan import Study, scan_tree
from iterdce.dicom.volume import read_volume
from iterdce.inference.inputs import PredictionInputError, discover_inputs
from iterdce.inference.predictor import IterativePredictor

OUTPUT_FORMATS = ("nifti", "dicom")
KINETICS_FOLDER = "SYNTHETIC_kinetics"
KINETICS_DESCRIPTION = "SYNTHETIC kinetic curve type (0 none 1 persistent 2 plateau 3 washout)"


def iterdce_version() -> str:
    """The iterdce version (``iterdce.__version__``, which pyproject.toml also reads)."""
    return __version__


@dataclass
class DicomSource:
    """A case's DICOM study: its DCE acquisition (the template) and the next free SeriesNumber."""

    case_id: str
    acquisition: Acquisition
    next_series_number: int


def _source(study: Study, case_id: str, n_inputs: int) -> DicomSource:
    acquisition = find_acquisition(study, min_phases=n_inputs)
    numbers = [s.number for s in study.series.values() if s.number is not None]
    return DicomSource(case_id, acquisition, max(numbers, default=0) + 1)


def sources_from_tree(root: Path, n_inputs: int, progress: bool) -> tuple[dict[str, DicomSource], list[str]]:
    """Every study under ``root`` with at least ``n_inputs`` phases, named as ``iterdce_import_dicom`` names it."""
    if not Path(root).is_dir():
        return {}, [f"{root}: input folder does not exist"]
    scan = scan_tree(root, progress)
    sources, problems = {}, []
    for study in scan.studies.values():
        case_id = case_id_for(study)
        try:
            sources[case_id] = _source(study, case_id, n_inputs)
        except StudyRefused as exc:
            problems.append(f"{study.folder}: {exc}")
    if not scan.studies:
        problems.append(f"{root}: no DICOM images found")
    return sources, problems


def _matches(study: Study, case_id: str) -> bool:
    for source in CASE_ID_SOURCES:
        for keep in (False, True):
            try:
                if case_id_for(study, source, keep) == case_id:
                    return True
            except ValueError:
                continue
    return False


def templates_for(case_ids: list[str], template_dir: Path, n_inputs: int, progress: bool
                  ) -> tuple[dict[str, DicomSource], list[str]]:
    """The template study of each case: ``<template_dir>/<case>/`` if it exists, else the study of
    ``template_dir`` whose case id (hashed or kept, from StudyInstanceUID or PatientID) is the case's, else the
    only study when there is one case."""
    template_dir = Path(template_dir)
    if not template_dir.is_dir():
        return {}, [f"{template_dir}: --dicom-template folder does not exist"]
    sources, problems = {}, []
    scan = None
    for case_id in case_ids:
        own = template_dir / case_id
        studies = list(scan_tree(own, progress).studies.values()) if own.is_dir() else None
        if studies is None:
            scan = scan or scan_tree(template_dir, progress)
            studies = [s for s in scan.studies.values() if _matches(s, case_id)]
            if not studies and len(scan.studies) == 1 and len(case_ids) == 1:
                studies = list(scan.studies.values())
        if len(studies) != 1:
            problems.append(f"case {case_id}: {len(studies)} template studies found in {template_dir} "
                            f"(put the case's DICOM study in {own})")
            continue
        try:
            sources[case_id] = _source(studies[0], case_id, n_inputs)
        except StudyRefused as exc:
            problems.append(f"case {case_id}: template {studies[0].folder}: {exc}")
    return sources, problems


def _stage_dicom_inputs(sources: dict[str, DicomSource], folder: Path, n_inputs: int) -> None:
    """The first ``n_inputs`` phases of each study as NIfTI inputs with their times from the headers."""
    for case_id, source in sources.items():
        acquisition = source.acquisition
        for phase in range(n_inputs):
            write_image(folder / phase_file_name(case_id, phase), read_volume(acquisition.stacks[phase]),
                        acquisition.stacks[0].affine, np.float32)
        (folder / sidecar_name(case_id)).write_text(json.dumps({"phase_times_s": acquisition.times_s[:n_inputs]}))


def _stage_nifti_inputs(cases: dict[str, CaseFiles], todo: list[str], folder: Path) -> None:
    """Links to the input files of the cases still to predict."""
    for case_id in todo:
        files = cases[case_id]
        for path in [*files.phase_files.values(), *([files.times] if files.times else [])]:
            os.symlink(Path(path).resolve(), folder / path.name)


def _phase_folder(phase: int, time_s: float) -> str:
    return f"SYNTHETIC_phase_{phase:04d}_t{time_s:g}s"


class DicomExporter:
    """Predicts with ``predictor`` and writes its outputs as DICOM series derived from each case's study."""

    def __init__(self, predictor: IterativePredictor, model_name: str, progress: bool = True) -> None:
        self.predictor, self.model_name, self.progress = predictor, model_name, progress
        self.n_inputs = len(predictor.input_phases)

    def folders_of(self, case_id: str, times_s: np.ndarray, kinetic_map: bool) -> list[str]:
        """The series folders a finished case has."""
        names = [_phase_folder(p, float(times_s[p])) for p in range(self.n_inputs, len(times_s))]
        return names + [KINETICS_FOLDER] if kinetic_map else names

    def predict(self, input_dir: Path, out_dir: Path, template_dir: Path | None = None, overwrite: bool = False,
                save_kinetic_map: bool = False) -> list[str]:
        """Check inputs and templates, predict the cases not done yet, write their series; returns those cases."""
        input_dir, out_dir = Path(input_dir), Path(out_dir)
        plan_times = self.predictor.plans.phase_times_s
        if template_dir is None:
            sources, problems = sources_from_tree(input_dir, self.n_inputs, self.progress)
            targets = self.predictor.settings.target_times or plan_times[self.n_inputs:]
            times = {c: np.asarray(list(s.acquisition.times_s[:self.n_inputs]) + list(targets))
                     for c, s in sources.items()}
            cases: dict[str, CaseFiles] = {}
        else:
            cases, problems = discover_inputs(input_dir, self.predictor.input_phases)
            sources, template_problems = templates_for(sorted(cases), template_dir, self.n_inputs, self.progress)
            problems += template_problems
            times = {}
            for case_id, files in cases.items():
                try:
                    times[case_id] = self.predictor.case_times(files)
                    self._check_grid(files, sources.get(case_id))
                except (ValueError, ImageReadError) as exc:
                    problems.append(str(exc))
        if problems:
            raise PredictionInputError(f"{input_dir}: {len(problems)} problem(s):\n"
                                       + "\n".join(f"  - {p}" for p in problems))
        todo = [c for c in sorted(sources) if overwrite or not all(
            (out_dir / c / name).is_dir() for name in self.folders_of(c, times[c], save_kinetic_map))]
        if len(todo) < len(sources):
            print(f"{len(sources) - len(todo)} case(s) already predicted in {out_dir} (use --overwrite to redo)")
        if not todo:
            return []
        staging = out_dir / f".iterdce-staging-{os.getpid()}"
        created = not out_dir.exists()
        try:
            (staging / "inputs").mkdir(parents=True)
            if template_dir is None:
                _stage_dicom_inputs({c: sources[c] for c in todo}, staging / "inputs", self.n_inputs)
            else:
                _stage_nifti_inputs(cases, todo, staging / "inputs")
            self.predictor.predict_folder(staging / "inputs", staging / "nifti", overwrite=True,
                                          save_kinetic_map=save_kinetic_map)
            for case_id in todo:
                self._write_case(staging / "nifti", out_dir / case_id, sources[case_id], times[case_id],
                                 save_kinetic_map)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if created and out_dir.is_dir() and not any(out_dir.iterdir()):
                out_dir.rmdir()  # a failed first run leaves no empty output folder
        return todo

    def _check_grid(self, files: CaseFiles, source: DicomSource | None) -> None:
        """The NIfTI inputs must lie on the template's grid (up to axis order and flips)."""
        if source is None or not files.phase_files:
            return
        path = files.phase_files[min(files.phase_files)]
        _, geometry = read_header(path)
        template = source.acquisition.stacks[self.n_inputs - 1]
        try:
            to_template_grid(np.zeros(geometry.shape[:3], np.uint8), geometry.affine, template)
        except GeometryError as exc:
            raise GeometryError(f"{path}: {exc}") from exc

    def _derivation(self, source: DicomSource, what: str) -> str:
        acquisition = source.acquisition
        numbers = ", ".join(str(s.number) for s in acquisition.series[:self.n_inputs])
        folds = ", ".join(self.predictor.folds)
        card = self.predictor.card
        carded = "" if card is None else f", model card {card['id']} version {card['version']}"
        return (f"{what} synthesized by iterdce {iterdce_version()} with model {self.model_name} "
                f"({folds}{carded}) from the first {self.n_inputs} DCE phases (series {numbers}); not acquired")

    def _write_case(self, nifti_dir: Path, case_dir: Path, source: DicomSource, times_s: np.ndarray,
                    kinetic_map: bool) -> None:
        acquisition = source.acquisition
        template = acquisition.stacks[self.n_inputs - 1]
        header = acquisition.series[self.n_inputs - 1].header
        sources = acquisition.stacks[:self.n_inputs]
        clock = acquisition.clocks[0] if acquisition.clocks else None
        number = source.next_series_number
        card = self.predictor.card
        # SoftwareVersions (LO, 64 characters a value): iterdce's, and the model card's id (16 hex digits) and version
        versions = [f"iterdce {iterdce_version()}",
                    *([f"model {card['id'][:16]} {card['version']}"[:64]] if card is not None else [])]
        for phase in range(self.n_inputs, len(times_s)):
            time_s = float(times_s[phase])
            volume, geometry = read_image(nifti_dir / phase_file_name(source.case_id, phase))
            acquired = None if clock is None else clock + dt.timedelta(seconds=time_s - float(times_s[0]))
            series = DerivedSeries(
                volume=to_template_grid(volume, geometry.affine, template),
                description=f"SYNTHETIC phase {phase} t={time_s:g}s", series_number=number,
                derivation=self._derivation(source, f"DCE phase {phase} at {time_s:g} s"), acquired=acquired)
            write_derived_series(case_dir / _phase_folder(phase, time_s), series, template, header, sources,
                                 versions)
            number += 1
        if kinetic_map:
            codes, geometry = read_image(nifti_dir / kinetic_map_name(source.case_id))
            series = DerivedSeries(
                volume=to_template_grid(codes, geometry.affine, template), description=KINETICS_DESCRIPTION,
                series_number=number, derivation=self._derivation(source, "Kinetic curve-type map"),
                integer_codes=True)
            write_derived_series(case_dir / KINETICS_FOLDER, series, template, header, sources, versions)

