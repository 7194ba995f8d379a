"""Case-parallel prediction: parts, torchrun ranks and -np worker processes give the single-process outputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iterdce.commands.predict import main as predict_main
from iterdce.dataset.nifti_io import Geometry, read_image
from iterdce.inference.case_pipeline import effective_part, rank_device, select_part
from tests.helpers import synthetic_case
from tests.test_predictor import TIMES, base_plans, make_model, oblique_affine, write_case, write_model_folder

__all__ = ["base_plans"]  # the module-scoped plan fixture, shared with test_predictor
CASES = {"case_a": ((20, 18, 9), oblique_affine()), "case_b": ((18, 16, 8), np.diag([0.8, 0.8, 2.0, 1])),
         "case_c": ((16, 16, 8), np.diag([0.7, 0.7, 2.5, 1]))}


def test_parts_cover_every_case_once(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [f"case_{i}" for i in (3, 0, 4, 1, 2)]
    parts = [select_part(ids, 2, p) for p in range(2)]
    assert parts == [["case_0", "case_2", "case_4"], ["case_1", "case_3"]]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert effective_part(3, 2) == (6, 5)  # part 2 of 3, second rank: 6 parts in all
    assert rank_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="--part-id 3 must be in 0..2"):
        effective_part(3, 3)


@pytest.fixture(scope="module")
def prediction_setup(tmp_path_factory: pytest.TempPathFactory, base_plans: dict) -> tuple[Path, Path, Path]:
    """(results root, input folder, reference outputs of a plain single-process run)."""
    root = tmp_path_factory.mktemp("case_parallel")
    write_model_folder(root / "results", base_plans, {0: make_model(seed=30)})
    for index, (case_id, (shape, affine)) in enumerate(CASES.items()):
        write_case(root / "in", case_id, synthetic_case(shape, TIMES[:2], seed=index)[0], Geometry(shape, affine))
    assert predict_main(arguments(root / "results", root / "in", root / "reference")) == 0
    return root / "results", root / "in", root / "reference"


def arguments(results: Path, inputs: Path, out: Path, *extra: str) -> list[str]:
    return ["-i", str(inputs), "-o", str(out), "-d", "1", "-f", "0", "--device", "cpu", "--quiet", "--save-kinetic-map",
            "--results", str(results), *extra]


def assert_same_outputs(reference: Path, out: Path) -> None:
    names = sorted(p.name for p in reference.glob("*.nii.gz"))
    assert names and sorted(p.name for p in out.glob("*.nii.gz")) == names
    for name in names:
        np.testing.assert_array_equal(read_image(out / name)[0], read_image(reference / name)[0], err_msg=name)


def test_worker_processes_give_identical_outputs(prediction_setup, tmp_path: Path) -> None:
    results, inputs, reference = prediction_setup
    assert predict_main(arguments(results, inputs, tmp_path / "out", "-np", "2")) == 0
    assert_same_outputs(reference, tmp_path / "out")
    sidecars = sorted((tmp_path / "out").glob("*.json"))  # the OOD check is recorded by the -np path too
    assert sidecars and all(set(json.loads(p.read_text())["ood"]) == {"flag", "score", "reasons", "references"}
                            for p in sidecars)


def test_parts_and_torchrun_ranks_give_identical_outputs(prediction_setup, tmp_path: Path) -> None:
    results, inputs, reference = prediction_setup
    for part in ("0", "1"):  # two machines: --num-parts 2 --part-id i into one folder
        assert predict_main(arguments(results, inputs, tmp_path / "parts", "--num-parts", "2", "--part-id", part)) == 0
    assert_same_outputs(reference, tmp_path / "parts")
    # two processes as torchrun starts them (WORLD_SIZE / RANK / LOCAL_RANK), running at the same time
    command = [sys.executable, "-m", "iterdce.commands.predict", *arguments(results, inputs, tmp_path / "ranks")]
    ranks = [subprocess.Popen(command, env={**os.environ, "WORLD_SIZE": "2", "RANK": str(r), "LOCAL_RANK": str(r),
                                            "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for r in range(2)]
    outputs = [rank.communicate(timeout=240) for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0], outputs
    assert ["predicted 2 case(s)" in outputs[0][0], "predicted 1 case(s)" in outputs[1][0]] == [True, True]
    assert_same_outputs(reference, tmp_path / "ranks")
