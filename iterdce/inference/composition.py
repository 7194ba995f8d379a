"""Composition at native resolution: a synthesized phase = a base image on the case's own grid + the network's
predicted change, brought back from the plan grid.

The network runs on the plan's grid (e.g. 1.5 x 1.5 x 2 mm), which is coarser than many acquisitions. Sending
the whole synthesized image back to the case's grid would lose every detail finer than the plan spacing, so a
perfect model would score below copying the last input. Instead only the *change* the network predicts from a
base is resampled; the base itself is evaluated on the native voxels:

- ``prior``: the model's voxel-wise kinetic prior (the fold's regression, ``kinetic_terms.later_phases``)
  evaluated on the native input phases; the network's change is its change from the prior. Needs a model
  trained with ``network.kinetic_prior``.
- ``last``: the native last input phase; the change is the synthesized phase minus the last input (plan grid).
- ``plan``: no composition: the whole synthesized image resampled back (what iterdce did before; kept to
  measure against).

A zero change returns the base bit for bit. ``auto`` is ``prior`` for a model with a kinetic prior, else
``last`` (documentation/prediction_internals.md gives the measurements behind that choice).

The out-of-distribution guard: a model with a kinetic prior knows the range of early enhancement and
pre-contrast intensity (TI-normalized) its training cases covered (the prior's clip limits, the 0.5-99.5th
percentiles of every training case). A case with more of its body outside that range than any training case
is one the model never saw; there its synthesized phases are moved towards the native last input, fully so
beyond ``OOD_FULL``. That is the safe answer where the later phases change little (measured: site F), not where
they change much (site D; documentation/prediction_internals.md gives both).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from iterdce.core.errors import UsageError
from iterdce.core.kinetic_terms import DEGREE, TIME_DEGREE, TIME_UNIT_S, input_slope, later_phases
from iterdce.preprocessing.case_properties import CaseProperties
from iterdce.preprocessing.cropping import crop
from iterdce.preprocessing.normalization import apply_ti_norm, undo_ti_norm
from iterdce.preprocessing.orientation import inverse_transform, reorient, reorient_view
from iterdce.preprocessing.preprocessor import restore_phases
from iterdce.preprocessing.resampling import resample_phases

COMPOSE_MODES = ("auto", "prior", "last", "plan")
DEFAULT_COMPOSE = "auto"
# fraction of body voxels outside the trained intensity range: up to OOD_START the change is kept whole (the
# training cases of the shipped models reach 0.9 %), from OOD_FULL on the case is the last input phase
OOD_START, OOD_FULL = 0.01, 0.03


@dataclass(frozen=True)
class PriorFit:
    """One fold's kinetic prior as plain numbers (picklable for the ``-np`` workers)."""

    coefficients: tuple[float, ...]
    low: tuple[float, float, float]
    high: tuple[float, float, float]
    slope_degree: int = 0  # > 0: reads the slope between the last two of >= 3 inputs
    slope_range: tuple[float, float] = (0.0, 0.0)
    slope_sigma_mm: float = 0.0  # the slope's smoothing (kinetic_terms.SLOPE_SMOOTHING_MM; 0: none)

    def estimate(self, inputs: np.ndarray, input_times_s: Sequence[float], target_times_s: Sequence[float],
                 spacing_mm: Sequence[float] | None = None) -> np.ndarray:
        """TI-normalized inputs [n_in, ...] on a grid of ``spacing_mm`` -> the prior's estimate at each target
        time [T, ...] (float32)."""
        taus = [(float(t) - float(input_times_s[-1])) / TIME_UNIT_S for t in target_times_s]
        slope = input_slope(inputs, input_times_s, self.slope_sigma_mm, spacing_mm) if self.slope_degree else None
        return later_phases(inputs[0], inputs[-1], taus, self.coefficients, self.low, self.high, DEGREE,
                            TIME_DEGREE, np.float32, slope, self.slope_degree, self.slope_range)


