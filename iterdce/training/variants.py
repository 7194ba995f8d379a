"""Baselines and ablations, chosen by name with ``-tr``; each differs from iterU-Net in one respect.

A variant is one subclass here: its name, registry entry and output folder come from the class name.
"""
from __future__ import annotations

from pathlib import Path

from iterdce.core.checkpoint import load_checkpoint
from iterdce.core.errors import UsageError
from iterdce.preprocessing.case_files import verify_cases
from iterdce.training.distributed import DistributedContext
from iterdce.training.run_config import TrainingSetup
from iterdce.training.trainer import TRAINERS, Trainer
from iterdce.training.trainer_recursive import RecursiveTrainer, WarmupTrainer

__all__ = ["TRAINERS", "get_trainer", "run_stages", "stages"]


class NoTeacherWarmupTrainer(WarmupTrainer):
    """The warm-up epochs of the no-warm-up ablation: the same stage, but fed the model's own outputs."""

    teacher_forcing = False


class NoWarmupTrainer(RecursiveTrainer):
    """Ablation: no teacher-forced warm-up; every epoch, rate and budget as RecursiveTrainer's stages."""

    previous_stage = NoTeacherWarmupTrainer


class NoTemporalWarmupTrainer(WarmupTrainer):
    """Warm-up stage of the no-temporal ablation."""

    network_overrides = {"use_time_embedding": False, "use_convlstm": False}


class NoTemporalTrainer(RecursiveTrainer):
    """Ablation: iterU-Net without time embedding and ConvLSTM (warm-up, then recursion)."""

    network_overrides = {"use_time_embedding": False, "use_convlstm": False}
    previous_stage = NoTemporalWarmupTrainer


class SingleStepTrainer(Trainer):
    """The paper's baseline: one plain 3D U-Net per target phase, each fed pre + first post-contrast, trained
    for the warm-up + recursive epoch budget."""

    model_kind = "single_step"
    epochs_from = ("warmup_epochs", "recursive_epochs")


def get_trainer(name: str) -> type[Trainer]:
    """The trainer class called ``name`` (clear error listing the known ones)."""
    if name not in TRAINERS:
        raise UsageError(f"unknown trainer {name!r}; choose one of {', '.join(TRAINERS)}")
    return TRAINERS[name]


def stages(name: str) -> list[type[Trainer]]:
    """The trainers to run in order for ``-tr name``: every ``previous_stage`` first."""
    chain = [get_trainer(name)]
    while chain[0].previous_stage is not None:
        chain.insert(0, chain[0].previous_stage)
    return chain


def run_stages(name: str, setup: TrainingSetup, context: DistributedContext | None = None) -> Trainer:
    """Run every stage of ``-tr name`` in order on ``setup``; returns the last stage's trainer."""
    train_cases, val_cases = setup.fold_cases()
    verify_cases(setup.data_dir, sorted(set(train_cases) | set(val_cases)), setup.progress)
    if setup.pretrained_weights is not None:
        load_checkpoint(Path(setup.pretrained_weights))  # readable and safe, before anything is written
    *earlier, last = stages(name)
    for trainer_class in earlier:
        trainer_class(setup, context).run()
    trainer = last(setup, context)
    trainer.run()
    return trainer
