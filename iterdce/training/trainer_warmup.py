"""WarmupTrainer: the training loop (data, AdamW, poly schedule, clipping, validation, checkpoints, log).

Teacher forcing: each step of the unrolled iterU-Net is fed the real current phase. Subclasses change only
``unroll`` (RecursiveTrainer), the starting weights, or the model they build (variants.py).
"""
from __future__ import annotations

import shutil
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from iterdce.atomic import remove_stale_temporaries, write_atomic, write_json_atomic
from iterdce.errors import TrainingDivergedError
from iterdce.fault_injection import fault_point
from iterdce.network.synthesizer import build_synthesizer, model_config
from iterdce.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_compatible_weights,
    load_weights,
    save_checkpoint,
    unwrap,
)
from iterdce.training.data_loader import PatchSampler, make_loader, validation_batches
from iterdce.training.distributed import DistributedContext, barrier, init_distributed, mean_over_ranks
from iterdce.training.logger import TrainingLog
from iterdce.training.losses import SynthesisLoss
from iterdce.training.setup import TrainingSetup


class WarmupTrainer:
    """Stage 1 of iterU-Net training: teacher forcing."""

    name = "WarmupTrainer"
    model_kind = "iterative"
    network_overrides: dict = {}
    epochs_key = "warmup_epochs"
    lr_key = "lr"

    def __init__(self, setup: TrainingSetup, context: DistributedContext | None = None) -> None:
        self.setup, self.plans = setup, setup.plans
        self.context = context or init_distributed(setup.device)
        self.device = self.context.device
        self.output = setup.output_folder(self.name)
        training = self.plans["training"]
        self.total_epochs = int(setup.epochs or training[self.epochs_key])
        self.iterations = int(setup.iterations_per_epoch or training["iterations_per_epoch"])
        self.validation_every = int(training.get("validation_every", 1))
        self.train_cases, self.val_cases = setup.fold_cases()
        self.log = TrainingLog()
        self.epoch, self.best_val = 0, float("inf")
        self._validation_batches: list[dict[str, Tensor]] | None = None
        torch.manual_seed(setup.seed)
        self.config = model_config(self.model_kind, {**self.plans["network"], **self.network_overrides},
                                   self.plans["input_phases"], len(self.plans["phase_times_s"]))
        self.model = build_synthesizer(self.config).to(self.device)
        low, high = self.plans["intensity_range"]
        med3d = self.plans["perceptual"].get("med3d_weights")
        self.loss = SynthesisLoss(self.plans["loss_weights"], high - low, med3d).to(self.device)
        opt = self.plans["optimizer"]
        self.base_lr = float(opt[self.lr_key])
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.base_lr, betas=tuple(opt["betas"]),
                                           weight_decay=opt["weight_decay"])
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda"
                         else nullcontext())

    # ----- hooks that subclasses override -------------------------------------------------------------
    def unroll(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """Predictions for every target phase, each step fed the real current phase (teacher forcing)."""
        n_in = len(self.plans["input_phases"])
        return model(batch["data"][:, :n_in], batch["times"], teacher=batch["data"])

    def initial_weights(self) -> None:
        """Starting weights: the seeded random initialisation, or ``--pretrained-weights`` when given."""
        path = self.setup.pretrained_weights
        if path is not None:
            count = load_compatible_weights(unwrap(self.model), Path(path), self.device)
            self.log.notes.append(f"initialised {count} tensors from pretrained weights {path}")

    # ----- the loop ---------------------------------------------------------------------------------
    def notes(self) -> list[str]:
        return [f"{self.name} fold {self.setup.fold}: {len(self.train_cases)} training / {len(self.val_cases)} "
                f"validation cases, {self.total_epochs} epochs x {self.iterations} iterations, device {self.device}, "
                f"world size {self.context.world_size}", self.loss.describe()]

    def learning_rate(self, epoch: int) -> float:
        """Polynomial decay from the plan's rate to 0 over the run."""
        exponent = float(self.plans["optimizer"].get("poly_exponent", 0.9))
        return self.base_lr * (1 - epoch / self.total_epochs) ** exponent

    def step_loss(self, predictions: Tensor, target: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """Mean synthesis loss over the target steps (inside the patch's body foreground when the plan's
        ``training.loss_mask`` is "foreground"; lesion voxels marked for the lesion term)."""
        mask = batch["mask"] if self.plans["training"].get("loss_mask", "none") == "foreground" else None
        losses = [self.loss(predictions[:, t:t + 1].float(), target[:, t:t + 1], mask, batch["lesion"])[0]
                  for t in range(predictions.shape[1])]
        return torch.stack(losses).mean()

    def train_step(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """One optimizer step; returns the detached loss (no host synchronisation)."""
        n_in = len(self.plans["input_phases"])
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast:
            predictions = self.unroll(model, batch)
        loss = self.step_loss(predictions, batch["data"][:, n_in:], batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(self.plans["optimizer"]["grad_clip_norm"]))
        self.optimizer.step()
        return loss.detach()

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Recursive prediction (own outputs) on fixed validation patches: loss and lesion enhancement error."""
        model = unwrap(self.model)
        model.eval()
        n_in = len(self.plans["input_phases"])
        loss_sum = torch.zeros((), device=self.device)
        error_sum = torch.zeros((), device=self.device)
        lesion_patches = torch.zeros((), device=self.device)
        if self._validation_batches is None:
            self._validation_batches = validation_batches(self.setup.data_dir, self.val_cases,
                                                          self.plans["patch_size"], self.plans["batch_size"])
        batches = self._validation_batches
        for batch in batches:
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with self.autocast:
                predictions = model(batch["data"][:, :n_in], batch["times"]).float()
            target = batch["data"][:, n_in:]
            loss_sum += self.step_loss(predictions, target, batch) * len(target)
            lesion = batch["lesion"]
            voxels = lesion.sum(dim=(1, 2, 3, 4))
            has = (voxels > 0).float()
            mean_pred = (predictions * lesion).sum(dim=(2, 3, 4)) / voxels.clamp(min=1)[:, None]
            mean_true = (target * lesion).sum(dim=(2, 3, 4)) / voxels.clamp(min=1)[:, None]
            error_sum += (((mean_pred - mean_true) ** 2).mean(dim=1) * has).sum()
            lesion_patches += has.sum()
        model.train()
        n_patches = sum(len(b["data"]) for b in batches)
        result = {"val_loss": float(loss_sum.item()) / max(n_patches, 1)}
        if lesion_patches.item() > 0:
            result["val_enhancement_error"] = float(error_sum.item() / lesion_patches.item())
        return result

    def checkpoint_payload(self) -> dict:
        return {
            "trainer": self.name, "plans_name": self.setup.plans_name, "fold": str(self.setup.fold),
            "model_config": self.config, "network_state": unwrap(self.model).state_dict(),
            "optimizer_state": self.optimizer.state_dict(), "epoch": self.epoch, "total_epochs": self.total_epochs,
            "iterations_per_epoch": self.iterations, "best_val": self.best_val, "seed": self.setup.seed,
            "torch_rng": torch.get_rng_state(), "log": self.log.state(),
        }

    def save(self, name: str) -> None:
        if self.context.is_main:
            save_checkpoint(self.output / name, self.checkpoint_payload())

    def copy_plans(self) -> None:
        """plans.json and dataset.json next to the folds, so the model folder predicts on its own."""
        model_folder = self.output.parent
        write_json_atomic(model_folder / "plans.json", self.plans)
        dataset_json = self.setup.preprocessed_dataset / "dataset.json"
        if dataset_json.is_file():
            write_atomic(model_folder / "dataset.json", lambda tmp: shutil.copyfile(dataset_json, tmp))

    def resume(self) -> bool:
        """Load ``checkpoint_latest.pth`` with optimizer, epoch, log and RNG; False when there is none."""
        path = self.output / "checkpoint_latest.pth"
        if not path.is_file():
            if self.context.is_main:
                print(f"{self.name}: --continue found no checkpoint_latest.pth in {self.output}; starting from "
                      "scratch")
            return False
        payload = load_checkpoint(path, self.device)
        if payload["model_config"] != self.config:
            raise CheckpointError(f"{path}: its network differs from this plan's; delete the folder or train "
                                  "without --continue", path)
        load_weights(unwrap(self.model), payload, path)
        self.optimizer.load_state_dict(payload["optimizer_state"])
        self.epoch, self.best_val = int(payload["epoch"]), float(payload["best_val"])
        torch.set_rng_state(payload["torch_rng"].cpu())
        self.log = TrainingLog(payload["log"]["history"], payload["log"]["notes"])
        self.log.notes.append(f"resumed from {path.name} at epoch {self.epoch}")
        return True

    def write_log(self) -> None:
        """training_log.json and progress.png (main process); no best score yet is written as null, not Infinity."""
        if self.context.is_main:
            best = self.best_val if np.isfinite(self.best_val) else None
            self.log.write(self.output, {"trainer": self.name, "fold": str(self.setup.fold),
                                         "epochs": self.total_epochs, "best_val_enhancement_error": best})

    def run(self) -> Path:
        """Train to ``total_epochs`` (resuming when asked); returns the output folder."""
        if self.context.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.output, self.output.parent)
            self.copy_plans()
        resumed = self.setup.resume and self.resume()
        if resumed and self.epoch >= self.total_epochs and (self.output / "checkpoint_final.pth").is_file():
            if self.context.is_main:
                print(f"{self.name}: already finished ({self.epoch} epochs), nothing to do")
            return self.output
        if not resumed:
            self.initial_weights()
            self.log.notes.extend(self.notes())
            if self.context.is_main:
                print("\n".join(self.log.notes))
        model: nn.Module = self.model
        if self.context.enabled:
            model = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                            else None)
        sampler = PatchSampler(self.setup.data_dir, self.train_cases, self.plans["patch_size"],
                               self.plans["batch_size"], self.plans.get("augmentation"), self.setup.seed,
                               self.context.rank)
        model.train()
        while self.epoch < self.total_epochs:
            self.run_epoch(model, sampler)  # writes the log and plot after every epoch
        self.save("checkpoint_final.pth")
        barrier(self.context)
        return self.output

    def run_epoch(self, model: nn.Module, sampler: PatchSampler) -> None:
        """One epoch of ``iterations`` steps, then logging, validation and checkpoints."""
        lr = self.learning_rate(self.epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        start = self.epoch * self.iterations
        loader = make_loader(sampler, start, start + self.iterations, self.setup.num_workers,
                             pin_memory=self.device.type == "cuda")
        loss_sum = torch.zeros((), device=self.device)
        bar = tqdm(loader, total=self.iterations, desc=f"{self.name} epoch {self.epoch + 1}/{self.total_epochs}",
                   disable=not (self.setup.progress and self.context.is_main), leave=False)
        for batch in bar:
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            loss_sum += self.train_step(model, batch)
            fault_point("iteration")
        train_loss = float(mean_over_ranks(loss_sum / self.iterations, self.context).item())
        if not np.isfinite(train_loss):
            raise TrainingDivergedError(f"{self.name}: training loss became {train_loss} in epoch {self.epoch + 1} "
                                        f"(last checkpoint: {self.output / 'checkpoint_latest.pth'})", self.output)
        self.epoch += 1
        values = {"train_loss": train_loss, "lr": lr}
        last = self.epoch == self.total_epochs
        if self.context.is_main and (self.epoch % self.validation_every == 0 or last):
            values.update(self.validate())
            error = values.get("val_enhancement_error", values["val_loss"])
            if error < self.best_val:
                self.best_val = error
                self.save("checkpoint_best.pth")
        self.log.log(self.epoch, **values)
        if self.context.is_main:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
            tqdm.write(f"{self.name} epoch {self.epoch}/{self.total_epochs}: {shown}")
        self.save("checkpoint_latest.pth")
        self.write_log()
        barrier(self.context)

