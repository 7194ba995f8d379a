"""Planner presets: the knobs that differ between a full GPU plan and a CPU-sized one, as typed ``Preset``s.

Optimizer, augmentation and loss-weight defaults are shared by every preset; they live in plan_schema.py
(``OptimizerPlan``, ``AugmentationPlan``) and iterdce/losses (each loss term's default weight). A preset may
override some loss weights and the optimizer. A misspelt field fails when this module is imported, not silently
later.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from iterdce.preprocessing.plan_schema import OptimizerPlan, TrainingPlan


@dataclass(frozen=True)
class Preset:
    """How the planner sizes the network, the patch and the training budget."""

    base_features: int  # features of the first stage, doubled per stage up to max_features
    max_features: int
    max_stages: int
    initial_patch_voxels: int  # the patch the planner starts from before fitting it to the memory budget
    max_batch_size: int
    time_embedding_dim: int
    training: TrainingPlan
    min_spacing_mm: tuple[float, float, float] | None = None  # resample no finer than this
    loss_weights: Mapping[str, float] = field(default_factory=dict)  # overrides of the default weights
    kinetic_prior: bool = False
    optimizer: OptimizerPlan = field(default_factory=OptimizerPlan)


PRESETS: dict[str, Preset] = {
    "default": Preset(
        base_features=32, max_features=320, max_stages=6, initial_patch_voxels=160 ** 3, max_batch_size=8,
        time_embedding_dim=64,
        training=TrainingPlan(warmup_epochs=150, recursive_epochs=100, iterations_per_epoch=250,
                              validation_every=10)),
    # a laptop/2-core plan: coarser resampling so a small patch still spans ~7 cm, a narrow 4-stage network, and a
    # budget that trains 40 cases in under 30 minutes on 2 cores (documentation/training.md)
    "cpu": Preset(
        base_features=8, max_features=64, max_stages=4, initial_patch_voxels=48 * 48 * 32, max_batch_size=2,
        time_embedding_dim=32, min_spacing_mm=(1.5, 1.5, 2.0),
        # the loss that learned the kinetics in the cross-site ablation (reports/training_hypotheses.md): a heavier
        # L1, the lesion L1 term, both averaged inside the body foreground
        loss_weights={"l1": 1.0, "lesion_l1": 1.0},
        # each step predicts the change from the fold's voxel-wise kinetic regression (documentation/training.md)
        kinetic_prior=True,
        # 8 + 8 epochs of 100 iterations: 1,600 steps, timed within 30 minutes in bf16 on 2 cores
        # (reports/cpu_preset_budget.md; reports/training_hypotheses.md, hypothesis 5, for why more steps)
        training=TrainingPlan(warmup_epochs=8, recursive_epochs=8, iterations_per_epoch=100, validation_every=4,
                              loss_mask="foreground")),
    "tiny": Preset(
        base_features=8, max_features=32, max_stages=3, initial_patch_voxels=32 * 32 * 16, max_batch_size=2,
        time_embedding_dim=16,
        training=TrainingPlan(warmup_epochs=4, recursive_epochs=4, iterations_per_epoch=25, validation_every=2)),
}
