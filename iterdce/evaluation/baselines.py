"""Baselines for delayed-phase synthesis: copy the last input phase, extrapolate linearly, or a voxel-wise
kinetic regression fitted on the training cases (no deep learning).

They give the floor a learned model must beat; definitions in documentation/evaluation.md.
"""
from __future__ import annotations

from collections.abc import Sequence

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
