"""The network's arithmetic (network/precision.py): which precision ``auto`` picks, that bf16 really lowers the
convolutions, and that training and prediction carry the choice (mark, log, CLI)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from iterdce.commands.predict import main as predict_main
from iterdce.commands.train import main as train_main
from iterdce.core.errors import UsageError
from iterdce.network import precision
from iterdce.network.precision import autocast_context, resolve_precision
from iterdce.training.trainer_recursive import WarmupTrainer
from tests.helpers import first_batch, make_setup
from tests.test_predictor import (  # noqa: F401  (base_plans: the fixture, used by name)
    TIMES,
    base_plans,
    make_model,
    predictor_for,
    smooth_phases,
    write_model_folder,
)

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(("native", "device", "expected"), [
    (True, CPU, "bf16"), (False, CPU, "fp32"), (False, CUDA, "bf16"), (True, CUDA, "bf16")])
def test_auto_picks_bf16_on_cuda_and_on_cpus_with_bf16_units(monkeypatch, native, device, expected):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", device) == expected


@pytest.mark.parametrize("choice", ["bf16", "fp32"])
def test_an_explicit_choice_is_kept_on_any_device(monkeypatch, choice):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision(choice, CPU) == choice
    assert resolve_precision(choice, CUDA) == choice


def test_unknown_or_unresolved_precisions_are_refused():
    with pytest.raises(ValueError, match="precision must be one of auto, bf16, fp32"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match="resolve the precision first"):
        autocast_context("auto", CPU)


def test_bf16_lowers_the_convolutions_and_fp32_does_not():
    conv, x = torch.nn.Conv3d(2, 3, 3, padding=1), torch.randn(1, 2, 6, 6, 4)
    with autocast_context("bf16", CPU):
        assert conv(x).dtype == torch.bfloat16
    with autocast_context("fp32", CPU):
        assert conv(x).dtype == torch.float32


def test_bf16_prediction_is_close_to_fp32_and_carries_its_own_mark(tmp_path, base_plans):  # noqa: F811
    folder = write_model_folder(tmp_path / "results", base_plans, {0: make_model(seed=5, scale=0.5)})
    inputs = smooth_phases((40, 36, 12), seed=3)
    outputs, marks = {}, {}
    for choice in ("fp32", "bf16"):
        predictor = predictor_for(folder, precision=choice)
        outputs[choice], marks[choice] = predictor.synthesize_normalized(inputs, np.array(TIMES)), predictor.model_id
    difference = np.abs(outputs["bf16"] - outputs["fp32"])
    assert 0 < float(difference.max()) < 0.05 * float(np.abs(outputs["fp32"]).max())
    assert marks["bf16"] != marks["fp32"]  # a folder predicted in fp32 is not taken as done in bf16


def test_training_runs_and_reports_the_resolved_precision(preprocessed_root, tmp_path):
    trainer = WarmupTrainer(make_setup(preprocessed_root, tmp_path, precision="bf16"))
    assert trainer.precision == "bf16" and "(bf16)" in trainer.notes()[0]
    batch = first_batch(trainer)
    with trainer.autocast:
        predictions = trainer.model(batch["data"][:, :2], batch["times"], teacher=batch["data"])
    assert predictions.dtype == torch.float32  # the residual output and the loss stay float32
    assert torch.isfinite(predictions).all()


def test_a_bad_precision_is_refused_before_any_work(preprocessed_root, tmp_path, capsys):
    with pytest.raises(UsageError, match="--precision must be one of"):
        make_setup(preprocessed_root, tmp_path, precision="half")
    for main, argv in ((train_main, ["0", "-d", "1"]), (predict_main, ["-i", "in", "-o", "out"])):
        with pytest.raises(SystemExit):
            main([*argv, "--precision", "half"])
        assert "invalid choice: 'half'" in capsys.readouterr().err
