"""Split conformal prediction for synthesized phases: the nonconformity scores, the calibration file's typed
schema, and the quantile and predictive distribution that turn stored scores into intervals and probabilities.

Method (Vovk et al. 2005; Papadopoulos et al. 2002, normalized scores; Lei et al. 2018): on cases the model did
not train on, the signed score of a value is ``(y - yhat) / (std * s)`` with ``s = EPSILON + |yhat - x_last| /
std``, the predicted change from the last input phase in TI-normalized units (``std``: the case's TI-norm
standard deviation), a difficulty every model has without new training. For a new case exchangeable with the
calibration cases the interval ``yhat +- q * std * s``, ``q`` the ceil((n+1) c)-th smallest |score| of the
calibration set, covers the truth with probability at least ``c`` (+inf when n is too small for ``c``). Scores
are kept per target-time bin (Mondrian), so an early and a late phase get their own ``q``. The signed scores of
lesion means, read as a conformal predictive distribution (Vovk et al. 2017) of the late lesion-mean, give
the probabilities of the three curve types.

The quantile and the predictive distribution are crepes' (a maintained conformal library whose only
requirements, numpy, pandas and scipy, iterdce has anyway; documentation/architecture.md, decisions);
``voxel_cdf`` is the same predictive distribution vectorised for whole volumes (tested against crepes).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from crepes import ConformalPredictiveSystem, ConformalRegressor

from iterdce.core.atomic import write_json_atomic
from iterdce.core.dataclass_json import build_dataclass, to_json
from iterdce.core.errors import IterdceError, listing
from iterdce.core.file_names import CONFORMAL_CALIBRATION
from iterdce.core.json_io import read_json

EPSILON = 0.1  # TI-normalized units: the difficulty floor where the model predicts no change (a choice, not tuned)
# the difficulties iterdce_calibrate offers, as (epsilon, change weight): "change" scales the interval with the
# predicted change from the last input (the default), "none" is the plain marginal interval (one width per time bin
# and case std); reports/uncertainty.md measures both
DIFFICULTIES: dict[str, tuple[float, float]] = {"change": (EPSILON, 1.0), "none": (1.0, 0.0)}
DEFAULT_DIFFICULTY = "change"
N_TIME_BINS = 3  # equal-width bins of target time over the trained range; times outside fall in the end bins
VOXELS_PER_CASE_PHASE = 1000  # body voxels drawn per calibration case and phase (each case weighs the same)
SCALE_DEFINITION = ("s = epsilon + change_weight * |yhat - x_last| / std; score = (y - yhat) / (std * s); std: the "
                    "case's TI-norm std")
CALIBRATION_VERSION = 1


class CalibrationError(IterdceError, ValueError):
    """A missing or malformed ``conformal_calibration.json``."""


@dataclass(frozen=True)
class ConformalCalibration:
    """``conformal_calibration.json`` in a model folder: the signed scores per target-time bin of two families,
    body voxels (a fixed-seed sample per case and phase) and lesion means (one per lesion and phase), each
    sorted, with where they came from."""

    version: int
    scale: str  # SCALE_DEFINITION
    epsilon: float
    time_bin_edges_s: tuple[float, ...]  # inner edges: bin b holds edges[b-1] < t <= edges[b]
    body_scores: tuple[tuple[float, ...], ...]  # per bin
    lesion_scores: tuple[tuple[float, ...], ...]  # per bin
    cases: tuple[str, ...]
    source: str  # e.g. "fold validation cases (folds 0, 1)" or a held-back folder
    seed: int
    voxels_per_case_phase: int
    # the references of the curve-type probabilities (absent in files written before them): the calibration
    # lesions' true type frequencies, and the kinetic prior's signed lesion-mean scores per bin (models with a prior)
    type_frequencies: dict[str, float] | None = None
    prior_lesion_scores: tuple[tuple[float, ...], ...] | None = None
    change_weight: float = 1.0  # the difficulty's weight on the predicted change (files written before it: 1)

    def save(self, model_folder: Path) -> Path:
        path = Path(model_folder) / CONFORMAL_CALIBRATION
        write_json_atomic(path, to_json(self))
        return path


def load_calibration(model_folder: Path) -> ConformalCalibration:
    """The model folder's calibration; one clear error when it is missing or malformed."""
    path = Path(model_folder) / CONFORMAL_CALIBRATION
    if not path.is_file():
        raise CalibrationError(f"{model_folder}: no {CONFORMAL_CALIBRATION}: --uncertainty needs a model calibrated "
                               "on cases it did not train on; run iterdce_calibrate first "
                               "(documentation/prediction.md)", path)
    problems: list[str] = []
    calibration = build_dataclass(ConformalCalibration, read_json(path, expect=dict), "", problems,
                                  defaults_optional=True)
    if calibration is None or calibration.version != CALIBRATION_VERSION:
        problems = problems or [f"version {calibration.version if calibration else '?'} is not "
                                f"{CALIBRATION_VERSION}; run iterdce_calibrate again"]
        raise CalibrationError(listing(str(path), problems), path)
    return calibration


