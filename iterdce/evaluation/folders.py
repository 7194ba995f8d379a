"""``iterdce_evaluate`` on folders: synthesized NIfTIs against the real phases, lesion labels and masks."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from iterdce.core.atomic import remove_stale_temporaries
from iterdce.core.errors import IterdceError, JSONFileError, listing
from iterdce.core.file_names import SIDECAR_OOD_KEY, case_file_name, phase_file_name, sidecar_name
from iterdce.core.folder_names import TIMES_TR
from iterdce.core.json_io import read_json
from iterdce.dataset.case import label_values_problem
from iterdce.dataset.layout import group_phase_files
from iterdce.dataset.nifti_io import Geometry, ImageReadError, read_header, read_image
from iterdce.dataset.schema import DatasetSchemaError, load_case_times, load_dataset_json
from iterdce.evaluation.case_evaluation import METHODS, CaseEvaluation, PhasePredictor, evaluate_case
from iterdce.evaluation.region import DEFAULT_REGION, Scoring
from iterdce.evaluation.report import plot_montage, summary_table, write_report
from iterdce.evaluation.uncertainty import (
    interval_columns,
    lesion_band_columns,
    lesion_probabilities,
    read_intervals,
    read_lesion_kinetics,
)
from iterdce.preprocessing.plan_schema import DEFAULT_REFERENCE_PHASE

MONTAGE_CASES = 4
TIME_TOLERANCE_S = 1.0  # a prediction at a real phase's time within this is scored against that phase


class EvaluationInputError(IterdceError, ValueError):
    """Missing files or mismatched geometry; the message lists every problem."""


@dataclass
class EvaluationCase:
    """The files of one case; ``predicted`` holds target phases only, keyed by phase index."""

    case_id: str
    predicted: dict[int, Path]
    real: dict[int, Path]
    label: Path | None
    mask: Path | None
    times_s: tuple[float, ...]
    input_phases: tuple[int, ...] = (0, 1)


def _phase_files(folder: Path) -> dict[str, dict[int, Path]]:
    """``{case: {phase: path}}`` for the ``<case>_<pppp>.nii.gz`` files of a folder (other files ignored)."""
    return {case_id: files.phase_files for case_id, files in group_phase_files(folder, stray=[]).items()}


def prediction_times(path: Path, problems: list[str]) -> list[float] | None:
    """``phase_times_s`` of a prediction's ``<case>.json`` (written by iterdce_predict), None without one."""
    if not path.is_file():
        return None
    try:
        payload = read_json(path, expect=dict)
    except JSONFileError as exc:
        problems.append(str(exc))
        return None
    times = payload.get("phase_times_s")
    if not isinstance(times, list) or not all(isinstance(t, (int, float)) for t in times):
        problems.append(f"{path}: phase_times_s must be a list of times in seconds")
        return None
    return [float(t) for t in times]


def prediction_ood(path: Path) -> dict[str, float | bool]:
    """``ood_score`` and ``ood_flag`` of a prediction's ``<case>.json`` (iterdce_predict's out-of-distribution
    check); empty for predictions made before the check or a sidecar that lacks it (read already by
    ``prediction_times``, so a malformed file was reported there)."""
    try:
        entry = read_json(path, expect=dict).get(SIDECAR_OOD_KEY) if path.is_file() else None
    except JSONFileError:
        return {}
    if not isinstance(entry, dict) or not isinstance(entry.get("score"), (int, float)):
        return {}
    return {"ood_score": float(entry["score"]), "ood_flag": bool(entry.get("flag"))}


def find_dataset_json(reference: Path, explicit: Path | None) -> Path | None:
    """``--dataset-json`` when given, else dataset.json in the reference folder or its parent."""
    if explicit is not None:
        return explicit
    for candidate in (reference / "dataset.json", reference.parent / "dataset.json"):
        if candidate.is_file():
            return candidate
    return None


