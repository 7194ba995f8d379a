"""Aggregating case evaluations into per_case.csv, curves.csv, summary.json, figures and a printed table."""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from iterdce.core.atomic import write_atomic, write_json_atomic  # noqa: E402
from iterdce.evaluation.case_evaluation import METHODS, CaseEvaluation  # noqa: E402
from iterdce.evaluation.kinetics import curve_type_confusion  # noqa: E402
from iterdce.evaluation.region import Scoring  # noqa: E402
from iterdce.evaluation.uncertainty import (  # noqa: E402
    INTERVAL_METRICS,
    RELIABILITY_PNG,
    plot_reliability,
    probability_summary,
)

METRICS = ("psnr", "ssim", "mae", "enhancement_error", "sharpness")
COLORS = {"real": "black", "iterdce": "tab:red", "copy_last": "tab:gray", "linear": "tab:blue",
          "regression": "tab:green"}


def _finite_stats(values: pd.Series) -> dict[str, float | int | None]:
    finite = values.replace([np.inf, -np.inf], np.nan).dropna()
    if finite.empty:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(finite.mean()), "std": float(finite.std(ddof=0)), "n": int(len(finite))}


def summarize(phase_table: pd.DataFrame, lesion_table: pd.DataFrame, scoring: dict[str, str]) -> dict:
    """Mean/std per method and phase of every metric; SCC, DTW, curve-type accuracy per method; ``scoring``
    (region.Scoring.describe) says where and in which units the metrics were computed."""
    summary: dict = {"scoring": scoring, "methods": {},
                     "note": "TI-normalized units; metrics inside the scoring region, infinite values excluded"}
    for method in METHODS:
        rows = phase_table[phase_table["method"] == method]
        if rows.empty:
            continue
        metrics = [m for m in METRICS if m in rows]  # reports written before a metric existed lack its column
        metrics += [m for m in INTERVAL_METRICS if m in rows and rows[m].notna().any()]  # --uncertainty outputs
        per_phase = {str(int(phase)): {m: _finite_stats(group[m]) for m in metrics}
                     for phase, group in rows.groupby("phase")}
        entry: dict = {"per_phase": per_phase, "all_phases": {m: _finite_stats(rows[m]) for m in metrics}}
        lesions = lesion_table[lesion_table["method"] == method] if not lesion_table.empty else lesion_table
        if not lesions.empty:
            accuracy, matrix = curve_type_confusion(list(lesions["true_type"]), list(lesions["predicted_type"]))
            entry["kinetics"] = {
                "scc": _finite_stats(lesions["scc"]), "dtw": _finite_stats(lesions["dtw"]),
                "last_phase_enhancement_error": _finite_stats(lesions["last_phase_enhancement_error"]),
                "curve_type_accuracy": None if math.isnan(accuracy) else accuracy,
                "confusion_matrix": {"rows_true_cols_predicted": matrix.to_dict(orient="index")},
                "lesions": int(len(lesions)),
            }
            probabilities = probability_summary(lesions)
            if probabilities is not None:
                entry["kinetics"]["curve_type_probabilities"] = probabilities
        summary["methods"][method] = entry
    summary["verdict"] = verdict(summary)
    return summary


def _last_phase_error(entry: dict) -> float | None:
    return entry.get("kinetics", {}).get("last_phase_enhancement_error", {}).get("mean")


def _last_phase_psnr(entry: dict) -> float | None:
    per_phase = entry.get("per_phase", {})
    return per_phase[max(per_phase, key=int)]["psnr"]["mean"] if per_phase else None


def verdict(summary: dict) -> str:
    """One line: does the network clear the strongest baseline on last-phase lesion enhancement error, and on
    last-phase PSNR (the whole image at the case's resolution)?

    The voxel-wise regression is the floor when it was fitted; a report whose network does not clear
    it on either says so first."""
    methods = summary["methods"]
    network = _last_phase_error(methods.get("iterdce", {}))
    baselines = {m: e for m in ("regression", "copy_last", "linear")
                 if m in methods and (e := _last_phase_error(methods[m])) is not None}
    if network is None or not baselines:
        missing = "the network" if network is None else "a baseline"
        return f"no verdict: no lesion curves of {missing} in this report"
    floor = "regression" if "regression" in baselines else min(baselines, key=lambda m: baselines[m])
    error = f"last-phase lesion enhancement error {network:.4g} vs {baselines[floor]:.4g}"
    psnrs = _last_phase_psnr(methods["iterdce"]), _last_phase_psnr(methods[floor])
    sharp = None if None in psnrs else psnrs[0] >= psnrs[1]  # type: ignore[operator]
    image = "" if sharp is None else f"last-phase PSNR {psnrs[0]:.4g} vs {psnrs[1]:.4g} dB"
    if network < baselines[floor] and sharp is not False:
        return f"iterdce clears the {floor} baseline: {error}" + (f"; {image}" if image else "")
    if network < baselines[floor]:
        return f"WARNING: iterdce does NOT clear the {floor} baseline on PSNR: {image}; {error}"
    return f"WARNING: iterdce does NOT clear the {floor} baseline: {error}" + (f"; {image}" if image else "")


