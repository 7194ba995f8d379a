"""Curve-type accuracy on the held-out site when the curve ends earlier: is the type error the time extrapolation?

Site D's last phase (503-592 s) lies beyond every training case's times (at most 512 s), its fourth post-contrast
phase (about 400-480 s) inside them. This script re-reads the lesion curves that ``benchmarks/cross_site.py``
already wrote (``curves.csv`` of each scored model and of the baselines: TI-normalized lesion means per phase),
brings them back to scanner intensities with each case's TI-norm (solved exactly from the real curve and the
raw images), and classifies every curve as if it ended at phase ``k`` (the BI-RADS rule of kinetics_rule.py on
phases 0..k, truth and prediction alike). No prediction is re-run.

  python -m benchmarks.type_by_horizon --workdir cross_site_work --models preset_steps2x_bf16_seed0 ... \
      --out type_by_horizon.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from iterdce.core.file_names import case_file_name, phase_file_name
from iterdce.core.folder_names import IMAGES_TR, LABELS_TR
from iterdce.core.kinetics_rule import classify_curve
from iterdce.dataset.nifti_io import read_image

BASELINES = ("copy_last", "regression")


def raw_lesion_curves(site_dir: Path, case: str, n_phases: int) -> dict[int, np.ndarray]:
    """Mean scanner intensity of each lesion label per phase, from the raw images and labels."""
    labels = read_image(site_dir / LABELS_TR / case_file_name(case), np.int32)[0]
    phases = [read_image(site_dir / IMAGES_TR / phase_file_name(case, k), np.float64)[0] for k in range(n_phases)]
    return {int(v): np.array([p[labels == v].mean() for p in phases]) for v in np.unique(labels) if v > 0}


def load_curves(path: Path, column: str) -> pd.DataFrame:
    table = pd.read_csv(path)
    return table[["case", "lesion", "phase", "time_s", "real", column]].rename(columns={column: "pred"})


def accuracy_by_horizon(curves: pd.DataFrame, raw: dict[tuple[str, int], np.ndarray],
                        true_types: dict[int, list[str]] | None = None) -> dict[int, float]:
    """Curve-type accuracy with the curves cut after each phase k >= 2 (truth and prediction cut alike); the
    true types per horizon go to ``true_types`` when given."""
    hits: dict[int, list[bool]] = {}
    for (case, lesion), group in curves.groupby(["case", "lesion"]):
        group = group.sort_values("phase")
        real_raw = raw[(str(case), int(lesion))]
        design = np.stack([group["real"].to_numpy(), np.ones(len(group))], axis=1)
        (std, mean), *_ = np.linalg.lstsq(design, real_raw, rcond=None)  # raw = normalized * std + mean
        times = group["time_s"].to_numpy()
        truth, pred = real_raw, group["pred"].to_numpy() * std + mean
        for k in range(2, len(group)):
            true_type = classify_curve(truth[: k + 1], times[: k + 1])
            hits.setdefault(k, []).append(true_type == classify_curve(pred[: k + 1], times[: k + 1]))
            if true_types is not None:
                true_types.setdefault(k, []).append(true_type)
    return {k: float(np.mean(v)) for k, v in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="the cross-site benchmark's workdir")
    parser.add_argument("--models", nargs="+", required=True, help="result folders under <workdir>/results")
    parser.add_argument("--site", default="Dataset903_SiteD", help="the held-out site's raw folder name")
    parser.add_argument("--out", type=Path, required=True, help="results json")
    args = parser.parse_args()
    site_dir = args.workdir / "raw" / args.site
    sources = {name: (args.workdir / "results" / "baselines" / "report" / "curves.csv", name) for name in BASELINES}
    for model in args.models:
        found = sorted((args.workdir / "results" / model).glob("*/test_report/curves.csv"))
        if not found:
            parser.error(f"{args.workdir / 'results' / model}: no */test_report/curves.csv")
        sources[model] = (found[0], "iterdce")
    baseline_curves = pd.read_csv(sources["copy_last"][0])
    cases, n_phases = sorted(baseline_curves["case"].unique()), int(baseline_curves["phase"].max()) + 1
    raw = {(case, label): curve for case in cases
           for label, curve in raw_lesion_curves(site_dir, case, n_phases).items()}
    true_types: dict[int, list[str]] = {}
    rows = {name: accuracy_by_horizon(load_curves(path, column), raw, true_types if not true_types else None)
            for name, (path, column) in sources.items()}
    counts = {k: {t: types.count(t) for t in ("persistent", "plateau", "washout")} for k, types in true_types.items()}
    args.out.write_text(json.dumps({"accuracy": rows, "true_types": counts}, indent=1))
    horizons = sorted(next(iter(rows.values())))
    print("true types (persistent / plateau / washout): "
          + ", ".join(f"phase {k}: {'/'.join(str(n) for n in counts[k].values())}" for k in horizons))
    print("| model | " + " | ".join(f"type acc., curve cut after phase {k}" for k in horizons) + " |")
    print("|---|" + "---|" * len(horizons))
    for name, accs in rows.items():
        print(f"| {name} | " + " | ".join(f"{100 * accs[k]:.1f} %" for k in horizons) + " |")


if __name__ == "__main__":
    main()
