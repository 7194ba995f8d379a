"""The references of the curve-type probabilities end to end: ``iterdce_calibrate`` stores the calibration lesions'
type frequencies and the kinetic prior's own lesion scores, ``iterdce_predict --uncertainty --lesion-masks`` writes
both references beside each lesion's probabilities, and ``iterdce_evaluate`` scores them (Brier, ECE) next to the
model. The model here is an untrained network with a fitted prior: it predicts its prior exactly, so the prior's
scores and probabilities must equal the model's."""
from __future__ import annotations

import dataclasses
import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from iterdce.commands.predict import main as predict_main
from iterdce.core.file_names import CONFORMAL_CALIBRATION, KINETICS_REFERENCES_KEY
from iterdce.core.kinetics_rule import CURVE_TYPES
from iterdce.evaluation.folders import evaluate_folders
from iterdce.inference.conformal import load_calibration
from iterdce.inference.uncertainty import Uncertainty, reference_probabilities
from iterdce.workflow.calibration import calibrate, folder_jobs
from tests.helpers import make_raw_dataset
from tests.test_composition import prior_fit, prior_model_folder
from tests.test_predictor import base_plans, predictor_for  # noqa: F401 (a fixture)

torch.set_num_threads(1)


@pytest.fixture()
def calibrated(tmp_path, base_plans):  # noqa: F811
    """(model folder with its calibration, raw dataset of two cases with lesions and real phases)."""
    folder = prior_model_folder(tmp_path, base_plans, prior_fit())
    raw = make_raw_dataset(tmp_path / "raw", n_cases=2, shape=(16, 16, 8), n_phases=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny cases lie outside the fitted range: an OOD warning
        calibrate(folder, folder_jobs(raw, [0]), "held-back test cases", predictor_for(folder).settings,
                  n_voxels=20)
    return folder, raw


def test_calibration_stores_type_frequencies_and_the_priors_own_scores(calibrated):
    folder, _ = calibrated
    stored = load_calibration(folder)
    assert stored.type_frequencies is not None and set(stored.type_frequencies) == set(CURVE_TYPES)
    assert abs(sum(stored.type_frequencies.values()) - 1) < 1e-5
    assert stored.prior_lesion_scores is not None
    assert [len(b) for b in stored.prior_lesion_scores] == [len(b) for b in stored.lesion_scores]
    assert sum(len(b) for b in stored.lesion_scores) >= 2 * 4  # a lesion per case and phase at least
    for prior, model in zip(stored.prior_lesion_scores, stored.lesion_scores):  # the network adds nothing
        np.testing.assert_allclose(prior, model, atol=1e-5)


def test_a_calibration_written_before_the_references_still_loads_without_them(calibrated):
    folder, _ = calibrated
    path = folder / CONFORMAL_CALIBRATION
    payload = json.loads(path.read_text())
    del payload["type_frequencies"], payload["prior_lesion_scores"]
    path.write_text(json.dumps(payload))
    old = load_calibration(folder)
    assert old.type_frequencies is None and old.prior_lesion_scores is None


def test_predict_writes_both_references_and_evaluate_scores_them(tmp_path, calibrated):
    folder, raw = calibrated
    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in (raw / "imagesTr").glob("*_000[01].nii.gz"):
        shutil.copy(path, inputs / path.name)
    argv = ["-i", str(inputs), "-o", str(tmp_path / "out"), "-d", "1", "-f", "0", "--device", "cpu", "--quiet",
            "--uncertainty", "--coverage", "0.5", "--lesion-masks", str(raw / "labelsTr"),
            "--results", str(tmp_path / "results")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert predict_main(argv) == 0
        summary = evaluate_folders(tmp_path / "out", raw / "imagesTr", tmp_path / "report", labels=raw / "labelsTr",
                                   progress=False, methods=("iterdce",))
    frequencies = load_calibration(folder).type_frequencies
    entries = [e for path in sorted((tmp_path / "out").glob("*_kinetics.json"))
               for e in json.loads(path.read_text())["lesions"]]
    assert len(entries) >= 2
    for entry in entries:
        references = entry[KINETICS_REFERENCES_KEY]
        assert references["type_frequencies"] == frequencies
        assert references["kinetic_prior"] == pytest.approx(entry["probabilities"], abs=1e-4)
    probabilities = summary["methods"]["iterdce"]["kinetics"]["curve_type_probabilities"]
    references = probabilities["references"]
    assert set(references) == {"uniform", "frequency", "type_frequencies", "kinetic_prior"}
    assert references["kinetic_prior"]["brier"] == pytest.approx(probabilities["brier"], abs=1e-4)


def test_a_model_without_a_prior_writes_only_the_frequency_reference(calibrated):
    folder, _ = calibrated
    stored = load_calibration(folder)
    without = dataclasses.replace(stored, prior_lesion_scores=None)
    uncertainty = Uncertainty.of(without, 0.5, folder)
    curve = np.array([100.0, 150.0, 160.0, 165.0, 170.0, 172.0])
    references = reference_probabilities(uncertainty, curve, [0, 60, 120, 180, 240, 300], 2, 0, 10.0)
    assert list(references) == ["type_frequencies"]
