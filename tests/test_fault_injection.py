"""SIGKILL at deterministic points (ITERDCE_TEST_KILL_AT, see iterdce/core/fault_injection.py), then the same
command again: the outputs equal an uninterrupted run's, byte for byte (preprocessing, prediction) or weight for
weight (training resumed with --continue), and no temporary file is left."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import torch

from iterdce.commands import plan_and_preprocess, predict, train
from iterdce.core.checkpoint import load_checkpoint
from iterdce.core.fault_injection import ENV_VAR, SIGNAL_VAR
from iterdce.preprocessing.plans_io import load_plans, save_plans
from tests.helpers import make_raw_dataset

DATASET = "Dataset001_Phantom"
torch.set_num_threads(1)  # as the killed runs (OMP_NUM_THREADS=1): sums in the same order, bit-identical weights
TRAIN_ARGS = ["0", "-d", "1", "-tr", "WarmupTrainer", "--epochs", "2", "--iterations-per-epoch", "2", "--device", "cpu",
              "-np", "0", "--no-validation"]


def _ctrl_c_as_in_a_terminal() -> None:
    """In the child before exec: Ctrl-C's default disposition. A test suite started in the background of a
    non-interactive shell (``make test &``, some CI runners) inherits SIGINT ignored, and a Python started with
    SIGINT ignored never turns it into KeyboardInterrupt; a command typed in a terminal always can."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# a command's own process group (Ctrl-C reaches it and its workers), with Ctrl-C as a terminal delivers it
AS_A_TERMINAL_JOB = {"start_new_session": True, "preexec_fn": _ctrl_c_as_in_a_terminal}


