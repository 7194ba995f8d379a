"""Three or more inputs: the kinetic model reads the slope between the last two inputs (core/kinetic_terms.py).
The regression recovers kinetics that depend on it, the torch prior and the native-resolution composition compute
the same numbers, an untrained synthesizer starts from it, and two-input fits keep exactly their former terms."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from iterdce.core.kinetic_terms import SLOPE_DEGREE, SLOPE_SMOOTHING_MM, exponents, n_terms, slope_degree_for
from iterdce.inference.composition import model_priors
from iterdce.network.config import ModelConfig
from iterdce.network.synthesizer import build_synthesizer
from iterdce.regression.fit import ensure_fold_regression
from iterdce.regression.model import KineticRegression, RegressionFitter

NETWORK = {"features_per_stage": [4, 8], "pool_per_stage": [[2, 2, 2]], "time_embedding_dim": 8,
           "time_scale_s": 400.0, "use_time_embedding": True, "use_convlstm": True}


def protocol(seed: int) -> list[float]:
    """Pre-contrast, two early phases 40-80 s apart, three later phases."""
    gaps = np.random.default_rng(200 + seed).uniform(40, 80, 5)
    return [0.0, *np.cumsum(gaps).tolist()]


def three_input_case(seed: int, shape=(8, 8, 4)) -> np.ndarray:
    """Phases whose later change is a polynomial of (u, v, s, tau) in the model's terms: the same early
    enhancement may keep rising or wash out, as the slope between the two early phases says."""
    times = protocol(seed)
    rng = np.random.default_rng(seed)
    pre = rng.uniform(-1.0, 1.0, shape)
    first = pre + rng.uniform(0.0, 2.0, shape)
    s = rng.uniform(-1.0, 1.0, shape)  # change per 100 s
    second = first + s * (times[2] - times[1]) / 100.0
    u = second - pre
    taus = [(t - times[2]) / 100.0 for t in times[3:]]
    later = [second + (0.6 * s - 0.1 * u) * tau - 0.2 * s * u * tau**2 + 0.05 * s**2 * tau**3 for tau in taus]
    return np.stack([pre, first, second, *later])


def fitted(slope_degree: int, sigma_mm: float = 0.0) -> KineticRegression:
    fitter = RegressionFitter(slope_degree=slope_degree, slope_sigma_mm=sigma_mm)
    for seed in range(3):
        phases = three_input_case(seed)
        fitter.add_case(phases, protocol(seed), 3, np.ones(phases.shape[1:], bool), None, (1.0, 1.0, 1.0))
    return fitter.fit()


def test_the_slope_terms_extend_the_two_input_terms_in_their_order():
    assert slope_degree_for(2) == 0 and slope_degree_for(3) == slope_degree_for(5) == SLOPE_DEGREE
    with_slope = exponents(slope_degree=SLOPE_DEGREE)
    assert [e for e in with_slope if e[2] == 0] == list(exponents())
    assert n_terms() == 30 and n_terms(slope_degree=SLOPE_DEGREE) == 57
    assert all(a + b + c <= 3 for a, b, c, _ in with_slope)


def test_the_regression_reads_the_curve_direction_from_the_slope():
    model, blind = fitted(SLOPE_DEGREE), fitted(0)
    phases, times = three_input_case(9), protocol(9)
    inside = ((phases[2] - phases[0] > model.feature_low[0]) & (phases[2] - phases[0] < model.feature_high[0]))
    assert times[-1] - times[2] <= 100 * model.feature_high[2]  # the targets lie in the fitted time range
    truth = phases[3:]
    predicted = model.predict(phases[:3], times[:3], times[3:])
    np.testing.assert_allclose(predicted[:, inside], truth[:, inside], atol=2e-2)
    error_blind = np.abs(blind.predict(phases[:3], times[:3], times[3:]) - truth)[:, inside].mean()
    assert error_blind > 10 * np.abs(predicted - truth)[:, inside].mean()
    again = KineticRegression.from_json(json.loads(json.dumps(model.to_json())))
    assert again.slope_degree == SLOPE_DEGREE and again.slope_range == model.slope_range
    with pytest.raises(ValueError, match=">= 3 inputs"):
        model.predict(phases[:2], times[:2], times[3:])


def test_a_two_input_fit_file_has_no_slope_fields():
    payload = fitted(0).to_json()
    assert "slope_degree" not in payload and len(payload["coefficients"]) == 30


@pytest.mark.parametrize("kind", ["iterative", "single_step"])
def test_prior_composition_and_untrained_synthesizer_all_compute_the_regression(kind):
    fit = fitted(SLOPE_DEGREE)
    config = ModelConfig.from_plan(kind, {**NETWORK, "kinetic_prior": True}, [0, 1, 2], 6)
    model = build_synthesizer(config)
    model.kinetic_prior.set_fit(fit.degree, fit.time_degree, fit.coefficients, fit.feature_low, fit.feature_high,
                                fit.slope_degree, fit.slope_range)
    phases, times = three_input_case(5).astype(np.float32), protocol(5)
    want = fit.predict(phases[:3], times[:3], times[3:])
    with torch.no_grad():
        out = model(torch.as_tensor(phases[None, :3]), torch.tensor([times], dtype=torch.float32))
    np.testing.assert_allclose(out[0].numpy(), want, atol=2e-4)  # the final conv starts at zero
    (prior_fit,) = model_priors([model])
    np.testing.assert_allclose(prior_fit.estimate(phases[:3], times[:3], times[3:]), want, atol=2e-4)


def test_a_stored_fit_without_slope_terms_is_refitted_for_three_inputs(tmp_path, monkeypatch):
    import iterdce.regression.fit as module

    new = fitted(SLOPE_DEGREE, SLOPE_SMOOTHING_MM)
    monkeypatch.setattr(module, "fit_fold_regression", lambda *args, **kwargs: new)
    path = tmp_path / "kinetic_regression.json"
    path.write_text(json.dumps(fitted(0).to_json()))
    assert ensure_fold_regression(tmp_path, tmp_path, ["a"], 3) is new
    assert json.loads(path.read_text())["slope_degree"] == SLOPE_DEGREE
    assert ensure_fold_regression(tmp_path, tmp_path, ["a"], 3).slope_degree == SLOPE_DEGREE  # kept now
