"""How low a lesion's last-phase enhancement error can go from what the inputs carry: readers that learn from the
test site's own lesions.

The three-input issue asks for a lesion enhancement error (EE: squared error of the last phase's lesion mean,
TI-normalized units) at most 0.7x the best baseline's on a held-out site. This script bounds what such a target
needs. It reads an ``iterdce_evaluate`` report (``curves.csv``: per lesion and phase the real lesion mean and each
method's) and fits, leave-one-case-out on that same report's lesions, two readers of the lesion-mean curve:

- ``linear reader``: each synthesized phase's real mean from the input phases' means, the slope between the last
  two inputs times the time since the last input, and that time (ridge least squares);
- ``<method> corrected``: the same with the method's own prediction as one more feature, i.e. the best linear
  correction of the method that the test site's lesions themselves allow.

Both learn from the test site, which no cross-site model can: they are optimistic bounds of what lesion means
carry, not methods. If even they stay above the target, the target is beyond the information in the inputs'
lesion means (a network also sees each lesion's texture and surroundings; whether that adds is what the trained
models' own rows show).

    python -m benchmarks.lesion_ceiling REPORT [REPORT ...] --inputs 3 [--method iterdce] [--transfer-from REPORT]
        [--out FILE]
"""
from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iterdce.evaluation.kinetics import spearman

RIDGE = 1e-3  # ridge weight: only keeps a solve stable when a feature is constant
TARGET_RATIO = 0.7  # the lesion-error target, relative to the best baseline


@dataclass(frozen=True)
class LesionCurve:
    """One lesion's real and predicted mean curves (every phase, inputs first) and its phase times (s)."""

    case: str
    times_s: np.ndarray
    real: np.ndarray
    predicted: np.ndarray


def read_curves(report: Path, method: str) -> list[LesionCurve]:
    """The lesions of ``report/curves.csv`` with the ``method`` column as the prediction."""
    path = report / "curves.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: missing (pass iterdce_evaluate output folders)")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or method not in rows[0]:
        columns = sorted(set(rows[0]) - {"case", "lesion", "phase", "time_s", "real"}) if rows else []
        raise SystemExit(f"{path}: no column {method!r} (methods: {', '.join(columns) or 'none'})")
    grouped: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in rows:
        grouped.setdefault((row["case"], row["lesion"]), []).append(row)
    curves = []
    for (case, _), lesion_rows in grouped.items():
        lesion_rows.sort(key=lambda r: int(r["phase"]))
        curves.append(LesionCurve(case, np.array([float(r["time_s"]) for r in lesion_rows]),
                                  np.array([float(r["real"]) for r in lesion_rows]),
                                  np.array([float(r[method]) for r in lesion_rows])))
    return curves


def phase_features(curve: LesionCurve, n_inputs: int, phase: int, with_method: bool) -> np.ndarray:
    """The reader's features for one synthesized phase of one lesion (see the module docstring)."""
    t, x = curve.times_s, curve.real
    last = n_inputs - 1
    since_last = (t[phase] - t[last]) / 100.0
    slope = (x[last] - x[last - 1]) / max(t[last] - t[last - 1], 1e-6) * 100.0 if n_inputs > 2 else 0.0
    features = [1.0, *x[:n_inputs], slope * since_last, since_last]
    if with_method:
        features.append(curve.predicted[phase])
    return np.array(features)


def leave_one_case_out(curves: Sequence[LesionCurve], n_inputs: int, with_method: bool) -> list[np.ndarray]:
    """Each lesion's synthesized phases predicted by a reader fitted on the lesions of every other case (one
    linear map for all synthesized phases; the time since the last input is a feature)."""
    if len({c.case for c in curves}) < 2:
        raise SystemExit("the readers need lesions in at least two cases (each is fitted without its own case)")
    predicted = []
    for curve in curves:
        weights = fit_reader([c for c in curves if c.case != curve.case], n_inputs, with_method)
        predicted += apply_reader([curve], n_inputs, with_method, weights)
    return predicted


def fit_reader(curves: Sequence[LesionCurve], n_inputs: int, with_method: bool) -> np.ndarray:
    """The reader's weights fitted on every lesion of ``curves``."""
    samples = [(c, k) for c in curves for k in range(n_inputs, c.real.size)]
    design = np.array([phase_features(c, n_inputs, k, with_method) for c, k in samples])
    targets = np.array([c.real[k] for c, k in samples])
    return np.linalg.solve(design.T @ design + RIDGE * np.eye(design.shape[1]), design.T @ targets)


def apply_reader(curves: Sequence[LesionCurve], n_inputs: int, with_method: bool, weights: np.ndarray
                 ) -> list[np.ndarray]:
    """Each lesion's curve with its synthesized phases from a reader fitted elsewhere."""
    return [np.concatenate([c.real[:n_inputs], [phase_features(c, n_inputs, k, with_method) @ weights
                                                 for k in range(n_inputs, c.real.size)]]) for c in curves]


def scores(curves: Sequence[LesionCurve], predicted: Sequence[np.ndarray]) -> dict[str, float]:
    """Last-phase EE and mean SCC (the evaluation's definitions: evaluation/case_evaluation.py)."""
    errors = [(p[-1] - c.real[-1]) ** 2 for c, p in zip(curves, predicted)]
    scc = [spearman(c.real, p) for c, p in zip(curves, predicted)]
    return {"ee_last": float(np.mean(errors)), "scc": float(np.nanmean(scc)), "lesions": len(curves)}


def ceiling(report: Path, n_inputs: int, method: str, transfer_from: Path | None = None
            ) -> dict[str, dict[str, float]]:
    """The method's own scores and both readers', on one report; with ``transfer_from``, also the corrected
    reader fitted on that other report's lesions (e.g. held-out cases of the training sites): what a correction
    learnt without the test site does."""
    curves = read_curves(report, method)
    transferred = {}
    if transfer_from is not None:
        weights = fit_reader(read_curves(transfer_from, method), n_inputs, True)
        transferred = {f"{method} corrected (fitted on {transfer_from.name})":
                       scores(curves, apply_reader(curves, n_inputs, True, weights))}
    return {**transferred, method: scores(curves, [c.predicted for c in curves]),
            "linear reader (own site, leave-one-case-out)": scores(curves, leave_one_case_out(curves, n_inputs, False)),
            f"{method} corrected (own site, leave-one-case-out)": scores(curves,
                                                                         leave_one_case_out(curves, n_inputs, True))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", type=Path, nargs="+", help="iterdce_evaluate output folders (curves.csv)")
    parser.add_argument("--inputs", type=int, default=3, help="input phases of the evaluated predictions")
    parser.add_argument("--method", default="iterdce", help="the curves.csv column to score and correct")
    parser.add_argument("--transfer-from", type=Path, help="also fit the corrected reader on this report's lesions "
                        "and apply it to each REPORT")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    results = {str(report): ceiling(report, args.inputs, args.method, args.transfer_from) for report in args.reports}
    for report, rows in results.items():
        print(f"\n{report}\n| reader | EE last | SCC | lesions |\n|---|---|---|---|")
        for name, row in rows.items():
            print(f"| {name} | {row['ee_last']:.4f} | {row['scc']:.3f} | {row['lesions']} |")
        print(f"target: <= {TARGET_RATIO} x {args.method}'s EE = {TARGET_RATIO * rows[args.method]['ee_last']:.4f}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
