"""``iterdce_evaluate``: metrics, kinetic curves and baselines for synthesized phases, or the CV summary.

  iterdce_evaluate -p PRED -r REF [-l LABELS] [-m MASKS] -o REPORT
  iterdce_evaluate --cv -d DATASET [-tr TRAINER]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iterdce.commands.common import add_root_arguments, roots_from_args, run_guarded
from iterdce.evaluation.cross_validation import cross_validation_summary
from iterdce.evaluation.folders import evaluate_folders
from iterdce.evaluation.regression_baseline import load_regression
from iterdce.output_checks import require_writable_folder
from iterdce.paths import find_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iterdce_evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--pred", type=Path, help="folder of synthesized <case>_<pppp>.nii.gz")
    parser.add_argument("-r", "--ref", type=Path, help="folder of the real phases (e.g. a dataset's imagesTr)")
    parser.add_argument("-l", "--labels", type=Path, help="lesion masks <case>.nii.gz (for enhancement error, curves)")
    parser.add_argument("-m", "--masks", type=Path, help="breast masks <case>.nii.gz (default: body foreground)")
    parser.add_argument("-o", "--output", type=Path, help="report folder")
    parser.add_argument("--dataset-json", type=Path, help="dataset.json with the phase times (default: next to REF)")
    parser.add_argument("--reference-phase", type=int, default=1, help="TI-norm reference phase (default 1)")
    parser.add_argument("--allow-missing-phases", action="store_true",
                        help="score a case with missing predicted phases on the phases present (default: error)")
    parser.add_argument("--regression", type=Path,
                        help="kinetic_regression.json, or a model folder whose fold_*/kinetic_regression.json fits "
                             "(written by iterdce_train) are averaged: reports the voxel-wise regression baseline")
    parser.add_argument("--cv", action="store_true", help="aggregate the folds' validation results")
    parser.add_argument("-d", "--dataset", default="1", help="with --cv: dataset id, name or path (default 1)")
    parser.add_argument("-tr", "--trainer", default="RecursiveTrainer", help="with --cv: trainer name")
    parser.add_argument("--plans-name", default="plans", help="with --cv: plan name (default plans)")
    add_root_arguments(parser)
    args = parser.parse_args(argv)
    if not args.cv and not (args.pred and args.ref and args.output):
        parser.error("-p, -r and -o are required (or use --cv)")

    def body() -> int:
        if args.cv:
            results = find_dataset(args.dataset, roots_from_args(args).results)
            model_folder = results / f"{args.trainer}__{args.plans_name}"
            require_writable_folder(model_folder, "--cv model folder")
            cross_validation_summary(model_folder)
            return 0
        require_writable_folder(args.output, "-o")
        regression = load_regression(args.regression) if args.regression else None
        evaluate_folders(args.pred, args.ref, args.output, args.labels, args.masks, args.dataset_json,
                         args.reference_phase, regression=regression, allow_missing_phases=args.allow_missing_phases)
        print(f"report written to {args.output}")
        return 0

    return run_guarded(body)


if __name__ == "__main__":
    sys.exit(main())
