"""Kinetic-curve evaluation: lesion curves, Spearman correlation, DTW distance and curve-type agreement.

The curve-type rule itself lives in iterdce/core/kinetics_rule.py (shared with the simulator and export).
Definitions: documentation/evaluation.md.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from dtaidistance import dtw
from scipy.stats import spearmanr

from iterdce.core.kinetics_rule import CURVE_TYPES, classify_curve


def lesion_curve(phases: np.ndarray, lesion_mask: np.ndarray) -> np.ndarray:
    """Mean intensity inside the lesion for each phase: ``[P, X, Y, Z]`` -> ``[P]`` (NaN if lesion-free)."""
    phases = np.asarray(phases)
    inside = np.asarray(lesion_mask) != 0
    if phases.ndim != inside.ndim + 1 or phases.shape[1:] != inside.shape:
        raise ValueError(
            f"phases shape {phases.shape} does not match lesion mask shape {inside.shape} "
            "(expected [P, *mask.shape])"
        )
    if not inside.any():
        return np.full(phases.shape[0], np.nan)
    return phases[:, inside].astype(np.float64).mean(axis=1)


def _curves(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two 1D float64 curves of the same length."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"curves must be 1D and of equal length, got shapes {a.shape} and {b.shape}")
    return a, b


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation of two curves (SCC).

    NaN when it is undefined: a curve with a NaN, a constant curve (no ranks to correlate), or fewer than
    two points; callers aggregate with nanmean and report how many cases were undefined.
    """
    a, b = _curves(a, b)
    if a.size < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(a, b).statistic)


def dtw_distance(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """DTW distance (dtaidistance): sqrt of the smallest sum of squared differences along a warping path.

    Curves may differ in length; NaN when either contains a non-finite value or is empty.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"curves must be 1D, got shapes {a.shape} and {b.shape}")
    if a.size == 0 or b.size == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    return float(dtw.distance(a, b))


def curve_type(curve: Sequence[float] | np.ndarray, times_s: Sequence[float] | np.ndarray) -> str:
    """BI-RADS curve type of one lesion curve: persistent, plateau, washout, or ``none`` if undefined."""
    curve = np.asarray(curve, dtype=np.float64)
    if curve.ndim != 1 or curve.size != len(times_s) or curve.size < 2:
        raise ValueError(
            f"curve of shape {curve.shape} needs one value per phase time ({len(times_s)}), at least two"
        )
    return classify_curve(curve, times_s)


def curve_type_confusion(
    true_types: Sequence[str], pred_types: Sequence[str]
) -> tuple[float, pd.DataFrame]:
    """Accuracy and 3x3 confusion matrix (rows true, columns predicted) of curve types.

    Pairs where either side is ``none`` (lesion-free or undefined) are left out; accuracy is NaN
    when no pair remains. Any other label is an error.
    """
    true_types, pred_types = list(true_types), list(pred_types)
    if len(true_types) != len(pred_types):
        raise ValueError(f"{len(true_types)} true curve types but {len(pred_types)} predicted ones")
    allowed = set(CURVE_TYPES) | {"none"}
    unknown = sorted({t for t in true_types + pred_types if t not in allowed})
    if unknown:
        raise ValueError(f"unknown curve types {unknown}; expected one of {sorted(allowed)}")
    matrix = pd.DataFrame(0, index=list(CURVE_TYPES), columns=list(CURVE_TYPES), dtype=np.int64)
    matrix.index.name, matrix.columns.name = "true", "predicted"
    for t, p in zip(true_types, pred_types):
        if t != "none" and p != "none":
            matrix.loc[t, p] += 1
    total = int(matrix.to_numpy().sum())
    accuracy = float(np.trace(matrix.to_numpy()) / total) if total else float("nan")
    return accuracy, matrix
