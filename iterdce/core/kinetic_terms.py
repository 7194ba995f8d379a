"""The terms of the voxel-wise kinetic model, defined once for its two users: the regression baseline
(numpy, evaluation/baselines.py) and the network's kinetic prior (torch, network/kinetic_prior.py).

A voxel's enhancement since the last input phase at a later time is modelled as a sum of terms
``u**a * v**b * s**c * tau**m`` with ``u`` the early enhancement (last input minus pre-contrast), ``v`` the
pre-contrast intensity (both TI-normalized), ``s`` the slope between the last two *post-contrast* inputs (their
change per ``TIME_UNIT_S``; it exists only with three or more inputs) and ``tau`` the time since the last input in
units of ``TIME_UNIT_S``. ``m`` starts at 1, so the model predicts no change at ``tau = 0``; because time is a
variable and not a phase index, one fit serves every protocol (jittered gaps, other phase counts,
``--target-times``).

With two inputs there is no slope: ``slope_degree`` is 0 and the terms are exactly those of the two-input model
(same order, same count), so a two-input fit does not move when the slope terms exist. With three or more inputs
the slope terms (``c >= 1``) follow the others within each time power: a curve's direction (still rising,
levelling off, washing out) is what the slope tells and the early enhancement alone does not.

The slope is read after a Gaussian smoothing of ``slope_sigma_mm`` (``SLOPE_SMOOTHING_MM`` for a new fit): voxel by
voxel the change between two phases is about as noisy as the change itself, and a least-squares fit on a noisy
feature shrinks its weight (errors in variables), so the predicted curves regress to the mean and their direction
is lost (reports/every_early_input.md, section 5). The smoothing is in millimetres, so the same fit reads the same
slope on the plan's grid (the network's prior) and on a case's own grid (the regression baseline, the
native-resolution prior); ``gaussian_weights`` defines the kernel for both the numpy and the torch side.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
from scipy.ndimage import correlate1d

DEGREE = 3  # in (u, v, s): a + b + c <= DEGREE
TIME_DEGREE = 3  # tau**1 .. tau**TIME_DEGREE
SLOPE_DEGREE = 2  # s**1 .. s**SLOPE_DEGREE, where the inputs give a slope
TIME_UNIT_S = 100.0
SLOPE_SMOOTHING_MM = 1.5  # the Gaussian sigma of the slope feature of a new fit (reports/every_early_input.md)
GAUSSIAN_TRUNCATE = 4.0  # the kernel reaches out to this many sigmas (scipy.ndimage.gaussian_filter's default)

Array = TypeVar("Array")


def slope_degree_for(n_inputs: int) -> int:
    """The slope degree of a model with ``n_inputs`` input phases (pre-contrast included): 0 with two inputs
    (one post-contrast phase: no slope), ``SLOPE_DEGREE`` with three or more."""
    return SLOPE_DEGREE if n_inputs >= 3 else 0


def exponents(degree: int = DEGREE, time_degree: int = TIME_DEGREE, slope_degree: int = 0
              ) -> tuple[tuple[int, int, int, int], ...]:
    """The (a, b, c, m) of every term, in the order of a fit's coefficients (``c = 0`` first in each time
    power, in the order of the two-input model)."""
    return tuple((a, b, c, m) for m in range(1, time_degree + 1) for c in range(min(slope_degree, degree) + 1)
                 for a in range(degree + 1 - c) for b in range(degree + 1 - a - c))


def n_terms(degree: int = DEGREE, time_degree: int = TIME_DEGREE, slope_degree: int = 0) -> int:
    return len(exponents(degree, time_degree, slope_degree))


def kinetic_terms(u: Any, v: Any, tau: Any, degree: int = DEGREE, time_degree: int = TIME_DEGREE,
                  s: Any = None, slope_degree: int = 0) -> list[Any]:
    """Every term ``u**a * v**b * s**c * tau**m`` (plain arithmetic, so numpy arrays and torch tensors both work;
    ``tau`` broadcasts against ``u`` and ``v``). Powers are built once and reused; ``s`` is needed only with
    ``slope_degree > 0``."""
    if slope_degree and s is None:
        raise ValueError("slope terms need the slope s between the last two post-contrast inputs")
    u_pow, v_pow, s_pow, t_pow = [1.0, u], [1.0, v], [1.0, s], [1.0, tau]
    for _ in range(2, degree + 1):
        u_pow.append(u_pow[-1] * u)
        v_pow.append(v_pow[-1] * v)
    for _ in range(2, slope_degree + 1):
        s_pow.append(s_pow[-1] * s)
    for _ in range(2, time_degree + 1):
        t_pow.append(t_pow[-1] * tau)
    uvs = {(a, b, c): u_pow[a] * v_pow[b] * s_pow[c] if c else u_pow[a] * v_pow[b]
           for a, b, c, _ in exponents(degree, 1, slope_degree)}
    return [uvs[(a, b, c)] * t_pow[m] for a, b, c, m in exponents(degree, time_degree, slope_degree)]


def slope(last: Any, before: Any, last_time_s: Any, before_time_s: Any) -> Any:
    """The slope feature ``s``: the change from ``before`` to ``last`` per ``TIME_UNIT_S`` (numpy arrays or torch
    tensors; the times broadcast against the images)."""
    return (last - before) / ((last_time_s - before_time_s) / TIME_UNIT_S)


class SmoothingGridError(ValueError):
    """A slope smoothing or grid spacing no grid can have (non-finite, non-positive, missing axes)."""


def slope_sigma_voxels(sigma_mm: float, spacing_mm: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    """The smoothing's sigma per axis in voxels of a grid with ``spacing_mm`` (all 0 without smoothing)."""
    if not np.isfinite(float(sigma_mm)):
        raise SmoothingGridError(f"a slope's smoothing must be a finite number of millimetres, got {sigma_mm}")
    if sigma_mm <= 0:
        return (0.0,) * ndim
    if spacing_mm is None or len(spacing_mm) != ndim:
        raise SmoothingGridError(f"a slope smoothed over {sigma_mm} mm needs the grid's spacing for each of its "
                                 f"{ndim} axes, got {spacing_mm}")
    if not all(np.isfinite(float(s)) and float(s) > 0 for s in spacing_mm):
        raise SmoothingGridError(f"a grid's spacing must be positive and finite, got {list(spacing_mm)}")
    return tuple(float(sigma_mm) / float(s) for s in spacing_mm)


