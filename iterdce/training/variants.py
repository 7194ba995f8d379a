"""Baselines and ablations, chosen by name with ``-tr``; each differs from iterU-Net in one respect, and the
lookup of a trainer by name.

A variant is one subclass of ``Trainer`` (here, or in a file of one's own named in ITERDCE_EXTENSIONS, or in an
installed package's ``iterdce.extensions`` entry point: iterdce.core.extensions): its name, registry entry and
output folder come from the class name, and a variant of ``RecursiveTrainer`` that changes the network gets its
warm-up stage derived (trainer_recursive.py).
"""
from __future__ import annotations

from pathlib import Path

from iterdce.core.checkpoint import load_checkpoint
from iterdce.core.errors import UsageError
from iterdce.core.extensions import EXTENSIONS_ENV, load_extensions
from iterdce.preprocessing.case_files import verify_cases
from iterdce.training.distributed import DistributedContext
from iterdce.training.run_config import TrainingSetup
from iterdce.training.trainer import TRAINERS, Trainer
from iterdce.training.trainer_recursive import RecursiveTrainer, WarmupTrainer

__all__ = ["TRAINERS", "get_trainer", "run_stages", "stages", "trainer_names"]


class NoTeacherWarmupTrainer(WarmupTrainer):
    """The warm-up epochs of the no-warm-up ablation: the same stage, but fed the model's own outputs."""

    teacher_forcing = False


class NoWarmupTrainer(RecursiveTrainer):
    """Ablation: no teacher-forced warm-up; every epoch, rate and budget as RecursiveTrainer's stages."""

    previous_stage = NoTeacherWarmupTrainer


class NoTemporalTrainer(RecursiveTrainer):
    """Ablation: iterU-Net without time embedding and ConvLSTM (warm-up, then recursion; the warm-up stage,
    NoTemporalWarmupTrainer, is derived)."""

    network_overrides = {"use_time_embedding": False, "use_convlstm": False}


NoTemporalWarmupTrainer = TRAINERS["NoTemporalWarmupTrainer"]  # derived from NoTemporalTrainer


class InputChannelsTrainer(RecursiveTrainer):
    """Ablation of how three or more inputs reach the network: every step reads all input phases as channels and
    the recursion starts at the last input, instead of the ConvLSTM's warm-up steps reading them in turn
    (network/config.py ``INPUT_MODES``; its warm-up stage, InputChannelsWarmupTrainer, is derived)."""

    network_overrides = {"input_mode": "channels"}


InputChannelsWarmupTrainer = TRAINERS["InputChannelsWarmupTrainer"]  # derived from InputChannelsTrainer


class SingleStepTrainer(Trainer):
    """The paper's baseline: one plain 3D U-Net per target phase, each fed pre + first post-contrast, trained
    for the warm-up + recursive epoch budget."""

    model_kind = "single_step"
    epochs_from = ("warmup_epochs", "recursive_epochs")


def trainer_names() -> list[str]:
    """Every trainer's name: the package's and those of the user's modules (ITERDCE_EXTENSIONS)."""
    load_extensions()
    return list(TRAINERS)


def get_trainer(name: str) -> type[Trainer]:
    """The trainer class called ``name`` (clear error listing the known ones)."""
    names = trainer_names()
    if name not in TRAINERS:
        raise UsageError(f"unknown trainer {name!r}; choose one of {', '.join(names)} (a trainer of your own: a "
                         f"Trainer subclass in a file named in {EXTENSIONS_ENV})")
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
