"""``iterdce_evaluate``: metrics, kinetic curves and baselines for synthesized phases, or the CV summary.

  iterdce_evaluate --pred PRED -r REF [-l LABELS] [--region breast -m MASKS] -o REPORT
  iterdce_evaluate --cv -d DATASET [-tr TRAINER] [-p PLANS]

Metrics are computed inside the body foreground of the input phases by default, as the fold validation
report does; --region breast scores inside the breast masks instead (documentation/evaluation.md).
"""
from __future__ import annotations

import sys
from pathlib import Path

from iterdce.commands.common import (
    add_dataset_argument,
    add_plans_argument,
    add_quiet_argument,
    add_root_arguments,
    new_parser,
    roots_from_args,
    run_guarded,
)
from iterdce.core.folder_names import model_folder_name
from iterdce.core.output_checks import require_writable_folder
from iterdce.core.owned_outputs import refuse_overlap
from iterdce.core.paths import find_dataset
from iterdce.evaluation.folders import evaluate_folders
from iterdce.evaluation.region import DEFAULT_REGION, REGIONS
from iterdce.preprocessing.plan_schema import DEFAULT_REFERENCE_PHASE
from iterdce.regression.fit import load_regression
from iterdce.workflow.cross_validation import cross_validation_summary


def main(argv: list[str] | None = None) -> int:
    parser = new_parser("iterdce_evaluate", __doc__,
                        "iterdce_evaluate --pred synthesized/ -r raw/Dataset001_Phantom/imagesTr -o report/")
    parser.add_argument("--pred", type=Path, help="folder of synthesized <case>_<pppp>.nii.gz")
    parser.add_argument("-r", "--ref", type=Path, help="folder of the real phases (e.g. a dataset's imagesTr)")
    parser.add_argument("-l", "--labels", type=Path, help="lesion masks <case>.nii.gz (for enhancement error, curves)")
    parser.add_argument("-m", "--masks", type=Path, help="breast masks <case>.nii.gz (with --region breast)")
    parser.add_argument("--region", default=DEFAULT_REGION, choices=REGIONS,
                        help=f"where the metrics are computed (default {DEFAULT_REGION})")
    parser.add_argument("-o", "--output", type=Path, help="report folder")
    parser.add_argument("--dataset-json", type=Path, help="dataset.json with the phase times (default: next to REF)")
    parser.add_argument("--reference-phase", type=int, default=DEFAULT_REFERENCE_PHASE,
                        help=f"TI-norm reference phase (default {DEFAULT_REFERENCE_PHASE})")
    parser.add_argument("--allow-missing-phases", action="store_true",
                        help="score a case with missing predicted phases on the phases present (default: error)")
    parser.add_argument("--regression", type=Path,
                        help="kinetic_regression.json, or a model folder whose fold_*/kinetic_regression.json fits "
                             "(written by iterdce_train) are averaged: reports the voxel-wise regression baseline")
    parser.add_argument("--cv", action="store_true", help="aggregate the folds' validation results")
    add_dataset_argument(parser, required=False)
    parser.add_argument("-tr", "--trainer", default="RecursiveTrainer", help="with --cv: trainer name")
    add_plans_argument(parser)
    add_quiet_argument(parser)
    add_root_arguments(parser)
    args = parser.parse_args(argv)
    if args.cv and args.dataset is None:
        parser.error("--cv needs -d/--dataset")
    if args.masks and args.region != "breast":
        parser.error("-m/--masks is used by --region breast only (the default region is the body foreground)")
    if not args.cv and not (args.pred and args.ref and args.output):
        parser.error("--pred, -r and -o are required (or use --cv)")

    def body() -> int:
        if args.cv:
            results = find_dataset(args.dataset, roots_from_args(args).results, "results")
            model_folder = results / model_folder_name(args.trainer, args.plans_name)
            require_writable_folder(model_folder, "--cv model folder")
            cross_validation_summary(model_folder)
            return 0
        refuse_overlap(Path(args.output), "-o", [("prediction folder --pred", Path(args.pred)),
                                                 ("reference folder -r", Path(args.ref)),
                                                 ("lesion-mask folder -l", args.labels and Path(args.labels)),
                                                 ("breast-mask folder -m", args.masks and Path(args.masks))])
        require_writable_folder(args.output, "-o")
        regression = load_regression(args.regression) if args.regression else None
        evaluate_folders(args.pred, args.ref, args.output, args.labels, args.masks, args.dataset_json,
                         args.reference_phase, progress=not args.quiet, regression=regression,
                         allow_missing_phases=args.allow_missing_phases, region=args.region)
        print(f"report written to {args.output}")
        return 0

    return run_guarded(body)


if __name__ == "__main__":
    sys.exit(main())
