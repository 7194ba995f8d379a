"""The voxel-wise kinetic regression: every later phase as a polynomial of a voxel's early enhancement, its
pre-contrast intensity, the slope between the last two inputs where there are three or more, and the time since
the last input (``iterdce.core.kinetic_terms``), fitted by least squares
on training cases. It is a baseline of its own (no deep learning) and the kinetic prior the network starts from.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from iterdce.core.kinetic_terms import (
    DEGREE,
    TIME_DEGREE,
    TIME_UNIT_S,
    input_slope,
    kinetic_terms,
    later_phases,
    n_terms,
)


def _float_dtype(array: np.ndarray) -> np.dtype:
    """Keep a floating input's dtype; integers become float64."""
    return array.dtype if np.issubdtype(array.dtype, np.floating) else np.dtype(np.float64)

REGRESSION_FILE = "kinetic_regression.json"
REGRESSION_FORMAT = 2  # 1: one coefficient row per target phase index; 2: time is a variable (kinetic_terms.py)


def _relative_times(input_times_s: Sequence[float] | np.ndarray, target_times_s: Sequence[float] | np.ndarray
                    ) -> np.ndarray:
    """Target times minus the last input time, in ``TIME_UNIT_S``; errors name what is wrong."""
    inputs = np.asarray(input_times_s, np.float64).reshape(-1)
    targets = np.asarray(target_times_s, np.float64).reshape(-1)
    if inputs.size < 2 or targets.size < 1 or not (np.isfinite(inputs).all() and np.isfinite(targets).all()):
        raise ValueError(f"the regression needs >= 2 finite input times and >= 1 finite target time, got "
                         f"{list(inputs)} and {list(targets)}")
    return (targets - inputs[-1]) / TIME_UNIT_S


@dataclass(frozen=True)
class KineticRegression:
    """Later-phase enhancement ``x(t) - x_last_input`` as a polynomial of the early enhancement, the
    pre-contrast intensity and the time since the last input (kinetic_terms.py); the floor a network must
    clear, and the network's kinetic prior when the plan asks for one.

    Fitted by weighted least squares on TI-normalized training cases at their own phase times (body-foreground
    and lesion voxels weighted half each per case, so the rare lesion kinetics are not drowned by parenchyma).
    Features and times are clipped to the range seen in training, so the polynomial never extrapolates wildly.
    """

    degree: int
    time_degree: int
    coefficients: np.ndarray  # [n_terms]
    feature_low: tuple[float, float, float]  # (u, v, tau) lower clip
    feature_high: tuple[float, float, float]
    slope_degree: int = 0  # 0: two inputs, no slope terms (kinetic_terms.slope_degree_for)
    slope_range: tuple[float, float] = (0.0, 0.0)  # the slope's clip range (with slope_degree > 0)
    slope_sigma_mm: float = 0.0  # the slope's Gaussian smoothing (kinetic_terms.SLOPE_SMOOTHING_MM; 0: none)

    def predict(self, input_phases: np.ndarray, input_times_s: Sequence[float],
                target_times_s: Sequence[float], spacing_mm: Sequence[float] | None = None) -> np.ndarray:
        """``[P_in, ...]`` TI-normalized inputs (pre first, early post-contrast last) and their times ->
        ``[len(target_times_s), ...]``; ``spacing_mm``: the voxel size of the inputs' grid, needed by a fit whose
        slope is smoothed."""
        inputs = np.asarray(input_phases)
        if inputs.ndim < 2 or inputs.shape[0] < 2 or len(input_times_s) != inputs.shape[0]:
            raise ValueError(f"the regression needs >= 2 input phases along axis 0 and one time each, got shape "
                             f"{inputs.shape} and {len(input_times_s)} times")
        if self.slope_degree and inputs.shape[0] < 3:
            raise ValueError(f"this regression reads the slope between the last two of >= 3 inputs, got "
                             f"{inputs.shape[0]} input phases")
        taus = _relative_times(input_times_s, target_times_s)
        slope = input_slope(inputs, input_times_s, self.slope_sigma_mm, spacing_mm) if self.slope_degree else None
        return later_phases(inputs[0], inputs[-1], taus, self.coefficients, self.feature_low, self.feature_high,
                            self.degree, self.time_degree, _float_dtype(inputs), slope, self.slope_degree,
                            self.slope_range)

    def to_json(self) -> dict:
        payload = {"kind": "kinetic_regression", "format": REGRESSION_FORMAT, "degree": self.degree,
                   "time_degree": self.time_degree, "time_unit_s": TIME_UNIT_S,
                   "coefficients": self.coefficients.tolist(), "feature_low": list(self.feature_low),
                   "feature_high": list(self.feature_high)}
        if self.slope_degree:  # a two-input fit's file stays as it was
            payload.update(slope_degree=self.slope_degree, slope_range=list(self.slope_range),
                           slope_sigma_mm=self.slope_sigma_mm)
        return payload

    @classmethod
    def from_json(cls, payload: dict) -> KineticRegression:
        if payload.get("format") != REGRESSION_FORMAT or payload.get("time_unit_s") != TIME_UNIT_S:
            raise ValueError(f"a fit of format {payload.get('format', 1)} (this iterdce reads format "
                             f"{REGRESSION_FORMAT}, where time is a variable); delete the file and refit")
        try:
            degree, time_degree = int(payload["degree"]), int(payload["time_degree"])
            coefficients = np.asarray(payload["coefficients"], np.float64)
            low = tuple(float(x) for x in payload["feature_low"])
            high = tuple(float(x) for x in payload["feature_high"])
            slope_degree = int(payload.get("slope_degree", 0))
            slope_range = tuple(float(x) for x in payload.get("slope_range", (0.0, 0.0)))
            sigma = float(payload.get("slope_sigma_mm", 0.0))  # a fit written before the smoothing: none
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a kinetic regression fit: {exc}") from exc
        if slope_degree < 0 or len(slope_range) != 2 or not (np.isfinite(sigma) and sigma >= 0):
            raise ValueError("slope_degree must be >= 0, slope_range hold (low, high) and slope_sigma_mm be >= 0")
        count = n_terms(degree, time_degree, slope_degree)
        if coefficients.shape != (count,) or not np.isfinite(coefficients).all():
            raise ValueError(f"kinetic regression coefficients must be {count} finite numbers")
        if len(low) != 3 or len(high) != 3:
            raise ValueError("feature_low and feature_high must hold (u, v, tau)")
        return cls(degree, time_degree, coefficients, (low[0], low[1], low[2]), (high[0], high[1], high[2]),
                   slope_degree, (slope_range[0], slope_range[1]), sigma)


