"""Tests of the predictor's refusals and of the ``iterdce_predict`` command: bad inputs and model folders are
errors that name the file and write nothing, existing outputs are skipped unless --overwrite, and the command
predicts cases in their own geometry (helpers and the model-folder fixture: tests/test_predictor.py)."""

import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from iterdce.commands.predict import main as predict_main
from iterdce.core.checkpoint import CheckpointError
from iterdce.core.errors import OutputLocationError
from iterdce.dataset.nifti_io import Geometry, read_image, write_image
from iterdce.inference.inputs import PredictionInputError, discover_inputs
from iterdce.inference.provenance import description
from tests.helpers import synthetic_case
from tests.test_predictor import (
    TIMES,
    base_plans,
    make_model,
    oblique_affine,
    predictor_for,
    smooth_phases,
    write_case,
    write_model_folder,
)

__all__ = ["base_plans"]  # the module-scoped plan fixture, shared with test_predictor

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- bad inputs and model folders

def good_case(folder: Path, case_id: str, shape=(16, 16, 8)) -> None:
    write_case(folder, case_id, smooth_phases(shape), Geometry(shape, np.diag([0.8, 0.8, 2.0, 1])))


def corrupt_garbage(path: Path) -> None:
    path.write_bytes(b"this is not a NIfTI file at all" * 10)


def corrupt_truncated(path: Path) -> None:
    """Header intact, voxel data cut short: only reading the data finds it."""
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))


def shift_affine(path: Path) -> None:
    data, geometry = read_image(path)
    affine = geometry.affine.copy()
    affine[0, 3] += 5.0
    write_image(path, data, affine)


@pytest.mark.parametrize("breakage, expected", [
    (lambda d: (d / "case_b_0001.nii.gz").unlink(), "missing input phase file case_b_0001.nii.gz"),
    (lambda d: shift_affine(d / "case_b_0001.nii.gz"), "case_b_0001.nii.gz: geometry"),
    (lambda d: corrupt_garbage(d / "case_b_0000.nii.gz"), "case_b_0000.nii.gz: cannot be read as NIfTI"),
    (lambda d: corrupt_truncated(d / "case_b_0001.nii.gz"), "case_b_0001.nii.gz: voxel data cannot be read"),
    (lambda d: (d / "case_b.json").write_text("{not json"), "case_b.json: not valid JSON"),
    (lambda d: (d / "case_b.json").write_text('{"phase_times_s": [90, 80]}'), "case_b.json: phase_times_s is "
                                                                                  "not strictly increasing"),
    (lambda d: (d / "case_b.json").write_text('{"phase_times_s": [0]}'), "case_b.json: phase_times_s must"),
    (lambda d: write_image(d / "case_b_0000.nii.gz", np.full((16, 16, 8), np.nan, np.float32),
                           np.diag([0.8, 0.8, 2.0, 1])), "case_b_0000.nii.gz: 2048 NaN/inf"),
    (lambda d: write_image(d / "case_b_0001.nii.gz", np.full((16, 16, 8), 7.0, np.float32),
                           np.diag([0.8, 0.8, 2.0, 1])), "case_b_0001.nii.gz: constant image (every voxel 7)"),
], ids=["missing-phase", "geometry", "garbage", "truncated", "bad-json", "times-order", "times-length", "nan",
        "constant"])
def test_bad_inputs_are_refused_with_nothing_written(tmp_path, base_plans, breakage, expected):
    folder = write_model_folder(tmp_path / "results", base_plans, {0: make_model()})
    good_case(tmp_path / "in", "case_a")  # sorts first: a lazy check would have written it already
    good_case(tmp_path / "in", "case_b")
    breakage(tmp_path / "in")
    with pytest.raises(PredictionInputError) as info:
        predictor_for(folder).predict_folder(tmp_path / "in", tmp_path / "out")
    assert expected in str(info.value)
    assert not (tmp_path / "out").exists()


def test_empty_or_missing_input_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    assert any("no <case>_0000.nii.gz" in p for p in discover_inputs(tmp_path / "empty", [0, 1])[1])
    assert any("does not exist" in p for p in discover_inputs(tmp_path / "nowhere", [0, 1])[1])


def test_no_fold_present_lists_what_the_model_folder_holds(tmp_path, base_plans):
    folder = write_model_folder(tmp_path / "results", base_plans, {0: make_model()}, checkpoint="latest")
    with pytest.raises(CheckpointError) as info:
        predictor_for(folder, folds=(0, 1))
    message = str(info.value)
    assert "none of fold_0, fold_1 has checkpoint_final.pth" in message
    assert "fold_0: checkpoint_latest.pth" in message
    assert predictor_for(folder, checkpoint="latest").folds == ["fold_0"]


def test_missing_model_folder_lists_the_model_folders_there(tmp_path, base_plans):
    folder = write_model_folder(tmp_path / "results", base_plans, {0: make_model()})
    with pytest.raises(CheckpointError, match="model folders in .*: RecursiveTrainer__plans"):
        predictor_for(folder.parent / "WarmupTrainer__plans")


def test_missing_fold_warns_and_predicts_with_the_others(tmp_path, base_plans):
    folder = write_model_folder(tmp_path / "results", base_plans, {0: make_model(), 2: make_model()})
    good_case(tmp_path / "in", "case_a")
    with pytest.warns(UserWarning, match=r"fold_1 missing checkpoint_final.pth; predicting with fold_0, fold_2"):
        predictor = predictor_for(folder, folds=(0, 1, 2))
    assert predictor.folds == ["fold_0", "fold_2"] and len(predictor.models) == 2
    assert predictor.predict_folder(tmp_path / "in", tmp_path / "out") == ["case_a"]
    assert (tmp_path / "out" / "case_a_0005.nii.gz").is_file()


