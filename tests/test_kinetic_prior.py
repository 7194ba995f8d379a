"""The kinetic prior: the torch module computes what the fitted regression computes, a synthesizer with a prior
starts exactly from it, the fit travels in the checkpoint, and an unfitted prior is refused at load time."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from iterdce.core.errors import IterdceError
from iterdce.inference.model_loading import load_fold_models
from iterdce.network.config import ModelConfig
from iterdce.network.kinetic_prior import KineticPrior
from iterdce.network.synthesizer import build_synthesizer
from iterdce.preprocessing.plans_io import migrate_plans
from iterdce.regression.model import REGRESSION_FILE, RegressionFitter
from tests.test_regression_baseline import jittered_times, synthetic_case

NETWORK = {"features_per_stage": [4, 8], "pool_per_stage": [[2, 2, 2]], "time_embedding_dim": 8,
           "time_scale_s": 400.0, "use_time_embedding": True, "use_convlstm": True}


def fitted_regression():
    fitter = RegressionFitter()
    for seed in range(3):
        times = jittered_times(seed)
        phases, mask, lesion = synthetic_case(seed, shape=(8, 8, 4), times=times)
        fitter.add_case(phases, times, 2, mask, lesion)
    return fitter.fit()


def set_prior(prior: KineticPrior, fit) -> None:
    prior.set_fit(fit.degree, fit.time_degree, fit.coefficients, fit.feature_low, fit.feature_high)


def test_torch_prior_matches_the_numpy_regression():
    fit = fitted_regression()
    times = jittered_times(5)
    phases, _, _ = synthetic_case(5, shape=(8, 8, 4), times=times)
    prior = KineticPrior()
    set_prior(prior, fit)
    pre = torch.as_tensor(phases[None, :1], dtype=torch.float32)
    early = torch.as_tensor(phases[None, 1:2], dtype=torch.float32)
    for target in times[2:]:
        got = prior(pre, early, torch.tensor([times[1]]), torch.tensor([target]))[0, 0].numpy()
        want = fit.predict(phases[:2], times[:2], [target])[0]
        np.testing.assert_allclose(got, want, atol=2e-4)


@pytest.mark.parametrize("kind", ["iterative", "single_step"])
def test_an_untrained_synthesizer_with_a_prior_predicts_the_prior(kind):
    fit = fitted_regression()
    config = ModelConfig.from_plan(kind, {**NETWORK, "kinetic_prior": True}, [0, 1], 5)
    assert config.network.in_channels == 3 and config.kinetic_prior
    model = build_synthesizer(config)
    set_prior(model.kinetic_prior, fit)
    times = jittered_times(4)
    phases, _, _ = synthetic_case(4, shape=(8, 8, 4), times=times)
    inputs = torch.as_tensor(phases[None, :2], dtype=torch.float32)
    with torch.no_grad():
        out = model(inputs, torch.tensor([times], dtype=torch.float32))
    want = fit.predict(phases[:2], times[:2], times[2:])
    np.testing.assert_allclose(out[0].numpy(), want, atol=2e-4)  # the final conv starts at zero


def test_the_fit_travels_in_the_checkpoint_and_an_unfitted_prior_is_refused(tmp_path):
    fit = fitted_regression()
    config = ModelConfig.from_plan("iterative", {**NETWORK, "kinetic_prior": True}, [0, 1], 5)
    model = build_synthesizer(config)
    folder = tmp_path / "fold_0"
    folder.mkdir()
    torch.save({"model_config": config.to_dict(), "network_state": model.state_dict()}, folder / "checkpoint_final.pth")
    with pytest.raises(IterdceError, match="kinetic prior was never fitted"):
        load_fold_models(tmp_path, [0])
    set_prior(model.kinetic_prior, fit)
    torch.save({"model_config": config.to_dict(), "network_state": model.state_dict()}, folder / "checkpoint_final.pth")
    loaded = load_fold_models(tmp_path, [0])[0][0]
    assert torch.equal(loaded.kinetic_prior.coefficients, torch.as_tensor(fit.coefficients, dtype=torch.float32))


def test_a_prior_of_other_terms_is_refused():
    with pytest.raises(ValueError, match="degree"):
        KineticPrior().set_fit(2, 3, [0.0] * 18, [0, 0, 0], [1, 1, 1])


def test_version_2_plans_migrate_without_a_prior():
    raw = {"version": 2, "network": dict(NETWORK)}
    migrated = migrate_plans(raw)
    assert migrated["version"] == 4 and migrated["network"]["kinetic_prior"] is False
    assert "kinetic_prior" not in raw["network"]  # a copy


def test_training_with_a_kinetic_prior_fits_it_on_the_fold_and_the_recursive_stage_keeps_it(preprocessed_root,
                                                                                             tmp_path):
    from iterdce.core.checkpoint import load_checkpoint
    from iterdce.training.trainer_recursive import RecursiveTrainer, WarmupTrainer
    from tests.helpers import make_setup

    def with_prior(plans):
        plans["network"]["kinetic_prior"] = True

    setup = make_setup(preprocessed_root, tmp_path, with_prior)
    warm = WarmupTrainer(setup)
    warm.run()
    assert (warm.output / REGRESSION_FILE).is_file()
    assert any("kinetic prior" in note for note in warm.log.notes)
    state = load_checkpoint(warm.output / "checkpoint_final.pth")["network_state"]
    assert int(state["kinetic_prior.fitted"]) == 1 and state["kinetic_prior.coefficients"].abs().sum() > 0
    recursive = RecursiveTrainer(setup)
    recursive.initial_weights()
    assert torch.equal(recursive.model.kinetic_prior.coefficients.cpu(), state["kinetic_prior.coefficients"])
    # the fit file follows the weights, so the fold validation of the final model finds it instead of refitting
    assert (recursive.output / REGRESSION_FILE).read_bytes() == (warm.output / REGRESSION_FILE).read_bytes()
