"""What the out-of-distribution guard's threshold trades: a step guard (the whole change up to a fraction t of the
body outside the trained range, the last input above it) replayed per case on scored predictions.

Needs, per site, the evaluation report of predictions made *without* the guard (``--no-ood-guard``), the
predictions' ``<case>.json`` (their ``outside_trained_range``) and the baselines' report (copy-last's rows are what
a fully guarded case scores). Prints the mean last-phase PSNR, SSIM and lesion enhancement error per threshold.

    python -m benchmarks.guard_threshold --site F nc_f/reports/phantom_all_sites/prior_no_guard \
        nc_f/predictions/phantom_all_sites/prior_no_guard nc_f/reports/phantom_all_sites/baselines
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import markdown_table

THRESHOLDS = (0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 0.6, 1.0)


def last_phase(table: pd.DataFrame) -> pd.DataFrame:
    """Each case's row of its last phase, indexed by case."""
    return table[table.phase == table.case.map(table.groupby("case").phase.max())].set_index("case")


def outside_fractions(predictions: Path) -> dict[str, float]:
    """``outside_trained_range`` of every predicted case."""
    return {path.stem: float(json.loads(path.read_text())["outside_trained_range"])
            for path in sorted(predictions.glob("*.json"))}


def replay(report: Path, predictions: Path, baselines: Path) -> list[dict[str, float]]:
    """Per threshold: the means over cases when those above it are replaced by their last input (copy-last)."""
    free = last_phase(pd.read_csv(report / "per_case.csv").query("method == 'iterdce'"))
    copy = last_phase(pd.read_csv(baselines / "per_case.csv").query("method == 'copy_last'"))
    fraction = outside_fractions(predictions)
    rows = []
    for t in THRESHOLDS:
        chosen = pd.DataFrame([free.loc[c] if fraction[c] <= t else copy.loc[c] for c in free.index])
        rows.append({"threshold": t, "guarded": sum(fraction[c] > t for c in free.index),
                     "psnr": float(chosen.psnr.mean()), "ssim": float(chosen.ssim.mean()),
                     "enhancement_error": float(np.nanmean(chosen.enhancement_error))})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="iterdce_evaluate report of the unguarded predictions")
    parser.add_argument("predictions", type=Path, help="the unguarded predictions (their <case>.json)")
    parser.add_argument("baselines", type=Path, help="the baselines' report (copy-last rows)")
    parser.add_argument("--site", default="", help="a label for the table")
    args = parser.parse_args(argv)
    rows = replay(args.report, args.predictions, args.baselines)
    print(f"site {args.site}: step guard replayed on {args.report}")
    print(markdown_table(("guarded above", "cases guarded", "PSNR last", "SSIM last", "EE last (mean of cases)"),
                         [(f"{r['threshold']:g}", r["guarded"], f"{r['psnr']:.2f}", f"{r['ssim']:.3f}",
                           f"{r['enhancement_error']:.3f}") for r in rows]))


if __name__ == "__main__":
    main()
