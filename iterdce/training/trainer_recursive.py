"""The two stages of iterU-Net training: the teacher-forced warm-up, then recursion on the model's own outputs.

In the recursive stage backpropagation runs through every unrolled step, so the network learns to correct
its own drift; it starts from the warm-up's final weights.

A variant of the recursive stage is declared once: when it changes what both stages share (``warmup_shares``:
the network), its own warm-up stage, ``<Name without Trainer>WarmupTrainer``, is derived from it; when it changes
only the recursive stage it starts from the warm-up it inherits (whose checkpoint other variants reuse).
"""
from __future__ import annotations

from typing import Any, ClassVar

from iterdce.training.trainer import Trainer


class WarmupTrainer(Trainer):
    """Stage 1: teacher forcing (each step is fed the real current phase) for the plan's warm-up epochs."""


class RecursiveTrainer(Trainer):
    """Stage 2: recursion on its own outputs at the recursive learning rate, starting from the warm-up."""

    teacher_forcing = False
    epochs_from = ("recursive_epochs",)
    lr_from = "recursive_lr"
    previous_stage: ClassVar[type[Trainer] | None] = WarmupTrainer
    # what a variant's warm-up takes from it (a variant may add e.g. "build_loss" to change both stages)
    warmup_shares: ClassVar[tuple[str, ...]] = ("model_kind", "network_overrides")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Register the variant (Trainer) and, when it changes a shared attribute and names no
        ``previous_stage`` of its own, derive and register its warm-up stage."""
        super().__init_subclass__(**kwargs)
        if "previous_stage" not in vars(cls) and cls.previous_stage is not None:
            cls.previous_stage = derived_warmup(cls, cls.previous_stage)


def derived_warmup(variant: type[RecursiveTrainer], warmup: type[Trainer]) -> type[Trainer]:
    """``warmup`` with the ``warmup_shares`` attributes of ``variant`` (``warmup`` itself when they agree), named
    after the variant: NoTemporalTrainer -> NoTemporalWarmupTrainer (its output folder's name)."""
    shared = {name: getattr(variant, name) for name in variant.warmup_shares}
    if all(getattr(warmup, name) == value for name, value in shared.items()):
        return warmup
    name = variant.__name__.removesuffix("Trainer") + "WarmupTrainer"
    doc = f"The warm-up stage of {variant.__name__} (derived: WarmupTrainer with its {', '.join(shared)})."
    return type(name, (warmup,), {**shared, "__module__": variant.__module__, "__qualname__": name, "__doc__": doc})
