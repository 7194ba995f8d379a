"""Scoring ``iterdce_predict --uncertainty`` outputs: the intervals' empirical coverage and mean width (body
voxels and lesion means, per phase), and the curve-type probabilities' Brier score, expected calibration error
and reliability diagram against references.

Widths are in TI-normalized units (the scoring region's, region.py), like every other metric of the report.
References of the probabilities: ``uniform`` (1/3 each) and ``frequency`` (every lesion given the evaluated
set's own type frequencies: an in-sample reference, so a model beating it beats the best constant answer),
computed here; and those ``iterdce_predict`` wrote beside each lesion's probabilities when the model's calibration
holds them: ``type_frequencies`` (the calibration lesions' type shares, the answer a constant model of data like
the training data gives) and ``kinetic_prior`` (the model's voxel-wise kinetic regression alone, calibrated the
same way).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from iterdce.core.errors import JSONFileError  # noqa: E402
from iterdce.core.file_names import (  # noqa: E402
    KINETICS_REFERENCES,
    KINETICS_REFERENCES_KEY,
    REFERENCE_KINETIC_PRIOR,
    REFERENCE_TYPE_FREQUENCIES,
    bound_file_name,
    kinetics_json_name,
)
from iterdce.core.json_io import read_json  # noqa: E402
from iterdce.core.kinetics_rule import CURVE_TYPES  # noqa: E402
from iterdce.dataset.nifti_io import read_image  # noqa: E402

PROBABILITY_COLUMNS = tuple(f"p_{name}" for name in CURVE_TYPES)
REFERENCE_COLUMNS = {name: tuple(f"{name}_p_{t}" for t in CURVE_TYPES) for name in KINETICS_REFERENCES}
INTERVAL_METRICS = ("interval_coverage_body", "interval_width_body", "interval_coverage_lesion",
                    "interval_width_lesion")
ECE_BINS = 10
RELIABILITY_PNG = "reliability.png"


def read_intervals(pred: Path, case_id: str, phases: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{phase: (lower, upper)}`` of the phases whose two interval files exist (empty without ``--uncertainty``)."""
    found = {}
    for phase in phases:
        paths = [pred / bound_file_name(case_id, phase, upper) for upper in (False, True)]
        if all(p.is_file() for p in paths):
            found[phase] = (read_image(paths[0])[0], read_image(paths[1])[0])
    return found


def read_lesion_kinetics(pred: Path, case_id: str) -> dict[int, dict[str, Any]]:
    """The lesions of ``<case>_kinetics.json`` by label (empty without one or when it is unreadable)."""
    path = pred / kinetics_json_name(case_id)
    try:
        payload = read_json(path, expect=dict) if path.is_file() else {}
    except JSONFileError:
        return {}
    lesions = payload.get("lesions")
    return {int(e["label"]): e for e in lesions if isinstance(e, dict) and "label" in e} if isinstance(
        lesions, list) else {}


def interval_columns(real: np.ndarray, lower: np.ndarray, upper: np.ndarray, region: np.ndarray, std: float
                     ) -> dict[str, float]:
    """Coverage (share of ``region`` voxels with lower <= real <= upper) and mean width / ``std`` of one phase."""
    inside = (lower[region] <= real[region]) & (real[region] <= upper[region])
    return {"interval_coverage_body": float(inside.mean()) if inside.size else float("nan"),
            "interval_width_body": float(np.mean(upper[region] - lower[region]) / std) if inside.size
            else float("nan")}


def lesion_band_columns(real_curves: dict[int, np.ndarray], entries: dict[int, dict[str, Any]], phase: int,
                        first: int, std: float) -> dict[str, float]:
    """Share of lesions whose real mean at ``phase`` lies in its band of ``<case>_kinetics.json``, and the mean
    band width / ``std``; NaN when no lesion has a band there."""
    hits, widths = [], []
    for label, curve in real_curves.items():
        entry = entries.get(label)
        index = phase - first
        if entry is None or not 0 <= index < len(entry.get("lower", [])):
            continue
        low, high = float(entry["lower"][index]), float(entry["upper"][index])
        hits.append(low <= float(curve[phase]) <= high)
        widths.append((high - low) / std)
    if not hits:
        return {}
    return {"interval_coverage_lesion": float(np.mean(hits)), "interval_width_lesion": float(np.mean(widths))}