def time_bin_edges(trained_range_s: Sequence[float], n_bins: int = N_TIME_BINS) -> tuple[float, ...]:
    """The inner edges of ``n_bins`` equal-width bins over the trained target-time range."""
    low, high = float(trained_range_s[0]), float(trained_range_s[-1])
    return tuple(float(v) for v in np.linspace(low, high, n_bins + 1)[1:-1])


def time_bin(time_s: float, edges: Sequence[float]) -> int:
    """The bin of one target time (``edges``: ``time_bin_edges``)."""
    return int(np.searchsorted(np.asarray(edges, dtype=float), float(time_s), side="left"))


def difficulty(predicted: np.ndarray | float, last_input: np.ndarray | float, std: float,
               epsilon: float = EPSILON, change_weight: float = 1.0) -> np.ndarray:
    """``s = epsilon + change_weight * |yhat - x_last| / std`` (TI-normalized units) of native intensities."""
    change = np.abs(np.asarray(predicted, dtype=np.float64) - np.asarray(last_input, dtype=np.float64))
    return np.asarray(epsilon + change_weight * change / std)


def signed_scores(real: np.ndarray, predicted: np.ndarray, last_input: np.ndarray, std: float,
                  epsilon: float = EPSILON, change_weight: float = 1.0) -> np.ndarray:
    """``(y - yhat) / (std * s)`` element-wise, native intensities in (pure; both families use it)."""
    scale = difficulty(predicted, last_input, std, epsilon, change_weight) * std
    return np.asarray((np.asarray(real, dtype=np.float64) - np.asarray(predicted, dtype=np.float64)) / scale)


def conformal_quantile(scores: Sequence[float] | np.ndarray, coverage: float) -> float:
    """The split-conformal multiplier ``q`` of |scores| at ``coverage`` (crepes' ConformalRegressor: the
    ceil((n+1) c)-th smallest |score|); +inf when there are too few scores for that coverage."""
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must lie in (0, 1), got {coverage}")
    values = np.abs(np.asarray(scores, dtype=np.float64))
    if values.size == 0:
        return float("inf")
    regressor = ConformalRegressor().fit(values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # crepes warns when n is too small; +inf says the same
        interval = regressor.predict_int(np.zeros(1), confidence=coverage)
    return float(interval[0, 1])


def predictive_cdf(scores: Sequence[float] | np.ndarray, z: Sequence[float] | np.ndarray) -> np.ndarray:
    """The conformal predictive distribution of the signed scores at ``z`` (crepes' ConformalPredictiveSystem,
    not smoothed): P(score <= z). Meant for a few values (lesions); ``voxel_cdf`` for volumes."""
    values = np.asarray(scores, dtype=np.float64)
    points = np.atleast_1d(np.asarray(z, dtype=np.float64))
    if values.size == 0:
        return np.full(points.shape, np.nan)
    system = ConformalPredictiveSystem().fit(values)
    return np.asarray(system.predict_p(np.zeros(points.shape), points, smoothing=False), dtype=np.float64)


def voxel_cdf(sorted_scores: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``predictive_cdf`` for any array ``z`` with the scores sorted once (searchsorted: volumes in seconds)."""
    n = sorted_scores.size
    return np.asarray((np.searchsorted(sorted_scores, z, side="right") + 1) / (n + 1), dtype=np.float64).clip(0, 1)


def case_scores(real: np.ndarray, predicted: np.ndarray, last_input: np.ndarray, std: float, body: np.ndarray,
                lesion: np.ndarray | None, target_times_s: Sequence[float], edges: Sequence[float],
                rng: np.random.Generator, n_voxels: int = VOXELS_PER_CASE_PHASE, epsilon: float = EPSILON,
                change_weight: float = 1.0) -> tuple[list[list[float]], list[list[float]]]:
    """The signed scores of one calibration case per time bin: (body voxels, lesion means), pure.

    Args:
        real, predicted: the real and the synthesized target phases [T, X, Y, Z] (native intensities, one grid).
        last_input: the last input phase [X, Y, Z].
        std: the case's TI-norm standard deviation.
        body: where body voxels are drawn (``n_voxels`` of them, the same for every phase, by ``rng``).
        lesion: integer lesion labels or None; each lesion gives one lesion-mean score per phase.
        target_times_s: the time of each target phase; ``edges``: ``time_bin_edges``.
    """
    n_bins = len(edges) + 1
    body_scores: list[list[float]] = [[] for _ in range(n_bins)]
    lesion_scores: list[list[float]] = [[] for _ in range(n_bins)]
    index = np.flatnonzero(body)
    chosen = np.sort(rng.choice(index, size=min(n_voxels, index.size), replace=False))
    labels = [] if lesion is None else [int(v) for v in np.unique(lesion) if v > 0]
    for t, time_s in enumerate(target_times_s):
        b = time_bin(time_s, edges)
        body_scores[b] += signed_scores(real[t].ravel()[chosen], predicted[t].ravel()[chosen],
                                        last_input.ravel()[chosen], std, epsilon, change_weight).tolist()
        for label in labels:
            region = lesion == label
            means = [float(np.mean(v[region], dtype=np.float64)) for v in (real[t], predicted[t], last_input)]
            lesion_scores[b].append(float(signed_scores(np.asarray(means[0]), np.asarray(means[1]),
                                                        np.asarray(means[2]), std, epsilon, change_weight)))
    return body_scores, lesion_scores
