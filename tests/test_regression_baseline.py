"""The voxel-wise kinetic regression baseline: exact on kinetics that are a known function of early enhancement,
stored and reloaded per fold, and reported next to the other baselines."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from iterdce.core.kinetic_terms import exponents, kinetic_terms
from iterdce.evaluation.case_evaluation import evaluate_case
from iterdce.evaluation.region import Scoring
from iterdce.evaluation.report import summarize
from iterdce.regression.fit import RegressionFitError, ensure_fold_regression, load_regression
from iterdce.regression.model import KineticRegression, RegressionFitter

TIMES = [0.0, 60.0, 120.0, 180.0, 240.0]


def synthetic_case(seed: int, shape=(12, 10, 6), times=TIMES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phases whose later enhancement is a polynomial of (early enhancement, pre-contrast intensity, time since
    the early phase), in the model's own terms (tau in units of 100 s)."""
    rng = np.random.default_rng(seed)
    pre = rng.uniform(-1.0, 1.0, shape)
    early = pre + rng.uniform(0.0, 2.0, shape)
    u = early - pre
    taus = [(t - times[1]) / 100.0 for t in times[2:]]
    later = [early + (0.3 * u - 0.2 * u**2) * tau + 0.05 * u**3 * tau**2 - 0.1 * pre * u * tau**3 for tau in taus]
    phases = np.stack([pre, early, *later])
    lesion = np.zeros(shape, np.int16)
    lesion[3:6, 3:6, 2:4] = 1
    return phases, np.ones(shape, bool), lesion


def jittered_times(seed: int) -> list[float]:
    """A protocol with gaps of 50-90 s, as sites differ."""
    gaps = np.random.default_rng(100 + seed).uniform(50, 90, 4)
    return [0.0, *np.cumsum(gaps).tolist()]


def test_regression_is_exact_on_a_polynomial_function_of_early_enhancement_and_time():
    fitter = RegressionFitter()
    for seed in range(3):
        times = jittered_times(seed)
        phases, mask, lesion = synthetic_case(seed, times=times)
        fitter.add_case(phases, times, 2, mask, lesion)
    model = fitter.fit()
    times = jittered_times(7)  # another protocol, inside the fitted time range
    times[2:] = [min(max(t, times[1] + 100 * model.feature_low[2]), times[1] + 100 * model.feature_high[2])
                 for t in times[2:]]
    phases, _, _ = synthetic_case(7, times=times)
    # inside the fitted feature range the fit reproduces the kinetics exactly
    inside = (phases[1] - phases[0] > model.feature_low[0]) & (phases[1] - phases[0] < model.feature_high[0]) & (
        phases[0] > model.feature_low[1]) & (phases[0] < model.feature_high[1])
    predicted = model.predict(phases[:2], times[:2], times[2:])
    assert predicted.shape == (3, *phases.shape[1:])
    np.testing.assert_allclose(predicted[:, inside], phases[2:, inside], atol=1e-6)


def test_regression_with_no_change_learns_copy_last_and_clips_outside_its_range():
    fitter = RegressionFitter(degree=2)
    phases, mask, lesion = synthetic_case(0)
    flat = np.concatenate([phases[:2], np.repeat(phases[1:2], 3, axis=0)])
    fitter.add_case(flat, TIMES, 2, mask, lesion)
    model = fitter.fit()
    np.testing.assert_allclose(model.predict(flat[:2], TIMES[:2], TIMES[2:]), flat[2:], atol=1e-8)
    extreme = flat[:2] * 1e6
    assert np.isfinite(model.predict(extreme, TIMES[:2], [1e6])).all()