def test_checkpoint_that_does_not_fit_the_plan_is_refused(tmp_path, base_plans):
    plans = {**base_plans, "input_phases": [0, 1, 2], "input_times_s": TIMES[:3], "target_times_s": TIMES[3:]}
    folder = write_model_folder(tmp_path / "results", plans, {0: make_model()})
    with pytest.raises(CheckpointError, match="does not fit plans.json"):
        predictor_for(folder)


def test_cpu_out_of_memory_is_raised_not_retried(tmp_path, base_plans, monkeypatch):
    folder = write_model_folder(tmp_path / "results", base_plans, {0: make_model()})
    calls = []

    def out_of_memory(*args, **kwargs):
        calls.append(kwargs)
        raise torch.OutOfMemoryError("fake")

    monkeypatch.setattr("iterdce.inference.predictor.predict_volume", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        predictor_for(folder).synthesize_normalized(np.zeros((2, 16, 16, 8), np.float32), np.array(TIMES))
    assert len(calls) == 1


# --------------------------------------------------------------------------------- skipping and overwrite

def test_existing_outputs_are_skipped_unless_overwrite(tmp_path, base_plans):
    folder = write_model_folder(tmp_path / "results", base_plans, {0: make_model()})
    good_case(tmp_path / "in", "case_a")
    good_case(tmp_path / "in", "case_b")
    predictor = predictor_for(folder)
    assert predictor.predict_folder(tmp_path / "in", tmp_path / "out") == ["case_a", "case_b"]
    # a file carrying this model's provenance mark counts as predicted; a missing phase redoes its case
    marked = tmp_path / "out" / "case_a_0003.nii.gz"
    write_image(marked, np.full((16, 16, 8), -1.0, np.float32), np.diag([0.8, 0.8, 2.0, 1]),
                description=description(predictor.model_id))
    (tmp_path / "out" / "case_b_0004.nii.gz").unlink()
    assert predictor.predict_folder(tmp_path / "in", tmp_path / "out") == ["case_b"]  # only the incomplete one
    assert (read_image(marked)[0] == -1.0).all()
    assert (tmp_path / "out" / "case_b_0004.nii.gz").is_file()
    assert predictor.predict_folder(tmp_path / "in", tmp_path / "out", overwrite=True) == ["case_a", "case_b"]
    assert (read_image(marked)[0] != -1.0).any()
    # a file iterdce did not write is never overwritten, not even for a kinetic map asked for later
    stand_in = tmp_path / "out" / "case_a_kinetics.nii.gz"
    stand_in.write_bytes(b"stand-in")
    with pytest.raises(OutputLocationError, match="case_a_kinetics.nii.gz: exists and was not written"):
        predictor.predict_folder(tmp_path / "in", tmp_path / "out", save_kinetic_map=True, overwrite=True)
    assert stand_in.read_bytes() == b"stand-in" and not (tmp_path / "out" / "case_b_kinetics.nii.gz").exists()
    stand_in.unlink()
    assert predictor.predict_folder(tmp_path / "in", tmp_path / "out", save_kinetic_map=True) == ["case_a", "case_b"]
    assert (tmp_path / "out" / "case_b_kinetics.nii.gz").is_file()


# ----------------------------------------------------------------------------------------------------- CLI

def test_cli_predicts_two_cases_in_their_own_geometry(tmp_path, base_plans, capsys):
    results = tmp_path / "results"
    write_model_folder(results, base_plans, {0: make_model(seed=20), 1: make_model(seed=21)})
    cases = {"case_a": ((20, 18, 9), oblique_affine()), "case_b": ((18, 16, 8), np.diag([0.8, 0.8, 2.0, 1]))}
    inputs = {}
    for index, (case_id, (shape, affine)) in enumerate(cases.items()):
        image, _, _ = synthetic_case(shape, TIMES[:2], seed=index)
        inputs[case_id] = image
        write_case(tmp_path / "in", case_id, image, Geometry(shape, affine))
    argv = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-d", "1", "-f", "0", "1", "--device", "cpu",
            "--quiet", "--save-kinetic-map", "--results", str(results)]
    with warnings.catch_warnings():
        assert predict_main(argv) == 0
    assert "predicted 2 case(s)" in capsys.readouterr().out
    for case_id, (shape, affine) in cases.items():
        post = inputs[case_id][1]
        for phase in (2, 3, 4, 5):
            data, geometry = read_image(tmp_path / "out" / f"{case_id}_{phase:04d}.nii.gz")
            assert data.shape == shape
            np.testing.assert_allclose(geometry.affine, affine, atol=1e-5)
            assert np.isfinite(data).all()
            body = post > 20.0
            assert abs(float(data[body].mean()) / float(post[body].mean()) - 1.0) < 0.25  # the input's scale
            assert float(np.abs(data[~body]).mean()) < 20.0
        kinetics, geometry = read_image(tmp_path / "out" / f"{case_id}_kinetics.nii.gz", dtype=np.uint8)
        assert kinetics.shape == shape and set(np.unique(kinetics)) <= {0, 1, 2, 3}


def test_cli_reports_bad_input_and_writes_nothing(tmp_path, base_plans, capsys):
    results = tmp_path / "results"
    write_model_folder(results, base_plans, {0: make_model()})
    good_case(tmp_path / "in", "case_a")
    (tmp_path / "in" / "case_a_0001.nii.gz").unlink()
    argv = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-d", "1", "-f", "0", "--device", "cpu",
            "--quiet", "--results", str(results)]
    assert predict_main(argv) == 1
    assert "missing input phase file case_a_0001.nii.gz" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
