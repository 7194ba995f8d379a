"""The plan as a frozen dataclass tree: every section and key of plans.json, built and validated here.

``Plans.from_dict`` checks the whole tree at once (missing, unknown and badly typed keys at any depth, then
the cross-field rules) and raises ``PlansError`` naming every problem by its dotted key, so a broken plan
fails when it is read, before any training. The defaults of the settings the planner does not compute
(optimizer, augmentation) are the dataclass defaults below; they are defined nowhere else.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from iterdce.core.dataclass_json import build_dataclass, to_json
from iterdce.core.errors import IterdceError
from iterdce.losses.registry import loss_weight_problems, with_default_weights
from iterdce.network.config import NetworkConfig, NetworkTopology, input_channels

PLANS_VERSION = 4
BREAST_MASK = "breast"  # TI-norm inside the case's breast mask (masksTr; iterdce_predict --breast-masks)
MASK_KINDS = (BREAST_MASK, "foreground", "nonzero")
# TI-norm reference when dataset.json names none: the first post-contrast phase (also iterdce_evaluate's default)
DEFAULT_REFERENCE_PHASE = 1
# where the loss is averaged: the whole patch (the paper) or the body foreground of the patch only
LOSS_MASKS = ("none", "foreground")


class PlansError(IterdceError, ValueError):
    """plans.json is missing, malformed or from another version."""


@dataclass(frozen=True)
class NormalizationPlan:
    """TI-norm: every phase is z-scored with the statistics of ``reference_phase`` inside ``mask``."""

    scheme: str
    reference_phase: int
    mask: str
    reference_rule: str

    def problems(self) -> list[str]:
        found = []
        if self.scheme != "ti_norm":
            found.append(f"normalization.scheme must be 'ti_norm', got {self.scheme!r}")
        if self.mask not in MASK_KINDS:
            found.append(f"normalization.mask must be one of {', '.join(MASK_KINDS)}, got {self.mask!r}")
        return found


@dataclass(frozen=True)
class NetworkPlan(NetworkTopology):
    """The iterU-Net's topology and temporal parts. It reads two channels, pre-contrast and current, plus the
    kinetic prior's estimate of the next phase when ``kinetic_prior`` is on (network/kinetic_prior.py): then
    each step predicts the change from the fold's voxel-wise regression instead of from the current phase."""

    kinetic_prior: bool

    def problems(self) -> list[str]:
        """The network's own checks (``NetworkConfig``), on the U-Net this section builds."""
        section = {k: v for k, v in to_json(self).items() if k != "kinetic_prior"}
        try:
            NetworkConfig.from_dict({**section, "in_channels": input_channels(self.kinetic_prior)})
        except ValueError as exc:
            return [str(exc)]
        return []

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists, not tuples): the form stored in checkpoints' model config."""
        return cast(dict[str, Any], to_json(self))


@dataclass(frozen=True)
class PerceptualPlan:
    """The Med3D weights of the perceptual loss term (None: env ITERDCE_MED3D_WEIGHTS, else the term is off)."""

    med3d_weights: str | None = None