def summary_table(summary: dict, last_phase: int | None = None) -> str:
    """Markdown table: each method's mean metrics over target phases; "enh. error (last)" is the per-lesion
    last-phase enhancement error that the verdict line compares (the per-case value of the last phase when
    the report has no lesion curves)."""
    lines = [summary["verdict"]] if "verdict" in summary else []
    if "scoring" in summary:
        scoring = summary["scoring"]
        grid = {"native": "each case's own grid", "plan": "the plan's grid"}.get(scoring.get("resolution", "plan"))
        lines.append(f"scored on {grid} inside {scoring['region_definition']}; {scoring['normalization']}")
    header = ("| method | PSNR | PSNR (last) | SSIM | sharpness | MAE | enh. error (all) | enh. error (last) | SCC | "
              "DTW | type acc. |")
    lines += [header, "|" + "---|" * 11]

    def fmt(value: float | None, digits: int = 4) -> str:
        return "n/a" if value is None else f"{value:.{digits}g}"

    for method, entry in summary["methods"].items():
        overall = entry["all_phases"]
        phases = sorted(entry["per_phase"], key=int)
        last = entry["per_phase"][str(last_phase) if last_phase is not None else phases[-1]] if phases else {}
        kinetics = entry.get("kinetics", {})
        lines.append("| " + " | ".join([
            method, fmt(overall["psnr"]["mean"]), fmt(last.get("psnr", {}).get("mean") if last else None),
            fmt(overall["ssim"]["mean"]), fmt(overall.get("sharpness", {}).get("mean"), 3), fmt(overall["mae"]["mean"]),
            fmt(overall["enhancement_error"]["mean"]),
            fmt(_last_phase_error(entry) if _last_phase_error(entry) is not None
                else last.get("enhancement_error", {}).get("mean") if last else None),
            fmt(kinetics.get("scc", {}).get("mean")), fmt(kinetics.get("dtw", {}).get("mean")),
            fmt(kinetics.get("curve_type_accuracy")),
        ]) + " |")
    return "\n".join(lines)


def plot_case_curves(curves: pd.DataFrame, path: Path) -> None:
    """Lesion kinetic curves of one case: real, synthesized and the baselines, one panel per lesion."""
    lesions = sorted(curves["lesion"].unique())
    fig, axes = plt.subplots(1, len(lesions), figsize=(4.5 * len(lesions), 3.6), squeeze=False)
    for axis, label in zip(axes[0], lesions):
        rows = curves[curves["lesion"] == label].sort_values("time_s")
        for column in ("real", *[m for m in METHODS if m in rows]):
            style = "-o" if column in ("real", "iterdce") else "--"
            axis.plot(rows["time_s"], rows[column], style, color=COLORS[column], label=column, markersize=4)
        axis.set(title=f"{rows['case'].iloc[0]} lesion {label}", xlabel="time (s)",
                 ylabel="mean lesion intensity (TI-norm)")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90), suffix=".png")
    plt.close(fig)


def plot_montage(panels: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]],
                 titles: Sequence[Sequence[str]], path: Path) -> None:
    """Rows of (case, real phases [P, X, Y], synthesized [P, X, Y], lesion outline [X, Y]) as a PNG grid, with
    ``titles`` (the phase times) per panel: on the first row, and on any row whose protocol differs from it."""
    n_cols = max(len(real) for _, real, _, _ in panels)
    fig, axes = plt.subplots(2 * len(panels), n_cols, figsize=(1.9 * n_cols, 3.9 * len(panels)), squeeze=False)
    for row, (case_id, real, synthesized, outline) in enumerate(panels):
        vmin, vmax = np.percentile(real, [1, 99.5])
        for col in range(n_cols):
            for offset, images, label in ((0, real, "real"), (1, synthesized, "synth.")):
                axis = axes[2 * row + offset][col]
                if col >= len(images):  # a shorter protocol than the longest shown
                    axis.axis("off")
                    continue
                axis.imshow(images[col].T, cmap="gray", vmin=vmin, vmax=vmax, origin="lower")
                if outline is not None and outline.any():
                    axis.contour(outline.T, levels=[0.5], colors="red", linewidths=0.6)
                axis.set_xticks([])
                axis.set_yticks([])
                if col == 0:
                    axis.set_ylabel(f"{case_id}\n{label}", fontsize=7)
                if offset == 0 and (row == 0 or list(titles[row]) != list(titles[0])):
                    axis.set_title(titles[row][col], fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80), suffix=".png")
    plt.close(fig)


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    table.to_csv(path, index=False)


def write_report(evaluations: Sequence[CaseEvaluation], out_dir: Path, scoring: Scoring) -> dict:
    """per_case.csv, curves.csv, lesions.csv, summary.json and kinetic_curves/<case>.png; returns the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    phase_table = pd.DataFrame([r for e in evaluations for r in e.phase_rows])
    curve_table = pd.DataFrame([r for e in evaluations for r in e.curve_rows])
    lesion_table = pd.DataFrame([r for e in evaluations for r in e.lesion_rows])
    for name, table in (("per_case.csv", phase_table), ("curves.csv", curve_table), ("lesions.csv", lesion_table)):
        write_atomic(out_dir / name, functools.partial(_write_csv, table))
    summary = summarize(phase_table, lesion_table, scoring.describe())
    write_json_atomic(out_dir / "summary.json", summary)
    probabilities = summary["methods"].get("iterdce", {}).get("kinetics", {}).get("curve_type_probabilities")
    if probabilities is not None:
        plot_reliability(probabilities["reliability"], out_dir / RELIABILITY_PNG)
    if not curve_table.empty:
        for case_id, rows in curve_table.groupby("case"):
            plot_case_curves(rows, out_dir / "kinetic_curves" / f"{case_id}.png")
    return summary
