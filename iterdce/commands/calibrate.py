"""``iterdce_calibrate -d DATASET``: split conformal calibration of a trained model on cases it did not train on,
stored as conformal_calibration.json in the model folder (what ``iterdce_predict --uncertainty`` needs)."""
from __future__ import annotations

import sys
from pathlib import Path

from iterdce.commands.common import (
    add_dataset_argument,
    add_plans_argument,
    add_quiet_argument,
    add_root_arguments,
    new_parser,
    parse_fold,
    roots_from_args,
    run_guarded,
)
from iterdce.core.folder_names import model_folder_name
from iterdce.core.paths import find_dataset
from iterdce.inference.conformal import DEFAULT_DIFFICULTY, DIFFICULTIES
from iterdce.inference.predictor import PredictionSettings
from iterdce.preprocessing.splits import SPLITS_FILE
from iterdce.workflow.calibration import calibrate, fold_jobs, folder_jobs


def main(argv: list[str] | None = None) -> int:
    parser = new_parser("iterdce_calibrate", __doc__, "iterdce_calibrate -d 1 -f 0 1 2 3 4")
    add_dataset_argument(parser)
    parser.add_argument("-f", "--folds", nargs="+", type=parse_fold, default=[0, 1, 2, 3, 4],
                        help="the folds (default 0 1 2 3 4); without --cases each predicts its own validation cases")
    parser.add_argument("--cases", metavar="DIR", help="a held-back raw dataset folder (with dataset.json and real "
                        "target phases) predicted by the ensemble of --folds instead; needed for fold 'all'")
    parser.add_argument("--difficulty", default=DEFAULT_DIFFICULTY, choices=sorted(DIFFICULTIES),
                        help="how the intervals' width varies (default %(default)s): 'change' widens them with the "
                        "predicted change from the last input, 'none' gives one width per target-time bin (the plain "
                        "marginal interval: with three inputs 0.7-3.4 points less coverage on a new site at 32-56 %% "
                        "of the width; with two inputs it undercovers; reports/uncertainty.md)")
    parser.add_argument("-tr", "--trainer", default="RecursiveTrainer", help="trainer name (default RecursiveTrainer)")
    add_plans_argument(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    add_quiet_argument(parser)
    add_root_arguments(parser)
    args = parser.parse_args(argv)
    roots = roots_from_args(args)

    def body() -> int:
        results = find_dataset(args.dataset, roots.results, "results")
        model_folder = results / model_folder_name(args.trainer, args.plans_name)
        if args.cases:
            jobs, source = folder_jobs(Path(args.cases), args.folds), f"held-back cases in {args.cases}"
        else:
            preprocessed = find_dataset(args.dataset, roots.preprocessed, "preprocessed")
            jobs = fold_jobs(roots.raw / preprocessed.name, preprocessed / SPLITS_FILE, args.folds)
            source = f"fold validation cases (folds {', '.join(map(str, args.folds))})"
        settings = PredictionSettings(device=args.device, progress=not args.quiet)
        calibration = calibrate(model_folder, jobs, source, settings, difficulty=args.difficulty)
        sizes = ", ".join(f"{len(b)}/{len(lb)}" for b, lb in zip(calibration.body_scores, calibration.lesion_scores))
        print(f"calibrated {model_folder} on {len(calibration.cases)} case(s) from {source}; body/lesion scores per "
              f"time bin: {sizes}")
        return 0

    return run_guarded(body)


if __name__ == "__main__":
    sys.exit(main())