def pair_by_time(case_id: str, phases: dict[int, Path], predicted_times: Sequence[float], real_times: Sequence[float],
                 first_target: int) -> tuple[dict[int, Path], list[str]]:
    """Predicted phases keyed by the real phase acquired at their time (within ``TIME_TOLERANCE_S``), and a note
    per prediction at a time no real phase has (it cannot be scored). ``predicted_times`` is the prediction's
    ``<case>.json`` (every phase's time, inputs first), so outputs of ``--target-times`` find their real phase."""
    paired, notes = {}, []
    for phase, path in sorted(phases.items()):
        if phase >= len(predicted_times):
            paired[phase] = path  # no time recorded for it: by index (prediction_problems names it)
            continue
        time = float(predicted_times[phase])
        match = [q for q, t in enumerate(real_times) if q >= first_target and abs(t - time) <= TIME_TOLERANCE_S]
        if match:
            paired[match[0]] = path
        else:
            notes.append(f"case {case_id}: {path.name} at {time:g} s has no real phase at that time (real phases at "
                         f"{', '.join(f'{t:g}' for t in real_times)} s); not scored")
    return paired, notes


def prediction_problems(case_id: str, phases: dict[int, Path], pred: Path, inputs: tuple[int, ...],
                        targets: list[int], allow_missing: bool) -> tuple[dict[int, Path], list[str]]:
    """The predicted target phases of a case, by phase index, and what is wrong with them.

    Predictions are paired with the real phase of the same index (or time, ``pair_by_time``), never by position:
    a missing phase is an error naming its file (or, with ``allow_missing``, the case is scored on the phases
    present).
    """
    last = max(targets)
    problems = [f"case {case_id}: {path} is phase {p}, but the case has phases 0-{last}"
                for p, path in phases.items() if p > last]
    present = {p: phases[p] for p in targets if p in phases}
    missing = [pred / phase_file_name(case_id, p) for p in targets if p not in phases]
    if not present:
        problems.append(f"case {case_id}: no predicted target phase in {pred} (expected phases {targets})")
    elif missing and not allow_missing:
        problems += [f"case {case_id}: missing prediction {m} (phases are paired by index; pass "
                     "--allow-missing-phases to score the phases present)" for m in missing]
    return present, problems


def collect_cases(pred: Path, ref: Path, labels: Path | None, masks: Path | None, dataset_json: Path | None,
                  reference_phase: int = DEFAULT_REFERENCE_PHASE, allow_missing_phases: bool = False
                  ) -> list[EvaluationCase]:
    """Pair every predicted case with its real phases; raise EvaluationInputError listing all problems."""
    problems = [f"{p}: folder not found" for p in (pred, ref, labels, masks) if p is not None and not p.is_dir()]
    if problems:
        raise EvaluationInputError(listing("evaluation folders", problems))
    json_path = find_dataset_json(ref, dataset_json)
    if json_path is None:
        raise EvaluationInputError(f"{ref}: no dataset.json here or in its parent; pass --dataset-json for the "
                                   "phase times", ref)
    info = load_dataset_json(json_path.parent)
    if not 0 <= reference_phase < info.num_phases:
        raise EvaluationInputError(f"--reference-phase {reference_phase}: must be a phase index 0-"
                                   f"{info.num_phases - 1} ({json_path} declares {info.num_phases} phases)")
    inputs = tuple(info.input_phases)
    predicted, real = _phase_files(pred), _phase_files(ref)
    if not predicted:
        raise EvaluationInputError(f"{pred}: no <case>_<pppp>.nii.gz predictions found", pred)
    cases, skipped = [], []
    for case_id, phases in predicted.items():
        times_file = json_path.parent / TIMES_TR / sidecar_name(case_id)
        try:  # the case's own protocol (any number of phases), else dataset.json's default
            times = load_case_times(times_file) if times_file.is_file() else info.phase_times_s
        except (DatasetSchemaError, JSONFileError) as exc:
            problems.append(str(exc))
            continue
        targets = [p for p in range(len(times)) if p > max(inputs)]
        predicted_times = prediction_times(pred / sidecar_name(case_id), problems)
        if predicted_times is not None:
            phases, notes = pair_by_time(case_id, phases, predicted_times, times, max(inputs) + 1)
            for note in notes:
                print(f"note: {note}")
            if not phases:  # synthesized at other times than the case was acquired: nothing to score it against
                skipped.append(case_id)
                continue
        present, case_problems = prediction_problems(case_id, phases, pred, inputs, targets, allow_missing_phases)
        problems += case_problems
        missing = [f"{ref / phase_file_name(case_id, p)}" for p in range(len(times))
                   if p not in real.get(case_id, {})]
        problems += [f"case {case_id}: missing real phase {m}" for m in missing]
        label = labels / case_file_name(case_id) if labels else None
        mask = masks / case_file_name(case_id) if masks else None
        for path in (label, mask):
            if path is not None and not path.is_file():
                problems.append(f"case {case_id}: missing {path}")
        if not missing:
            problems += geometry_problems(case_id, present, real[case_id], [label, mask])
        cases.append(EvaluationCase(case_id, present, real.get(case_id, {}), label, mask, tuple(times), inputs))
    if problems:
        raise EvaluationInputError(listing(f"{pred} against {ref}", problems))
    if skipped:
        print(f"note: {len(skipped)} case(s) not scored, no prediction at a time a real phase was acquired: "
              f"{', '.join(skipped)}")
    if not cases:
        raise EvaluationInputError(f"{pred}: no prediction lies at the time of a real phase of its case (within "
                                   f"{TIME_TOLERANCE_S:g} s); nothing to score", pred)
    return cases


