"""The planner: from the dataset fingerprint to plans.json (spacing, normalization, phases, network, patch).

The plan is the typed ``Plans`` tree (plan_schema.py), stored as plans.json; editing that file under a new
name is how users try other settings (documentation/plans.md).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from iterdce.core.errors import DataError, UsageError
from iterdce.dataset.schema import DatasetSchemaError
from iterdce.losses.registry import default_loss_weights
from iterdce.preprocessing.fingerprint_schema import DatasetFingerprint
from iterdce.preprocessing.plan_schema import (
    DEFAULT_REFERENCE_PHASE,
    PLANS_VERSION,
    AugmentationPlan,
    NetworkPlan,
    NormalizationPlan,
    PerceptualPlan,
    Plans,
)
from iterdce.preprocessing.presets import PRESETS, Preset
from iterdce.preprocessing.resampling import ANISOTROPY_THRESHOLD
from iterdce.preprocessing.topology import Topology, conform_patch, estimate_memory_gb, plan_topology

REFERENCE_RULE = f"first post-contrast phase (phase index {DEFAULT_REFERENCE_PHASE})"


def plan_spacing(spacings: np.ndarray, shapes: np.ndarray) -> list[float]:
    """Median spacing; a strongly anisotropic axis takes its 10th percentile instead (as nnU-Net does).

    The axis counts as anisotropic when it is > 3x coarser than the others and has < 1/3 of their voxels.
    """
    target = np.median(spacings, axis=0)
    median_shape = np.median(shapes, axis=0)
    axis = int(np.argmax(target))
    others = [a for a in range(3) if a != axis]
    coarse = target[axis] > ANISOTROPY_THRESHOLD * max(target[others])
    few_voxels = median_shape[axis] * ANISOTROPY_THRESHOLD < min(median_shape[others])
    if coarse and few_voxels:
        tenth = float(np.percentile(spacings[:, axis], 10))
        target[axis] = max(tenth, max(target[others]) + 1e-5)
    return [round(float(s), 6) for s in target]


def initial_patch(spacing: Sequence[float], median_shape: Sequence[float], voxels: float) -> list[int]:
    """Patch covering the same physical extent on every axis, ``voxels`` in all, clipped to the median shape."""
    inverse = 1.0 / np.asarray(spacing, dtype=float)
    patch = inverse * (voxels / np.prod(inverse)) ** (1.0 / 3.0)
    return [int(max(1, min(round(p), math.ceil(m)))) for p, m in zip(patch, median_shape)]


def fit_patch_and_topology(spacing: Sequence[float], median_shape: Sequence[float], preset: Preset,
                           recursion_steps: int, gpu_memory_gb: float, perceptual: bool
                           ) -> tuple[list[int], Topology, float]:
    """Shrink the patch (the axis largest relative to the median shape first) until the estimate fits."""
    patch = initial_patch(spacing, median_shape, preset.initial_patch_voxels)

    def build(candidate: list[int]) -> tuple[list[int], Topology]:
        topology = plan_topology(candidate, spacing, preset.max_stages, preset.base_features,
                                 preset.max_features)
        return conform_patch(candidate, topology.divisor), topology

    patch, topology = build(patch)
    memory = estimate_memory_gb(patch, topology, 2, recursion_steps, perceptual)
    while memory > gpu_memory_gb and max(patch) > 2 * 4:
        relative = np.array(patch) / np.maximum(np.asarray(median_shape, dtype=float), 1.0)
        axis = int(np.argmax(relative * np.array([p > 8 for p in patch])))
        step = max(topology.divisor[axis], 1)
        shrunk = list(patch)
        shrunk[axis] = max(8, patch[axis] - step)
        if shrunk == patch:
            break
        patch, topology = build(shrunk)
        memory = estimate_memory_gb(patch, topology, 2, recursion_steps, perceptual)
    return patch, topology, memory


def choose_batch_size(patch: Sequence[int], topology: Topology, recursion_steps: int, gpu_memory_gb: float,
                      perceptual: bool, max_batch: int, dataset_voxels: float) -> int:
    """Even batch (pairs of lesion + random patches), grown while memory and 5% of the dataset allow."""
    batch = 2
    while batch + 2 <= max_batch:
        fits = estimate_memory_gb(patch, topology, batch + 2, recursion_steps, perceptual) <= gpu_memory_gb
        small = (batch + 2) * float(np.prod(patch)) <= 0.05 * dataset_voxels
        if not (fits and small):
            break
        batch += 2
    return batch


def intensity_range(fingerprint: DatasetFingerprint, reference_phase: int) -> list[float]:
    """Range of TI-normalized intensities (0.5 / 99.5 percentiles over all cases and phases)."""
    lows, highs = [], []
    for case in fingerprint.cases:
        ref = case.phases[reference_phase]
        std = max(ref.std, 1e-8)
        lows += [(p.percentile_00_5 - ref.mean) / std for p in case.phases]
        highs += [(p.percentile_99_5 - ref.mean) / std for p in case.phases]
    return [float(min(lows)), float(max(highs))]


@dataclass(frozen=True)
class ProtocolChoice:
    """The plan's timing: the default protocol split into input and target times, the longest case, and the
    range of target times the training cases cover."""

    input_times_s: tuple[float, ...]
    target_times_s: tuple[float, ...]
    max_phases: int
    trained_target_times_s: tuple[float, float]


def choose_protocol(fingerprint: DatasetFingerprint, n_inputs: int) -> ProtocolChoice:
    """Default protocol: the median times of the cases with dataset.json's phase count (dataset.json's own times
    when no case has it); targets are every phase after the inputs, as times. Cases of other protocols only
    widen ``max_phases`` and the trained range of target times."""
    cases = fingerprint.cases
    default = [float(t) for t in fingerprint.phase_times_s or cases[0].phase_times_s]
    same = [c.phase_times_s for c in cases if len(c.phase_times_s) == len(default)]
    times = [float(t) for t in np.median(np.array(same, dtype=float), axis=0)] if same else default
    too_short = [c.case for c in cases if len(c.phase_times_s) <= n_inputs]
    if too_short or len(times) <= n_inputs:
        raise DataError(f"{fingerprint.dataset}: case(s) {', '.join(too_short) or 'of the default protocol'} "
                        f"have no phase after the {n_inputs} input phases")
    targets = [t for c in cases for t in c.phase_times_s[n_inputs:]]
    return ProtocolChoice(tuple(times[:n_inputs]), tuple(times[n_inputs:]),
                          max(len(c.phase_times_s) for c in cases), (float(min(targets)), float(max(targets))))


def plan_experiment(fingerprint: DatasetFingerprint, preset: str = "default", gpu_memory_gb: float = 8.0,
                    plans_name: str = "plans", med3d_weights: str | None = None) -> Plans:
    """Every decision of the plan, checked as a plan read from disk is.

    Args:
        fingerprint: the dataset fingerprint (fingerprint.py): spacings, shapes, phases, intensities per case.
        preset: planner preset (presets.PRESETS).
        gpu_memory_gb: training memory budget the patch and batch are fitted to.
        plans_name: the plan's name (its file is ``<plans_name>.json``).
        med3d_weights: Med3D weights file of the perceptual loss term (None: env ITERDCE_MED3D_WEIGHTS).
    """
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    settings = PRESETS[preset]
    cases = fingerprint.cases
    if not cases:
        raise DataError("the fingerprint holds no cases")
    spacings = np.array([c.spacing for c in cases], dtype=float)
    cropped = np.array([c.shape_after_crop for c in cases], dtype=float)
    spacing = plan_spacing(spacings, cropped)
    if settings.min_spacing_mm is not None:  # a CPU-sized plan resamples coarser so a small patch sees more anatomy
        spacing = [round(max(s, m), 6) for s, m in zip(spacing, settings.min_spacing_mm)]
    resampled = cropped * spacings / np.array(spacing)
    median_shape = np.median(resampled, axis=0)
    input_phases = list(fingerprint.input_phases or (0, 1))
    reference = fingerprint.reference_phase
    rule = "dataset.json reference_phase" if reference is not None else REFERENCE_RULE
    reference = DEFAULT_REFERENCE_PHASE if reference is None else int(reference)
    if reference not in input_phases:
        raise DatasetSchemaError(f"dataset.json of {fingerprint.dataset}: reference phase {reference} must "
                                 f"be an input phase {input_phases}: at prediction time only the input phases exist")
    protocol = choose_protocol(fingerprint, len(input_phases))
    # network calls per sample: one per step from phase 1 to the longest case's last phase (the warm-up steps
    # between later input phases included); each keeps its activations for backprop
    steps = protocol.max_phases - 2
    patch, topology, memory = fit_patch_and_topology(spacing, median_shape, settings, steps, gpu_memory_gb,
                                                     perceptual=True)
    dataset_voxels = float(np.sum(np.prod(resampled, axis=1)))
    batch = choose_batch_size(patch, topology, steps, gpu_memory_gb, True, settings.max_batch_size,
                              dataset_voxels)
    plans = Plans(
        version=PLANS_VERSION,
        plans_name=plans_name,
        dataset=fingerprint.dataset,
        preset=preset,
        orientation="RAS",
        spacing=tuple(spacing),
        median_shape_after_resampling=tuple(float(s) for s in median_shape),
        input_phases=tuple(input_phases),
        input_times_s=protocol.input_times_s,
        target_times_s=protocol.target_times_s,
        max_phases=protocol.max_phases,
        trained_target_times_s=protocol.trained_target_times_s,
        normalization=NormalizationPlan("ti_norm", reference, fingerprint.mask_kind, rule),
        intensity_range=tuple(intensity_range(fingerprint, reference)),
        patch_size=tuple(patch),
        batch_size=batch,
        estimated_gpu_memory_gb=round(estimate_memory_gb(patch, topology, batch, steps, True), 2),
        gpu_memory_budget_gb=float(gpu_memory_gb),
        memory_estimate_note=f"{memory:.2f} GB at batch 2; includes {steps} unrolled recursion steps",
        network=NetworkPlan(
            features_per_stage=tuple(topology.features_per_stage),
            pool_per_stage=tuple(tuple(p) for p in topology.pool_per_stage),
            time_embedding_dim=settings.time_embedding_dim,
            time_scale_s=protocol.target_times_s[-1],
            use_time_embedding=True,
            use_convlstm=True,
            kinetic_prior=settings.kinetic_prior,
        ),
        loss_weights={**default_loss_weights(), **settings.loss_weights},
        perceptual=PerceptualPlan(med3d_weights),
        optimizer=settings.optimizer,
        training=settings.training,
        augmentation=AugmentationPlan(),
    )
    return Plans.from_dict(plans.to_dict())  # the same checks as a plan read from disk


def _seconds(times: Sequence[float], separator: str = ", ") -> str:
    return separator.join(f"{t:.0f}" for t in times) + " s"


def plan_summary(plans: Plans) -> str:
    """A few human-readable lines about the plan."""
    net, norm = plans.network, plans.normalization
    return "\n".join([
        f"plan {plans.plans_name!r} for {plans.dataset} (preset {plans.preset})",
        f"  spacing (mm)      {', '.join(f'{s:.3g}' for s in plans.spacing)}   (orientation {plans.orientation})",
        f"  median shape      {' x '.join(f'{s:.0f}' for s in plans.median_shape_after_resampling)}",
        f"  phases            inputs {list(plans.input_phases)} at {_seconds(plans.input_times_s)} -> targets at "
        f"{_seconds(plans.target_times_s)} (default protocol; up to {plans.max_phases} phases, targets trained "
        f"at {_seconds(plans.trained_target_times_s, ' to ')})",
        f"  normalization     TI-norm on phase {norm.reference_phase} inside the {norm.mask} mask "
        f"({norm.reference_rule})",
        f"  patch / batch     {' x '.join(map(str, plans.patch_size))} / {plans.batch_size}   "
        f"(~{plans.estimated_gpu_memory_gb} GB of {plans.gpu_memory_budget_gb} GB)",
        f"  network           {len(net.features_per_stage)} stages, features {list(net.features_per_stage)}, "
        f"pooling {[list(p) for p in net.pool_per_stage]}",
    ])
