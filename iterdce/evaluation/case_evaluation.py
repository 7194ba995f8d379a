"""Evaluation of one case in TI-normalized units: image metrics per target phase and lesion kinetic curves,
for the synthesized phases and for the baselines (copy-last, linear extrapolation and, when a fit is given,
the voxel-wise kinetic regression)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from iterdce.evaluation.baselines import copy_last_phase, linear_extrapolation
from iterdce.evaluation.kinetics import curve_type, dtw_distance, lesion_curve, spearman
from iterdce.evaluation.metrics import enhancement_error, mae, psnr, sharpness, ssim3d_numpy

METHODS = ("iterdce", "copy_last", "linear", "regression")


class PhasePredictor(Protocol):
    """A fitted baseline: TI-normalized input phases ``[P_in, ...]`` at their times (on a grid of
    ``spacing_mm``) -> the phases at the target times ``[T, ...]``."""

    def predict(self, input_phases: np.ndarray, input_times_s: Sequence[float],
                target_times_s: Sequence[float], spacing_mm: Sequence[float] | None = None) -> np.ndarray: ...


@dataclass
class CaseEvaluation:
    """Rows for per_case.csv and curves.csv, and per-lesion kinetic summaries of one case."""

    phase_rows: list[dict] = field(default_factory=list)
    curve_rows: list[dict] = field(default_factory=list)
    lesion_rows: list[dict] = field(default_factory=list)


def method_predictions(synthesized: np.ndarray, real: np.ndarray, times_s: Sequence[float] | np.ndarray,
                       regression: PhasePredictor | None = None, spacing_mm: Sequence[float] | None = None
                       ) -> dict[str, np.ndarray]:
    """Target phases by each method: the network's and the baselines from the real inputs (on a grid of
    ``spacing_mm``, which a regression with a smoothed slope needs)."""
    n_in = real.shape[0] - synthesized.shape[0]
    inputs = real[:n_in]
    predictions = {
        "iterdce": synthesized,
        "copy_last": copy_last_phase(inputs, synthesized.shape[0]),
        "linear": linear_extrapolation(inputs, list(times_s[:n_in]), list(times_s[n_in:])),
    }
    if regression is not None:
        fitted = regression.predict(inputs, list(times_s[:n_in]), list(times_s[n_in:]), spacing_mm)
        predictions["regression"] = fitted.astype(synthesized.dtype)
    return predictions


def evaluate_case(case_id: str, synthesized: np.ndarray, real: np.ndarray, times_s: Sequence[float] | np.ndarray,
                  mask: np.ndarray, lesion: np.ndarray | None, ti_norm: tuple[float, float] = (0.0, 1.0),
                  phase_indices: Sequence[int] | None = None, regression: PhasePredictor | None = None,
                  methods: Sequence[str] = METHODS, spacing_mm: Sequence[float] | None = None) -> CaseEvaluation:
    """``synthesized`` [T, ...] and ``real`` [P, ...] in TI-normalized units; ``mask`` for image metrics;
    ``lesion`` integer labels (each label one lesion) for enhancement error and curves; ``ti_norm`` (mean,
    std) undoes the normalization for curve typing, whose rule needs the scanner's intensity scale; ``regression``
    (a fitted baseline) adds its row; ``methods`` limits the rows to some methods (a benchmark scoring many
    models on the same cases evaluates the baselines once); ``spacing_mm``: the voxel size, for the regression."""
    times = [float(t) for t in times_s]
    n_in = real.shape[0] - synthesized.shape[0]
    phases = list(phase_indices) if phase_indices is not None else list(range(real.shape[0]))
    result = CaseEvaluation()
    lesion = np.zeros(real.shape[1:], np.int16) if lesion is None else lesion
    union = lesion > 0
    predictions = {m: p for m, p in method_predictions(synthesized, real, times, regression, spacing_mm).items()
                   if m in methods}
    for method, predicted in predictions.items():
        for t in range(synthesized.shape[0]):
            ref = real[n_in + t]
            result.phase_rows.append({
                "case": case_id, "phase": phases[n_in + t], "time_s": times[n_in + t], "method": method,
                "psnr": psnr(predicted[t], ref, mask), "ssim": ssim3d_numpy(predicted[t], ref, mask),
                "mae": mae(predicted[t], ref, mask), "sharpness": sharpness(predicted[t], ref, mask),
                "enhancement_error": enhancement_error(predicted[t], ref, union) if union.any() else float("nan"),
            })
    mean, std = ti_norm
    for label in [int(v) for v in np.unique(lesion) if v > 0]:
        region = lesion == label
        real_curve = lesion_curve(real, region)
        curves = {m: np.concatenate([real_curve[:n_in], lesion_curve(p, region)]) for m, p in predictions.items()}
        true_type = curve_type(real_curve * std + mean, times)
        for index, time in enumerate(times):
            result.curve_rows.append({"case": case_id, "lesion": label, "phase": phases[index], "time_s": time,
                                      "real": float(real_curve[index]),
                                      **{m: float(c[index]) for m, c in curves.items()}})
        for method, curve in curves.items():
            result.lesion_rows.append({
                "case": case_id, "lesion": label, "method": method, "scc": spearman(real_curve, curve),
                "dtw": dtw_distance(real_curve, curve), "true_type": true_type,
                "predicted_type": curve_type(curve * std + mean, times),
                "last_phase_enhancement_error": float((curve[-1] - real_curve[-1]) ** 2),
            })
    return result
