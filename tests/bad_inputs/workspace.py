"""The pristine workspace the bad-input matrix starts every row from, and the tree snapshots it compares.

One tiny end-to-end run (4 cases of 24x24x8, 4 phases): raw dataset, preprocessed data, a WarmupTrainer fold 0
trained for one iteration, prediction inputs and the model's predictions, and the model shared: exported to
``model.zip`` and installed as ``results/models/shared``. Rows copy it and break one thing.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import torch

from iterdce.inference.predictor import IterativePredictor, PredictionSettings
from iterdce.preprocessing.pipeline import plan_and_preprocess
from iterdce.preprocessing.plans_io import load_plans, save_plans
from iterdce.sharing.export import export_model
from iterdce.sharing.install import install_model
from iterdce.training.run_config import TrainingSetup
from iterdce.training.variants import run_stages
from tests.helpers import make_raw_dataset

DATASET = "Dataset001_Phantom"
TRAINER = "WarmupTrainer"
SHARED = "shared"  # the installed model's name
SHAPE = (24, 24, 8)
N_PHASES = 4


def build_workspace(root: Path) -> Path:
    """Write the pristine workspace under ``root`` and return it."""
    torch.manual_seed(0)
    raw = make_raw_dataset(root / "raw", n_cases=4, shape=SHAPE, n_phases=N_PHASES)
    plan_and_preprocess(raw, root / "preprocessed", num_processes=1, preset="tiny", progress=False,
                        log=lambda *a: None)
    plans_path = root / "preprocessed" / DATASET / "plans.json"
    plans = load_plans(plans_path).to_dict()
    plans["network"].update(features_per_stage=[4, 8], pool_per_stage=[[2, 2, 1]], time_embedding_dim=8)
    plans["patch_size"], plans["batch_size"] = [16, 16, 8], 2
    save_plans(plans, plans_path)
    setup = TrainingSetup(root / "preprocessed" / DATASET, root / "results" / DATASET, fold=0, epochs=1,
                          iterations_per_epoch=1, num_workers=0, device="cpu", progress=False)
    run_stages(TRAINER, setup)
    inputs = root / "inputs"
    inputs.mkdir()
    for case in ("case_000", "case_001"):
        for phase in (0, 1):
            shutil.copyfile(raw / "imagesTr" / f"{case}_{phase:04d}.nii.gz", inputs / f"{case}_{phase:04d}.nii.gz")
    predictor = IterativePredictor(root / "results" / DATASET / f"{TRAINER}__plans",
                                   PredictionSettings(folds=[0], device="cpu", progress=False))
    predictor.predict_folder(inputs, root / "pred")
    export_model(root / "results" / DATASET / f"{TRAINER}__plans", [0], root / "model.zip",
                 preprocessed=root / "preprocessed" / DATASET)
    install_model(root / "model.zip", root / "results" / "models", SHARED)
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every file (SHA-256 of its bytes) and folder under ``root``: equal snapshots mean nothing was written,
    created, removed or overwritten."""
    entries = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            entries[key] = f"<link to {os.readlink(path)}>"
        elif path.is_dir():
            entries[key] = "<dir>"
        elif not path.is_file():
            entries[key] = "<not a regular file>"  # a FIFO: reading it would block
        else:
            entries[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return entries
