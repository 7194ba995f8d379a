"""``iterdce_predict -i early_phase_dir -o synthesized_dir``: synthesize the delayed phases of new cases."""
from __future__ import annotations

import argparse
import sys
import warnings

from iterdce.commands.common import add_root_arguments, fail, parse_fold, roots_from_args
from iterdce.inference.case_pipeline import rank_device
from iterdce.inference.inputs import PredictionInputError
from iterdce.inference.model_loading import CHECKPOINTS
from iterdce.inference.predictor import IterativePredictor, PredictionSettings
from iterdce.paths import DatasetNotFoundError, find_dataset
from iterdce.preprocessing.plans_io import PlansError
from iterdce.training.checkpoint import CheckpointError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iterdce_predict", description=__doc__)
    parser.add_argument("-i", "--input", required=True, help="folder of <case>_0000.nii.gz, <case>_0001.nii.gz, ...")
    parser.add_argument("-o", "--output", required=True, help="folder for <case>_<pppp>.nii.gz outputs")
    parser.add_argument("-d", "--dataset", default="1", help="dataset the model was trained on (default 1)")
    parser.add_argument("-f", "--folds", nargs="+", type=parse_fold, default=[0, 1, 2, 3, 4],
                        help="folds to average (default 0 1 2 3 4; missing ones are skipped with a warning)")
    parser.add_argument("-tr", "--trainer", default="RecursiveTrainer", help="trainer name (default RecursiveTrainer)")
    parser.add_argument("-p", "--plans-name", default="plans", help="plan name (default plans)")
    parser.add_argument("--checkpoint", default="final", choices=CHECKPOINTS, help="which checkpoint (default final)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--tile-batch", type=int, default=4, help="tiles per forward pass (default 4)")
    parser.add_argument("--tile-size", type=int, nargs=3, metavar=("X", "Y", "Z"),
                        help="inference tile in plan voxels (default: the training patch); larger tiles are faster, "
                             "see documentation/prediction.md for their effect on the output")
    parser.add_argument("--step-size", type=float, default=0.5,
                        help="step between tiles as a fraction of the tile (default 0.5: half-tile overlap; "
                             "larger is faster, with more visible tile seams)")
    parser.add_argument("-npp", "--num-processes", type=int, default=0,
                        help="worker processes that read and preprocess the next cases and write finished ones "
                             "while the network runs (default 0: all in this process)")
    parser.add_argument("--num-parts", type=int, default=1,
                        help="split the input folder into this many parts (e.g. one per machine; default 1)")
    parser.add_argument("--part-id", type=int, default=0, help="which part this run predicts (0-based, default 0)")
    parser.add_argument("--tta", action="store_true", help="mirroring test-time augmentation")
    parser.add_argument("--overwrite", action="store_true", help="redo cases whose outputs exist")
    parser.add_argument("--save-kinetic-map", action="store_true", help="also write <case>_kinetics.nii.gz")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_root_arguments(parser)
    args = parser.parse_args(argv)
    roots = roots_from_args(args)
    warnings.simplefilter("always", UserWarning)
    try:
        results = find_dataset(args.dataset, roots.results)
        model_folder = results / f"{args.trainer}__{args.plans_name}"
        if args.num_processes < 0:
            raise ValueError(f"-npp {args.num_processes}: the number of worker processes must be >= 0")
        settings = PredictionSettings(args.folds, args.checkpoint, rank_device(args.device), args.tile_batch,
                                      args.step_size,
                                      tta=args.tta, progress=not args.quiet, tile_size=args.tile_size)
        predictor = IterativePredictor(model_folder, settings)
        done = predictor.predict_folder(args.input, args.output, args.overwrite, args.save_kinetic_map,
                                        args.num_processes, args.num_parts, args.part_id)
    except (DatasetNotFoundError, PlansError, CheckpointError, PredictionInputError, ValueError, RuntimeError) as exc:
        return fail(str(exc))
    print(f"predicted {len(done)} case(s) into {args.output} with folds {', '.join(predictor.folds)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
