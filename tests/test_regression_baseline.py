"""The voxel-wise kinetic regression baseline: exact on kinetics that are a known function of early enhancement,
stored and reloaded per fold, and reported next to the other baselines."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from iterdce.evaluation.baselines import KineticRegression, RegressionFitter, kinetic_features
from iterdce.evaluation.case_evaluation import evaluate_case
from iterdce.evaluation.regression_baseline import RegressionFitError, load_regression
from iterdce.evaluation.report import summarize

TIMES = [0.0, 60.0, 120.0, 180.0, 240.0]


def synthetic_case(seed: int, shape=(12, 10, 6)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phases whose later enhancement is a cubic polynomial of (early enhancement, pre-contrast intensity)."""
    rng = np.random.default_rng(seed)
    pre = rng.uniform(-1.0, 1.0, shape)
    early = pre + rng.uniform(0.0, 2.0, shape)
    u = early - pre
    later = [early + 0.3 * u - 0.2 * u**2 + 0.05 * u**3 * (k + 1) - 0.1 * pre * u * k for k in range(3)]
    phases = np.stack([pre, early, *later])
    lesion = np.zeros(shape, np.int16)
    lesion[3:6, 3:6, 2:4] = 1
    return phases, np.ones(shape, bool), lesion


def test_regression_is_exact_on_a_polynomial_function_of_early_enhancement():
    fitter = RegressionFitter()
    for seed in range(3):
        phases, mask, lesion = synthetic_case(seed)
        fitter.add_case(phases, 2, mask, lesion)
    model = fitter.fit()
    phases, _, _ = synthetic_case(7)
    # inside the fitted feature range the fit reproduces the kinetics exactly
    inside = (phases[1] - phases[0] > model.feature_low[0]) & (phases[1] - phases[0] < model.feature_high[0]) & (
        phases[0] > model.feature_low[1]) & (phases[0] < model.feature_high[1])
    predicted = model.predict(phases[:2])
    assert predicted.shape == (3, *phases.shape[1:])
    np.testing.assert_allclose(predicted[:, inside], phases[2:, inside], atol=1e-6)


def test_regression_with_no_change_learns_copy_last_and_clips_outside_its_range():
    fitter = RegressionFitter(degree=2)
    phases, mask, lesion = synthetic_case(0)
    flat = np.concatenate([phases[:2], np.repeat(phases[1:2], 3, axis=0)])
    fitter.add_case(flat, 2, mask, lesion)
    model = fitter.fit()
    np.testing.assert_allclose(model.predict(flat[:2]), flat[2:], atol=1e-8)
    extreme = flat[:2] * 1e6
    assert np.isfinite(model.predict(extreme)).all()


def test_kinetic_features_terms():
    features = kinetic_features(np.array([2.0]), np.array([5.0]), degree=2)
    # u = 3, v = 2: terms u^a v^b for a + b <= 2 in order (a, b) = (0,0),(0,1),(0,2),(1,0),(1,1),(2,0)
    np.testing.assert_allclose(features[:, 0], [1, 2, 4, 3, 6, 9])


def test_fit_round_trips_through_json_and_folder_lookup(tmp_path):
    fitter = RegressionFitter()
    phases, mask, lesion = synthetic_case(1)
    fitter.add_case(phases, 2, mask, lesion)
    model = fitter.fit()
    for fold in (0, 1):
        (tmp_path / f"fold_{fold}").mkdir()
        (tmp_path / f"fold_{fold}" / "kinetic_regression.json").write_text(json.dumps(model.to_json()))
    ensemble = load_regression(tmp_path)
    assert len(ensemble.members) == 2
    np.testing.assert_allclose(ensemble.predict(phases[:2]), model.predict(phases[:2]))
    assert KineticRegression.from_json(model.to_json()).degree == model.degree


def test_missing_or_broken_fit_names_the_file(tmp_path):
    with pytest.raises(RegressionFitError, match=str(tmp_path)):
        load_regression(tmp_path)
    bad = tmp_path / "kinetic_regression.json"
    bad.write_text('{"degree": 3, "coefficients": [[1, 2]], "feature_low": [0, 0], "feature_high": [1, 1]}')
    with pytest.raises(RegressionFitError, match="kinetic_regression.json"):
        load_regression(bad)


def test_report_has_a_regression_row_and_a_verdict_line():
    fitter = RegressionFitter()
    phases, mask, lesion = synthetic_case(2)
    fitter.add_case(phases, 2, mask, lesion)
    model = fitter.fit()
    copy = np.repeat(phases[1:2], 3, axis=0)
    evaluation = evaluate_case("c", copy, phases, TIMES, mask, lesion, regression=model)
    methods = {row["method"] for row in evaluation.phase_rows}
    assert methods == {"iterdce", "copy_last", "linear", "regression"}
    summary = summarize(pd.DataFrame(evaluation.phase_rows), pd.DataFrame(evaluation.lesion_rows))
    assert summary["verdict"].startswith("WARNING: iterdce does NOT clear the regression baseline")
