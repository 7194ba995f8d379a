"""RecursiveTrainer: stage 2, initialised from the warm-up; each step is fed the model's previous output.

Backpropagation runs through every unrolled step, so the network learns to correct its own drift.
"""
from __future__ import annotations

from torch import Tensor, nn

from iterdce.training.checkpoint import CheckpointError, load_checkpoint, load_weights, unwrap
from iterdce.training.trainer_warmup import WarmupTrainer


class RecursiveTrainer(WarmupTrainer):
    """Stage 2 of iterU-Net training: recursion on its own outputs, starting from the warm-up weights."""

    name = "RecursiveTrainer"
    warmup_class: type[WarmupTrainer] | None = WarmupTrainer
    epochs_key = "recursive_epochs"
    lr_key = "recursive_lr"

    def unroll(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """Predictions for every target phase, each step fed the previous prediction."""
        n_in = len(self.plans["input_phases"])
        return model(batch["data"][:, :n_in], batch["times"])

    def initial_weights(self) -> None:
        """The fold's warm-up ``checkpoint_final.pth`` (a clear error if it is missing or does not fit); without a
        warm-up stage, the first stage's starting weights."""
        if self.warmup_class is None:
            super().initial_weights()  # the first stage: random or --pretrained-weights
            return
        path = self.setup.output_folder(self.warmup_class.name) / "checkpoint_final.pth"
        if not path.is_file():
            raise CheckpointError(f"{path}: the warm-up stage has not finished for fold {self.setup.fold}; "
                                  f"run it first (iterdce_train {self.setup.fold} runs both stages)")
        payload = load_checkpoint(path, self.device)
        if payload["model_config"] != self.config:
            raise CheckpointError(f"{path}: its network does not match this plan's network", path)
        load_weights(unwrap(self.model), payload, path)
        self.log.notes.append(f"initialised from {path}")
