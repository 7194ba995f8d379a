"""The regression residual's marginal interval at the coverage another interval reached: how wide would it have
to be?

The uncertainty issue compares the model's intervals with the regression residual's marginal interval "at the same
coverage". Calibrated on the training sites, the two reach different coverage on a shifted site (the marginal one
far less), so their widths there are not comparable as they come. This script widens or narrows the marginal
interval (one half-width per phase, the same for every voxel, centred on the regression's prediction) until its
coverage on the test cases equals the coverage a model's report measured, phase by phase, and prints the width it
then has beside the model's. The half-width is chosen on the test cases themselves: an oracle for the reference,
which only favours it.

Coverage and width are measured as ``iterdce_evaluate`` does (evaluation/uncertainty.py): per case, the share of
the scoring region's voxels inside the interval, averaged over cases; widths in TI-normalized units of the real
reference phase inside the region (evaluation/region.py).

    python -m benchmarks.matched_coverage --regression REG/pred_D --real RAW/imagesTr --report MODEL/report_D \
        --inputs 3
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from iterdce.core.file_names import phase_file_name
from iterdce.dataset.layout import group_phase_files
from iterdce.dataset.nifti_io import read_image
from iterdce.evaluation.region import DEFAULT_REGION, Scoring
from iterdce.preprocessing.normalization import ti_norm_stats
from iterdce.preprocessing.plan_schema import DEFAULT_REFERENCE_PHASE

Residuals = dict[int, list[np.ndarray]]  # per synthesized phase, one array per case


def normalized_residuals(real: Path, n_inputs: int, *predictions: Path) -> list[Residuals]:
    """For each prediction folder, per synthesized phase and case: |real - predicted| inside the scoring region,
    TI-normalized; the cases of ``real`` (a flat imagesTr) that every folder predicted, each read once."""
    if not real.is_dir():
        raise SystemExit(f"{real}: not a folder (the imagesTr of the predicted cases)")
    scoring = Scoring(DEFAULT_REGION, DEFAULT_REFERENCE_PHASE)
    grouped = group_phase_files(real, [])
    cases = [c for c in sorted(grouped) if all((p / phase_file_name(c, n_inputs)).is_file() for p in predictions)]
    if not cases:
        raise SystemExit(f"{', '.join(map(str, predictions))}: no prediction of a case of {real}")
    residuals: list[Residuals] = [{} for _ in predictions]
    for case in cases:
        files = grouped[case].image_files
        stack = np.stack([read_image(p)[0] for p in files]).astype(np.float64)
        mask = scoring.mask(stack[:n_inputs], None)
        stats = ti_norm_stats(stack, mask, DEFAULT_REFERENCE_PHASE)
        for folder, per_phase in zip(predictions, residuals):
            for phase in range(n_inputs, len(files)):
                predicted = folder / phase_file_name(case, phase)
                if not predicted.is_file():
                    raise SystemExit(f"{predicted}: missing (the prediction of phase {phase})")
                residual = np.abs(stack[phase] - read_image(predicted)[0]) / stats.std
                per_phase.setdefault(phase, []).append(residual[mask])
    return residuals


def mean_case_coverage(per_case: list[np.ndarray], half_width: float) -> float:
    """The evaluation's coverage: per case the share within the half-width, averaged over cases."""
    return float(np.mean([np.mean(r <= half_width) for r in per_case]))


def matched_half_width(per_case: list[np.ndarray], coverage: float, tolerance: float = 1e-4) -> float:
    """The smallest half-width whose mean per-case coverage reaches ``coverage`` (bisection)."""
    low, high = 0.0, float(max(r.max() for r in per_case))
    while high - low > tolerance:
        middle = (low + high) / 2
        low, high = (middle, high) if mean_case_coverage(per_case, middle) < coverage else (low, middle)
    return high


def model_intervals(report: Path) -> dict[int, tuple[float, float]]:
    """(body coverage, body width) per synthesized phase from a report's summary.json."""
    path = report / "summary.json"
    if not path.is_file():
        raise SystemExit(f"{path}: missing (pass iterdce_evaluate output folders as --report)")
    summary = json.loads(path.read_text())
    per_phase = summary["methods"]["iterdce"]["per_phase"]
    return {int(p): (v["interval_coverage_body"]["mean"], v["interval_width_body"]["mean"])
            for p, v in per_phase.items() if "interval_coverage_body" in v}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regression", type=Path, required=True, help="the regression's predictions (a folder)")
    parser.add_argument("--real", type=Path, required=True, help="imagesTr of the test cases (every phase)")
    parser.add_argument("--report", type=Path, nargs="+", required=True,
                        help="iterdce_evaluate reports of the model's --uncertainty predictions (e.g. one per seed)")
    parser.add_argument("--inputs", type=int, default=2)
    args = parser.parse_args(argv)
    (residuals,) = normalized_residuals(args.real, args.inputs, args.regression)
    print("| report | phase | model coverage | model width | marginal width at that coverage |\n|---|---|---|---|---|")
    for report in args.report:
        for phase, (coverage, width) in sorted(model_intervals(report).items()):
            matched = 2 * matched_half_width(residuals[phase], coverage)
            print(f"| {report} | {phase} | {100 * coverage:.1f} % | {width:.3f} | {matched:.3f} |")


if __name__ == "__main__":
    main()
