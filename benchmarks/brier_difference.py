"""Is one model's curve-type Brier score really below another's? The paired difference over lesions, with a
bootstrap interval that resamples whole cases (lesions of one case share its acquisition).

Reads the ``lesions.csv`` of ``iterdce_evaluate`` reports written with ``--uncertainty`` predictions (columns
``true_type`` and ``p_persistent`` / ``p_plateau`` / ``p_washout``): a reference report and one or more model
reports (e.g. one per seed) of the same lesions. The difference is the model's Brier score minus the
reference's, averaged over the models (seeds) and lesions; negative means the model is better.

    python -m benchmarks.brier_difference --reference REG/report_D/lesions.csv \
        --models S0/report_D/lesions.csv S1/report_D/lesions.csv S2/report_D/lesions.csv
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from iterdce.core.kinetics_rule import CURVE_TYPES
from iterdce.evaluation.uncertainty import PROBABILITY_COLUMNS

RESAMPLES = 10_000


def lesion_brier(path: Path) -> pd.Series:
    """Each lesion's Brier score (sum over the three types of the squared probability error), indexed by
    (case, lesion)."""
    if not path.is_file():
        raise SystemExit(f"{path}: missing (the lesions.csv of an iterdce_evaluate report)")
    frame = pd.read_csv(path)
    missing = {"case", "lesion", "true_type", *PROBABILITY_COLUMNS} - set(frame.columns)
    if missing:
        raise SystemExit(f"{path}: no column(s) {', '.join(sorted(missing))} (predict with --uncertainty)")
    probabilities = frame[list(PROBABILITY_COLUMNS)].to_numpy(float)
    truth = np.stack([(frame["true_type"] == t).to_numpy(float) for t in CURVE_TYPES], axis=1)
    index = pd.MultiIndex.from_frame(frame[["case", "lesion"]])
    return pd.Series(((probabilities - truth) ** 2).sum(axis=1), index=index)


def paired_difference(reference: pd.Series, models: Sequence[pd.Series], seed: int = 0
                      ) -> tuple[float, tuple[float, float], list[float]]:
    """(mean difference, its 95 % case-bootstrap interval, the mean difference of each model)."""
    for model in models:
        if set(model.index) != set(reference.index):
            raise SystemExit("the reports do not score the same lesions")
    differences = np.stack([model.reindex(reference.index).to_numpy() - reference.to_numpy() for model in models])
    cases = reference.index.get_level_values("case").to_numpy()
    groups = [np.flatnonzero(cases == c) for c in np.unique(cases)]
    rng = np.random.default_rng(seed)
    boot = [differences[:, np.concatenate([groups[g] for g in rng.integers(len(groups), size=len(groups))])].mean()
            for _ in range(RESAMPLES)]
    low, high = np.percentile(boot, [2.5, 97.5])
    return float(differences.mean()), (float(low), float(high)), [float(d) for d in differences.mean(axis=1)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="the reference's lesions.csv")
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="the model's lesions.csv, one per seed")
    args = parser.parse_args(argv)
    reference = lesion_brier(args.reference)
    mean, (low, high), per_model = paired_difference(reference, [lesion_brier(m) for m in args.models])
    print(f"reference Brier {reference.mean():.4f} over {len(reference)} lesions")
    print(f"model - reference: {mean:+.4f} (95 % case-bootstrap {low:+.4f} to {high:+.4f}); per model "
          + ", ".join(f"{d:+.4f}" for d in per_model))


if __name__ == "__main__":
    main()
