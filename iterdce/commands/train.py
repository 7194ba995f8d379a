"""``iterdce_train FOLD``: warm-up then recursive training of iterU-Net on one cross-validation fold.

Run under ``torchrun --nproc_per_node N`` for several GPUs (or CPU processes with gloo).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iterdce.commands.common import (
    INTERRUPTED,
    add_dataset_argument,
    add_plans_argument,
    add_precision_argument,
    add_quiet_argument,
    add_root_arguments,
    check_folds,
    new_parser,
    non_negative_int,
    parse_fold,
    positive_int,
    roots_from_args,
    run_guarded,
)
from iterdce.core.output_checks import require_writable_folder
from iterdce.core.owned_outputs import refuse_overlap
from iterdce.core.paths import find_dataset
from iterdce.evaluation.region import DEFAULT_REGION, REGIONS
from iterdce.evaluation.report import summary_table
from iterdce.inference.predictor import PredictionSettings
from iterdce.training.allocator import keep_freed_memory
from iterdce.training.distributed import init_distributed, shutdown
from iterdce.training.run_config import DEFAULT_SEED, TrainingSetup
from iterdce.training.variants import run_stages, trainer_names
from iterdce.workflow.cross_validation import validate_fold


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("iterdce_train", __doc__, "iterdce_train 0 -d 1 -tr RecursiveTrainer -np 2")
    parser.add_argument("fold", type=parse_fold, help="cross-validation fold (0-4 with 5 folds), or 'all' "
                        "(train on every case)")
    add_dataset_argument(parser)
    parser.add_argument("-tr", "--trainer", default="RecursiveTrainer", choices=trainer_names(),
                        help="trainer (default RecursiveTrainer: warm-up, then recursion; one of your own: a Trainer "
                        "subclass in a .py file named in ITERDCE_EXTENSIONS)")
    add_plans_argument(parser)
    parser.add_argument("--epochs", type=positive_int, help="epochs per stage (default: the plan's)")
    parser.add_argument("--iterations-per-epoch", type=positive_int, help="iterations per epoch (default: the plan's)")
    parser.add_argument("--continue", dest="resume", action="store_true", help="resume from checkpoint_latest.pth")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("-np", "--num-processes", type=non_negative_int, default=None,
                        help="background data-loading processes (default min(2, cores); 0 runs in-process)")
    parser.add_argument("--no-validation", action="store_true",
                        help="skip predicting and scoring the fold's validation cases at the end")
    parser.add_argument("--region", default=DEFAULT_REGION, choices=REGIONS,
                        help=f"where the validation cases are scored (default {DEFAULT_REGION}; "
                             "documentation/evaluation.md)")
    parser.add_argument("--pretrained-weights", type=Path, metavar="CHECKPOINT",
                        help="initialise the first stage from this checkpoint (same network; e.g. the shipped "
                             "phantom-pretrained model, then fine-tune on your cases)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    add_precision_argument(parser)
    add_quiet_argument(parser)
    add_root_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    import os

    args = build_parser().parse_args(argv)
    roots = roots_from_args(args)
    workers = args.num_processes if args.num_processes is not None else min(2, os.cpu_count() or 1)
    contexts = []

    def body() -> int:
        preprocessed = find_dataset(args.dataset, roots.preprocessed, "preprocessed")
        check_folds([args.fold], preprocessed)
        raw = roots.raw / preprocessed.name
        refuse_overlap(roots.results / preprocessed.name, "--results",
                       [("preprocessed dataset", preprocessed), ("raw dataset", raw if raw.is_dir() else None)])
        require_writable_folder(roots.results / preprocessed.name, "--results")
        setup = TrainingSetup(preprocessed, roots.results / preprocessed.name, args.plans_name, args.fold,
                              args.epochs, args.iterations_per_epoch, workers, args.device, args.seed, args.resume,
                              progress=not args.quiet, pretrained_weights=args.pretrained_weights,
                              precision=args.precision)
        contexts.append(init_distributed(args.device))
        context = contexts[0]
        if context.device.type == "cpu":
            keep_freed_memory()  # -17 % a float32 default-plan step (documentation/performance.md)
        trainer = run_stages(args.trainer, setup, context)
        if context.is_main and not args.no_validation:
            train_cases, val_cases = setup.fold_cases()
            settings = PredictionSettings(device=str(context.device), progress=setup.progress,
                                          precision=setup.precision)
            # the raw dataset: validation at each case's own resolution
            if not (raw / "dataset.json").is_file():
                print(f"note: no raw dataset at {raw}; the validation cases are scored on the plan's grid (set "
                      "--raw or ITERDCE_RAW to score them at their own resolution)")
            summary = validate_fold(trainer.output.parent, args.fold, setup.data_dir, val_cases, settings,
                                    train_case_ids=train_cases, region=args.region,
                                    raw_dir=raw if (raw / "dataset.json").is_file() else None)
            print(summary_table(summary))
        if context.is_main:
            print(f"done: {trainer.output}")
        return 0

    # training resumes from its last checkpoint only when asked to
    interrupted = INTERRUPTED if args.resume else "interrupted; rerun the same command with --continue to resume"
    try:
        return run_guarded(body, interrupted)
    finally:
        if contexts:
            shutdown(contexts[0])


if __name__ == "__main__":
    sys.exit(main())