@dataclass(frozen=True)
class Composition:
    """How synthesized phases are put on the case's grid: a resolved mode, every fold's prior fit (the base of
    ``prior``, the mean of the folds' as the ensemble's output is their mean; and the trained range the guard
    compares a case with) and whether the out-of-distribution guard is on."""

    mode: str
    priors: tuple[PriorFit, ...] = ()
    guard: bool = True  # the out-of-distribution guard (needs priors: the trained range)

    def kept(self, plan_inputs: np.ndarray, mask: np.ndarray) -> tuple[float | None, float]:
        """(fraction of the body outside the trained range or None, share of the change kept) of one case."""
        fraction = outside_fraction(plan_inputs, mask, self.priors)
        return fraction, change_kept(fraction) if self.guard else 1.0

    def base(self, inputs: np.ndarray, times_s: Sequence[float] | np.ndarray,
             spacing_mm: Sequence[float] | None = None) -> np.ndarray:
        """The base of every target phase [T, ...] from TI-normalized ``inputs`` [n_in, ...] on any grid (of
        ``spacing_mm``: a prior with a smoothed slope needs it)."""
        n_in = inputs.shape[0]
        targets = [float(t) for t in times_s[n_in:]]
        if self.mode == "last":
            return np.broadcast_to(inputs[-1], (len(targets), *inputs.shape[1:]))
        times = [float(t) for t in times_s[:n_in]]
        total = self.priors[0].estimate(inputs, times, targets, spacing_mm)
        for fit in self.priors[1:]:
            total += fit.estimate(inputs, times, targets, spacing_mm)
        if len(self.priors) > 1:
            total /= np.float32(len(self.priors))
        return total


def outside_fraction(plan_inputs: np.ndarray, mask: np.ndarray, priors: Sequence[PriorFit]) -> float | None:
    """Fraction of the ``mask`` voxels whose early enhancement (last input - pre-contrast) or pre-contrast
    intensity lies outside the range every fold's prior was fitted on (TI-normalized, plan grid); None without a
    prior (nothing records what the model was trained on)."""
    if not priors or not mask.any():
        return None
    low = np.min([fit.low[:2] for fit in priors], axis=0)
    high = np.max([fit.high[:2] for fit in priors], axis=0)
    u = (plan_inputs[-1] - plan_inputs[0])[mask]
    v = plan_inputs[0][mask]
    outside = (u < low[0]) | (u > high[0]) | (v < low[1]) | (v > high[1])
    return float(outside.mean())


def change_kept(fraction: float | None) -> float:
    """How much of the synthesized change from the last input is kept: 1 in distribution (or unknown), falling
    linearly to 0 between ``OOD_START`` and ``OOD_FULL`` of the body outside the trained range."""
    if fraction is None or fraction <= OOD_START:
        return 1.0
    return float(max(0.0, (OOD_FULL - fraction) / (OOD_FULL - OOD_START)))


def model_priors(models: Sequence[nn.Module]) -> tuple[PriorFit, ...]:
    """Every model's kinetic prior as a ``PriorFit``; empty when any model has none."""
    fits = []
    for model in models:
        prior = getattr(model, "kinetic_prior", None)
        if prior is None:
            return ()
        slope_range = prior.slope_range.tolist() if prior.slope_degree else [0.0, 0.0]
        sigma = float(prior.slope_sigma_mm.item()) if prior.slope_degree else 0.0
        fits.append(PriorFit(tuple(float(c) for c in prior.coefficients.tolist()),
                             tuple(float(x) for x in prior.low.tolist()),  # type: ignore[arg-type]
                             tuple(float(x) for x in prior.high.tolist()),  # type: ignore[arg-type]
                             int(prior.slope_degree), (float(slope_range[0]), float(slope_range[1])), sigma))
    return tuple(fits)


def resolve_composition(mode: str, priors: tuple[PriorFit, ...], guard: bool = True) -> Composition:
    """``--compose`` for a model whose folds have ``priors`` (empty without a kinetic prior); ``guard``: the
    out-of-distribution guard (``--ood-guard`` turns it on)."""
    if mode not in COMPOSE_MODES:
        raise UsageError(f"--compose {mode}: choose one of {', '.join(COMPOSE_MODES)}")
    if mode == "auto":
        mode = "prior" if priors else "last"
    if mode == "prior" and not priors:
        raise UsageError("--compose prior needs a model trained with a kinetic prior (network.kinetic_prior in "
                         "its plan); this model has none: use --compose last")
    return Composition(mode, priors, guard)


