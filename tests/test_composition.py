"""Composition at native resolution (inference/composition.py): a zero predicted change returns the base bit for
bit, an untrained model with a kinetic prior reproduces the regression on the case's own grid (not only on the
plan's), ``plan`` is the former export, and the change is what the network adds on the plan grid."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.common import hand_made_properties
from iterdce.core.checkpoint import save_checkpoint
from iterdce.core.errors import UsageError
from iterdce.core.kinetic_terms import DEGREE, TIME_DEGREE, n_terms
from iterdce.dataset.layout import CaseFiles
from iterdce.dataset.nifti_io import Geometry, read_image
from iterdce.inference.case_pipeline import preprocess_input
from iterdce.inference.composition import (
    OOD_FULL,
    OOD_START,
    Composition,
    PriorFit,
    change_kept,
    native_phases,
    outside_fraction,
    resolve_composition,
)
from iterdce.inference.inputs import load_input_case
from iterdce.network.config import ModelConfig
from iterdce.network.synthesizer import build_synthesizer
from iterdce.preprocessing.normalization import TINormStats, apply_ti_norm, undo_ti_norm
from iterdce.preprocessing.orientation import reorient
from iterdce.preprocessing.plans_io import save_plans
from iterdce.preprocessing.preprocessor import restore_phases
from iterdce.preprocessing.resampling import resample_phases
from iterdce.regression.model import KineticRegression
from tests.test_predictor import (
    NETWORK,
    TIMES,
    base_plans,  # noqa: F401 (a fixture)
    make_model,
    oblique_affine,
    predictor_for,
    smooth_phases,
    write_case,
    write_model_folder,
)

FINE_PLAN_SPACING = [1.6, 1.7, 3.0]  # coarser than the case: the plan grid loses detail


def textured_phases(shape, seed: int) -> np.ndarray:
    """Smooth phases plus voxel-scale texture (the detail a coarse plan grid cannot carry)."""
    phases = smooth_phases(shape, seed)
    texture = np.random.default_rng(seed + 100).normal(0.0, 8.0, shape).astype(np.float32)
    phases[:, 1:] += texture[None, 1:] * np.array([1.0, 1.3], np.float32)[:, None, None, None]
    return phases


def prior_fit(seed: int = 0) -> PriorFit:
    rng = np.random.default_rng(seed)
    coefficients = tuple(float(c) for c in rng.normal(0.0, 0.05, n_terms()))
    return PriorFit(coefficients, (-6.0, -6.0, 0.1), (6.0, 6.0, 4.0))


def prior_model_folder(tmp_path, plans: dict, fit: PriorFit):
    """An untrained synthesizer with a fitted kinetic prior (its final conv is zero: it predicts the prior)."""
    network = {**{k: v for k, v in NETWORK.items() if k != "in_channels"}, "kinetic_prior": True}
    config = ModelConfig.from_plan("iterative", network, [0, 1], len(TIMES))
    model = build_synthesizer(config)
    model.kinetic_prior.set_fit(DEGREE, TIME_DEGREE, fit.coefficients, fit.low, fit.high)
    folder = tmp_path / "results" / "Dataset001_Phantom" / "RecursiveTrainer__plans"
    save_plans({**plans, "network": {**plans["network"], "kinetic_prior": True}}, folder / "plans.json")
    save_checkpoint(folder / "fold_0" / "checkpoint_final.pth",
                    {"network_state": model.state_dict(), "model_config": config.to_dict(), "epoch": 1})
    return folder


def test_a_zero_change_returns_the_native_last_input_bit_for_bit(tmp_path, base_plans):  # noqa: F811
    shape, affine = (24, 22, 10), oblique_affine()
    folder = write_model_folder(tmp_path / "results", {**base_plans, "spacing": FINE_PLAN_SPACING}, {0: make_model()})
    phases = textured_phases(shape, seed=3)
    write_case(tmp_path / "in", "case_z", phases, Geometry(shape, affine))
    predictor = predictor_for(folder, precision="fp32")
    assert predictor.composition.mode == "last"  # auto, no kinetic prior
    predictor.predict_folder(tmp_path / "in", tmp_path / "out")
    for phase in (2, 3, 4, 5):
        data, _ = read_image(tmp_path / "out" / f"case_z_{phase:04d}.nii.gz")
        np.testing.assert_array_equal(data, phases[1])  # the identity network adds nothing: the base itself


def test_the_former_export_resamples_the_whole_image_and_loses_the_texture(tmp_path, base_plans):  # noqa: F811
    shape, affine = (24, 22, 10), oblique_affine()
    folder = write_model_folder(tmp_path / "results", {**base_plans, "spacing": FINE_PLAN_SPACING}, {0: make_model()})
    phases = textured_phases(shape, seed=4)
    write_case(tmp_path / "in", "case_p", phases, Geometry(shape, affine))
    predictor = predictor_for(folder, precision="fp32", compose="plan")
    predictor.predict_folder(tmp_path / "in", tmp_path / "out")
    data, _ = read_image(tmp_path / "out" / "case_p_0002.nii.gz")
    files = CaseFiles("case_p", {p: tmp_path / "in" / f"case_p_{p:04d}.nii.gz" for p in (0, 1)})
    case = load_input_case(files, [0, 1], np.asarray(TIMES))
    pre = preprocess_input(case, predictor.plans)
    np.testing.assert_allclose(data, restore_phases(pre.data[1:2], pre.properties)[0], atol=1e-3)
    assert float(np.abs(data - phases[1])[2:-1].mean()) > 2.0  # the texture is gone


def test_an_untrained_model_with_a_prior_reproduces_the_regression_at_native_resolution(tmp_path,
                                                                                     base_plans):  # noqa: F811
    shape, affine = (24, 22, 10), oblique_affine()
    fit = prior_fit()
    folder = prior_model_folder(tmp_path, {**base_plans, "spacing": FINE_PLAN_SPACING}, fit)
    phases = textured_phases(shape, seed=5)
    write_case(tmp_path / "in", "case_k", phases, Geometry(shape, affine))
    predictor = predictor_for(folder, precision="fp32")
    assert predictor.composition.mode == "prior"
    predictor.predict_folder(tmp_path / "in", tmp_path / "out")
    files = CaseFiles("case_k", {p: tmp_path / "in" / f"case_k_{p:04d}.nii.gz" for p in (0, 1)})
    stats = preprocess_input(load_input_case(files, [0, 1], np.asarray(TIMES)), predictor.plans).properties.ti_norm
    regression = KineticRegression(DEGREE, TIME_DEGREE, np.asarray(fit.coefficients), fit.low, fit.high)
    normalized = (phases - stats.mean) / stats.std
    want = regression.predict(normalized, TIMES[:2], TIMES[2:]) * stats.std + stats.mean
    inside = np.any(phases != 0, axis=0)  # the crop box: outside it every input is 0 and so is the output
    scale = float(np.ptp(phases[1]))
    for index, phase in enumerate((2, 3, 4, 5)):
        data, _ = read_image(tmp_path / "out" / f"case_k_{phase:04d}.nii.gz")
        assert float(np.abs(data - want[index])[inside].max()) <= 1e-4 * scale
        assert float(np.abs(want[index] - phases[1]).max()) > 0.01 * scale  # the prior really changes the phase


def test_native_phases_adds_the_plan_grid_change_to_the_base():
    """By hand: a change of +2 (normalized) everywhere on the plan grid is +2 std on every native voxel."""
    rng = np.random.default_rng(0)
    native = rng.normal(100.0, 10.0, (2, 12, 10, 6)).astype(np.float32)
    properties = hand_made_properties("k", (12, 10, 6), TIMES[:4], target_spacing=(2.0, 2.0, 2.0),
                                      resampled_shape=(6, 5, 3), ti_norm=(100.0, 10.0))
    plan_inputs = resample_phases((native - 100.0) / 10.0, [1.0, 1.0, 1.0], (6, 5, 3))
    synthesized = plan_inputs[-1:] + 2.0
    out = native_phases(np.repeat(synthesized, 3, axis=0), plan_inputs, native, [0, 60, 120, 180, 240], properties,
                        Composition("last"))
    np.testing.assert_allclose(out, np.repeat(native[-1:] + 20.0, 3, axis=0), atol=1e-3)


def test_compose_choices_are_checked():
    assert resolve_composition("auto", ()).mode == "last"
    assert resolve_composition("auto", (prior_fit(),)).mode == "prior"
    assert resolve_composition("last", (prior_fit(),)).mode == "last"
    with pytest.raises(UsageError, match="--compose prior needs a model trained with a kinetic prior"):
        resolve_composition("prior", ())
    with pytest.raises(UsageError, match="choose one of"):
        resolve_composition("sharp", ())


def test_the_fold_ensemble_base_is_the_mean_of_the_folds_priors():
    fits = (prior_fit(1), prior_fit(2))
    inputs = np.random.default_rng(1).normal(0.0, 1.0, (2, 5, 4, 3)).astype(np.float32)
    times = [0.0, 80.0, 160.0, 240.0]
    both = Composition("prior", fits).base(inputs, times)
    single = [Composition("prior", (fit,)).base(inputs, times) for fit in fits]
    np.testing.assert_allclose(both, (single[0] + single[1]) / 2, atol=1e-6)
    assert both.dtype == np.float32


def test_the_guard_measures_the_body_outside_the_trained_range_and_keeps_less_of_the_change():
    inputs = np.zeros((2, 10, 10, 4), np.float32)
    inputs[1, :3] = 9.0  # early enhancement 9 in 30 % of the voxels, above the range (-6, 6)
    mask = np.ones((10, 10, 4), bool)
    assert outside_fraction(inputs, mask, (prior_fit(),)) == pytest.approx(0.3)
    assert outside_fraction(inputs, mask, ()) is None  # no prior: nothing records the trained range
    mask[:3] = False
    assert outside_fraction(inputs, mask, (prior_fit(),)) == 0.0
    assert change_kept(None) == 1.0 and change_kept(OOD_START) == 1.0 and change_kept(OOD_FULL) == 0.0
    assert change_kept((OOD_START + OOD_FULL) / 2) == pytest.approx(0.5) and change_kept(0.5) == 0.0


def test_with_the_guard_a_case_outside_the_trained_range_becomes_its_last_input(tmp_path, base_plans):  # noqa: F811
    shape, affine = (24, 22, 10), oblique_affine()
    narrow = PriorFit(prior_fit().coefficients, (-3.0, -3.0, 0.1), (-2.0, 3.0, 4.0))  # no enhancement seen
    folder = prior_model_folder(tmp_path, {**base_plans, "spacing": FINE_PLAN_SPACING}, narrow)
    phases = textured_phases(shape, seed=6)
    write_case(tmp_path / "in", "case_o", phases, Geometry(shape, affine))
    with pytest.warns(UserWarning, match=r"their phases were moved towards the last input phase: case_o"):
        predictor_for(folder, precision="fp32", ood_guard=True).predict_folder(tmp_path / "in", tmp_path / "out")
    for phase in (2, 5):
        np.testing.assert_array_equal(read_image(tmp_path / "out" / f"case_o_{phase:04d}.nii.gz")[0], phases[1])
    record = json.loads((tmp_path / "out" / "case_o.json").read_text())
    assert record["change_kept"] == 0.0 and record["outside_trained_range"] > OOD_FULL
    # by default: named by the out-of-distribution check, kept
    with pytest.warns(UserWarning, match=r"case_o: score \S+: body outside the prior's range \d+\.\d %"):
        predictor_for(folder, precision="fp32").predict_folder(tmp_path / "in", tmp_path / "free")
    free = read_image(tmp_path / "free" / "case_o_0005.nii.gz")[0]
    assert float(np.abs(free - phases[1]).max()) > 1.0  # without the guard the prior's change stays
    assert json.loads((tmp_path / "free" / "case_o.json").read_text())["change_kept"] == 1.0


@pytest.mark.parametrize("mode", ["prior", "last"])
def test_a_zero_change_returns_either_base_bit_for_bit(mode):
    rng = np.random.default_rng(2)
    native = rng.normal(100.0, 10.0, (2, 12, 10, 6)).astype(np.float32)
    transform = np.array([[1, -1], [0, 1], [2, 1]])  # axes 0 and 1 swapped, one flipped: canonical 10 x 12 x 6
    properties = hand_made_properties("k", (10, 12, 6), TIMES[:4], transform.tolist(), (2.0, 2.0, 2.0), (5, 6, 3),
                                      (100.0, 10.0))
    composition = Composition(mode, (prior_fit(3),))
    times = [0, 60, 120, 180]
    canonical = reorient(native, transform)
    plan_inputs = resample_phases((canonical - 100.0) / 10.0, [1.0, 1.0, 1.0], (5, 6, 3))
    out = native_phases(composition.base(plan_inputs, times).copy(), plan_inputs, native, times, properties,
                        composition)
    if mode == "last":
        np.testing.assert_array_equal(out, np.repeat(native[-1:], 2, axis=0))
    else:
        stats = TINormStats(100.0, 10.0, 1)
        want = undo_ti_norm(composition.base(apply_ti_norm(native, stats), times), stats)
        np.testing.assert_array_equal(out, want)  # voxel-wise: the orientation does not change the values
