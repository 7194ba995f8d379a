"""The terms of the voxel-wise kinetic model, defined once for its two users: the regression baseline
(numpy, evaluation/baselines.py) and the network's kinetic prior (torch, network/kinetic_prior.py).

A voxel's enhancement since the last input phase at a later time is modelled as a sum of terms
``u**a * v**b * tau**m`` with ``u`` the early enhancement (last input minus pre-contrast), ``v`` the
pre-contrast intensity (both TI-normalized) and ``tau`` the time since the last input in units of
``TIME_UNIT_S``. ``m`` starts at 1, so the model predicts no change at ``tau = 0``; because time is a
variable and not a phase index, one fit serves every protocol (jittered gaps, other phase counts,
``--target-times``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

DEGREE = 3  # in (u, v): a + b <= DEGREE
TIME_DEGREE = 3  # tau**1 .. tau**TIME_DEGREE
TIME_UNIT_S = 100.0

Array = TypeVar("Array")


def exponents(degree: int = DEGREE, time_degree: int = TIME_DEGREE) -> tuple[tuple[int, int, int], ...]:
    """The (a, b, m) of every term, in the order of a fit's coefficients."""
    return tuple((a, b, m) for m in range(1, time_degree + 1)
                 for a in range(degree + 1) for b in range(degree + 1 - a))


def n_terms(degree: int = DEGREE, time_degree: int = TIME_DEGREE) -> int:
    return len(exponents(degree, time_degree))


def kinetic_terms(u: Any, v: Any, tau: Any, degree: int = DEGREE, time_degree: int = TIME_DEGREE) -> list[Any]:
    """Every term ``u**a * v**b * tau**m`` (plain arithmetic, so numpy arrays and torch tensors both work;
    ``tau`` broadcasts against ``u`` and ``v``). Powers are built once and reused."""
    u_pow, v_pow, t_pow = [1.0, u], [1.0, v], [1.0, tau]
    for _ in range(2, degree + 1):
        u_pow.append(u_pow[-1] * u)
        v_pow.append(v_pow[-1] * v)
    for _ in range(2, time_degree + 1):
        t_pow.append(t_pow[-1] * tau)
    uv = {(a, b): u_pow[a] * v_pow[b] for a in range(degree + 1) for b in range(degree + 1 - a)}
    return [uv[(a, b)] * t_pow[m] for a, b, m in exponents(degree, time_degree)]


def later_phases(pre: np.ndarray, early: np.ndarray, taus: Sequence[float] | np.ndarray,
                 coefficients: Sequence[float] | np.ndarray,
                 low: Sequence[float], high: Sequence[float], degree: int = DEGREE, time_degree: int = TIME_DEGREE,
                 dtype: np.dtype | type = np.float32) -> np.ndarray:
    """The model's estimate ``early + sum_j c_j u**a v**b tau**m`` at every ``tau`` (numpy, float64 inside).

    ``u = early - pre`` and ``v = pre`` are clipped to ``low[:2]``/``high[:2]`` and each tau to
    ``low[2]``/``high[2]`` (the range seen in the fit). The time polynomial of each (a, b) is summed first,
    so one target costs one multiply-add per (u, v) term whatever the time degree: the regression baseline
    and the native-resolution kinetic prior of the predictor (inference/composition.py) both call this.
    Returns ``[len(taus), *early.shape]`` in ``dtype``.
    """
    pre64, early64 = np.asarray(pre, np.float64), np.asarray(early, np.float64)
    u = np.clip(early64 - pre64, low[0], high[0])
    v = np.clip(pre64, low[1], high[1])
    uv = kinetic_terms(u, v, 1.0, degree, 1)  # every u**a v**b once (tau**1 with tau = 1)
    pairs = [(a, b) for a, b, m in exponents(degree, 1)]
    index = {term: j for j, term in enumerate(exponents(degree, time_degree))}
    out = np.empty((len(taus), *early64.shape), dtype)
    for k, tau in enumerate(taus):
        t = float(np.clip(tau, low[2], high[2]))
        total = early64.copy()
        for (a, b), product in zip(pairs, uv):
            weight = sum(float(coefficients[index[(a, b, m)]]) * t ** m for m in range(1, time_degree + 1))
            total += weight * product  # (0, 0): the scalar 1
        out[k] = total
    return out
