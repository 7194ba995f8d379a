"""One metric definition: the fold validation report and iterdce_evaluate (the cases' own geometry) score the same
predictions alike, inside the same region and in the same units; with the raw dataset at hand the validation
predicts and scores each case on its own grid, without it on the plan's (equal here: the plan keeps the cases'
spacing)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from iterdce.core.checkpoint import save_checkpoint
from iterdce.evaluation.folders import EvaluationInputError, evaluate_folders
from iterdce.evaluation.region import RegionError
from iterdce.inference.predictor import PredictionSettings
from iterdce.network.config import ModelConfig
from iterdce.network.synthesizer import build_synthesizer
from iterdce.preprocessing.pipeline import data_folder, plan_and_preprocess
from iterdce.preprocessing.plans_io import load_plans, save_plans
from iterdce.workflow.cross_validation import validate_fold
from tests.helpers import make_raw_dataset

torch.set_num_threads(1)
NETWORK = {"features_per_stage": [4, 8], "pool_per_stage": [[2, 2, 1]], "time_embedding_dim": 8,
           "time_scale_s": 225.0, "use_time_embedding": True, "use_convlstm": True}
METRICS = ("psnr", "ssim", "mae", "enhancement_error", "sharpness")


@pytest.fixture(scope="module")
def both_reports(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame, dict, dict, Path]:
    """Predict the validation cases of fold 0 on the plan grid, then natively; score the native predictions again
    with iterdce_evaluate."""
    root = tmp_path_factory.mktemp("consistency")
    raw = make_raw_dataset(root / "raw", n_cases=5, shape=(24, 24, 8), n_phases=4)
    plan_and_preprocess(raw, root / "pre", preset="tiny", progress=False, log=lambda *_: None)
    dataset = root / "pre" / raw.name
    # the cases' own spacing: the grids agree, so any difference would be the metric definition's
    plans = load_plans(dataset / "plans.json").replace(patch_size=[16, 16, 8], network=NETWORK)
    assert list(plans.spacing) == [0.8, 0.8, 2.0]
    folder = root / "results" / raw.name / "RecursiveTrainer__plans"
    save_plans(plans, folder / "plans.json")
    config = ModelConfig.from_plan("iterative", NETWORK, plans.input_phases, plans.num_phases)
    model = build_synthesizer(config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a model that changes the phases, not the identity of a fresh network
        model.net.final_conv.weight.copy_(torch.randn(model.net.final_conv.weight.shape, generator=generator) * 0.05)
        model.net.final_conv.bias.fill_(0.1)
    save_checkpoint(folder / "fold_0" / "checkpoint_final.pth",
                    {"network_state": model.state_dict(), "model_config": config.to_dict()})
    val_cases = ["case_001", "case_003"]
    settings = PredictionSettings(device="cpu", progress=False, precision="fp32")
    plan_grid = validate_fold(folder, 0, data_folder(dataset, "plans"), val_cases, settings)
    assert plan_grid["scoring"]["resolution"] == "plan"
    plan_rows = pd.read_csv(folder / "fold_0" / "validation" / "per_case.csv")
    cv = validate_fold(folder, 0, data_folder(dataset, "plans"), val_cases, settings, raw_dir=raw)
    native = evaluate_folders(folder / "fold_0" / "validation", raw / "imagesTr", root / "report", raw / "labelsTr",
                              progress=False)
    cv_rows = pd.read_csv(folder / "fold_0" / "validation" / "per_case.csv")
    native_rows = pd.read_csv(root / "report" / "per_case.csv")
    return cv_rows, native_rows, cv, native, raw, plan_rows


def test_validation_and_evaluate_agree_on_the_same_predictions(both_reports):
    cv_rows, native_rows, cv, native, _, plan_rows = both_reports
    assert cv["scoring"] == native["scoring"] and cv["scoring"]["region"] == "foreground"
    assert cv["scoring"]["resolution"] == "native"
    for rows in (cv_rows, plan_rows):
        merged = rows.merge(native_rows, on=["case", "phase", "method"], suffixes=("_cv", "_native"))
        assert len(merged) == len(rows) == len(native_rows) == 2 * 2 * 3  # cases x target phases x methods
        ours = merged[merged["method"] == "iterdce"]
        # the network's output differs from the real phase, or agreement would be trivial
        assert (ours["mae_cv"] > 0.05).all()
        # float32 export and TI-norm round trips are the only difference left
        for metric in METRICS:
            np.testing.assert_allclose(merged[f"{metric}_cv"], merged[f"{metric}_native"], rtol=1e-3,
                                       err_msg=metric)


def test_the_breast_region_is_a_flag_and_needs_the_masks(both_reports, tmp_path):
    raw = both_reports[4]
    predictions = tmp_path.parent  # any folder: the check comes before reading predictions
    with pytest.raises(EvaluationInputError, match="region 'breast' needs the breast masks"):
        evaluate_folders(predictions, raw / "imagesTr", tmp_path / "report", region="breast")
    with pytest.raises(RegionError, match="must be one of foreground, breast"):
        evaluate_folders(predictions, raw / "imagesTr", tmp_path / "report", region="lungs")