def test_kinetic_terms_in_coefficient_order():
    terms = kinetic_terms(np.array([3.0]), np.array([2.0]), 0.5, degree=1, time_degree=2)
    # u = 3, v = 2, tau = 0.5: (a, b, c, m) = (0,0,0,1),(0,1,0,1),(1,0,0,1),(0,0,0,2),(0,1,0,2),(1,0,0,2)
    assert exponents(1, 2) == ((0, 0, 0, 1), (0, 1, 0, 1), (1, 0, 0, 1), (0, 0, 0, 2), (0, 1, 0, 2), (1, 0, 0, 2))
    np.testing.assert_allclose([np.broadcast_to(t, (1,))[0] for t in terms], [0.5, 1, 1.5, 0.25, 0.5, 0.75])


def test_fit_round_trips_through_json_and_folder_lookup(tmp_path):
    fitter = RegressionFitter()
    phases, mask, lesion = synthetic_case(1)
    fitter.add_case(phases, TIMES, 2, mask, lesion)
    model = fitter.fit()
    for fold in (0, 1):
        (tmp_path / f"fold_{fold}").mkdir()
        (tmp_path / f"fold_{fold}" / "kinetic_regression.json").write_text(json.dumps(model.to_json()))
    ensemble = load_regression(tmp_path)
    assert len(ensemble.members) == 2
    np.testing.assert_allclose(ensemble.predict(phases[:2], TIMES[:2], TIMES[2:]),
                               model.predict(phases[:2], TIMES[:2], TIMES[2:]))
    assert KineticRegression.from_json(model.to_json()).degree == model.degree


def test_missing_or_broken_fit_names_the_file(tmp_path):
    with pytest.raises(RegressionFitError, match=str(tmp_path)):
        load_regression(tmp_path)
    bad = tmp_path / "kinetic_regression.json"
    bad.write_text('{"format": 2, "time_unit_s": 100.0, "degree": 3, "time_degree": 3, "coefficients": [1, 2], '
                   '"feature_low": [0, 0, 0], "feature_high": [1, 1, 1]}')
    with pytest.raises(RegressionFitError, match="kinetic_regression.json"):
        load_regression(bad)
    old = tmp_path / "old" / "kinetic_regression.json"  # format 1: one row per phase index
    old.parent.mkdir()
    old.write_text('{"degree": 1, "coefficients": [[1, 2, 3]], "feature_low": [0, 0], "feature_high": [1, 1]}')
    with pytest.raises(RegressionFitError, match="delete the file and refit"):
        load_regression(old)


def test_a_fold_fit_of_an_older_format_is_refitted(tmp_path, monkeypatch):
    import iterdce.regression.fit as module

    fitter = RegressionFitter()
    phases, mask, lesion = synthetic_case(1)
    fitter.add_case(phases, TIMES, 2, mask, lesion)
    model = fitter.fit()
    monkeypatch.setattr(module, "fit_fold_regression", lambda *args, **kwargs: model)
    path = tmp_path / "kinetic_regression.json"
    path.write_text('{"degree": 1, "coefficients": [[1, 2, 3]], "feature_low": [0, 0], "feature_high": [1, 1]}')
    assert ensure_fold_regression(tmp_path, tmp_path, ["a"], 2) is model
    assert json.loads(path.read_text())["format"] == 2
    path.write_text('{"format": 2, "time_unit_s": 100.0}')  # the current format, broken: an error, not a refit
    with pytest.raises(RegressionFitError):
        ensure_fold_regression(tmp_path, tmp_path, ["a"], 2)


def test_report_has_a_regression_row_and_a_verdict_line():
    fitter = RegressionFitter()
    phases, mask, lesion = synthetic_case(2)
    fitter.add_case(phases, TIMES, 2, mask, lesion)
    model = fitter.fit()
    copy = np.repeat(phases[1:2], 3, axis=0)
    evaluation = evaluate_case("c", copy, phases, TIMES, mask, lesion, regression=model)
    methods = {row["method"] for row in evaluation.phase_rows}
    assert methods == {"iterdce", "copy_last", "linear", "regression"}
    summary = summarize(pd.DataFrame(evaluation.phase_rows), pd.DataFrame(evaluation.lesion_rows),
                        Scoring("foreground", 1).describe())
    assert summary["verdict"].startswith("WARNING: iterdce does NOT clear the regression baseline")