def lesion_probabilities(entry: dict[str, Any] | None) -> dict[str, float]:
    """``p_persistent``, ``p_plateau``, ``p_washout`` of one lesion's entry, and ``<reference>_p_<type>`` of each
    reference it carries (empty when it has none)."""
    def columns(probabilities: Any, names: tuple[str, ...]) -> dict[str, float]:
        if not isinstance(probabilities, dict):
            return {}
        return {column: float(probabilities.get(t, float("nan"))) for column, t in zip(names, CURVE_TYPES)}

    found = columns((entry or {}).get("probabilities"), PROBABILITY_COLUMNS)
    references = (entry or {}).get(KINETICS_REFERENCES_KEY)
    if found and isinstance(references, dict):
        for name, names in REFERENCE_COLUMNS.items():
            found.update(columns(references.get(name), names))
    return found


def brier_score(probabilities: np.ndarray, truth: np.ndarray) -> float:
    """Multi-class Brier score: mean over lesions of sum_k (p_k - [type = k])^2 (0 best, 2 worst)."""
    onehot = np.eye(len(CURVE_TYPES))[truth]
    return float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1)))


def expected_calibration_error(probabilities: np.ndarray, truth: np.ndarray, n_bins: int = ECE_BINS
                               ) -> tuple[float, list[dict[str, float]]]:
    """Top-label ECE (Guo et al. 2017): the confidence of the most probable type against its accuracy, in
    ``n_bins`` equal-width bins, weighted by the bins' shares; also the bins (the reliability diagram)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == truth
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    ece, bins = 0.0, []
    for b in range(n_bins):
        chosen = which == b
        if chosen.any():
            gap = abs(float(correct[chosen].mean()) - float(confidence[chosen].mean()))
            ece += gap * float(chosen.mean())
            bins.append({"confidence": float(confidence[chosen].mean()), "accuracy": float(correct[chosen].mean()),
                         "lesions": int(chosen.sum())})
    return float(ece), bins


def probability_summary(lesions: pd.DataFrame, png: Path | None = None) -> dict[str, Any] | None:
    """Brier score and ECE of the lesions' curve-type probabilities and of the two references; None when no
    lesion with a defined true type has probabilities. ``png``: write the reliability diagram there."""
    if not set(PROBABILITY_COLUMNS) <= set(lesions.columns):
        return None
    rows = lesions[lesions["true_type"].isin(CURVE_TYPES)].dropna(subset=list(PROBABILITY_COLUMNS))
    if rows.empty:
        return None
    truth = np.array([CURVE_TYPES.index(t) for t in rows["true_type"]])
    model = rows[list(PROBABILITY_COLUMNS)].to_numpy(dtype=np.float64)
    frequency = np.bincount(truth, minlength=len(CURVE_TYPES)) / truth.size
    references = {"uniform": np.full(model.shape, 1.0 / len(CURVE_TYPES)),
                  "frequency": np.broadcast_to(frequency, model.shape)}
    for name, names in REFERENCE_COLUMNS.items():  # only a reference every scored lesion carries
        if set(names) <= set(rows.columns) and rows[list(names)].notna().all().all():
            references[name] = rows[list(names)].to_numpy(dtype=np.float64)
    ece, bins = expected_calibration_error(model, truth)
    summary: dict[str, Any] = {
        "lesions": int(truth.size), "brier": brier_score(model, truth), "ece": ece, "reliability": bins,
        "references": {name: {"brier": brier_score(p, truth), "ece": expected_calibration_error(p, truth)[0]}
                       for name, p in references.items()},
        "reference_note": "uniform: 1/3 per type; frequency: the evaluated lesions' own type frequencies "
                          f"({', '.join(f'{n} {f:.3f}' for n, f in zip(CURVE_TYPES, frequency))}), in-sample; "
                          f"{REFERENCE_TYPE_FREQUENCIES}: the model's calibration lesions' type frequencies; "
                          f"{REFERENCE_KINETIC_PRIOR}: the model's kinetic prior alone, calibrated the same way "
                          "(the last two when iterdce_predict wrote them)"}
    if png is not None:
        plot_reliability(bins, png)
    return summary


def plot_reliability(bins: Sequence[dict[str, float]], path: Path) -> None:
    """The reliability diagram: accuracy of the most probable type against its mean probability per bin."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", label="calibrated")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", color="tab:red",
            label="iterdce")
    for b in bins:
        ax.annotate(str(b["lesions"]), (b["confidence"], b["accuracy"]), fontsize=7)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="probability of the most probable curve type",
           ylabel="share of lesions of that type", title="curve-type reliability")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
