"""The command-line surface is consistent: every command has an example in --help, the shared flags are
spelled the same way everywhere, and folds are checked against the splits before any work."""
from __future__ import annotations

import json

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
from iterdce.commands.common import check_folds
from iterdce.core.errors import JSONFileError

COMMANDS = {"iterdce_demo": demo, "iterdce_evaluate": evaluate, "iterdce_import_dicom": import_dicom,
            "iterdce_plan_and_preprocess": plan_and_preprocess, "iterdce_predict": predict,
            "iterdce_simulate": simulate, "iterdce_train": train, "iterdce_verify_dataset": verify_dataset,
            "iterdce_export_model": export_model, "iterdce_install_model": install_model}


def help_text(module, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        module.main(["--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_help_ends_with_an_example(name, capsys):
    text = help_text(COMMANDS[name], capsys)
    assert f"example:\n  {name} " in text


def test_shared_flags_mean_the_same_everywhere(capsys):
    texts = {name: help_text(module, capsys) for name, module in COMMANDS.items()}
    for name in ("iterdce_evaluate", "iterdce_export_model", "iterdce_plan_and_preprocess", "iterdce_predict",
                 "iterdce_train"):
        assert "-p PLANS_NAME, --plans-name PLANS_NAME" in texts[name], name
        assert "-d DATASET, --dataset DATASET" in texts[name], name
    for name in ("iterdce_plan_and_preprocess", "iterdce_simulate", "iterdce_train"):
        assert "-np NUM_PROCESSES, --num-processes NUM_PROCESSES" in texts[name], name
    for name in COMMANDS:
        assert "--quiet" in texts[name], name
    assert "--step-size" in texts["iterdce_predict"]


@pytest.mark.parametrize("argv", [["0"], ["-i", "in", "-o", "out"]])
def test_the_dataset_is_required(argv, capsys):
    module = train if argv == ["0"] else predict
    with pytest.raises(SystemExit):
        module.main(argv)
    assert "dataset" in capsys.readouterr().err


def test_folds_are_checked_against_the_splits(tmp_path):
    (tmp_path / "splits_final.json").write_text(json.dumps([{"train": [], "val": []}] * 3))
    check_folds([0, 2, "all"], tmp_path)
    with pytest.raises(ValueError, match=r"fold 3, 7 does not exist: .*splits_final.json has folds 0-2"):
        check_folds([0, 3, 7], tmp_path)
    with pytest.raises(JSONFileError, match="run iterdce_plan_and_preprocess first"):
        check_folds([0], tmp_path / "nowhere")


def test_step_size_must_be_a_fraction(capsys):
    with pytest.raises(SystemExit):
        predict.main(["-i", "in", "-o", "out", "-d", "1", "--step-size", "1.5"])
    assert "--step-size must be in (0, 1]" in capsys.readouterr().err


def test_masks_without_the_breast_region_are_refused(capsys):
    with pytest.raises(SystemExit):
        evaluate.main(["--pred", "p", "-r", "r", "-o", "o", "-m", "masks"])
    assert "--region breast" in capsys.readouterr().err


def test_a_command_prints_warnings_as_one_line_without_source():
    import warnings

    from iterdce.commands.common import run_guarded

    shown = run_guarded(lambda: warnings.formatwarning("3 cases differ", UserWarning, "predictor.py", 316))  # type: ignore[arg-type,return-value]
    assert shown == "warning: 3 cases differ\n"
    assert "predictor.py" in warnings.formatwarning("x", UserWarning, "predictor.py", 316)  # restored afterwards
