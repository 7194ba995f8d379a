"""The two stages of iterU-Net training: the teacher-forced warm-up, then recursion on the model's own outputs.

In the recursive stage backpropagation runs through every unrolled step, so the network learns to correct
its own drift; it starts from the warm-up's final weights.
"""
from __future__ import annotations

from iterdce.training.trainer import Trainer


class WarmupTrainer(Trainer):
    """Stage 1: teacher forcing (each step is fed the real current phase) for the plan's warm-up epochs."""


class RecursiveTrainer(Trainer):
    """Stage 2: recursion on its own outputs at the recursive learning rate, starting from the warm-up."""

    teacher_forcing = False
    epochs_from = ("recursive_epochs",)
    lr_from = "recursive_lr"
    previous_stage = WarmupTrainer
