"""A marginal interval widened for a new site by a factor learnt leave-one-site-out.

reports/uncertainty.md found every per-voxel difficulty on one trade: narrow on the training sites' cases, or
covering on a new site, not both, while at equal coverage the plain marginal interval is the narrowest on both. What
it lacks is the new site's larger errors. This script measures whether that widening can be learnt without the new
site: models trained leave-one-site-out (each on all training sites but one) give, per synthesized phase, the ratio
of the half-width that reaches the nominal coverage on the held-out site's cases to the one that reaches it on new
cases of their own training sites. The model under test then gets its own in-distribution half-width times the mean
ratio, and the script reports what that interval covers on the test site and how wide it is, beside the unwidened
one and the regression residual's marginal interval at the same coverage (benchmarks/matched_coverage.py, whose
residuals and coverage this uses: the evaluation's region, TI-norm and per-case coverage).

Each set is ``PRED:REAL``: a prediction folder and the imagesTr of the same cases (every phase).

    python -m benchmarks.site_shift_width --inputs 3 \
        --loso A_IN:REAL_IN:A_OUT:REAL_OUT --loso ... --model MODEL_IN:REAL_IN --test MODEL_TEST:REAL_TEST \
        --reference REGRESSION_TEST
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.matched_coverage import Residuals, matched_half_width, mean_case_coverage, normalized_residuals


def residuals_of(pair: str, n_inputs: int) -> Residuals:
    """The residuals of one ``PRED:REAL`` set."""
    pred, real = pair.split(":")
    return normalized_residuals(Path(real), n_inputs, Path(pred))[0]


def shift_factors(inside: Residuals, outside: Residuals, coverage: float) -> dict[int, float]:
    """Per phase: half-width reaching ``coverage`` on the held-out site / on the model's own sites' new cases."""
    return {phase: matched_half_width(outside[phase], coverage) / matched_half_width(inside[phase], coverage)
            for phase in sorted(set(inside) & set(outside))}


def widened_interval(model_inside: Residuals, test: Residuals, reference: Residuals, factors: dict[int, float],
                     coverage: float) -> dict[int, dict[str, float]]:
    """Per phase of the test set: coverage and width of the model's in-distribution half-width, unwidened and
    widened by ``factors``, and the reference's marginal width at the widened interval's coverage."""
    rows = {}
    for phase in sorted(set(test) & set(factors) & set(model_inside)):
        half = matched_half_width(model_inside[phase], coverage)
        widened = half * factors[phase]
        reached = mean_case_coverage(test[phase], widened)
        plain = mean_case_coverage(test[phase], half)
        rows[phase] = {"coverage_unwidened": plain, "width_unwidened": 2 * half,
                       "reference_width_at_unwidened_coverage": 2 * matched_half_width(reference[phase], plain),
                       "factor": factors[phase], "coverage_widened": reached, "width_widened": 2 * widened,
                       "reference_width_at_that_coverage": 2 * matched_half_width(reference[phase], reached)}
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loso", action="append", required=True, metavar="IN_PRED:IN_REAL:OUT_PRED:OUT_REAL",
                        help="one leave-one-site-out model: its own sites' new cases, then the held-out site's")
    parser.add_argument("--model", required=True, metavar="PRED:REAL", help="the tested model on new cases of its "
                        "training sites")
    parser.add_argument("--test", required=True, metavar="PRED:REAL", help="the tested model on the new site")
    parser.add_argument("--reference", type=Path, required=True, help="the regression's predictions of the new site")
    parser.add_argument("--inputs", type=int, default=2)
    parser.add_argument("--coverage", type=float, default=0.9)
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    per_loso = []
    for spec in args.loso:
        parts = spec.split(":")
        if len(parts) != 4:
            raise SystemExit(f"--loso {spec}: expected IN_PRED:IN_REAL:OUT_PRED:OUT_REAL")
        per_loso.append(shift_factors(residuals_of(":".join(parts[:2]), args.inputs),
                                      residuals_of(":".join(parts[2:]), args.inputs), args.coverage))
    phases = sorted(set.intersection(*(set(f) for f in per_loso)))
    factors = {p: float(np.mean([f[p] for f in per_loso])) for p in phases}
    test_pred, test_real = args.test.split(":")
    test, reference = normalized_residuals(Path(test_real), args.inputs, Path(test_pred), args.reference)
    rows = widened_interval(residuals_of(args.model, args.inputs), test, reference, factors, args.coverage)
    print("| phase | factor per held-out site | mean | coverage / width unwidened (reference width at that coverage) "
          "| coverage / width widened (reference width at that coverage) |\n|---|---|---|---|---|")
    for phase, row in rows.items():
        each = ", ".join(f"{f[phase]:.2f}" for f in per_loso)
        print(f"| {phase} | {each} | {row['factor']:.2f} | {100 * row['coverage_unwidened']:.1f} % / "
              f"{row['width_unwidened']:.3f} ({row['reference_width_at_unwidened_coverage']:.3f}) | "
              f"{100 * row['coverage_widened']:.1f} % / {row['width_widened']:.3f} "
              f"({row['reference_width_at_that_coverage']:.3f}) |")
    if args.out:
        args.out.write_text(json.dumps({"factors_per_loso": per_loso, "test": rows, "args": vars(args)},
                                       indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
