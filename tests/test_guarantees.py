"""One test per promise of documentation/guarantees.md that the bad-input matrix does not show on its own:
provenance of predictions, pairing by phase index, scale-free masks and prediction, stale temporaries,
file modes and fsync, the printed CV warning, Ctrl-C, and bugs keeping their traceback."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from iterdce.commands import evaluate, predict, verify_dataset
from iterdce.commands.common import INTERRUPTED
from iterdce.core import atomic
from iterdce.core.atomic import remove_stale_temporaries, write_json_atomic
from iterdce.dataset.masks import derive_foreground_mask
from iterdce.dataset.nifti_io import Geometry, read_image, write_image
from iterdce.evaluation.case_evaluation import evaluate_case
from iterdce.evaluation.region import Scoring
from iterdce.evaluation.report import write_report
from iterdce.inference.provenance import written_by
from iterdce.workflow.cross_validation import cross_validation_summary
from tests.helpers import make_raw_dataset, synthetic_case, tiny_model_plans
from tests.test_predictor import NETWORK, PATCH, TIMES, make_model, predictor_for, write_model_folder

AFFINE = np.diag([0.8, 0.8, 2.0, 1.0])


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder with one fold of random (non-identity) final weights."""
    root = tmp_path_factory.mktemp("guarantees")
    plans = tiny_model_plans(root, PATCH, NETWORK)
    return write_model_folder(root / "results", plans, {0: make_model(seed=3, scale=0.2)})


def write_inputs(folder: Path, case_id: str, scale: float = 1.0) -> np.ndarray:
    image, _, _ = synthetic_case((24, 24, 8), TIMES[:2], seed=5)
    for phase in (0, 1):
        write_image(folder / f"{case_id}_{phase:04d}.nii.gz", image[phase] * np.float32(scale), AFFINE)
    return image


# ---------------------------------------------------------------- 1, 12: provenance of predictions

