"""The demo's whole pipeline (simulate -> plan -> train -> predict -> evaluate) on a very small configuration."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

from iterdce.core.fault_injection import ENV_VAR
from iterdce.workflow.demo import DemoConfig, run_demo


def test_demo_pipeline_end_to_end(tmp_path: Path) -> None:
    """Killed in its second training iteration (``kill -9``), the demo's rerun carries on from what was finished
    and completes."""
    torch.set_num_threads(1)
    killed = subprocess.run([sys.executable, "-m", "iterdce.commands.demo", "-o", str(tmp_path), "-n", "6",
                             "--shape", "80", "64", "20", "--epochs", "1", "1", "--iterations-per-epoch", "2",
                             "--device", "cpu"],
                            env={**os.environ, ENV_VAR: "iteration:2", "OMP_NUM_THREADS": "1"}, capture_output=True,
                            text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (tmp_path / "raw" / "Dataset001_Phantom" / "dataset.json").is_file()
    config = DemoConfig(num_cases=6, shape=(80, 64, 20), warmup_epochs=1, recursive_epochs=1,
                        iterations_per_epoch=2, num_workers=0, device="cpu")
    lines: list[str] = []
    summary = run_demo(tmp_path, config, log=lines.append)
    report = tmp_path / "report"
    table = pd.read_csv(report / "per_case.csv")
    assert {"psnr", "ssim", "enhancement_error", "sharpness"} <= set(table.columns)
    assert set(table["method"]) == {"iterdce", "copy_last", "linear", "regression"}
    assert json.loads((report / "summary.json").read_text())["methods"].keys() == summary["methods"].keys()
    assert (report / "montage.png").is_file() and any((report / "kinetic_curves").glob("*.png"))
    assert (tmp_path / "phantom_figures" / "montage.png").is_file()
    held_out = sorted({p.name.rsplit("_", 1)[0] for p in (tmp_path / "demo_input").glob("*.nii.gz")})
    for case_id in held_out:
        for phase in (2, 3, 4, 5):
            assert (tmp_path / "predictions" / f"{case_id}_{phase:04d}.nii.gz").is_file()
    verdicts = [line for line in lines if line.startswith("\nverdict: ")]
    assert len(verdicts) == 1 and "regression baseline" in verdicts[0]
    assert "last-phase lesion enhancement error" in verdicts[0] and "last-phase PSNR" in verdicts[0]
    assert (tmp_path / "results" / "Dataset001_Phantom" / "RecursiveTrainer__plans" / "fold_0" /
            "kinetic_regression.json").is_file()
