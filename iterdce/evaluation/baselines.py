"""Baselines for delayed-phase synthesis: copy the last input phase, extrapolate linearly, or a voxel-wise
kinetic regression fitted on the training cases (no deep learning).

They give the floor a learned model must beat; definitions in documentation/evaluation.md.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _float_dtype(array: np.ndarray) -> np.dtype:
    """Keep a floating input's dtype; integers become float64."""
    return array.dtype if np.issubdtype(array.dtype, np.floating) else np.dtype(np.float64)


def copy_last_phase(input_phases: np.ndarray, n_targets: int) -> np.ndarray:
    """Predict every target phase as the last input phase: ``[P_in, ...]`` -> ``[n_targets, ...]`` (a copy)."""
    input_phases = np.asarray(input_phases)
    if input_phases.ndim < 1 or input_phases.shape[0] < 1:
        raise ValueError(f"input_phases needs at least one phase along axis 0, got shape {input_phases.shape}")
    if int(n_targets) != n_targets or n_targets < 1:
        raise ValueError(f"n_targets must be a positive integer, got {n_targets}")
    return np.repeat(input_phases[-1:], int(n_targets), axis=0).astype(_float_dtype(input_phases))


def linear_extrapolation(
    input_phases: np.ndarray, input_times_s: Sequence[float], target_times_s: Sequence[float]
) -> np.ndarray:
    """Voxel-wise line through the last two input phases in time, evaluated at each target time.

    ``x(t) = x_b + (x_b - x_a) (t - t_b) / (t_b - t_a)`` with ``a, b`` the last two inputs;
    ``[P_in, ...]`` -> ``[len(target_times_s), ...]``.
    """
    input_phases = np.asarray(input_phases)
    times = np.asarray(input_times_s, dtype=np.float64)
    targets = np.asarray(target_times_s, dtype=np.float64)
    if input_phases.ndim < 1 or input_phases.shape[0] < 2:
        raise ValueError(f"linear extrapolation needs at least two input phases, got shape {input_phases.shape}")
    if times.shape != (input_phases.shape[0],):
        raise ValueError(f"{times.size} input times for {input_phases.shape[0]} input phases")
    if targets.ndim != 1 or targets.size < 1 or not np.isfinite(targets).all():
        raise ValueError(f"target_times_s must be a non-empty list of finite times, got {target_times_s}")
    t_a, t_b = times[-2], times[-1]
    if not t_b > t_a:
        raise ValueError(f"the last two input times must increase, got {t_a} and {t_b}")
    x_a = input_phases[-2].astype(np.float64)
    x_b = input_phases[-1].astype(np.float64)
    slope = (x_b - x_a) / (t_b - t_a)
    offsets = (targets - t_b).reshape((-1,) + (1,) * x_b.ndim)
    return (x_b[None] + slope[None] * offsets).astype(_float_dtype(input_phases))


# ----- voxel-wise kinetic regression (fitted, no deep learning) -------------------------------------------------
REGRESSION_DEGREE = 3
REGRESSION_FILE = "kinetic_regression.json"


def kinetic_features(pre: np.ndarray, early: np.ndarray, degree: int = REGRESSION_DEGREE) -> np.ndarray:
    """Polynomial terms ``u**a * v**b`` (``a + b <= degree``) of the early enhancement ``u = early - pre`` and
    the pre-contrast intensity ``v = pre``, voxel-wise: ``[...]`` -> ``[n_terms, ...]`` (float64)."""
    u = np.asarray(early, np.float64) - np.asarray(pre, np.float64)
    v = np.asarray(pre, np.float64)
    return np.stack([u**a * v**b for a in range(degree + 1) for b in range(degree + 1 - a)])


