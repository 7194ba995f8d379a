"""The model shipped in iterdce/pretrained/: it loads, predicts new cases with no training, and initialises
fine-tuning through --pretrained-weights."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from iterdce.commands.predict import main as predict_main
from iterdce.pretrained import pretrained_checkpoint, pretrained_model_folder
from iterdce.training.checkpoint import load_checkpoint
from tests.conftest import make_raw_dataset

torch.set_num_threads(1)


def test_shipped_model_is_small_and_weights_only():
    path = pretrained_checkpoint()
    assert path.is_file(), f"{path} is missing from the package"
    assert path.stat().st_size < 5_000_000
    payload = load_checkpoint(path)
    assert "optimizer_state" not in payload
    assert (pretrained_model_folder() / "plans.json").is_file()


def test_predict_pretrained_needs_no_training(tmp_path: Path):
    raw = make_raw_dataset(tmp_path / "raw", n_cases=1, shape=(32, 32, 16), n_phases=6)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for phase in (0, 1):
        shutil.copyfile(raw / "imagesTr" / f"case_000_{phase:04d}.nii.gz", inputs / f"case_000_{phase:04d}.nii.gz")
    assert predict_main(["-i", str(inputs), "-o", str(tmp_path / "out"), "--pretrained", "--device", "cpu",
                         "--quiet"]) == 0
    written = sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz"))
    assert written == [f"case_000_{p:04d}.nii.gz" for p in (2, 3, 4, 5)]