def native_phases(synthesized: np.ndarray, plan_inputs: np.ndarray, inputs: np.ndarray,
                  times_s: Sequence[float] | np.ndarray, properties: CaseProperties, composition: Composition,
                  kept: float = 1.0, base: np.ndarray | None = None) -> np.ndarray:
    """Synthesized target phases on the case's own grid, in its intensity scale.

    Args:
        synthesized: TI-normalized targets [T, x, y, z] on the plan grid (the network's output).
        plan_inputs: the TI-normalized input phases [n_in, x, y, z] on the plan grid the network read.
        inputs: the input phases [n_in, X, Y, Z] as read (the case's voxel order and intensities).
        times_s: every time, inputs first.
        properties: the preprocessing record of the case (``preprocess_canonical``).
        composition: the base and its fits.
        kept: the share of the change from the last input that is kept (``change_kept``; 1: all of it).
        base: ``canonical_base`` of this case and composition when already computed (it is added to in place).
    """
    if composition.mode == "plan":
        restored = restore_phases(synthesized, properties)
        return restored if kept >= 1.0 else _towards_last(restored, inputs[-1], kept)
    change = synthesized - composition.base(plan_inputs, times_s, properties.target_spacing)
    change = resample_phases(change, properties.target_spacing, properties.cropped_shape)
    change *= np.float32(properties.ti_norm.std)
    full = canonical_base(inputs, times_s, properties, composition, change.shape[0]) if base is None else base
    crop(full, properties.crop_box)[...] += change
    composed = case_orientation(full, properties)
    return composed if kept >= 1.0 else _towards_last(composed, inputs[-1], kept)


def native_phases_and_prior(synthesized: np.ndarray, plan_inputs: np.ndarray, inputs: np.ndarray,
                            times_s: Sequence[float] | np.ndarray, properties: CaseProperties,
                            composition: Composition, kept: float = 1.0, with_prior: bool = False
                            ) -> tuple[np.ndarray, np.ndarray | None]:
    """``native_phases`` and, with ``with_prior`` and a model with priors, the kinetic prior's target phases alone
    on the case's grid (the mean of the folds' fits: the reference of the curve-type probabilities of
    ``--uncertainty``), the prior evaluated once: with ``prior`` composition it is also the base."""
    if not (with_prior and composition.priors):
        return native_phases(synthesized, plan_inputs, inputs, times_s, properties, composition, kept), None
    prior = canonical_base(inputs, times_s, properties, Composition("prior", composition.priors),
                           len(times_s) - inputs.shape[0])
    base = prior.copy() if composition.mode == "prior" else None
    return (native_phases(synthesized, plan_inputs, inputs, times_s, properties, composition, kept, base),
            case_orientation(prior, properties))


def case_orientation(canonical: np.ndarray, properties: CaseProperties) -> np.ndarray:
    """Phases in canonical orientation back in the case's own voxel order."""
    return reorient(canonical, inverse_transform(np.asarray(properties.orientation_transform)))


def canonical_base(inputs: np.ndarray, times_s: Sequence[float] | np.ndarray, properties: CaseProperties,
                   composition: Composition, n_targets: int) -> np.ndarray:
    """The base of ``n_targets`` phases on the case's grid in canonical orientation (a new array): the prior of
    the native inputs inside the crop box for ``prior``, the last input everywhere else (and for ``last``)."""
    stats = properties.ti_norm
    canonical = reorient_view(inputs, np.asarray(properties.orientation_transform))
    full = np.repeat(canonical[-1:].astype(np.float32), n_targets, axis=0)  # outside the box: all inputs 0
    if composition.mode == "prior":
        cropped = crop(canonical, properties.crop_box)
        crop(full, properties.crop_box)[...] = undo_ti_norm(
            composition.base(apply_ti_norm(cropped, stats), times_s, properties.canonical_spacing), stats)
    return full


def _towards_last(phases: np.ndarray, last: np.ndarray, kept: float) -> np.ndarray:
    """``last + kept * (phases - last)`` per phase; ``kept`` 0 returns the last input exactly."""
    base = last.astype(np.float32)
    if kept <= 0.0:
        return np.repeat(base[None], phases.shape[0], axis=0)
    return (base[None] + np.float32(kept) * (phases - base[None])).astype(np.float32)