@dataclass(frozen=True)
class KineticRegression:
    """Later-phase enhancement ``x_k - x_last_input`` as a polynomial of early enhancement and pre-contrast
    intensity, one coefficient row per target phase; the floor a network must clear.

    Fitted by weighted least squares on TI-normalized training cases (body-foreground and lesion voxels
    weighted half each per case, so the rare lesion kinetics are not drowned by parenchyma). Features are
    clipped to the range seen in training, so the polynomial never extrapolates wildly.
    """

    degree: int
    coefficients: np.ndarray  # [n_targets, n_terms]
    feature_low: tuple[float, float]  # (u, v) lower clip
    feature_high: tuple[float, float]

    def predict(self, input_phases: np.ndarray) -> np.ndarray:
        """``[P_in, ...]`` TI-normalized inputs (pre first, early post-contrast last) -> ``[n_targets, ...]``."""
        inputs = np.asarray(input_phases)
        if inputs.ndim < 2 or inputs.shape[0] < 2:
            raise ValueError(f"the regression needs >= 2 input phases along axis 0, got shape {inputs.shape}")
        pre, early = inputs[0].astype(np.float64), inputs[-1].astype(np.float64)
        u = np.clip(early - pre, self.feature_low[0], self.feature_high[0])
        v = np.clip(pre, self.feature_low[1], self.feature_high[1])
        features = kinetic_features(v, v + u, self.degree)
        change = np.tensordot(self.coefficients, features, axes=([1], [0]))
        return (early[None] + change).astype(_float_dtype(inputs))

    def to_json(self) -> dict:
        return {"kind": "kinetic_regression", "degree": self.degree, "coefficients": self.coefficients.tolist(),
                "feature_low": list(self.feature_low), "feature_high": list(self.feature_high)}

    @classmethod
    def from_json(cls, payload: dict) -> KineticRegression:
        try:
            degree = int(payload["degree"])
            coefficients = np.asarray(payload["coefficients"], np.float64)
            low, high = payload["feature_low"], payload["feature_high"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a kinetic regression fit: {exc}") from exc
        n_terms = (degree + 1) * (degree + 2) // 2
        if coefficients.ndim != 2 or coefficients.shape[1] != n_terms or not np.isfinite(coefficients).all():
            raise ValueError(f"kinetic regression coefficients must be finite [targets, {n_terms}]")
        return cls(degree, coefficients, (float(low[0]), float(low[1])), (float(high[0]), float(high[1])))


class RegressionFitter:
    """Accumulates the normal equations case by case (memory independent of the number of cases)."""

    def __init__(self, degree: int = REGRESSION_DEGREE, max_voxels_per_case: int = 200_000, seed: int = 0) -> None:
        self.degree, self.max_voxels, self.rng = degree, max_voxels_per_case, np.random.default_rng(seed)
        n_terms = (degree + 1) * (degree + 2) // 2
        self.gram = np.zeros((n_terms, n_terms))
        self.moments: np.ndarray | None = None
        self.low = np.array([np.inf, np.inf])
        self.high = np.array([-np.inf, -np.inf])

    def add_case(self, phases: np.ndarray, n_inputs: int, mask: np.ndarray, lesion: np.ndarray | None) -> None:
        """One TI-normalized case ``[P, ...]`` (inputs first), its body mask and optional lesion labels."""
        fg = np.asarray(mask, bool)
        les = np.zeros_like(fg) if lesion is None else (np.asarray(lesion) > 0)
        for region in (fg & ~les, les):
            index = np.flatnonzero(region)
            if index.size == 0:
                continue
            if index.size > self.max_voxels:
                index = np.sort(self.rng.choice(index, self.max_voxels, replace=False))
            flat = phases.reshape(phases.shape[0], -1)[:, index].astype(np.float64)
            pre, early = flat[0], flat[n_inputs - 1]
            features = kinetic_features(pre, early, self.degree)  # [n_terms, N]
            change = flat[n_inputs:] - early[None]  # [T, N]
            weight = 0.5 / index.size
            self.gram += weight * features @ features.T
            moments = weight * features @ change.T
            self.moments = moments if self.moments is None else self.moments + moments
            uv = np.stack([early - pre, pre])
            self.low = np.minimum(self.low, np.percentile(uv, 0.5, axis=1))
            self.high = np.maximum(self.high, np.percentile(uv, 99.5, axis=1))

    def fit(self) -> KineticRegression:
        """The least-squares coefficients (a tiny ridge keeps an ill-conditioned fit finite)."""
        if self.moments is None:
            raise ValueError("the kinetic regression needs at least one case with foreground voxels")
        ridge = 1e-9 * np.trace(self.gram) * np.eye(len(self.gram))
        coefficients = np.linalg.solve(self.gram + ridge, self.moments).T
        return KineticRegression(self.degree, coefficients, (float(self.low[0]), float(self.low[1])),
                                 (float(self.high[0]), float(self.high[1])))
