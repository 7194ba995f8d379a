"""Trainer: the training loop every stage and variant shares (data, AdamW, poly schedule, clipping,
validation, checkpoints, log).

A stage is described by class attributes (teacher forcing, which epoch budget and learning rate of the plan
it uses, the stage whose weights it starts from, network overrides) and built through overridable hooks:
``build_model``, ``build_loss``, ``build_optimizer``, ``learning_rate`` (the schedule) and ``build_sampler``.
A variant is one subclass (variants.py, or a file of ITERDCE_EXTENSIONS); its name, registry entry and output folder
come from the class.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from iterdce.core.atomic import remove_stale_temporaries, write_atomic, write_json_atomic
from iterdce.core.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_compatible_weights,
    load_weights,
    save_checkpoint,
    unwrap,
)
from iterdce.core.errors import TrainingDivergedError
from iterdce.core.fault_injection import fault_point
from iterdce.core.file_names import CHECKPOINT_BEST, CHECKPOINT_FINAL, CHECKPOINT_LATEST
from iterdce.losses.synthesis import SynthesisLoss
from iterdce.network.config import ModelConfig, checkpoint_model_config
from iterdce.network.precision import autocast_context, resolve_precision
from iterdce.network.synthesizer import build_synthesizer
from iterdce.preprocessing.plan_schema import Plans
from iterdce.regression.fit import fit_fold_regression
from iterdce.regression.model import REGRESSION_FILE
from iterdce.training.checkpoint_state import TrainingState
from iterdce.training.data_loader import PatchSampler, make_loader, start_workers, validation_batches
from iterdce.training.distributed import DistributedContext, barrier, init_distributed, mean_over_ranks
from iterdce.training.logger import TrainingLog
from iterdce.training.run_config import TrainingSetup

TRAINERS: dict[str, type[Trainer]] = {}


class Trainer:
    """The training loop; subclasses are stages and variants, registered under their class name."""

    name: ClassVar[str] = "Trainer"
    model_kind: ClassVar[str] = "iterative"
    network_overrides: ClassVar[dict[str, Any]] = {}
    teacher_forcing: ClassVar[bool] = True  # feed each step the real current phase instead of its own output
    epochs_from: ClassVar[tuple[str, ...]] = ("warmup_epochs",)  # TrainingPlan budgets summed for this stage
    lr_from: ClassVar[str] = "lr"  # the OptimizerPlan rate this stage starts from
    previous_stage: ClassVar[type[Trainer] | None] = None  # runs first; its final weights initialise this one

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Name and register every subclass by its class name, so a variant never shares its parent's folder."""
        super().__init_subclass__(**kwargs)
        cls.name = cls.__name__
        if cls.name in TRAINERS and TRAINERS[cls.name] is not cls:
            raise TypeError(f"two trainer classes are called {cls.name}")
        TRAINERS[cls.name] = cls

    def __init__(self, setup: TrainingSetup, context: DistributedContext | None = None) -> None:
        self.setup = setup
        self.plans: Plans = cast(Plans, setup.plans)  # TrainingSetup.__post_init__ made it a checked Plans
        self.context = context or init_distributed(setup.device)
        self.device = self.context.device
        self.output = setup.output_folder(self.name)
        self.pretrained_loaded = False
        training = self.plans.training
        self.total_epochs = int(setup.epochs or sum(getattr(training, k) for k in self.epochs_from))
        self.iterations = int(setup.iterations_per_epoch or training.iterations_per_epoch)
        self.validation_every = training.validation_every
        self.train_cases, self.val_cases = setup.fold_cases()
        self.log = TrainingLog()
        self.epoch, self.best_val = 0, float("inf")
        self._validation_batches: list[dict[str, Tensor]] | None = None
        torch.manual_seed(setup.seed)
        self.config = ModelConfig.from_plan(self.model_kind, {**self.plans.network.as_dict(), **self.network_overrides},
                                            self.plans.input_phases, self.plans.max_phases)
        self.model = self.build_model()
        self.loss = self.build_loss()
        self.base_lr = float(getattr(self.plans.optimizer, self.lr_from))
        self.optimizer = self.build_optimizer()
        self.precision = resolve_precision(setup.precision, self.device)
        self.autocast = autocast_context(self.precision, self.device)

    # ----- extension points: a variant overrides one of these ------------------------------------------
    def build_model(self) -> nn.Module:
        """The synthesizer of ``self.config`` on the device (seeded random weights)."""
        return build_synthesizer(self.config).to(self.device)

    def build_loss(self) -> SynthesisLoss:
        """The plan's weighted synthesis loss; SSIM's data range is the plan's intensity range."""
        low, high = self.plans.intensity_range
        return SynthesisLoss(self.plans.loss_weights, high - low, self.plans.perceptual.med3d_weights).to(self.device)

    def build_optimizer(self) -> torch.optim.Optimizer:
        """AdamW at this stage's starting rate (``lr_from``); ``learning_rate`` sets it every epoch."""
        opt = self.plans.optimizer
        return torch.optim.AdamW(self.model.parameters(), lr=self.base_lr, betas=(opt.betas[0], opt.betas[1]),
                                 weight_decay=opt.weight_decay)

    def learning_rate(self, epoch: int) -> float:
        """The schedule: polynomial decay from the stage's rate to 0 over the run."""
        return self.base_lr * (1 - epoch / self.total_epochs) ** self.plans.optimizer.poly_exponent

    def build_sampler(self) -> PatchSampler:
        """Training patches of the fold for this process (rank)."""
        return PatchSampler(self.setup.data_dir, self.train_cases, self.plans.patch_size, self.plans.batch_size,
                            self.plans.augmentation, self.setup.seed, self.context.rank)

    def unroll(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """Predictions for every target phase; with ``teacher_forcing`` each step is fed the real current phase,
        without it the model's previous output (backpropagation runs through every step)."""
        n_in = len(self.plans.input_phases)
        return model(batch["data"][:, :n_in], batch["times"], teacher=batch["data"] if self.teacher_forcing else None)

    def initial_weights(self) -> None:
        """Starting weights: ``previous_stage``'s final checkpoint of this fold; for a first stage the seeded
        random ones, or ``--pretrained-weights`` when given."""
        if self.previous_stage is None:
            self.load_pretrained()
            self.fit_kinetic_prior()
            return
        path = self.setup.output_folder(self.previous_stage.name) / CHECKPOINT_FINAL
        if not path.is_file():
            raise CheckpointError(f"{path}: the {self.previous_stage.name} stage has not finished for fold "
                                  f"{self.setup.fold}; run it first (iterdce_train {self.setup.fold} -tr "
                                  f"{self.name} runs every stage)", path)
        payload = load_checkpoint(path, self.device)
        if checkpoint_model_config(payload, path) != self.config:
            raise CheckpointError(f"{path}: its network does not match this plan's network", path)
        load_weights(unwrap(self.model), payload, path)
        self.log.notes.append(f"initialised from {path}")
        fit = path.parent / REGRESSION_FILE  # the prior came with the weights; its fit file follows, so the
        if self.context.is_main and fit.is_file():  # fold validation does not refit it
            self.output.mkdir(parents=True, exist_ok=True)
            write_atomic(self.output / REGRESSION_FILE, lambda tmp: shutil.copyfile(fit, tmp), suffix=".json")

    def load_pretrained(self) -> None:
        """``--pretrained-weights`` of a first stage into the model, once (``run`` calls it before it creates any
        folder, so weights that do not fit are refused with nothing written)."""
        pretrained = self.setup.pretrained_weights
        if self.previous_stage is not None or pretrained is None or self.pretrained_loaded:
            return
        count = load_compatible_weights(unwrap(self.model), Path(pretrained), self.device)
        self.log.notes.append(f"initialised {count} tensors from pretrained weights {pretrained}")
        self.pretrained_loaded = True

    def fit_kinetic_prior(self) -> None:
        """With the plan's kinetic prior, fit it on this fold's training cases (after any pretrained weights: a
        fine-tuned model uses the new cohort's kinetics); the main process stores the fit beside the
        checkpoints. Every rank fits the same (seeded) regression, so no broadcast is needed."""
        prior = getattr(unwrap(self.model), "kinetic_prior", None)
        if prior is None:
            return
        fit = fit_fold_regression(self.setup.data_dir, self.train_cases, len(self.plans.input_phases),
                                  progress=self.setup.progress and self.context.is_main)
        prior.set_fit(fit.degree, fit.time_degree, fit.coefficients, fit.feature_low, fit.feature_high,
                      fit.slope_degree, fit.slope_range, fit.slope_sigma_mm, self.plans.spacing)
        if self.context.is_main:
            write_json_atomic(self.output / REGRESSION_FILE, fit.to_json())
        self.log.notes.append(f"kinetic prior: the voxel-wise regression fitted on the fold's {len(self.train_cases)} "
                              "training cases")

    def stage_config(self) -> dict[str, Any]:
        """What defines this stage's training (for comparing variants): everything but the names."""
        return {"model_config": self.config.to_dict(), "teacher_forcing": self.teacher_forcing,
                "epochs": self.total_epochs,
                "iterations_per_epoch": self.iterations, "lr": self.base_lr, "optimizer": repr(self.optimizer),
                "loss": self.loss.describe(), "batch_size": self.plans.batch_size,
                "patch_size": self.plans.patch_size, "augmentation": self.plans.augmentation,
                "starts_from_previous_stage": self.previous_stage is not None}

    # ----- the loop ---------------------------------------------------------------------------------
    def notes(self) -> list[str]:
        return [f"{self.name} fold {self.setup.fold}: {len(self.train_cases)} training / {len(self.val_cases)} "
                f"validation cases, {self.total_epochs} epochs x {self.iterations} iterations, device {self.device} "
                f"({self.precision}), world size {self.context.world_size}", self.loss.describe()]

    def step_loss(self, predictions: Tensor, target: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """Mean synthesis loss over the target phases each case has (inside the patch's body foreground when the
        plan's ``training.loss_mask`` is "foreground"; lesion voxels marked for the lesion term).

        The (sample, target) pairs go through the loss in one call; ``batch["valid"]`` (from ``pad_phases``) gives
        the padded phases of shorter cases weight 0, so they add neither loss nor gradient. With every phase
        present this is the mean over targets of each target's loss over the batch, as before mixed protocols.
        """
        n, steps = predictions.shape[:2]
        spatial = predictions.shape[2:]

        def per_pair(volume: Tensor) -> Tensor:  # [B, 1 or T, ...] -> [B * T, 1, ...]
            return volume.expand(n, steps, *spatial).reshape(n * steps, 1, *spatial)

        mask = per_pair(batch["mask"]) if self.plans.training.loss_mask == "foreground" else None
        lesion = per_pair(batch["lesion"]) if "lesion" in batch else None
        valid = batch.get("valid")
        weights = None if valid is None else valid[:, -steps:].reshape(n * steps)
        return self.loss(per_pair(predictions.float()), per_pair(target), mask, lesion, weights)[0]

    def train_step(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """One optimizer step; returns the detached loss (no host synchronisation)."""
        n_in = len(self.plans.input_phases)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast:
            predictions = self.unroll(model, batch)
        loss = self.step_loss(predictions, batch["data"][:, n_in:], batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), self.plans.optimizer.grad_clip_norm)
        self.optimizer.step()
        return loss.detach()

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Recursive prediction (own outputs) on fixed validation patches: loss and lesion enhancement error."""
        model = unwrap(self.model)
        model.eval()
        n_in = len(self.plans.input_phases)
        loss_sum = torch.zeros((), device=self.device)
        error_sum = torch.zeros((), device=self.device)
        lesion_patches = torch.zeros((), device=self.device)
        if self._validation_batches is None:
            self._validation_batches = validation_batches(self.setup.data_dir, self.val_cases,
                                                          self.plans.patch_size, self.plans.batch_size)
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
            present = batch["valid"][:, n_in:] if "valid" in batch else torch.ones_like(mean_pred)
            squared = ((mean_pred - mean_true) ** 2 * present).sum(dim=1) / present.sum(dim=1).clamp(min=1)
            error_sum += (squared * has).sum()
            lesion_patches += has.sum()
        model.train()
        n_patches = sum(len(b["data"]) for b in batches)
        result = {"val_loss": float(loss_sum.item()) / max(n_patches, 1)}
        if lesion_patches.item() > 0:
            result["val_enhancement_error"] = float(error_sum.item() / lesion_patches.item())
        return result

    def checkpoint_payload(self) -> dict[str, Any]:
        return {
            "trainer": self.name, "plans_name": self.setup.plans_name, "fold": str(self.setup.fold),
            "model_config": self.config.to_dict(), "network_state": unwrap(self.model).state_dict(),
            "total_epochs": self.total_epochs, "iterations_per_epoch": self.iterations, "seed": self.setup.seed,
            **TrainingState(self.optimizer.state_dict(), self.epoch, self.best_val, torch.get_rng_state(),
                            self.log.state()).to_payload(),
        }

    def save(self, name: str) -> None:
        if self.context.is_main:
            save_checkpoint(self.output / name, self.checkpoint_payload())

    def copy_plans(self) -> None:
        """plans.json and dataset.json next to the folds, so the model folder predicts on its own."""
        model_folder = self.output.parent
        write_json_atomic(model_folder / "plans.json", self.plans.to_dict())
        dataset_json = self.setup.preprocessed_dataset / "dataset.json"
        if dataset_json.is_file():
            write_atomic(model_folder / "dataset.json", lambda tmp: shutil.copyfile(dataset_json, tmp))

    def resume(self) -> bool:
        """Load ``checkpoint_latest.pth`` with optimizer, epoch, log and RNG; False when there is none."""
        path = self.output / CHECKPOINT_LATEST
        if not path.is_file():
            if self.context.is_main:
                print(f"{self.name}: --continue found no {CHECKPOINT_LATEST} in {self.output}; starting from "
                      "scratch")
            return False
        payload = load_checkpoint(path, self.device)
        if checkpoint_model_config(payload, path) != self.config:
            raise CheckpointError(f"{path}: its network differs from this plan's; delete the folder or train "
                                  "without --continue", path)
        load_weights(unwrap(self.model), payload, path)
        state = TrainingState.from_payload(payload, path)
        self.optimizer.load_state_dict(state.optimizer_state)
        self.epoch, self.best_val = state.epoch, state.best_val
        torch.set_rng_state(state.torch_rng)
        self.log = TrainingLog(state.log["history"], state.log["notes"])
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
        if not (self.setup.resume and (self.output / CHECKPOINT_LATEST).is_file()):
            self.load_pretrained()
        if self.context.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.output, self.output.parent)
            self.copy_plans()
        resumed = self.setup.resume and self.resume()
        if resumed and self.epoch >= self.total_epochs and (self.output / CHECKPOINT_FINAL).is_file():
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
        sampler = self.build_sampler()
        model.train()
        while self.epoch < self.total_epochs:
            self.run_epoch(model, sampler)  # writes the log and plot after every epoch
        self.save(CHECKPOINT_FINAL)
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
        batches = start_workers(loader)
        fault_point("loader_started")
        bar = tqdm(batches, total=self.iterations, desc=f"{self.name} epoch {self.epoch + 1}/{self.total_epochs}",
                   disable=not (self.setup.progress and self.context.is_main), leave=False)
        for batch in bar:
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            loss_sum += self.train_step(model, batch)
            fault_point("iteration")
        train_loss = float(mean_over_ranks(loss_sum / self.iterations, self.context).item())
        if not np.isfinite(train_loss):
            raise TrainingDivergedError(f"{self.name}: training loss became {train_loss} in epoch {self.epoch + 1} "
                                        f"(last checkpoint: {self.output / CHECKPOINT_LATEST})", self.output)
        self.epoch += 1
        values = {"train_loss": train_loss, "lr": lr}
        last = self.epoch == self.total_epochs
        if self.context.is_main and (self.epoch % self.validation_every == 0 or last):
            values.update(self.validate())
            error = values.get("val_enhancement_error", values["val_loss"])
            if error < self.best_val:
                self.best_val = error
                self.save(CHECKPOINT_BEST)
        self.log.log(self.epoch, **values)
        if self.context.is_main:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
            tqdm.write(f"{self.name} epoch {self.epoch}/{self.total_epochs}: {shown}")
        self.save(CHECKPOINT_LATEST)
        self.write_log()
        barrier(self.context)