def geometry_problems(case_id: str, predicted: dict[int, Path], real: dict[int, Path],
                      extra: list[Path | None]) -> list[str]:
    """Every predicted phase and mask must share the real phases' grid and affine."""
    try:
        _, reference = read_header(real[0])
    except ImageReadError as exc:
        return [str(exc)]
    problems = []
    for path in [*predicted.values(), *real.values(), *[p for p in extra if p is not None and p.is_file()]]:
        try:
            _, geometry = read_header(path)
        except ImageReadError as exc:
            problems.append(str(exc))
            continue
        if len(geometry.shape) != 3:
            problems.append(f"case {case_id}: {path} is {len(geometry.shape)}D with shape {geometry.shape}, "
                            "expected one 3D volume per phase")
            continue
        if not geometry.matches(reference):
            what = (f"shape {geometry.shape} differs from {real[0].name}'s {reference.shape}"
                    if tuple(geometry.shape[:3]) != tuple(reference.shape[:3])
                    else f"affine differs from {real[0].name}'s (same shape {geometry.shape})")
            problems.append(f"case {case_id}: {path} geometry: {what}")
    return problems


def read_labels(path: Path) -> np.ndarray:
    """Lesion labels of ``path`` (each label one lesion) as int16; values that cannot be labels name the file."""
    data = read_image(path)[0]
    problem = label_values_problem(data)
    if problem is not None:
        raise EvaluationInputError(f"{path}: lesion mask {problem}", path)
    return data.astype(np.int16)


def read_finite(path: Path) -> tuple[np.ndarray, Geometry]:
    """Voxels and geometry of ``path``; NaN or infinite values are an error naming the file."""
    data, geometry = read_image(path)
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise EvaluationInputError(f"{path}: {bad} NaN/inf voxel(s); cannot be scored", path)
    return data, geometry


def evaluate_folder_case(case: EvaluationCase, scoring: Scoring, regression: PhasePredictor | None = None,
                         methods: Sequence[str] = METHODS) -> tuple[CaseEvaluation, tuple]:
    """Load, TI-normalize inside the scoring region (region.py), evaluate; also return montage material.

    Each prediction is scored against the real phase of the same index.
    """
    read = [read_finite(case.real[p]) for p in sorted(case.real)]
    real = np.stack([data for data, _ in read])
    spacing = read[0][1].spacing[:3]
    targets = sorted(case.predicted)
    synthesized = np.stack([read_finite(case.predicted[p])[0] for p in targets])
    inputs = list(case.input_phases)
    kept = inputs + targets
    breast = (read_image(case.mask)[0] > 0) if case.mask else None
    mask = scoring.mask(real[inputs], breast)
    lesion = read_labels(case.label) if case.label else None
    real_n, synth_n, stats = scoring.normalize(real, synthesized, mask)
    real_n = real_n[kept]
    evaluation = evaluate_case(case.case_id, synth_n, real_n, [case.times_s[p] for p in kept], mask, lesion,
                               (stats.mean, stats.std), phase_indices=kept, regression=regression, methods=methods,
                               spacing_mm=spacing)
    add_uncertainty_columns(evaluation, case, real, mask, stats.std, lesion)
    z = int(np.argwhere(lesion > 0)[:, 2].mean()) if lesion is not None and lesion.any() else real.shape[3] // 2
    outline = None if lesion is None else lesion[:, :, z] > 0
    full = np.full(real.shape, np.nan, dtype=np.float32)
    full[inputs] = real[inputs]
    full[targets] = synthesized
    return evaluation, (case.case_id, real[:, :, :, z], full[:, :, :, z], outline)