class RegressionFitter:
    """Accumulates the normal equations case by case (memory independent of the number of cases)."""

    def __init__(self, degree: int = DEGREE, time_degree: int = TIME_DEGREE, max_voxels_per_case: int = 200_000,
                 seed: int = 0, slope_degree: int = 0, slope_sigma_mm: float = 0.0) -> None:
        self.degree, self.time_degree, self.slope_degree = degree, time_degree, slope_degree
        self.slope_sigma_mm = float(slope_sigma_mm) if slope_degree else 0.0
        self.max_voxels, self.rng = max_voxels_per_case, np.random.default_rng(seed)
        count = n_terms(degree, time_degree, slope_degree)
        self.gram = np.zeros((count, count))
        self.moments = np.zeros(count)
        self.regions = 0  # case regions (foreground, lesion) added
        self.low = np.array([np.inf, np.inf, np.inf])
        self.high = np.array([-np.inf, -np.inf, -np.inf])
        self.slope_low, self.slope_high = np.inf, -np.inf

    def add_case(self, phases: np.ndarray, times_s: Sequence[float] | np.ndarray, n_inputs: int, mask: np.ndarray,
                 lesion: np.ndarray | None, spacing_mm: Sequence[float] | None = None) -> None:
        """One TI-normalized case ``[P, ...]`` (inputs first) at its phase times, its body mask and optional
        lesion labels; every phase after the inputs is a target. ``spacing_mm``: its voxel size (needed for a
        smoothed slope)."""
        times = np.asarray(times_s, np.float64)
        if times.shape != (phases.shape[0],):
            raise ValueError(f"{times.size} phase times for {phases.shape[0]} phases")
        taus = _relative_times(times[:n_inputs], times[n_inputs:])
        if self.slope_degree and n_inputs < 3:
            raise ValueError(f"a fit with slope terms needs >= 3 input phases, got {n_inputs}")
        fg = np.asarray(mask, bool)
        les = np.zeros_like(fg) if lesion is None else (np.asarray(lesion) > 0)
        slope_volume = input_slope(phases[:n_inputs], times[:n_inputs], self.slope_sigma_mm, spacing_mm) \
            if self.slope_degree else None
        for region in (fg & ~les, les):
            index = np.flatnonzero(region)
            if index.size == 0:
                continue
            if index.size > self.max_voxels:
                index = np.sort(self.rng.choice(index, self.max_voxels, replace=False))
            flat = phases.reshape(phases.shape[0], -1)[:, index].astype(np.float64)
            pre, early = flat[0], flat[n_inputs - 1]
            slope = None if slope_volume is None else slope_volume.reshape(-1)[index]
            weight = 0.5 / (index.size * taus.size)
            for k, tau in enumerate(taus):
                terms = kinetic_terms(early - pre, pre, float(tau), self.degree, self.time_degree, slope,
                                      self.slope_degree)
                design = np.stack([np.broadcast_to(t, pre.shape) for t in terms])  # [n_terms, N]
                self.gram += weight * design @ design.T
                self.moments += weight * design @ (flat[n_inputs + k] - early)
            uv = np.stack([early - pre, pre])
            self.low[:2] = np.minimum(self.low[:2], np.percentile(uv, 0.5, axis=1))
            self.high[:2] = np.maximum(self.high[:2], np.percentile(uv, 99.5, axis=1))
            if slope is not None:
                self.slope_low = min(self.slope_low, float(np.percentile(slope, 0.5)))
                self.slope_high = max(self.slope_high, float(np.percentile(slope, 99.5)))
            self.regions += 1
        self.low[2] = min(self.low[2], float(taus.min()))
        self.high[2] = max(self.high[2], float(taus.max()))

    def fit(self) -> KineticRegression:
        """The least-squares coefficients; the minimum-norm solution where the terms are not all identifiable
        (e.g. a single protocol with fewer target times than time powers)."""
        if self.regions == 0:
            raise ValueError("the kinetic regression needs at least one case with foreground voxels")
        coefficients = np.linalg.lstsq(self.gram, self.moments, rcond=1e-13)[0]
        low, high = self.low, self.high
        return KineticRegression(self.degree, self.time_degree, coefficients,
                                 (float(low[0]), float(low[1]), float(low[2])),
                                 (float(high[0]), float(high[1]), float(high[2])), self.slope_degree,
                                 (float(self.slope_low), float(self.slope_high)) if self.slope_degree else (0.0, 0.0),
                                 self.slope_sigma_mm)
