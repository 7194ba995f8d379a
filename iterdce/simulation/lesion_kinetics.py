"""Kinetic parameters of a lesion that provably give its declared BI-RADS curve type.

The type is chosen first; parameters are drawn from the type's clinical range and redrawn until the
noiseless lesion-mean signal curve (heterogeneity, rim core, proton density and bias field included)
has a curve ratio at least 0.05 away from the +-0.10 thresholds of the rule.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from iterdce.core.kinetics_rule import curve_ratio
from iterdce.simulation.fields import quantile_bins
from iterdce.simulation.kinetics import ParamSet, Physics
from iterdce.simulation.lesions import PlacedLesion

LESION_BINS = 6
TYPE_TRIES = 400
WIDE_TRIES = 1600
RANGES = {  # per minute; ve and vp volume fractions
    "persistent": {"ktrans": (0.02, 0.15), "ve": (0.3, 0.6), "vp": (0.005, 0.03)},
    "plateau": {"ktrans": (0.05, 0.25), "ve": (0.2, 0.5), "vp": (0.01, 0.05)},
    "washout": {"ktrans": (0.15, 0.6), "ve": (0.15, 0.4), "vp": (0.02, 0.1)},
}
WIDE_RANGE = {"ktrans": (0.01, 1.0), "ve": (0.08, 0.7), "vp": (0.002, 0.15)}
MARGIN = 0.05
THRESHOLD = 0.10


@dataclass(frozen=True)
class LesionKinetics:
    """Lesion-level parameters, one parameter set per bin (core last), the bin of each voxel, and the ratio."""

    base: ParamSet
    sets: list[ParamSet]
    voxel_set: np.ndarray
    ratio: float
    mean_curve: np.ndarray


def ratio_in_band(ratio: float, curve_type: str) -> bool:
    """True when ``ratio`` classifies as ``curve_type`` with a margin of 0.05 to either threshold."""
    if curve_type == "persistent":
        return ratio > THRESHOLD + MARGIN
    if curve_type == "washout":
        return ratio < -THRESHOLD - MARGIN
    if curve_type == "plateau":
        return abs(ratio) < THRESHOLD - MARGIN
    raise ValueError(f"unknown curve type {curve_type!r}")


def _draw(rng: np.random.Generator, ranges: dict[str, tuple[float, float]]) -> tuple[float, float, float]:
    low, high = ranges["ktrans"]
    ktrans = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    return ktrans, float(rng.uniform(*ranges["ve"])), float(rng.uniform(*ranges["vp"]))


def _draw_prior(rng: np.random.Generator, ranges: dict[str, tuple[float, float]]) -> tuple[float, float, float]:
    """A site prior draw: Ktrans and vp log-uniform (both span more than a decade), ve uniform."""
    ktrans = float(np.exp(rng.uniform(*np.log(ranges["ktrans"]))))
    return ktrans, float(rng.uniform(*ranges["ve"])), float(np.exp(rng.uniform(*np.log(ranges["vp"]))))


def _roughly(ratio: float, curve_type: str) -> bool:
    """A cheap pre-check on the homogeneous curve, 0.1 looser than the final band (saves full solves)."""
    bounds = {"persistent": (0.05, np.inf), "plateau": (-0.15, 0.15), "washout": (-np.inf, -0.05)}[curve_type]
    return bounds[0] < ratio < bounds[1]


def _bin_sets(base: ParamSet, bin_means: np.ndarray) -> list[ParamSet]:
    """Voxel-bin parameter sets: perfusion (Ktrans, vp) scales with the modulation, ve mildly."""
    return [ParamSet(ktrans_per_min=base.ktrans_per_min * m,
                     ve=float(np.clip(base.ve * (1.0 + 0.25 * (m - 1.0)), 0.05, 0.9)),
                     vp=base.vp * m, t10_s=base.t10_s) for m in bin_means]


def lesion_kinetics(
    rng: np.random.Generator, lesion: PlacedLesion, weights: np.ndarray, physics: Physics,
    ranges: dict[str, tuple[float, float]] | None = None,
) -> LesionKinetics:
    """Draw and verify the kinetics of ``lesion``; ``weights`` is proton density x bias per lesion voxel.

    ``ranges`` (Ktrans, ve, vp) replaces the declared type's own ranges: a draw from a broad prior kept only
    when it gives the type, so Ktrans (early enhancement) relates to the type only as far as physics makes it.
    """
    curve_type = lesion.spec.curve_type
    t10 = float(rng.uniform(1.2, 1.6))
    enhancing = ~lesion.core
    bin_index, bin_means = quantile_bins(lesion.modulation[enhancing], LESION_BINS)
    voxel_set = np.full(lesion.n_voxels, len(bin_means), dtype=np.int32)
    voxel_set[enhancing] = bin_index
    core_sets = [ParamSet(t10_s=min(1.4 * t10, 2.5))] if lesion.core.any() else []
    n_sets = len(bin_means) + len(core_sets)
    bin_weights = np.bincount(voxel_set, weights=weights, minlength=n_sets) / lesion.n_voxels
    core_curves = physics.signals(core_sets)
    for attempt in range(TYPE_TRIES + WIDE_TRIES):
        if ranges is not None and attempt < TYPE_TRIES:
            ktrans, ve, vp = _draw_prior(rng, ranges)
            base = ParamSet(ktrans_per_min=ktrans, ve=ve, vp=vp, t10_s=t10)
            if not _roughly(float(curve_ratio(physics.signal(base), physics.times_s)), curve_type):
                continue
        else:
            ktrans, ve, vp = _draw(rng, RANGES[curve_type] if attempt < TYPE_TRIES else WIDE_RANGE)
            base = ParamSet(ktrans_per_min=ktrans, ve=ve, vp=vp, t10_s=t10)
        sets = _bin_sets(base, bin_means)
        curves = np.concatenate([physics.signals(sets), core_curves])
        mean_curve = bin_weights @ curves
        ratio = float(curve_ratio(mean_curve, physics.times_s))
        if ratio_in_band(ratio, curve_type):
            return LesionKinetics(base, sets + core_sets, voxel_set, ratio, mean_curve)
    raise RuntimeError(f"lesion {lesion.spec.label}: no kinetic parameters give a {curve_type} curve at "
                       f"times {physics.times_s.tolist()} s")
