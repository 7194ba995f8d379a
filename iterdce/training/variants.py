"""Baselines and ablations, chosen by name with ``-tr``; each differs from iterU-Net in one respect."""
from __future__ import annotations

from pathlib import Path

from iterdce.errors import UsageError
from iterdce.preprocessing.case_files import verify_cases
from iterdce.training.checkpoint import load_checkpoint
from iterdce.training.distributed import DistributedContext
from iterdce.training.setup import TrainingSetup
from iterdce.training.trainer_recursive import RecursiveTrainer
from iterdce.training.trainer_warmup import WarmupTrainer


class NoWarmupTrainer(RecursiveTrainer):
    """Ablation: the recursive stage from random weights (no warm-up), for warm-up + recursive epochs."""

    name = "NoWarmupTrainer"
    warmup_class = None

    def __init__(self, setup, context=None) -> None:
        super().__init__(setup, context)
        if setup.epochs is None:
            training = self.plans["training"]
            self.total_epochs = int(training["warmup_epochs"]) + int(training["recursive_epochs"])


class NoTemporalWarmupTrainer(WarmupTrainer):
    """Warm-up stage of the no-temporal ablation."""

    name = "NoTemporalWarmupTrainer"
    network_overrides = {"use_time_embedding": False, "use_convlstm": False}


class NoTemporalTrainer(RecursiveTrainer):
    """Ablation: iterU-Net without time embedding and ConvLSTM (warm-up, then recursion)."""

    name = "NoTemporalTrainer"
    network_overrides = {"use_time_embedding": False, "use_convlstm": False}
    warmup_class = NoTemporalWarmupTrainer


class SingleStepTrainer(WarmupTrainer):
    """The paper's baseline: one plain 3D U-Net per target phase, each fed pre + first post-contrast."""

    name = "SingleStepTrainer"
    model_kind = "single_step"
    epochs_key = "warmup_epochs"

    def __init__(self, setup, context=None) -> None:
        super().__init__(setup, context)
        if setup.epochs is None:
            training = self.plans["training"]
            self.total_epochs = int(training["warmup_epochs"]) + int(training["recursive_epochs"])


TRAINERS: dict[str, type[WarmupTrainer]] = {cls.name: cls for cls in (
    WarmupTrainer, RecursiveTrainer, NoWarmupTrainer, NoTemporalWarmupTrainer, NoTemporalTrainer, SingleStepTrainer)}


def get_trainer(name: str) -> type[WarmupTrainer]:
    """The trainer class called ``name`` (clear error listing the known ones)."""
    if name not in TRAINERS:
        raise UsageError(f"unknown trainer {name!r}; choose one of {', '.join(TRAINERS)}")
    return TRAINERS[name]


def stages(name: str) -> list[type[WarmupTrainer]]:
    """The trainers to run in order for ``-tr name``: a recursive trainer runs its warm-up first."""
    cls = get_trainer(name)
    warmup = getattr(cls, "warmup_class", None)
    return [warmup, cls] if warmup is not None else [cls]


def run_stages(name: str, setup: TrainingSetup, context: DistributedContext | None = None) -> WarmupTrainer:
    """Run every stage of ``-tr name`` in order on ``setup``; returns the last stage's trainer."""
    train_cases, val_cases = setup.fold_cases()
    verify_cases(setup.data_dir, sorted(set(train_cases) | set(val_cases)), setup.progress)
    if setup.pretrained_weights is not None:
        load_checkpoint(Path(setup.pretrained_weights))  # readable and safe, before anything is written
    trainer = None
    for trainer_class in stages(name):
        trainer = trainer_class(setup, context)
        trainer.run()
    return trainer