def add_uncertainty_columns(evaluation: CaseEvaluation, case: EvaluationCase, real: np.ndarray, mask: np.ndarray,
                            std: float, lesion: np.ndarray | None) -> None:
    """The iterdce rows of a case predicted with ``--uncertainty`` gain the intervals' coverage and width (body
    voxels from ``<case>_<pppp>_lower/_upper.nii.gz``, lesion means from ``<case>_kinetics.json``) and each
    lesion its curve-type probabilities (evaluation/uncertainty.py); nothing for a plain prediction."""
    pred = next(iter(case.predicted.values())).parent
    intervals = read_intervals(pred, case.case_id, sorted(case.predicted))
    entries = read_lesion_kinetics(pred, case.case_id)
    if not intervals and not entries:
        return
    labels = [] if lesion is None else [int(v) for v in np.unique(lesion) if v > 0]
    curves = {label: real[:, lesion == label].astype(np.float64).mean(axis=1) for label in labels}
    first = max(case.input_phases) + 1
    for row in evaluation.phase_rows:
        if row["method"] == "iterdce":
            phase = int(row["phase"])
            if phase in intervals:
                row.update(interval_columns(real[phase], *intervals[phase], mask, std))
            row.update(lesion_band_columns(curves, entries, phase, first, std))
    for row in evaluation.lesion_rows:
        if row["method"] == "iterdce":
            row.update(lesion_probabilities(entries.get(int(row["lesion"]))))


def evaluate_folders(pred: Path, ref: Path, out_dir: Path, labels: Path | None = None, masks: Path | None = None,
                     dataset_json: Path | None = None, reference_phase: int = DEFAULT_REFERENCE_PHASE,
                     progress: bool = True,
                     regression: PhasePredictor | None = None, methods: Sequence[str] = METHODS,
                     allow_missing_phases: bool = False, region: str = DEFAULT_REGION) -> dict:
    """The whole report; prints the summary table and returns the summary. Every input is read before the first
    report file is written, so a bad input leaves ``out_dir`` as it was.

    Args:
        pred: folder of synthesized ``<case>_<pppp>.nii.gz``.
        ref: folder of the real phases (e.g. a dataset's imagesTr).
        out_dir: report folder.
        labels: lesion masks ``<case>.nii.gz`` (enhancement error and kinetic curves need them).
        masks: breast masks ``<case>.nii.gz``; required by ``region="breast"``, unused otherwise.
        dataset_json: dataset.json with the phase times (default: next to ``ref``).
        reference_phase: the TI-norm reference phase.
        progress: show a progress bar.
        regression: a fitted voxel-wise kinetic regression (regression_baseline.load_regression) adds its row.
        methods: the methods to report (a benchmark scoring many models on the same cases scores the
            baselines once).
        allow_missing_phases: score the target phases present when some are missing from ``pred``.
        region: where to score (region.REGIONS; default the body foreground, as the fold validation report).
    """
    scoring = Scoring(region, reference_phase)
    if region == "breast" and masks is None:
        raise EvaluationInputError("region 'breast' needs the breast masks (-m/--masks)")
    cases = collect_cases(Path(pred), Path(ref), labels, masks if region == "breast" else None, dataset_json,
                          reference_phase, allow_missing_phases)
    evaluations: list[CaseEvaluation] = []
    panels: list[tuple] = []
    for case in tqdm(cases, desc="evaluating", unit="case", disable=not progress):
        evaluation, panel = evaluate_folder_case(case, scoring, regression, methods)
        ood = prediction_ood(Path(pred) / sidecar_name(case.case_id))
        for row in evaluation.phase_rows:  # the same for every method: how far the case lies from the training data
            row.update(ood)
        evaluations.append(evaluation)
        if len(panels) < MONTAGE_CASES:
            panels.append(panel)
    remove_stale_temporaries(Path(out_dir))
    summary = write_report(evaluations, Path(out_dir), scoring)
    titles = [[f"{t:.0f} s" for t in case.times_s] for case in cases[:len(panels)]]
    plot_montage(panels, titles, Path(out_dir) / "montage.png")
    if regression is None and "regression" in methods:
        print("note: the voxel-wise regression baseline is not reported; pass --regression MODEL_FOLDER")
    print(summary_table(summary))
    return summary