def test_outputs_carry_the_model_mark_and_a_truncated_one_is_redone(model_folder, tmp_path, capsys):
    write_inputs(tmp_path / "in", "case_a")
    predictor = predictor_for(model_folder)
    assert predictor.predict_folder(tmp_path / "in", tmp_path / "out") == ["case_a"]
    output = tmp_path / "out" / "case_a_0003.nii.gz"
    assert written_by(output) == predictor.model_id
    good = output.read_bytes()
    assert predictor.predict_folder(tmp_path / "in", tmp_path / "out") == []
    assert "already predicted with this model" in capsys.readouterr().out
    output.write_bytes(good[: len(good) // 2])  # truncated by something else: the header still reads
    assert predictor.predict_folder(tmp_path / "in", tmp_path / "out") == ["case_a"]
    assert output.read_bytes() == good


# ---------------------------------------------------------------- 2: evaluation pairs by phase index

def test_a_missing_prediction_is_never_paired_with_another_phase(tmp_path, capsys):
    raw = make_raw_dataset(tmp_path / "raw", n_cases=2, shape=(24, 24, 8), n_phases=4)
    pred = tmp_path / "pred"
    pred.mkdir()
    for case in ("case_000", "case_001"):
        for phase in (2, 3):  # perfect predictions: copies of the real delayed phases
            shutil.copyfile(raw / "imagesTr" / f"{case}_{phase:04d}.nii.gz", pred / f"{case}_{phase:04d}.nii.gz")
    (pred / "case_000_0002.nii.gz").unlink()
    args = ["--pred", str(pred), "-r", str(raw / "imagesTr"), "-o", str(tmp_path / "report")]
    assert evaluate.main(args) == 1
    assert f"missing prediction {pred / 'case_000_0002.nii.gz'}" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()
    assert evaluate.main([*args, "--allow-missing-phases"]) == 0
    rows = pd.read_csv(tmp_path / "report" / "per_case.csv")
    ours = rows[rows["method"] == "iterdce"]
    assert sorted(ours[ours["case"] == "case_000"]["phase"]) == [3]
    assert sorted(ours[ours["case"] == "case_001"]["phase"]) == [2, 3]
    assert np.allclose(ours["mae"], 0.0)  # each prediction met its own phase, not a shifted one


# ---------------------------------------------------------------- 10: extreme intensities

def test_masks_do_not_depend_on_the_intensity_scale():
    image, _, _ = synthetic_case((24, 24, 8), TIMES[:2], seed=1)
    reference = derive_foreground_mask(image)
    assert 0.2 < reference.mean() < 0.9
    for factor in (1e-20, 1e28):
        with np.errstate(all="raise"):
            assert np.array_equal(derive_foreground_mask(image * np.float32(factor)), reference)


def test_a_case_times_1e28_gives_the_same_relative_prediction(model_folder, tmp_path):
    write_inputs(tmp_path / "in", "case_a")
    write_inputs(tmp_path / "in", "case_b", scale=1e28)
    predictor_for(model_folder).predict_folder(tmp_path / "in", tmp_path / "out")
    for phase in (2, 3, 4, 5):
        plain = read_image(tmp_path / "out" / f"case_a_{phase:04d}.nii.gz", np.float64)[0]
        scaled = read_image(tmp_path / "out" / f"case_b_{phase:04d}.nii.gz", np.float64)[0] / 1e28
        assert np.abs(scaled - plain).max() <= 1e-4 * np.abs(plain).max()


def test_verify_accepts_a_scaled_dataset_and_refuses_intensities_beyond_the_range(tmp_path, capsys):
    raw = make_raw_dataset(tmp_path / "raw", n_cases=2, shape=(24, 24, 8), n_phases=4)
    for path in (raw / "imagesTr").iterdir():
        data, geometry = read_image(path)
        write_image(path, data * np.float32(1e28), geometry)
    assert verify_dataset.main(["-d", str(raw)]) == 0
    data, geometry = read_image(raw / "imagesTr" / "case_000_0001.nii.gz")
    data[0, 0, 0] = 3e37
    write_image(raw / "imagesTr" / "case_000_0001.nii.gz", data, geometry)
    assert verify_dataset.main(["-d", str(raw)]) == 1
    assert "case_000_0001.nii.gz: intensities up to 3e+37 exceed" in capsys.readouterr().err


# ---------------------------------------------------------------- 11: the partial-CV warning is printed

def test_cv_summary_prints_that_folds_are_missing(tmp_path, capsys):
    rng = np.random.default_rng(0)
    real = rng.normal(size=(4, 8, 8, 4)).astype(np.float32)
    case = evaluate_case("case_000", real[2:] + 0.1, real, [0, 85, 155, 225], np.ones((8, 8, 4), bool), None)
    write_report([case], tmp_path / "model" / "fold_0" / "validation", Scoring("foreground", 1))
    cross_validation_summary(tmp_path / "model")
    out = capsys.readouterr().out
    assert "warning:" in out and "only folds [0] of 5 have validation results" in out


# ---------------------------------------------------------------- 12, 13: temporaries, modes, fsync

def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path):
    live = subprocess.Popen(["sleep", "30"])
    try:
        stale = tmp_path / f".case_0003.nii.gz.p{dead_pid()}.abcd1234.tmp.nii.gz"
        busy = tmp_path / f".case_0004.nii.gz.p{live.pid}.abcd1234.tmp.nii.gz"
        old_legacy = tmp_path / ".case_0005.nii.gz.Xy_12345.tmp.nii.gz"
        new_legacy = tmp_path / ".case_0002.nii.gz.Zz_12345.tmp.nii.gz"
        unrelated = tmp_path / ".hidden_notes"
        for path in (stale, busy, old_legacy, new_legacy, unrelated):
            path.write_bytes(b"x")
        os.utime(old_legacy, (0, 0))
        assert sorted(remove_stale_temporaries(tmp_path)) == sorted([stale, old_legacy])
        assert busy.exists() and new_legacy.exists() and unrelated.exists()
    finally:
        live.kill()
        live.wait()


def test_a_rerun_of_predict_removes_the_temporaries_of_a_killed_run(model_folder, tmp_path):
    write_inputs(tmp_path / "in", "case_a")
    stale = tmp_path / "out" / f".case_a_0003.nii.gz.p{dead_pid()}.abcd1234.tmp.nii.gz"
    stale.parent.mkdir()
    stale.write_bytes(b"half")
    predictor_for(model_folder).predict_folder(tmp_path / "in", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["case_a.json", *(f"case_a_{p:04d}.nii.gz"
                                                                                      for p in (2, 3, 4, 5))]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_mode_of_open_under_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "a.json", {"a": 1})
        write_image(tmp_path / "b.nii.gz", np.ones((4, 4, 4), np.float32), Geometry((4, 4, 4), AFFINE))
        with open(tmp_path / "plain", "w"):
            pass
    finally:
        os.umask(old)
    expected = (tmp_path / "plain").stat().st_mode & 0o777
    assert expected == 0o666 & ~umask
    for name in ("a.json", "b.nii.gz"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected


def test_atomic_writes_fsync_the_file_and_then_the_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def record(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", record)
    write_json_atomic(tmp_path / "a.json", {"a": 1})
    assert len(synced) == 2 and synced[0].parent == tmp_path and synced[0].name.startswith(".a.json.p")
    assert synced[1] == tmp_path
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": 1}


# ---------------------------------------------------------------- Ctrl-C and bugs

def test_ctrl_c_prints_one_line(monkeypatch, tmp_path, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(verify_dataset, "verify_dataset", interrupted)
    (tmp_path / "ds").mkdir()
    assert verify_dataset.main(["-d", str(tmp_path / "ds")]) == 130
    err = capsys.readouterr().err
    assert err.strip() == INTERRUPTED and "Traceback" not in err


@pytest.mark.parametrize("bug", [ZeroDivisionError, ValueError, RuntimeError, FileNotFoundError])
def test_an_exception_outside_the_family_keeps_its_traceback(monkeypatch, tmp_path, bug):
    def broken(*args, **kwargs):
        raise bug("a bug in iterdce")

    monkeypatch.setattr(verify_dataset, "verify_dataset", broken)
    (tmp_path / "ds").mkdir()
    with pytest.raises(bug, match="a bug in iterdce"):
        verify_dataset.main(["-d", str(tmp_path / "ds")])


# ---------------------------------------------------------------- 6: unwritable output (also as root)

def test_an_unwritable_output_folder_is_refused_before_any_work(model_folder, tmp_path, monkeypatch, capsys):
    """The probe is what a read-only folder makes fail; root ignores permission bits, so it is forced here
    (tests/bad_inputs runs the real chmod case for other users)."""
    import iterdce.core.output_checks as checks

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    write_inputs(tmp_path / "in", "case_a")
    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(checks.tempfile, "TemporaryFile", refuse)
    results = model_folder.parent.parent
    code = predict.main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "ro" / "out"), "-d", "1", "-f", "0",
                         "--device", "cpu", "--results", str(results)])
    assert code == 1
    assert f"-o {tmp_path / 'ro' / 'out'}: cannot write there (Permission denied)" in capsys.readouterr().err
    assert list((tmp_path / "ro").iterdir()) == []