@dataclass(frozen=True)
class OptimizerPlan:
    """AdamW with polynomial learning-rate decay and gradient clipping."""

    lr: float = 3e-4
    recursive_lr: float = 1e-4
    weight_decay: float = 1e-4
    betas: tuple[float, ...] = (0.9, 0.999)
    grad_clip_norm: float = 1.0
    poly_exponent: float = 0.9

    def problems(self) -> list[str]:
        found = [f"optimizer.{k} must be > 0" for k in ("lr", "recursive_lr", "grad_clip_norm", "poly_exponent")
                 if getattr(self, k) <= 0]
        if self.weight_decay < 0:
            found.append("optimizer.weight_decay must be >= 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            found.append(f"optimizer.betas must be two numbers in [0, 1), got {list(self.betas)}")
        return found


@dataclass(frozen=True)
class TrainingPlan:
    """Epoch budget of each stage, how often the fold's validation patches are scored, where the loss counts."""

    warmup_epochs: int
    recursive_epochs: int
    iterations_per_epoch: int
    validation_every: int
    loss_mask: str = "none"

    def problems(self) -> list[str]:
        found = [f"training.{name} must be >= 1" for name in ("warmup_epochs", "recursive_epochs",
                                                              "iterations_per_epoch", "validation_every")
                 if getattr(self, name) < 1]
        if self.loss_mask not in LOSS_MASKS:
            found.append(f"training.loss_mask must be one of {', '.join(LOSS_MASKS)}, got {self.loss_mask!r}")
        return found


@dataclass(frozen=True)
class AugmentationPlan:
    """batchgenerators augmentation; each probability is per sample (0 switches a transform off)."""

    rotation_deg: float = 15.0
    scale_range: tuple[float, ...] = (0.85, 1.15)
    mirror_axes: tuple[int, ...] = (0,)
    probability_spatial: float = 0.3
    gamma_range: tuple[float, ...] = (0.8, 1.25)
    probability_gamma: float = 0.2
    multiplicative_range: tuple[float, ...] = (0.9, 1.1)
    probability_multiplicative: float = 0.2
    bias_field_strength: float = 0.3
    probability_bias_field: float = 0.2
    noise_variance: tuple[float, ...] = (0.0, 0.05)
    probability_noise: float = 0.15
    # contrast uptake differs between sites (agent, dose, flip angle, AIF): every post-contrast phase's
    # change from the pre-contrast phase is multiplied by one log-uniform factor per sample (off by default)
    enhancement_scale_range: tuple[float, ...] = (0.67, 1.5)
    probability_enhancement_scale: float = 0.0

    def problems(self) -> list[str]:
        found = [f"augmentation.{f.name} must be in [0, 1]" for f in dataclasses.fields(self)
                 if f.name.startswith("probability_") and not 0 <= getattr(self, f.name) <= 1]
        for name in ("scale_range", "gamma_range", "multiplicative_range", "noise_variance",
                     "enhancement_scale_range"):
            low_high = getattr(self, name)
            if len(low_high) != 2 or low_high[0] > low_high[1] or low_high[0] < 0:
                found.append(f"augmentation.{name} must be [low, high] with 0 <= low <= high, got {list(low_high)}")
        if len(self.enhancement_scale_range) == 2 and self.enhancement_scale_range[0] <= 0:
            found.append("augmentation.enhancement_scale_range must be positive (a log-uniform factor), got "
                         f"{list(self.enhancement_scale_range)}")
        if any(a not in (0, 1, 2) for a in self.mirror_axes):
            found.append(f"augmentation.mirror_axes must be among 0, 1, 2, got {list(self.mirror_axes)}")
        return found


@dataclass(frozen=True)
class Plans:
    """Everything the preprocessor, trainer and predictor read about a dataset (plans.json)."""

    version: int
    plans_name: str
    dataset: str
    preset: str
    orientation: str
    spacing: tuple[float, ...]
    median_shape_after_resampling: tuple[float, ...]
    input_phases: tuple[int, ...]
    input_times_s: tuple[float, ...]
    target_times_s: tuple[float, ...]
    max_phases: int
    trained_target_times_s: tuple[float, ...]
    normalization: NormalizationPlan
    intensity_range: tuple[float, ...]
    patch_size: tuple[int, ...]
    batch_size: int
    estimated_gpu_memory_gb: float
    gpu_memory_budget_gb: float
    memory_estimate_note: str
    network: NetworkPlan
    loss_weights: dict[str, float]
    perceptual: PerceptualPlan
    optimizer: OptimizerPlan
    training: TrainingPlan
    augmentation: AugmentationPlan

    @property
    def reference_phase(self) -> int:
        """The phase whose statistics TI-normalize every phase (stored once, in ``normalization``)."""
        return self.normalization.reference_phase

    @property
    def phase_times_s(self) -> tuple[float, ...]:
        """The default protocol: input then target times (a case's own times replace it where given)."""
        return self.input_times_s + self.target_times_s

    @property
    def num_phases(self) -> int:
        """Phases of the default protocol."""
        return len(self.input_times_s) + len(self.target_times_s)

    @property
    def target_phases(self) -> tuple[int, ...]:
        """Phase indices of the default targets (the outputs' ``_pppp``): the phases after the inputs."""
        return tuple(range(len(self.input_phases), self.num_phases))

    def problems(self) -> list[str]:
        """The rules that tie fields together (the per-section rules run too)."""
        found = []
        if self.version != PLANS_VERSION:
            found.append(f"version {self.version} is not supported (this iterdce reads version {PLANS_VERSION})")
        if self.orientation != "RAS":
            found.append(f"orientation must be 'RAS', got {self.orientation!r}")
        for name in ("spacing", "patch_size"):
            values = getattr(self, name)
            if len(values) != 3 or not all(v > 0 for v in values):
                found.append(f"{name} must hold 3 positive numbers, got {list(values)}")
        if list(self.input_phases) != list(range(len(self.input_phases))):
            found.append(f"input_phases must be the first phases 0..k, got {list(self.input_phases)}")
        if len(self.input_times_s) != len(self.input_phases):
            found.append(f"input_times_s must hold one time per input phase ({len(self.input_phases)}), "
                         f"got {list(self.input_times_s)}")
        times = list(self.phase_times_s)
        if not self.target_times_s or any(b <= a for a, b in zip(times, times[1:])):
            found.append(f"input_times_s + target_times_s must be at least one target after the inputs, strictly "
                         f"increasing, got {list(self.input_times_s)} + {list(self.target_times_s)}")
        if self.max_phases < self.num_phases:
            found.append(f"max_phases ({self.max_phases}) must be at least the default protocol's "
                         f"{self.num_phases} phases")
        trained = self.trained_target_times_s
        if len(trained) != 2 or not trained[0] <= trained[1]:
            found.append(f"trained_target_times_s must be [earliest, latest], got {list(trained)}")
        if len(self.input_phases) < 2:
            found.append("input_phases must hold at least the pre-contrast and one post-contrast phase")
        if self.reference_phase not in self.input_phases:
            found.append("normalization.reference_phase must be one of input_phases")
        if self.batch_size < 1:
            found.append("batch_size must be >= 1")
        low_high = self.intensity_range
        if len(low_high) != 2 or not low_high[1] > low_high[0]:
            found.append(f"intensity_range must be [low, high] with high > low, got {list(low_high)}")
        found += loss_weight_problems(self.loss_weights)
        for section in (self.normalization, self.network, self.optimizer, self.training, self.augmentation):
            found += section.problems()
        return found

    @classmethod
    def from_dict(cls, raw: Any) -> Plans:
        """Build and check a plan from its JSON form; PlansError lists every problem by dotted key."""
        problems: list[str] = []
        plans = build_dataclass(cls, raw, "", problems, "the plan")
        if plans is not None and not problems:
            # a term the plan leaves out gets its default weight (a plan older than the term keeps loading)
            plans = dataclasses.replace(plans, loss_weights=with_default_weights(plans.loss_weights))
            problems += plans.problems()
        if problems or plans is None:
            raise PlansError("; ".join(problems))
        return plans

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what plans.json holds)."""
        return cast(dict[str, Any], to_json(self))

    def replace(self, **changes: Any) -> Plans:
        """A copy with top-level fields or, with ``section={...}``, some keys of a section changed; checked."""
        raw = self.to_dict()
        for key, value in changes.items():
            if isinstance(value, Mapping) and isinstance(raw.get(key), dict):
                raw[key] = {**raw[key], **value}
            else:
                raw[key] = to_json(value)
        return Plans.from_dict(raw)
