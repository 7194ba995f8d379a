"""The models shipped in iterdce/pretrained/: each loads, predicts new cases with no training, and initialises
fine-tuning through --pretrained-weights."""
from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from iterdce.commands.predict import main as predict_main
from iterdce.core.checkpoint import load_checkpoint
from iterdce.core.file_names import CHECKPOINT_FINAL
from iterdce.core.folder_names import FOLD_ALL, fold_folder
from iterdce.pretrained import (
    DEFAULT_PRETRAINED,
    PRETRAINED_FOLD,
    PRETRAINED_MODELS,
    pretrained_checkpoint,
    pretrained_model_folder,
)
from tests.helpers import make_raw_dataset

torch.set_num_threads(1)


@pytest.mark.parametrize("name", list(PRETRAINED_MODELS))
def test_shipped_model_is_small_and_weights_only(name: str):
    path = pretrained_checkpoint(name)
    assert path.is_file(), f"{path} is missing from the package"
    assert path.stat().st_size < 5_000_000
    payload = load_checkpoint(path)
    assert "optimizer_state" not in payload
    assert (pretrained_model_folder(name) / "plans.json").is_file()


def test_an_unknown_shipped_model_is_refused_by_name():
    with pytest.raises(ValueError, match="no shipped model named 'phantom'.*phantom_all_sites"):
        pretrained_model_folder("phantom")


def _early_phases(tmp_path: Path) -> Path:
    raw = make_raw_dataset(tmp_path / "raw", n_cases=1, shape=(32, 32, 16), n_phases=6)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for phase in (0, 1):
        shutil.copyfile(raw / "imagesTr" / f"case_000_{phase:04d}.nii.gz", inputs / f"case_000_{phase:04d}.nii.gz")
    return inputs


def test_predict_pretrained_needs_no_training_and_uses_the_named_model(tmp_path: Path):
    inputs = _early_phases(tmp_path)
    outputs = {}
    for choice in ([], ["phantom_sites_abc"]):
        out = tmp_path / (choice[0] if choice else "default")
        # the helper's synthetic case lies outside both models' training intensities: unguarded, so that the
        # two models' own changes show
        assert predict_main(["-i", str(inputs), "-o", str(out), "--pretrained", *choice, "--device", "cpu",
                             "--quiet", "--no-ood-guard"]) == 0
        written = sorted(p.name for p in out.glob("*.nii.gz"))
        assert written == [f"case_000_{p:04d}.nii.gz" for p in (2, 3, 4, 5)]
        outputs[out.name] = nib.load(out / "case_000_0005.nii.gz").get_fdata()
    assert DEFAULT_PRETRAINED != "phantom_sites_abc"
    assert not np.allclose(outputs["default"], outputs["phantom_sites_abc"])  # two different models ran


def test_shipped_model_paths_follow_the_name_rules():
    """iterdce.pretrained cannot import iterdce.core (same layer), so its fold and checkpoint names are checked
    against the rules here."""
    assert PRETRAINED_FOLD == FOLD_ALL
    assert pretrained_checkpoint() == fold_folder(pretrained_model_folder(), FOLD_ALL) / CHECKPOINT_FINAL