def files_of(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` by relative path (temporaries included, so they show up)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.is_file()]


def killed(module: str, args: list[str], point: str) -> None:
    """Run ``python -m iterdce.commands.<module> args`` until the kill point; it must die of SIGKILL, and no
    process it started (worker processes carry its environment) may outlive it by more than 5 s."""
    marker = f"iterdce-test-{uuid.uuid4().hex}"
    env = {**os.environ, ENV_VAR: point, "OMP_NUM_THREADS": "1", "ITERDCE_TEST_MARKER": marker}
    with tempfile.TemporaryFile("w+") as stderr:  # a file, not a pipe: a process left behind cannot hang the test
        process = subprocess.Popen([sys.executable, "-m", f"iterdce.commands.{module}", *args], env=env,
                                   stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        returncode = process.wait(timeout=300)
        stderr.seek(0)
        assert returncode == -signal.SIGKILL, stderr.read()[-2000:]
    deadline = time.monotonic() + 5.0
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not processes_with(marker), "worker processes outlived the killed main process"


def processes_with(marker: str) -> list[int]:
    """Live processes (zombies excluded) whose environment holds ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z" and marker.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except (OSError, IndexError):
            continue
    return found


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faults") / "raw"
    make_raw_dataset(root, n_cases=4, shape=(24, 24, 8), n_phases=4)
    return root


def preprocess_args(raw_root: Path, preprocessed: Path) -> list[str]:
    return ["-d", "1", "-np", "1", "--raw", str(raw_root), "--preprocessed", str(preprocessed)]


@pytest.fixture(scope="module")
def reference_preprocessed(raw_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted plan_and_preprocess run."""
    preprocessed = tmp_path_factory.mktemp("reference") / "preprocessed"
    assert plan_and_preprocess.main(preprocess_args(raw_root, preprocessed)) == 0
    return preprocessed


@pytest.mark.parametrize("point", ["before_rename:5", "after_rename:7"])
def test_preprocessing_killed_then_rerun_equals_an_uninterrupted_run(raw_root, reference_preprocessed, tmp_path,
                                                                     point):
    killed("plan_and_preprocess", preprocess_args(raw_root, tmp_path / "resumed"), point)
    assert plan_and_preprocess.main(preprocess_args(raw_root, tmp_path / "resumed")) == 0
    assert files_of(tmp_path / "resumed") == files_of(reference_preprocessed)
    assert not temporaries(tmp_path / "resumed")


def test_preprocessing_workers_die_with_the_killed_main_process_and_a_rerun_is_identical(raw_root,
                                                                                       reference_preprocessed,
                                                                                       tmp_path):
    args = [*preprocess_args(raw_root, tmp_path / "resumed"), "-np", "2"]
    killed("plan_and_preprocess", args, "collected:1")  # kill -9 of the main process while 2 workers run
    assert plan_and_preprocess.main(args) == 0
    assert files_of(tmp_path / "resumed") == files_of(reference_preprocessed)
    assert not temporaries(tmp_path / "resumed")


@pytest.fixture(scope="module")
def trained(reference_preprocessed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Preprocessed data (a tiny network in the plan) and an uninterrupted reference training."""
    root = tmp_path_factory.mktemp("trained")
    shutil.copytree(reference_preprocessed, root / "preprocessed")
    plans_path = root / "preprocessed" / DATASET / "plans.json"
    plans = load_plans(plans_path).to_dict()
    plans["network"].update(features_per_stage=[4, 8], pool_per_stage=[[2, 2, 1]], time_embedding_dim=8)
    plans["patch_size"], plans["batch_size"] = [16, 16, 8], 2
    save_plans(plans, plans_path)
    assert train.main([*TRAIN_ARGS, "--preprocessed", str(root / "preprocessed"),
                       "--results", str(root / "results")]) == 0
    return root


def test_training_killed_mid_epoch_then_continued_gives_the_same_weights(trained, tmp_path):
    args = [*TRAIN_ARGS, "--preprocessed", str(trained / "preprocessed"), "--results", str(tmp_path / "results")]
    killed("train", args, "iteration:3")  # in the second epoch: the first one's checkpoint is on disk
    assert train.main([*args, "--continue"]) == 0
    fold = Path("results") / DATASET / "WarmupTrainer__plans" / "fold_0"
    reference = load_checkpoint(trained / fold / "checkpoint_final.pth")["network_state"]
    resumed = load_checkpoint(tmp_path / fold / "checkpoint_final.pth")["network_state"]
    assert reference.keys() == resumed.keys()
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    assert not temporaries(tmp_path / "results")


def test_training_killed_while_writing_a_checkpoint_then_continued_gives_the_same_weights(trained, tmp_path):
    args = [*TRAIN_ARGS, "--preprocessed", str(trained / "preprocessed"), "--results", str(tmp_path / "results")]
    killed("train", args, "before_rename:2:checkpoint_")  # the second checkpoint, complete but not yet in place
    fold = Path("results") / DATASET / "WarmupTrainer__plans" / "fold_0"
    assert (tmp_path / fold / "checkpoint_latest.pth").is_file()  # the first epoch's, whole
    assert train.main([*args, "--continue"]) == 0
    reference = load_checkpoint(trained / fold / "checkpoint_final.pth")["network_state"]
    resumed = load_checkpoint(tmp_path / fold / "checkpoint_final.pth")["network_state"]
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    assert not temporaries(tmp_path / "results")


def test_ctrl_c_to_the_process_group_while_data_workers_start_stops_training_and_continue_resumes(trained,
                                                                                                  tmp_path):
    """Ctrl-C in a terminal reaches the whole process group: the main process and its data-loader workers."""
    args = [*TRAIN_ARGS[:-3], "-np", "2", "--no-validation", "--preprocessed", str(trained / "preprocessed"),
            "--results", str(tmp_path / "results")]
    env = {**os.environ, ENV_VAR: "loader_started:2", SIGNAL_VAR: "SIGINT", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "iterdce.commands.train", *args], env=env, capture_output=True,
                            text=True, timeout=300, **AS_A_TERMINAL_JOB)
    assert result.returncode == 130, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "interrupted; rerun the same command with --continue" in result.stderr
    assert train.main([*args, "--continue"]) == 0
    fold = Path("results") / DATASET / "WarmupTrainer__plans" / "fold_0"
    reference = load_checkpoint(trained / fold / "checkpoint_final.pth")["network_state"]
    resumed = load_checkpoint(tmp_path / fold / "checkpoint_final.pth")["network_state"]
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    assert not temporaries(tmp_path / "results")


@pytest.fixture(scope="module")
def inputs(raw_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Input phases of three cases, and an uninterrupted prediction of them next to it (``reference``)."""
    folder = tmp_path_factory.mktemp("predict") / "inputs"
    folder.mkdir()
    for case in ("case_000", "case_001", "case_002"):
        for phase in (0, 1):
            name = f"{case}_{phase:04d}.nii.gz"
            (folder / name).write_bytes((raw_root / DATASET / "imagesTr" / name).read_bytes())
    return folder


def predict_args(inputs: Path, out: Path, trained: Path) -> list[str]:
    return ["-i", str(inputs), "-o", str(out), "-d", "1", "-tr", "WarmupTrainer", "-f", "0", "--device", "cpu",
            "--quiet", "--results", str(trained / "results")]


@pytest.fixture(scope="module")
def reference_predictions(inputs: Path, trained: Path) -> Path:
    assert predict.main(predict_args(inputs, inputs.parent / "reference", trained)) == 0
    return inputs.parent / "reference"


@pytest.mark.parametrize("point", ["before_rename:1", "after_rename:3"])
def test_prediction_killed_then_rerun_equals_an_uninterrupted_run(trained, inputs, reference_predictions, tmp_path,
                                                                  point):
    killed("predict", predict_args(inputs, tmp_path / "resumed", trained), point)
    assert predict.main(predict_args(inputs, tmp_path / "resumed", trained)) == 0
    assert files_of(tmp_path / "resumed") == files_of(reference_predictions)
    assert len(files_of(reference_predictions)) == 9  # 3 cases: 2 phases and the times (<case>.json) each
    assert not temporaries(tmp_path / "resumed")


def test_prediction_workers_die_with_the_killed_main_process_and_a_rerun_is_identical(trained, inputs,
                                                                                     reference_predictions,
                                                                                     tmp_path):
    args = [*predict_args(inputs, tmp_path / "resumed", trained), "-np", "2"]
    killed("predict", args, "collected:1")
    assert predict.main(args) == 0
    assert files_of(tmp_path / "resumed") == files_of(reference_predictions)
    assert not temporaries(tmp_path / "resumed")


def test_ctrl_c_to_the_process_group_while_prediction_workers_start_stops_cleanly_and_rerun_completes(
        trained, inputs, reference_predictions, tmp_path):
    """Ctrl-C in a terminal reaches ``iterdce_predict -np 2`` and its worker processes as they start up."""
    args = [*predict_args(inputs, tmp_path / "resumed", trained), "-np", "2"]
    env = {**os.environ, ENV_VAR: "submitted:1", SIGNAL_VAR: "SIGINT", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "iterdce.commands.predict", *args], env=env, capture_output=True,
                            text=True, timeout=300, **AS_A_TERMINAL_JOB)
    assert result.returncode == 130, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert predict.main(args) == 0
    assert files_of(tmp_path / "resumed") == files_of(reference_predictions)
    assert not temporaries(tmp_path / "resumed")
