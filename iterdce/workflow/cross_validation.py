"""Validation predictions of a trained fold (exported as NIfTI and evaluated) and the cross-validation summary.

Validation cases are read from the raw dataset and predicted exactly as iterdce_predict predicts them
(``IterativePredictor.predict_case``: the same preprocessing, tiling, test-time mirroring and native-resolution
composition), then scored against their real phases on their own grid, as iterdce_evaluate scores them. Without
the raw dataset they are synthesized and scored on the plan grid from the preprocessed cases (the summary's
``resolution`` says which), and written back in their original geometry either way.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from iterdce.core.atomic import remove_stale_temporaries, write_json_atomic
from iterdce.core.errors import IterdceError
from iterdce.core.file_names import CV_SUMMARY
from iterdce.core.folder_names import FOLD_GLOB, VALIDATION_FOLDER, fold_folder, validation_folder
from iterdce.core.json_io import read_json
from iterdce.dataset.case import DCECase, load_case
from iterdce.dataset.layout import CaseFiles, discover_cases
from iterdce.dataset.nifti_io import Geometry
from iterdce.evaluation.case_evaluation import CaseEvaluation, PhasePredictor, evaluate_case
from iterdce.evaluation.region import DEFAULT_REGION, RegionError, Scoring
from iterdce.evaluation.report import summarize, summary_table, write_report
from iterdce.inference.export import write_phases
from iterdce.inference.predictor import IterativePredictor, PredictionSettings
from iterdce.inference.provenance import description
from iterdce.preprocessing.case_files import load_preprocessed, read_sidecar
from iterdce.preprocessing.preprocessor import restore_phases
from iterdce.regression.fit import ensure_fold_regression


def validate_fold(model_folder: Path, fold: int | str, data_dir: Path, case_ids: list[str],
                  settings: PredictionSettings | None = None, train_case_ids: Sequence[str] | None = None,
                  region: str = DEFAULT_REGION, raw_dir: Path | None = None) -> dict:
    """Predict, export and evaluate the fold's validation cases into ``fold_<k>/validation/``.

    Args:
        model_folder: the trained ``<Trainer>__<plans>`` folder (its plans.json is the plan used).
        fold: the fold whose checkpoint predicts (``settings.folds`` is replaced by it).
        data_dir: the plan's preprocessed cases.
        case_ids: the fold's validation cases.
        settings: checkpoint, device, tile batch, test-time augmentation, progress (default: the predictor's).
        train_case_ids: with them the voxel-wise kinetic regression baseline is fitted on these cases (once;
            stored as ``fold_<k>/kinetic_regression.json``) and reported next to the network and naive baselines.
        region: where to score (region.REGIONS, as iterdce_evaluate --region); ``breast`` needs a plan whose
            normalization mask is the breast mask (the only mask the preprocessed cases keep) when scored on
            the plan grid.
        raw_dir: the raw dataset: each case is then predicted from its raw input phases exactly as
            iterdce_predict does (native composition) and scored against its real phases on its own grid.
            Without it, the cases are synthesized and scored on the plan grid (``summary["resolution"]`` says
            which).
    """
    settings = dataclasses.replace(settings or PredictionSettings(), folds=[fold])
    progress = settings.progress
    predictor = IterativePredictor(model_folder, dataclasses.replace(settings, progress=False))
    plans = predictor.plans
    scoring = Scoring(region, plans.reference_phase, "native" if raw_dir is not None else "plan")
    if raw_dir is None and region == "breast" and plans.normalization.mask != "breast":
        raise RegionError(f"{model_folder}: region 'breast' needs a plan normalized inside the breast masks "
                          f"(its normalization.mask is {plans.normalization.mask!r}); evaluate the exported "
                          "validation cases with iterdce_evaluate --region breast -m MASKS instead")
    out_dir = validation_folder(model_folder, fold)
    mark = description(predictor.model_id)
    remove_stale_temporaries(out_dir)
    n_in = len(plans.input_phases)
    regression = None
    if train_case_ids:
        regression = ensure_fold_regression(fold_folder(model_folder, fold), data_dir, train_case_ids, n_in, progress)
    raw_cases = discover_cases(raw_dir).cases if raw_dir is not None else {}
    evaluations = []
    for case_id in tqdm(case_ids, desc=f"validation fold {fold}", unit="case", disable=not progress):
        if raw_dir is not None:
            if case_id not in raw_cases:
                raise IterdceError(f"{raw_dir}: validation case {case_id} is missing from the raw dataset", raw_dir)
            evaluation, native, geometry, times = _native_case(predictor, raw_cases[case_id], scoring, regression)
        else:
            evaluation, native, geometry, times = _plan_grid_case(predictor, data_dir, case_id, scoring, regression)
        evaluations.append(evaluation)
        write_phases(native, geometry, out_dir, case_id, range(n_in, len(times)), mark)
    return write_report(evaluations, out_dir, scoring)


def _native_case(predictor: IterativePredictor, files: CaseFiles, scoring: Scoring,
                 regression: PhasePredictor | None) -> tuple[CaseEvaluation, np.ndarray, Geometry, np.ndarray]:
    """A raw case predicted from its input phases as iterdce_predict does and scored on its own grid."""
    n_in = len(predictor.input_phases)
    case = load_case(files, predictor.plans.phase_times_s)
    inputs = DCECase(case.case_id, case.image[:n_in], case.times_s, case.geometry)
    native = predictor.predict_case(inputs)
    mask = scoring.mask(case.image[:n_in], case.breast_mask if scoring.region == "breast" else None)
    real_n, synth_n, stats = scoring.normalize(case.image, native, mask)
    lesion = None if case.lesion is None else case.lesion.astype(np.int16)
    evaluation = evaluate_case(case.case_id, synth_n, real_n, case.times_s, mask, lesion, (stats.mean, stats.std),
                               regression=regression, spacing_mm=case.geometry.spacing[:3])
    return evaluation, native, case.geometry, case.times_s


def _plan_grid_case(predictor: IterativePredictor, data_dir: Path, case_id: str, scoring: Scoring,
                    regression: PhasePredictor | None) -> tuple[CaseEvaluation, np.ndarray, Geometry, np.ndarray]:
    """A preprocessed case synthesized and scored on the plan grid (no raw dataset at hand)."""
    n_in = len(predictor.input_phases)
    case = load_preprocessed(data_dir, case_id)
    properties = read_sidecar(data_dir, case_id).properties
    synthesized = predictor.synthesize_normalized(case.data[:n_in], case.times_s)
    mask = scoring.mask(case.data[:n_in], case.mask if scoring.region == "breast" else None)
    real_n, synth_n, stats = scoring.normalize(case.data, synthesized, mask)
    plan_stats = properties.ti_norm  # plan units -> the scanner's scale, which curve typing needs
    native_scale = (plan_stats.mean + stats.mean * plan_stats.std, stats.std * plan_stats.std)
    evaluation = evaluate_case(case_id, synth_n, real_n, case.times_s, mask, case.lesion, native_scale,
                               regression=regression, spacing_mm=case.spacing_mm)
    geometry = Geometry(properties.original_shape, np.asarray(properties.original_affine), properties.qform_code,
                        properties.sform_code)
    return evaluation, restore_phases(synthesized, properties), geometry, case.times_s


def cross_validation_summary(model_folder: Path, n_folds: int = 5) -> dict:
    """``cv_summary.json``: metrics over the union of the folds' validation sets."""
    tables: dict[str, list[pd.DataFrame]] = {"per_case.csv": [], "lesions.csv": []}
    folds, scorings = [], []
    for fold in range(n_folds):
        folder = validation_folder(model_folder, fold)
        if (folder / "per_case.csv").is_file():
            folds.append(fold)
            summary_path = folder / "summary.json"
            scoring = read_json(summary_path, expect=dict).get("scoring") if summary_path.is_file() else None
            if scoring is None:
                raise IterdceError(f"{summary_path}: no scoring region recorded; rerun iterdce_train {fold} "
                                   "--continue to validate the fold again", summary_path)
            scorings.append(scoring)
            for name in tables:
                try:
                    tables[name].append(pd.read_csv(folder / name))
                except (FileNotFoundError, pd.errors.EmptyDataError):
                    continue
                except (pd.errors.ParserError, UnicodeDecodeError) as exc:
                    raise IterdceError(f"{folder / name}: not a readable CSV table ({type(exc).__name__}); rerun "
                                       f"iterdce_train {fold} to write it anew", folder / name) from exc
    if not folds:
        raise IterdceError(f"{model_folder}: no {FOLD_GLOB}/{VALIDATION_FOLDER}/per_case.csv; train the folds first",
                           model_folder)
    phase_table = pd.concat(tables["per_case.csv"], ignore_index=True)
    lesion_table = pd.concat(tables["lesions.csv"], ignore_index=True) if tables["lesions.csv"] else pd.DataFrame()
    if any(s != scorings[0] for s in scorings):
        raise IterdceError(f"{model_folder}: the folds were scored differently (regions "
                           f"{sorted({s['region'] for s in scorings})}, resolutions "
                           f"{sorted({s.get('resolution', 'plan') for s in scorings})}); validate them again with "
                           "one --region and the raw dataset at hand", model_folder)
    summary = {"folds": folds, **summarize(phase_table, lesion_table, scorings[0])}
    if len(folds) < n_folds:
        summary["warning"] = f"only folds {folds} of {n_folds} have validation results"
        print(f"warning: {model_folder}: {summary['warning']}; the summary covers those folds only")
    write_json_atomic(model_folder / CV_SUMMARY, summary)
    print(summary_table(summary))
    return summary
