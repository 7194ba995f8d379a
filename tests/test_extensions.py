"""A loss term and a trainer variant are each added in one file outside the package (ITERDCE_EXTENSIONS), and one
training iteration runs with each; the shipped models still load with the loss they were trained with."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from iterdce.commands.train import build_parser
from iterdce.core import extensions
from iterdce.core.checkpoint import load_checkpoint
from iterdce.losses import registry
from iterdce.losses.synthesis import DEFAULT_LOSS_WEIGHTS, SynthesisLoss
from iterdce.network.config import ModelConfig
from iterdce.network.synthesizer import build_synthesizer
from iterdce.preprocessing.plans_io import PlansError, as_plans, load_plans
from iterdce.pretrained import PRETRAINED_MODELS, pretrained_checkpoint, pretrained_model_folder
from iterdce.training.trainer import TRAINERS
from iterdce.training.trainer_recursive import WarmupTrainer
from iterdce.training.variants import get_trainer, run_stages, stages
from tests.helpers import DATASET, make_setup

torch.set_num_threads(1)

LOSS_MODULE = '''
from iterdce.losses.registry import LossInputs, register_loss_term


@register_loss_term("mean_offset", default_weight=0.5)
def mean_offset(inputs: LossInputs):
    """|mean(pred) - mean(target)|: the global intensity offset."""
    return (inputs.pred.mean() - inputs.target.mean()).abs()
'''

TRAINER_MODULE = '''
from iterdce.training.trainer_recursive import RecursiveTrainer


class NoConvLSTMExtensionTrainer(RecursiveTrainer):
    """iterU-Net without the ConvLSTM; its warm-up stage is derived."""

    network_overrides = {"use_convlstm": False}
'''
VARIANT, WARMUP = "NoConvLSTMExtensionTrainer", "NoConvLSTMExtensionWarmupTrainer"


@pytest.fixture
def user_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The two files named in ITERDCE_EXTENSIONS; the registries are restored afterwards."""
    (tmp_path / "my_loss.py").write_text(LOSS_MODULE)
    (tmp_path / "my_trainer.py").write_text(TRAINER_MODULE)
    monkeypatch.setenv(extensions.EXTENSIONS_ENV, os.pathsep.join(str(tmp_path / f) for f in ("my_loss.py",
                                                                                               "my_trainer.py")))
    monkeypatch.setattr(registry, "_TERMS", dict(registry._TERMS))
    monkeypatch.setattr(extensions, "_loaded", set(extensions._loaded))
    yield
    for name in (VARIANT, WARMUP):
        TRAINERS.pop(name, None)


def test_a_loss_term_and_a_trainer_each_added_in_one_file_train(user_files, preprocessed_root, tmp_path):
    setup = make_setup(preprocessed_root, tmp_path / "results", iterations_per_epoch=1)
    # the plan leaves the new term out: it gets its default weight (the built-in terms keep theirs)
    assert setup.plans.loss_weights["mean_offset"] == 0.5
    assert list(registry.default_loss_weights()) == [*DEFAULT_LOSS_WEIGHTS, "mean_offset"]
    pred, target = torch.zeros(1, 1, 8, 8, 4), torch.full((1, 1, 8, 8, 4), 2.0)
    total, parts = SynthesisLoss(setup.plans.loss_weights, 4.0)(pred, target)
    assert parts["mean_offset"] == 2.0 and torch.allclose(total, sum(setup.plans.loss_weights[k] * v
                                                                      for k, v in parts.items()))

    variant = get_trainer(VARIANT)
    assert [c.name for c in stages(VARIANT)] == [WARMUP, VARIANT]  # the warm-up is derived, not written
    warmup = variant.previous_stage
    assert warmup is not None and issubclass(warmup, WarmupTrainer) and warmup.teacher_forcing
    assert warmup.network_overrides == variant.network_overrides == {"use_convlstm": False}
    assert build_parser().parse_args(["0", "-d", "1", "-tr", VARIANT]).trainer == VARIANT

    trainer = run_stages(VARIANT, setup)  # one iteration of each stage, with the new loss term
    assert trainer.output == tmp_path / "results" / DATASET / f"{VARIANT}__plans" / "fold_0"
    assert (tmp_path / "results" / DATASET / f"{WARMUP}__plans" / "fold_0" / "checkpoint_final.pth").is_file()
    assert not any("convlstm" in name for name, _ in trainer.model.named_parameters())
    assert "0.5*mean_offset" in trainer.loss.describe()
    assert torch.isfinite(torch.tensor(trainer.log.history["train_loss"])).all()
    copied = json.loads((trainer.output.parent / "plans.json").read_text())
    assert copied["loss_weights"]["mean_offset"] == 0.5  # the model's plan records the loss it was trained with


def test_an_unregistered_loss_term_is_refused_by_name(preprocessed_root):
    raw = load_plans(preprocessed_root / DATASET / "plans.json").to_dict()
    raw["loss_weights"]["mean_offset"] = 0.5
    with pytest.raises(PlansError, match="loss_weights.mean_offset: unknown loss term.*ITERDCE_EXTENSIONS"):
        as_plans(raw)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_loss_term("ssim", 1.0)(lambda inputs: inputs.pred.sum())


@pytest.mark.parametrize("name", list(PRETRAINED_MODELS))
def test_shipped_models_load_with_their_loss(name: str):
    folder = pretrained_model_folder(name)
    raw = json.loads((folder / "plans.json").read_text())
    plans = load_plans(folder / "plans.json")
    assert plans.loss_weights == raw["loss_weights"]
    low, high = plans.intensity_range
    assert SynthesisLoss(plans.loss_weights, high - low).weights == raw["loss_weights"]
    payload = load_checkpoint(pretrained_checkpoint(name))
    build_synthesizer(ModelConfig.from_dict(payload["model_config"])).load_state_dict(payload["network_state"])
