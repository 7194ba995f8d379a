"""``iterdce_export_model -d DATASET -o model.zip``: package a trained model (plan, weights, kinetic regression,
training fingerprint and a model card) as one zip another site installs with ``iterdce_install_model``."""
from __future__ import annotations

import sys
from pathlib import Path

from iterdce.commands.common import (
    add_dataset_argument,
    add_plans_argument,
    add_quiet_argument,
    add_root_arguments,
    check_folds,
    new_parser,
    parse_fold,
    roots_from_args,
    run_guarded,
)
from iterdce.core.file_names import CHECKPOINT_KINDS
from iterdce.core.folder_names import model_folder_name
from iterdce.core.paths import DatasetNotFoundError, find_dataset
from iterdce.sharing.export import export_model
from iterdce.sharing.install import check_name
from iterdce.sharing.model_card import UNSPECIFIED_LICENSE


def main(argv: list[str] | None = None) -> int:
    parser = new_parser("iterdce_export_model", __doc__,
                        "iterdce_export_model -d 1 -f 0 1 2 3 4 --license CC-BY-4.0 -o phantom.zip")
    add_dataset_argument(parser)
    parser.add_argument("-tr", "--trainer", default="RecursiveTrainer", help="trainer name (default RecursiveTrainer)")
    add_plans_argument(parser)
    parser.add_argument("-f", "--folds", nargs="+", type=parse_fold, default=[0],
                        help="folds to export (default 0; 'all' for the fold trained on every case)")
    parser.add_argument("--checkpoint", default="final", choices=CHECKPOINT_KINDS,
                        help="which checkpoint of each fold (default final)")
    parser.add_argument("-o", "--output", required=True, help="the zip to write (model.zip)")
    parser.add_argument("--name", help="the model's name in its card and where it is installed (default "
                                       "<Dataset>__<Trainer>__<plans>)")
    parser.add_argument("--license", default=UNSPECIFIED_LICENSE,
                        help=f"the license written into the model card (default {UNSPECIFIED_LICENSE})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing zip at -o")
    add_quiet_argument(parser)
    add_root_arguments(parser)
    args = parser.parse_args(argv)
    roots = roots_from_args(args)

    def body() -> int:
        if args.name is not None:
            check_name(args.name)
        results = find_dataset(args.dataset, roots.results, "results")
        try:
            preprocessed: Path | None = find_dataset(args.dataset, roots.preprocessed, "preprocessed")
        except DatasetNotFoundError:
            preprocessed = None
        if preprocessed is not None and any(f != "all" for f in args.folds):
            check_folds(args.folds, preprocessed)
        model_folder = results / model_folder_name(args.trainer, args.plans_name)
        card = export_model(model_folder, args.folds, Path(args.output), args.checkpoint, preprocessed, args.name,
                            args.license, args.overwrite)
        if preprocessed is None:
            print(f"warning: no preprocessed {args.dataset} under {roots.preprocessed}: the zip carries no training "
                  "fingerprint and the card no case count", file=sys.stderr)
        print(f"exported {card.name} ({', '.join(card.folds)}; card id {card.id[:16]}) to {args.output}")
        return 0

    return run_guarded(body)


if __name__ == "__main__":
    sys.exit(main())