def gaussian_weights(sigma_voxels: float) -> np.ndarray:
    """The normalized 1D Gaussian kernel of ``sigma_voxels`` (scipy.ndimage.gaussian_filter's: radius
    ``int(GAUSSIAN_TRUNCATE * sigma + 0.5)``); ``[1]`` for sigma 0."""
    if sigma_voxels <= 0:
        return np.ones(1)
    radius = int(GAUSSIAN_TRUNCATE * float(sigma_voxels) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (x / float(sigma_voxels)) ** 2)
    return np.asarray(weights / weights.sum())


def smoothed(volume: np.ndarray, sigma_voxels: Sequence[float]) -> np.ndarray:
    """``volume`` filtered with ``gaussian_weights`` along each axis (edges: the nearest voxel repeated)."""
    out = np.asarray(volume, np.float64)
    for axis, sigma in enumerate(sigma_voxels):
        if sigma > 0:
            out = correlate1d(out, gaussian_weights(sigma), axis=axis, mode="nearest")
    return out


def input_slope(inputs: Any, times_s: Sequence[float] | np.ndarray, sigma_mm: float = 0.0,
                spacing_mm: Sequence[float] | None = None) -> np.ndarray | None:
    """``slope`` of the last two of numpy inputs ``[n_in, ...]`` at ``times_s``, in float64, smoothed over
    ``sigma_mm`` on a grid of ``spacing_mm`` (None with fewer than three inputs, where the model has no slope
    terms)."""
    if len(times_s) < 3:
        return None
    if not float(times_s[-1]) > float(times_s[-2]):
        raise ValueError(f"the last two input times must increase, got {times_s[-2]} and {times_s[-1]}")
    raw = np.asarray(slope(np.asarray(inputs[-1], np.float64), np.asarray(inputs[-2], np.float64),
                           float(times_s[-1]), float(times_s[-2])))
    if sigma_mm <= 0:
        return raw
    return smoothed(raw, slope_sigma_voxels(sigma_mm, spacing_mm, raw.ndim))


def later_phases(pre: np.ndarray, early: np.ndarray, taus: Sequence[float] | np.ndarray,
                 coefficients: Sequence[float] | np.ndarray,
                 low: Sequence[float], high: Sequence[float], degree: int = DEGREE, time_degree: int = TIME_DEGREE,
                 dtype: np.dtype | type = np.float32, slope: np.ndarray | None = None, slope_degree: int = 0,
                 slope_range: Sequence[float] = (0.0, 0.0)) -> np.ndarray:
    """The model's estimate ``early + sum_j c_j u**a v**b s**c tau**m`` at every ``tau`` (numpy, float64 inside).

    ``u = early - pre`` and ``v = pre`` are clipped to ``low[:2]``/``high[:2]``, ``s`` (``slope``, with
    ``slope_degree > 0``) to ``slope_range`` and each tau to ``low[2]``/``high[2]`` (the ranges seen in the fit).
    The time polynomial of each (a, b, c) is summed first, so one target costs one multiply-add per (u, v, s) term
    whatever the time degree: the regression baseline and the native-resolution kinetic prior of the predictor
    (inference/composition.py) both call this. Returns ``[len(taus), *early.shape]`` in ``dtype``.
    """
    pre64, early64 = np.asarray(pre, np.float64), np.asarray(early, np.float64)
    u = np.clip(early64 - pre64, low[0], high[0])
    v = np.clip(pre64, low[1], high[1])
    s = None if not slope_degree else np.clip(np.asarray(slope, np.float64), slope_range[0], slope_range[1])
    products = kinetic_terms(u, v, 1.0, degree, 1, s, slope_degree)  # every u**a v**b s**c once (tau = 1)
    triples = [(a, b, c) for a, b, c, _ in exponents(degree, 1, slope_degree)]
    index = {term: j for j, term in enumerate(exponents(degree, time_degree, slope_degree))}
    out = np.empty((len(taus), *early64.shape), dtype)
    for k, tau in enumerate(taus):
        t = float(np.clip(tau, low[2], high[2]))
        total = early64.copy()
        for (a, b, c), product in zip(triples, products):
            weight = sum(float(coefficients[index[(a, b, c, m)]]) * t ** m for m in range(1, time_degree + 1))
            total += weight * product  # (0, 0, 0): the scalar 1
        out[k] = total
    return out
