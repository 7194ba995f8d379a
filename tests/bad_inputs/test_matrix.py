"""Runs every row of the bad-input matrix (rows.py) in-process against a fresh copy of the workspace."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from iterdce.commands import (
    demo,
    evaluate,
    export_model,
    import_dicom,
    install_model,
    plan_and_preprocess,
    predict,
    simulate,
    train,
    verify_dataset,
)
from iterdce.core import output_checks
from tests.bad_inputs.rows import ROWS, Row
from tests.bad_inputs.workspace import snapshot

MAINS = {"verify": verify_dataset.main, "plan": plan_and_preprocess.main, "train": train.main,
         "predict": predict.main, "evaluate": evaluate.main, "simulate": simulate.main, "demo": demo.main,
         "import_dicom": import_dicom.main, "export": export_model.main, "install": install_model.main}
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
REAL_TEMPORARY_FILE = tempfile.TemporaryFile


def _refusing_read_only_folders(*args, dir=None, **kwargs):  # noqa: A002 - tempfile's own keyword
    """``tempfile.TemporaryFile`` as a user without root sees it: a folder without write permission refuses."""
    if dir is not None and not os.stat(dir).st_mode & 0o222:
        raise PermissionError(13, "Permission denied", str(dir))
    return REAL_TEMPORARY_FILE(*args, dir=dir, **kwargs)


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
    ws = tmp_path / "ws"
    if row.needs_non_root and IS_ROOT:  # root writes into read-only folders: the kernel's refusal is forced
        monkeypatch.setattr(output_checks.tempfile, "TemporaryFile", _refusing_read_only_folders)
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
