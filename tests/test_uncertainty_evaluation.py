"""Tests of iterdce_evaluate's uncertainty columns: interval coverage and width, the Brier score and
calibration error of curve-type probabilities with their references, the reliability diagram, and a folder
predicted with --uncertainty evaluated end to end (model fixtures: tests/test_predictor.py)."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import torch

from iterdce.commands.predict import main as predict_main
from iterdce.evaluation.folders import evaluate_folders
from iterdce.evaluation.uncertainty import (
    brier_score,
    expected_calibration_error,
    interval_columns,
    probability_summary,
)
from tests.helpers import make_raw_dataset
from tests.test_conformal import calibration
from tests.test_predictor import base_plans, make_model, write_model_folder

__all__ = ["base_plans"]

torch.set_num_threads(1)


def test_interval_columns_count_covered_voxels_and_width_in_ti_units():
    real = np.array([0.0, 1.0, 2.0, 3.0])
    lower, upper = np.array([-1.0, 1.5, 1.0, 2.0]), np.array([1.0, 2.5, 3.0, 4.0])
    columns = interval_columns(real, lower, upper, np.array([True, True, True, False]), std=2.0)
    assert columns == {"interval_coverage_body": 2 / 3, "interval_width_body": (2 + 1 + 2) / 3 / 2.0}


def test_brier_and_ece_of_perfect_and_of_uniform_probabilities():
    truth = np.array([0, 1, 2, 2])
    perfect = np.eye(3)[truth]
    assert brier_score(perfect, truth) == 0.0 and expected_calibration_error(perfect, truth)[0] == 0.0
    uniform = np.full((4, 3), 1 / 3)
    assert abs(brier_score(uniform, truth) - 2 / 3) < 1e-12
    overconfident = np.eye(3)[[1, 1, 2, 2]]  # always sure, right half the time... 3 of 4
    assert abs(expected_calibration_error(overconfident, truth)[0] - 0.25) < 1e-12


def test_probability_summary_states_both_references():
    lesions = pd.DataFrame({"true_type": ["persistent", "washout", "washout", "none"],
                            "p_persistent": [0.8, 0.1, 0.2, 0.3], "p_plateau": [0.1, 0.1, 0.1, 0.3],
                            "p_washout": [0.1, 0.8, 0.7, 0.4]})
    summary = probability_summary(lesions)
    assert summary is not None and summary["lesions"] == 3  # the undefined true type is left out
    assert summary["brier"] < summary["references"]["frequency"]["brier"] < summary["references"]["uniform"]["brier"]
    assert probability_summary(lesions.drop(columns=["p_plateau"])) is None


def test_evaluate_reports_coverage_width_and_probabilities_of_an_uncertainty_prediction(tmp_path, base_plans):
    results = tmp_path / "results"
    folder = write_model_folder(results, base_plans, {0: make_model(seed=20)})
    rng = np.random.default_rng(4)
    calibration([rng.standard_normal(60)] * 2, [rng.standard_normal(40)] * 2).save(folder)
    raw = make_raw_dataset(tmp_path / "raw", n_cases=2, shape=(16, 16, 8), n_phases=6)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in (raw / "imagesTr").glob("*_000[01].nii.gz"):
        shutil.copy(path, inputs / path.name)
    argv = ["-i", str(inputs), "-o", str(tmp_path / "out"), "-d", "1", "-f", "0", "--device", "cpu", "--quiet",
            "--uncertainty", "--lesion-masks", str(raw / "labelsTr"), "--results", str(results)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert predict_main(argv) == 0
        summary = evaluate_folders(tmp_path / "out", raw / "imagesTr", tmp_path / "report", labels=raw / "labelsTr",
                                   progress=False, methods=("iterdce", "copy_last"))
    iterdce = summary["methods"]["iterdce"]
    for phase in ("2", "3", "4", "5"):
        stats = iterdce["per_phase"][phase]
        assert 0 <= stats["interval_coverage_body"]["mean"] <= 1 and stats["interval_width_body"]["mean"] > 0
        assert 0 <= stats["interval_coverage_lesion"]["mean"] <= 1
    assert "interval_coverage_body" not in summary["methods"]["copy_last"]["per_phase"]["2"]
    probabilities = iterdce["kinetics"]["curve_type_probabilities"]
    assert probabilities["lesions"] >= 1 and set(probabilities["references"]) == {"uniform", "frequency"}
    assert (tmp_path / "report" / "reliability.png").is_file()
    table = pd.read_csv(tmp_path / "report" / "lesions.csv")
    rows = table[table["method"] == "iterdce"]
    np.testing.assert_allclose(rows[["p_persistent", "p_plateau", "p_washout"]].sum(axis=1), 1.0)
