"""The slope feature is read after a Gaussian smoothing in millimetres (core/kinetic_terms.py): the numpy side
(regression, native-resolution prior) and the torch prior compute the same numbers on their grids, a fit file
and a checkpoint carry the smoothing, older ones keep none, and on noisy phases the smoothed slope predicts the
later phases better (the hypothesis the smoothing rests on)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from iterdce.core.checkpoint import CheckpointError, load_weights
from iterdce.core.kinetic_terms import SLOPE_DEGREE, SLOPE_SMOOTHING_MM, gaussian_weights, input_slope, smoothed
from iterdce.inference.composition import model_priors
from iterdce.network.config import ModelConfig
from iterdce.network.synthesizer import build_synthesizer
from iterdce.regression.fit import stored_fit_for
from iterdce.regression.model import KineticRegression, RegressionFitter

NETWORK = {"features_per_stage": [4, 8], "pool_per_stage": [[2, 2, 2]], "time_embedding_dim": 8,
           "time_scale_s": 400.0, "use_time_embedding": True, "use_convlstm": True, "kinetic_prior": True}
SPACING = (1.5, 1.5, 2.0)
TIMES = [0.0, 60.0, 120.0, 220.0, 320.0, 420.0]


def noisy_case(seed: int, noise: float, shape=(16, 16, 8)) -> tuple[np.ndarray, np.ndarray]:
    """(noisy phases, noiseless later phases): blocks of tissue whose curve direction is a smooth slope map;
    acquisition noise on every phase."""
    rng = np.random.default_rng(seed)
    blocks = [s // 4 for s in shape]
    coarse = lambda low, high: np.kron(rng.uniform(low, high, blocks), np.ones((4, 4, 4)))  # noqa: E731
    pre, u, s = coarse(-1.0, 1.0), coarse(0.5, 2.0), coarse(-1.0, 1.0)
    first = pre + u
    second = first + s * (TIMES[2] - TIMES[1]) / 100.0
    later = np.stack([second + 0.8 * s * (t - TIMES[2]) / 100.0 for t in TIMES[3:]])
    clean = np.concatenate([np.stack([pre, first, second]), later])
    return clean + rng.normal(0.0, noise, clean.shape), later


def fit(sigma_mm: float, noise: float = 0.0, spacing=SPACING) -> KineticRegression:
    fitter = RegressionFitter(slope_degree=SLOPE_DEGREE, slope_sigma_mm=sigma_mm)
    for seed in range(4):
        phases, _ = noisy_case(seed, noise)
        fitter.add_case(phases, TIMES, 3, np.ones(phases.shape[1:], bool), None, spacing)
    return fitter.fit()


def test_the_smoothing_is_scipys_gaussian_filter_in_millimetres():
    volume = np.random.default_rng(0).normal(size=(12, 10, 6))
    np.testing.assert_allclose(smoothed(volume, (1.0, 0.5, 0.0)),
                               gaussian_filter(volume, (1.0, 0.5, 0.0), mode="nearest"), atol=1e-12)
    assert gaussian_weights(0.0).tolist() == [1.0] and gaussian_weights(1.0).sum() == pytest.approx(1.0)
    phases = np.random.default_rng(1).normal(size=(3, 12, 10, 6))
    slope = input_slope(phases, TIMES[:3], 1.5, SPACING)
    raw = input_slope(phases, TIMES[:3])
    np.testing.assert_allclose(slope, gaussian_filter(raw, (1.0, 1.0, 0.75), mode="nearest"), atol=1e-12)
    with pytest.raises(ValueError, match="spacing"):
        input_slope(phases, TIMES[:3], 1.5, None)


def test_on_noisy_phases_the_smoothed_slope_predicts_the_later_phases_better():
    phases, later = noisy_case(9, noise=0.3)
    errors = {}
    for sigma in (0.0, SLOPE_SMOOTHING_MM):
        model = fit(sigma, noise=0.3)
        predicted = model.predict(phases[:3], TIMES[:3], TIMES[3:], SPACING)
        errors[sigma] = float(np.abs(predicted - later).mean())
    assert errors[SLOPE_SMOOTHING_MM] < 0.8 * errors[0.0]


@pytest.mark.parametrize("kind", ["iterative", "single_step"])
def test_torch_prior_and_native_prior_compute_the_smoothed_regression(kind):
    model_fit = fit(SLOPE_SMOOTHING_MM, noise=0.2)
    assert model_fit.slope_sigma_mm == SLOPE_SMOOTHING_MM
    model = build_synthesizer(ModelConfig.from_plan(kind, NETWORK, [0, 1, 2], 6))
    model.kinetic_prior.set_fit(model_fit.degree, model_fit.time_degree, model_fit.coefficients,
                                model_fit.feature_low, model_fit.feature_high, model_fit.slope_degree,
                                model_fit.slope_range, model_fit.slope_sigma_mm, SPACING)
    phases = noisy_case(5, 0.2)[0].astype(np.float32)
    want = model_fit.predict(phases[:3], TIMES[:3], TIMES[3:], SPACING)
    with torch.no_grad():
        out = model(torch.as_tensor(phases[None, :3]), torch.tensor([TIMES], dtype=torch.float32))
    np.testing.assert_allclose(out[0].numpy(), want, atol=2e-4)  # the final conv starts at zero
    (prior_fit,) = model_priors([model])
    assert prior_fit.slope_sigma_mm == SLOPE_SMOOTHING_MM
    np.testing.assert_allclose(prior_fit.estimate(phases[:3], TIMES[:3], TIMES[3:], SPACING), want, atol=2e-4)
    # on a grid twice as fine the same fit smooths over twice as many voxels
    fine = (0.75, 0.75, 1.0)
    np.testing.assert_allclose(prior_fit.estimate(phases[:3], TIMES[:3], TIMES[3:], fine),
                               model_fit.predict(phases[:3], TIMES[:3], TIMES[3:], fine), atol=2e-4)


def test_a_checkpoint_saved_before_the_smoothing_loads_without_it():
    model = build_synthesizer(ModelConfig.from_plan("iterative", NETWORK, [0, 1, 2], 6))
    old = fit(0.0)
    model.kinetic_prior.set_fit(old.degree, old.time_degree, old.coefficients, old.feature_low, old.feature_high,
                                old.slope_degree, old.slope_range)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(("slope_sigma_mm", "spacing_mm"))}
    again = build_synthesizer(ModelConfig.from_plan("iterative", NETWORK, [0, 1, 2], 6))
    again.load_state_dict(state)  # strict: the missing buffers are filled with "no smoothing"
    assert float(again.kinetic_prior.slope_sigma_mm) == 0.0
    phases = noisy_case(3, 0.2)[0].astype(np.float32)
    (prior_fit,) = model_priors([again])
    np.testing.assert_allclose(prior_fit.estimate(phases[:3], TIMES[:3], TIMES[3:]),
                               old.predict(phases[:3], TIMES[:3], TIMES[3:]), atol=2e-4)


@pytest.mark.parametrize("buffer, value", [("spacing_mm", [0.0, 1.5, 2.0]), ("slope_sigma_mm", float("nan"))])
def test_a_checkpoint_with_a_corrupt_smoothing_buffer_is_refused_naming_the_file(tmp_path, buffer, value):
    model = build_synthesizer(ModelConfig.from_plan("iterative", NETWORK, [0, 1, 2], 6))
    smooth = fit(SLOPE_SMOOTHING_MM)
    model.kinetic_prior.set_fit(smooth.degree, smooth.time_degree, smooth.coefficients, smooth.feature_low,
                                smooth.feature_high, smooth.slope_degree, smooth.slope_range, smooth.slope_sigma_mm,
                                SPACING)
    state = model.state_dict()
    state[f"kinetic_prior.{buffer}"] = torch.tensor(value, dtype=state[f"kinetic_prior.{buffer}"].dtype)
    path = tmp_path / "checkpoint_final.pth"
    again = build_synthesizer(ModelConfig.from_plan("iterative", NETWORK, [0, 1, 2], 6))
    with pytest.raises(CheckpointError, match=r"checkpoint_final\.pth: .*the file was altered"):
        load_weights(again, {"network_state": state}, path)


def test_a_fit_file_keeps_its_smoothing_and_an_unsmoothed_one_is_refitted(tmp_path):
    smooth = fit(SLOPE_SMOOTHING_MM)
    again = KineticRegression.from_json(json.loads(json.dumps(smooth.to_json())))
    assert again.slope_sigma_mm == SLOPE_SMOOTHING_MM
    path = tmp_path / "kinetic_regression.json"
    path.write_text(json.dumps(smooth.to_json()))
    assert stored_fit_for(path, 3) is not None
    unsmoothed = fit(0.0).to_json()
    unsmoothed.pop("slope_sigma_mm")  # as written before the smoothing existed
    path.write_text(json.dumps(unsmoothed))
    assert KineticRegression.from_json(unsmoothed).slope_sigma_mm == 0.0
    assert stored_fit_for(path, 3) is None  # derived data: refitted with the current smoothing
    with pytest.raises(ValueError, match="slope_sigma_mm"):
        KineticRegression.from_json({**smooth.to_json(), "slope_sigma_mm": -1.0})
