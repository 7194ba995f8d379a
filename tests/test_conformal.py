"""Tests of the conformal uncertainty: the split-conformal quantile's finite-sample coverage, the predictive
distribution, the calibration file, the scores of a case, curve-type probabilities, ``iterdce_calibrate``'s
function and ``iterdce_predict --uncertainty`` end to end on a tiny model (fixtures: tests/test_predictor.py)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from iterdce.commands.predict import main as predict_main
from iterdce.core.file_names import CONFORMAL_CALIBRATION
from iterdce.dataset.nifti_io import Geometry, read_image, write_image
from iterdce.inference.conformal import (
    DEFAULT_DIFFICULTY,
    DIFFICULTIES,
    EPSILON,
    CalibrationError,
    ConformalCalibration,
    case_scores,
    conformal_quantile,
    load_calibration,
    predictive_cdf,
    signed_scores,
    time_bin,
    time_bin_edges,
    voxel_cdf,
)
from iterdce.inference.uncertainty import type_probabilities
from iterdce.workflow.calibration import calibrate, folder_jobs
from tests.helpers import make_raw_dataset, synthetic_case
from tests.test_predictor import (
    TIMES,
    base_plans,
    make_model,
    oblique_affine,
    predictor_for,
    write_case,
    write_model_folder,
)

__all__ = ["base_plans"]

torch.set_num_threads(1)


def test_split_conformal_interval_covers_at_the_nominal_rate():
    """Exchangeable calibration and test scores: coverage in [c, c + 1/(n+1)] in expectation (Lei et al. 2018);
    2000 trials put the empirical rate within 0.02 of that band."""
    rng = np.random.default_rng(7)
    n, coverage, trials = 30, 0.9, 2000
    hits = 0
    for _ in range(trials):
        scores = rng.standard_t(3, size=n + 1)
        hits += abs(scores[-1]) <= conformal_quantile(scores[:n], coverage)
    rate = hits / trials
    assert coverage - 0.02 <= rate <= coverage + 1 / (n + 1) + 0.02, rate


def test_quantile_is_infinite_when_too_few_scores():
    assert conformal_quantile([0.1, 0.2, 0.3], 0.9) == float("inf")
    # ceil((n+1) c) <= n needs n >= 9 at 0.9; crepes computes (1 - 0.9) * 10 = 0.99999... and asks for 10
    assert conformal_quantile(np.arange(10.0), 0.9) == 9.0
    with pytest.raises(ValueError):
        conformal_quantile([1.0], 1.0)


def test_voxel_cdf_is_crepes_predictive_distribution():
    rng = np.random.default_rng(1)
    scores = np.sort(rng.standard_normal(40))
    z = np.concatenate([rng.standard_normal(20), scores[:5], [-10.0, 10.0]])
    np.testing.assert_allclose(voxel_cdf(scores, z), predictive_cdf(scores, z))


def test_time_bins_cover_the_trained_range():
    edges = time_bin_edges((155.0, 365.0))
    assert len(edges) == 2
    assert [time_bin(t, edges) for t in (100.0, 155.0, 225.0, 260.0, 365.0, 900.0)] == [0, 0, 0, 1, 2, 2]


def test_signed_scores_are_normalized_by_the_predicted_change():
    real, predicted, last = np.array([12.0, 10.0]), np.array([10.0, 10.0]), np.array([10.0, 0.0])
    # std 10: s = 0.1 + |yhat - last| / 10 -> 0.1 and 1.1; score = (y - yhat) / (10 s)
    np.testing.assert_allclose(signed_scores(real, predicted, last, 10.0), [2.0, 0.0])


def calibration(body=(), lesion=(), edges=(250.0,)) -> ConformalCalibration:
    return ConformalCalibration(1, "s", 0.1, edges, tuple(tuple(b) for b in body), tuple(tuple(b) for b in lesion),
                                ("a", "b"), "test", 0, 10)


def test_calibration_file_round_trip_and_refusals(tmp_path):
    stored = calibration([[-1.0, 0.5], [0.25]], [[0.0], []])
    stored.save(tmp_path)
    assert load_calibration(tmp_path) == stored
    with pytest.raises(CalibrationError, match="iterdce_calibrate"):
        load_calibration(tmp_path / "elsewhere")
    payload = json.loads((tmp_path / CONFORMAL_CALIBRATION).read_text())
    del payload["seed"]
    (tmp_path / CONFORMAL_CALIBRATION).write_text(json.dumps(payload))
    with pytest.raises(CalibrationError, match="missing key seed"):
        load_calibration(tmp_path)


def test_type_probabilities_sum_to_one_and_follow_the_prediction():
    scores = np.random.default_rng(3).standard_normal(200)
    by_late = [type_probabilities(scores, late, early=100.0, scale=5.0) for late in (80.0, 100.0, 120.0)]
    for p in by_late:
        assert p is not None and min(p.values()) >= 0 and abs(sum(p.values()) - 1) < 1e-12
    assert by_late[0]["washout"] > 0.9 and by_late[2]["persistent"] > 0.9 and by_late[1]["plateau"] > 0.9
    assert type_probabilities(scores, 100.0, early=0.0, scale=5.0) is None


def test_case_scores_sample_the_body_and_score_each_lesion():
    rng = np.random.default_rng(0)
    shape = (6, 6, 4)
    real = rng.random((3, *shape)) + 1
    predicted, last = real + 0.1, np.ones(shape)
    body = np.zeros(shape, bool)
    body[1:5, 1:5] = True
    lesion = np.zeros(shape, np.int16)
    lesion[2, 2, :2], lesion[3, 3, :2] = 1, 2
    edges = (200.0,)
    voxels, lesions = case_scores(real, predicted, last, 1.0, body, lesion, [155.0, 225.0, 295.0], edges,
                                  np.random.default_rng(5), n_voxels=10)
    assert [len(v) for v in voxels] == [10, 20] and [len(v) for v in lesions] == [2, 4]
    assert all(v < 0 for family in (voxels, lesions) for b in family for v in b)  # predicted above the truth
    again = case_scores(real, predicted, last, 1.0, body, lesion, [155.0, 225.0, 295.0], edges,
                        np.random.default_rng(5), n_voxels=10)
    assert again == (voxels, lesions)


# ------------------------------------------------------------------------------------------ end to end

def write_inputs(tmp_path):
    cases = {"case_a": ((20, 18, 9), oblique_affine()), "case_b": ((18, 16, 8), np.diag([0.8, 0.8, 2.0, 1]))}
    for index, (case_id, (shape, affine)) in enumerate(cases.items()):
        image, lesion, _ = synthetic_case(shape, TIMES[:2], seed=index)
        write_case(tmp_path / "in", case_id, image, Geometry(shape, affine))
        write_image(tmp_path / "lesions" / f"{case_id}.nii.gz", lesion.astype(np.float32), Geometry(shape, affine))
    return cases


def test_uncertainty_is_refused_without_calibration(tmp_path, base_plans, capsys):
    results = tmp_path / "results"
    write_model_folder(results, base_plans, {0: make_model(seed=20)})
    write_inputs(tmp_path)
    argv = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-d", "1", "-f", "0", "--device", "cpu",
            "--quiet", "--uncertainty", "--results", str(results)]
    assert predict_main(argv) != 0
    assert "iterdce_calibrate" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*.nii.gz"))


def test_predict_with_uncertainty_writes_intervals_kinetics_and_confidence(tmp_path, base_plans, capsys):
    results = tmp_path / "results"
    folder = write_model_folder(results, base_plans, {0: make_model(seed=20)})
    rng = np.random.default_rng(2)
    calibration([rng.standard_normal(50), rng.standard_normal(50)], [rng.standard_normal(30)] * 2).save(folder)
    cases = write_inputs(tmp_path)
    argv = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-d", "1", "-f", "0", "--device", "cpu",
            "--quiet", "--uncertainty", "--coverage", "0.8", "--lesion-masks", str(tmp_path / "lesions"),
            "--save-kinetic-map", "--results", str(results)]
    with warnings.catch_warnings():
        assert predict_main(argv) == 0, capsys.readouterr().err
    out = tmp_path / "out"
    for case_id, (shape, affine) in cases.items():
        for phase in (2, 3, 4, 5):
            predicted = read_image(out / f"{case_id}_{phase:04d}.nii.gz")[0]
            lower, geometry = read_image(out / f"{case_id}_{phase:04d}_lower.nii.gz")
            upper = read_image(out / f"{case_id}_{phase:04d}_upper.nii.gz")[0]
            assert lower.shape == shape and lower.dtype == np.float32
            np.testing.assert_allclose(geometry.affine, affine, atol=1e-5)
            assert (lower <= predicted).all() and (predicted <= upper).all() and (upper > lower).any()
        kinetics = json.loads((out / f"{case_id}_kinetics.json").read_text())
        assert kinetics["coverage"] == 0.8 and kinetics["lesions"]
        for entry in kinetics["lesions"]:
            assert len(entry["curve"]) == 6 and len(entry["lower"]) == len(entry["upper"]) == 4
            assert all(lo <= c <= up for lo, c, up in zip(entry["lower"], entry["curve"][2:], entry["upper"]))
            assert abs(sum(entry["probabilities"].values()) - 1) < 1e-9
        confidence = read_image(out / f"{case_id}_kinetics_confidence.nii.gz")[0]
        codes = read_image(out / f"{case_id}_kinetics.nii.gz", dtype=np.uint8)[0]
        assert confidence.shape == shape and (confidence >= 0).all() and (confidence <= 1).all()
        assert (confidence[codes == 0] == 0).all()
    # a second run finds every output done (intervals included) and predicts nothing
    with warnings.catch_warnings():
        assert predict_main(argv) == 0
    assert "predicted 0 case(s)" in capsys.readouterr().out


def test_calibrate_on_held_back_cases_writes_the_model_folders_calibration(tmp_path, base_plans):
    folder = write_model_folder(tmp_path / "results", base_plans, {0: make_model(seed=20)})
    raw = make_raw_dataset(tmp_path / "raw", n_cases=2, shape=(16, 16, 8), n_phases=6)
    stored = calibrate(folder, folder_jobs(raw, [0]), "held-back test cases",
                       predictor_for(folder).settings, n_voxels=20)
    assert load_calibration(folder) == stored
    assert stored.cases == ("case_000", "case_001") and len(stored.time_bin_edges_s) == 2
    assert sum(len(b) for b in stored.body_scores) == 2 * 4 * 20
    assert sum(len(b) for b in stored.lesion_scores) >= 2 * 4  # at least one lesion per case and phase


def test_the_plain_difficulty_scores_residuals_over_the_cases_std():
    epsilon, weight = DIFFICULTIES["none"]
    real, predicted, last = np.array([3.0, 5.0]), np.array([1.0, 1.0]), np.array([1.0, -9.0])
    np.testing.assert_allclose(signed_scores(real, predicted, last, 2.0, epsilon, weight), [1.0, 2.0])
    assert DIFFICULTIES[DEFAULT_DIFFICULTY] == (EPSILON, 1.0)


def test_a_calibration_written_before_the_difficulty_choice_loads_as_change(tmp_path):
    rng = np.random.default_rng(4)
    calibration([rng.standard_normal(20)] * 2, [rng.standard_normal(20)] * 2).save(tmp_path)
    path = tmp_path / CONFORMAL_CALIBRATION
    payload = json.loads(path.read_text())
    payload.pop("change_weight")
    path.write_text(json.dumps(payload))
    assert load_calibration(tmp_path).change_weight == 1.0


def test_calibrate_with_the_plain_difficulty_gives_one_width_per_phase(tmp_path, base_plans, capsys):
    results = tmp_path / "results"
    folder = write_model_folder(results, base_plans, {0: make_model(seed=20)})
    raw = make_raw_dataset(tmp_path / "raw", n_cases=2, shape=(16, 16, 8), n_phases=6)
    stored = calibrate(folder, folder_jobs(raw, [0]), "held-back test cases", predictor_for(folder).settings,
                       n_voxels=20, difficulty="none")
    assert (stored.epsilon, stored.change_weight) == DIFFICULTIES["none"] == (load_calibration(folder).epsilon,
                                                                             load_calibration(folder).change_weight)
    cases = write_inputs(tmp_path)
    argv = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-d", "1", "-f", "0", "--device", "cpu",
            "--quiet", "--uncertainty", "--coverage", "0.8", "--results", str(results)]
    with warnings.catch_warnings():
        assert predict_main(argv) == 0, capsys.readouterr().err
    for case_id in cases:
        for phase in (2, 3, 4, 5):
            lower = read_image(tmp_path / "out" / f"{case_id}_{phase:04d}_lower.nii.gz")[0]
            upper = read_image(tmp_path / "out" / f"{case_id}_{phase:04d}_upper.nii.gz")[0]
            width = upper.astype(np.float64) - lower
            assert width.max() > 0 and np.ptp(width) <= 1e-4 * width.max()  # the same width in every voxel
