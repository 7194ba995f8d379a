"""Validation predictions of a trained fold (exported as NIfTI and evaluated) and the cross-validation summary.

Validation cases come from the preprocessed dataset: they are synthesized in plan space exactly as the
predictor does, scored there in TI-normalized units, and written back in their original geometry.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from iterdce.atomic import remove_stale_temporaries, write_json_atomic
from iterdce.dataset.nifti_io import Geometry
from iterdce.errors import IterdceError
from iterdce.evaluation.case_evaluation import evaluate_case
from iterdce.evaluation.regression_baseline import ensure_fold_regression
from iterdce.evaluation.report import summarize, summary_table, write_report
from iterdce.inference.export import write_phases
from iterdce.inference.model_loading import load_fold_models
from iterdce.inference.predictor import PredictionSettings
from iterdce.inference.provenance import description, model_id
from iterdce.inference.tiled import predict_volume
from iterdce.json_io import read_json
from iterdce.preprocessing.preprocessor import restore_phases
from iterdce.training.data_loader import load_preprocessed


def validate_fold(model_folder: Path, fold: int | str, data_dir: Path, case_ids: list[str], plans: dict,
                  checkpoint: str = "final", device: str | torch.device = "cpu", progress: bool = True,
                  train_case_ids: Sequence[str] | None = None) -> dict:
    """Predict, export and evaluate the fold's validation cases into ``fold_<k>/validation/``.

    With ``train_case_ids`` the voxel-wise kinetic regression baseline is fitted on them (once; stored as
    ``fold_<k>/kinetic_regression.json``) and reported next to the network and the naive baselines."""
    models, _, _ = load_fold_models(model_folder, [fold], checkpoint, device)
    out_dir = model_folder / f"fold_{fold}" / "validation"
    mark = description(model_id([model_folder / f"fold_{fold}" / f"checkpoint_{checkpoint}.pth"],
                                PredictionSettings().provenance()))
    remove_stale_temporaries(out_dir)
    n_in = len(plans["input_phases"])
    regression = None
    if train_case_ids:
        regression = ensure_fold_regression(model_folder / f"fold_{fold}", data_dir, train_case_ids, n_in, progress)
    evaluations = []
    for case_id in tqdm(case_ids, desc=f"validation fold {fold}", unit="case", disable=not progress):
        case = load_preprocessed(data_dir, case_id)
        properties = read_json(data_dir / f"{case_id}.json", expect=dict)
        inputs = torch.from_numpy(case.data[:n_in]).to(device)
        times = torch.from_numpy(case.times_s).to(device)
        synthesized = predict_volume(models, inputs, times, plans["patch_size"], len(plans["target_phases"])
                                     ).cpu().numpy()
        stats = properties["ti_norm"]
        evaluations.append(evaluate_case(case_id, synthesized, case.data, case.times_s, case.mask > 0, case.lesion,
                                         (stats["mean"], stats["std"]), regression=regression))
        geometry = Geometry(tuple(properties["original_shape"]), np.asarray(properties["original_affine"]),
                            properties["qform_code"], properties["sform_code"])
        write_phases(restore_phases(synthesized, properties), geometry, out_dir, case_id, plans["target_phases"],
                     mark)
    return write_report(evaluations, out_dir)


def cross_validation_summary(model_folder: Path, n_folds: int = 5) -> dict:
    """``cv_summary.json``: metrics over the union of the folds' validation sets."""
    tables: dict[str, list[pd.DataFrame]] = {"per_case.csv": [], "lesions.csv": []}
    folds = []
    for fold in range(n_folds):
        folder = model_folder / f"fold_{fold}" / "validation"
        if (folder / "per_case.csv").is_file():
            folds.append(fold)
            for name in tables:
                try:
                    tables[name].append(pd.read_csv(folder / name))
                except (FileNotFoundError, pd.errors.EmptyDataError):
                    continue
                except (pd.errors.ParserError, UnicodeDecodeError) as exc:
                    raise IterdceError(f"{folder / name}: not a readable CSV table ({type(exc).__name__}); rerun "
                                       f"iterdce_train {fold} to write it anew", folder / name) from exc
    if not folds:
        raise IterdceError(f"{model_folder}: no fold_*/validation/per_case.csv; train the folds first", model_folder)
    phase_table = pd.concat(tables["per_case.csv"], ignore_index=True)
    lesion_table = pd.concat(tables["lesions.csv"], ignore_index=True) if tables["lesions.csv"] else pd.DataFrame()
    summary = {"folds": folds, **summarize(phase_table, lesion_table)}
    if len(folds) < n_folds:
        summary["warning"] = f"only folds {folds} of {n_folds} have validation results"
        print(f"warning: {model_folder}: {summary['warning']}; the summary covers those folds only")
    write_json_atomic(model_folder / "cv_summary.json", summary)
    print(summary_table(summary))
    return summary
