"""Runs every row of the bad-input matrix (rows.py) in-process against a fresh copy of the workspace."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from iterdce.commands import (
    demo,
    evaluate,
    import_dicom,
    plan_and_preprocess,
    predict,
    simulate,
    train,
    verify_dataset,
)
from tests.bad_inputs.rows import ROWS, Row
from tests.bad_inputs.workspace import build_workspace, snapshot

MAINS = {"verify": verify_dataset.main, "plan": plan_and_preprocess.main, "train": train.main,
         "predict": predict.main, "evaluate": evaluate.main, "simulate": simulate.main, "demo": demo.main,
         "import_dicom": import_dicom.main}
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="session")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_workspace(tmp_path_factory.mktemp("bad_inputs") / "ws")


def run(row: Row, ws: Path) -> int:
    argv = [a.format(ws=ws) for a in row.args]
    try:
        return MAINS[row.command](argv)
    except SystemExit as exc:  # argparse refuses a flag with exit code 2
        return int(exc.code)


def test_the_matrix_has_at_least_150_rows_over_every_command():
    assert len(ROWS) >= 150
    assert len({r.name for r in ROWS}) == len(ROWS)
    assert {r.command for r in ROWS} == set(MAINS)


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_bad_input_is_refused_and_nothing_changes(row: Row, pristine: Path, tmp_path: Path, capsys,
                                                  monkeypatch) -> None:
    if row.needs_non_root and IS_ROOT:
        pytest.skip("root writes into read-only folders")
    ws = tmp_path / "ws"
    shutil.copytree(pristine, ws)
    if row.breaks is not None:
        row.breaks(ws)
    monkeypatch.chdir(ws)
    capsys.readouterr()
    before = snapshot(ws)
    code = run(row, ws)
    err = capsys.readouterr().err
    assert code == row.code, err
    for text in row.expect:
        assert text.format(ws=ws) in err, f"{text!r} not in: {err}"
    assert "Traceback" not in err and "weights_only=False" not in err
    assert snapshot(ws) == before
