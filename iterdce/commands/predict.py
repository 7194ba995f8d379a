"""``iterdce_predict -i early_phase_dir -o synthesized_dir``: synthesize the delayed phases of new cases."""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

from iterdce.commands.common import (
    add_dataset_argument,
    add_models_root_argument,
    add_plans_argument,
    add_precision_argument,
    add_quiet_argument,
    add_root_arguments,
    new_parser,
    non_negative_int,
    parse_fold,
    positive_float,
    positive_int,
    roots_from_args,
    run_guarded,
)
from iterdce.core.file_names import CHECKPOINT_KINDS
from iterdce.core.folder_names import model_folder_name
from iterdce.core.output_checks import require_writable_folder
from iterdce.core.paths import find_dataset, models_root
from iterdce.inference.case_pipeline import rank_device
from iterdce.inference.composition import COMPOSE_MODES, DEFAULT_COMPOSE
from iterdce.inference.dicom_output import OUTPUT_FORMATS, DicomExporter
from iterdce.inference.model_loading import trained_folds
from iterdce.inference.predictor import IterativePredictor, PredictionSettings, refuse_output_inside_input
from iterdce.inference.tile_choice import CPU_BUDGET_GB, CUDA_FREE_FRACTION, PATCH, TILE_CHOICES
from iterdce.inference.uncertainty import DEFAULT_COVERAGE
from iterdce.pretrained import DEFAULT_PRETRAINED, PRETRAINED_FOLD, PRETRAINED_MODELS, pretrained_model_folder
from iterdce.sharing.install import resolve_model


def main(argv: list[str] | None = None) -> int:
    parser = new_parser("iterdce_predict", __doc__,
                        "iterdce_predict -i early_phases/ -o synthesized/ -d 1 -f 0 1 2 3 4")
    parser.add_argument("-i", "--input", required=True, help="folder of <case>_0000.nii.gz, <case>_0001.nii.gz, ...")
    parser.add_argument("-o", "--output", required=True, help="folder for <case>_<pppp>.nii.gz outputs")
    add_dataset_argument(parser, required=False)
    parser.add_argument("--pretrained", nargs="?", const=DEFAULT_PRETRAINED, choices=list(PRETRAINED_MODELS),
                        metavar="NAME", help="use a model shipped with iterdce (no training needed) instead of a "
                        "trained dataset's model: " + "; ".join(f"{name}: {what}" for name, what in
                                                                PRETRAINED_MODELS.items()))
    parser.add_argument("--model", metavar="NAME|ZIP", help="use a shared model: the name of one installed with "
                        "iterdce_install_model, or its .zip (checked and unpacked for this run)")
    parser.add_argument("-f", "--folds", nargs="+", type=parse_fold,
                        help="folds to average (default 0 1 2 3 4, with --model every fold it holds; missing ones "
                             "are skipped with a warning)")
    parser.add_argument("-tr", "--trainer", default="RecursiveTrainer", help="trainer name (default RecursiveTrainer)")
    add_plans_argument(parser)
    parser.add_argument("--checkpoint", default="final", choices=CHECKPOINT_KINDS,
                        help="which checkpoint (default final)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--tile-batch", type=positive_int, default=4, help="tiles per forward pass (default 4)")
    parser.add_argument("--tile-size", nargs="+", default=[PATCH], metavar="SIZE",
                        help="inference tile: 'patch' (default: the training patch), 'auto' (the largest tile up to "
                             "the whole volume whose forward pass fits --tile-memory-gb: several times faster, "
                             "output slightly different) or X Y Z in plan voxels; documentation/prediction.md")
    parser.add_argument("--tile-memory-gb", type=positive_float, metavar="GB",
                        help=f"memory one forward pass may use with --tile-size auto (default {CPU_BUDGET_GB:g} on "
                             f"the CPU, {CUDA_FREE_FRACTION:g} of the free memory on CUDA)")
    parser.add_argument("--step-size", type=float, default=0.5,
                        help="step between tiles as a fraction of the tile (default 0.5: half-tile overlap; "
                             "larger is faster, with less blending between tiles)")
    parser.add_argument("-np", "--num-processes", type=non_negative_int, default=0,
                        help="worker processes that read and preprocess the next cases and write finished ones "
                             "while the network runs (default 0: all in this process)")
    parser.add_argument("--num-parts", type=positive_int, default=1,
                        help="split the input folder into this many parts (e.g. one per machine; default 1)")
    parser.add_argument("--part-id", type=non_negative_int, default=0,
                        help="which part this run predicts (0-based, default 0)")
    parser.add_argument("--target-times", type=float, nargs="+", metavar="SECONDS",
                        help="synthesize the phases at these acquisition times (s after injection, increasing, "
                             "after the inputs) for every case (default: a case's own times from <case>.json, else "
                             "the plan's default protocol); outputs are numbered from the first target phase on")
    add_precision_argument(parser)
    parser.add_argument("--tta", action="store_true", help="mirroring test-time augmentation")
    parser.add_argument("--compose", default=DEFAULT_COMPOSE, choices=COMPOSE_MODES,
                        help="how a synthesized phase reaches the case's own grid: the network's predicted change "
                             "added to a base on the native voxels, 'prior' (the model's kinetic prior there) or "
                             "'last' (the last input phase), or 'plan' (the whole image resampled from the plan's "
                             "grid: loses detail finer than the plan spacing); 'auto' (default): prior for a model "
                             "with a kinetic prior, else last; documentation/prediction.md")
    parser.add_argument("--ood-guard", dest="ood_guard", action="store_true",
                        help="move a case whose intensities lie outside the range the model was trained on towards "
                             "its last input phase (by default its synthesized phases are kept and a warning names "
                             "it; documentation/prediction_internals.md)")
    parser.add_argument("--no-ood-guard", dest="ood_guard", action="store_false",
                        help="keep every synthesized change (the default)")
    parser.add_argument("--overwrite", action="store_true", help="redo cases whose outputs exist")
    parser.add_argument("--save-kinetic-map", action="store_true", help="also write <case>_kinetics.nii.gz")
    parser.add_argument("--uncertainty", action="store_true",
                        help="also write <case>_<pppp>_lower/_upper.nii.gz, the interval of each synthesized phase at "
                             "--coverage (split conformal; needs a model calibrated with iterdce_calibrate), and with "
                             "--save-kinetic-map its confidence layer; documentation/prediction.md")
    parser.add_argument("--coverage", type=float, default=DEFAULT_COVERAGE, metavar="C",
                        help=f"the intervals' coverage in (0, 1) (default {DEFAULT_COVERAGE:g})")
    parser.add_argument("--lesion-masks", metavar="DIR", help="with --uncertainty: lesion labels <case>.nii.gz; "
                        "each lesion's predicted curve, its band and its curve-type probabilities go into "
                        "<case>_kinetics.json")
    parser.add_argument("--breast-masks", metavar="DIR", help="breast masks <case>.nii.gz on each case's grid, for a "
                        "model whose plan normalizes inside breast masks (normalization.mask 'breast'); "
                        "documentation/preprocessing.md")
    add_quiet_argument(parser)
    parser.add_argument("--output-format", default="nifti", choices=OUTPUT_FORMATS,
                        help="nifti (default) or dicom: derived DICOM series; the input is then a DICOM tree, or "
                             "NIfTI inputs with --dicom-template")
    parser.add_argument("--dicom-template", metavar="DIR", help="DICOM studies the NIfTI inputs came from "
                        "(with --output-format dicom)")
    add_models_root_argument(parser)
    add_root_arguments(parser)
    args = parser.parse_args(argv)
    chosen = [flag for flag, value in (("-d/--dataset", args.dataset), ("--pretrained", args.pretrained),
                                       ("--model", args.model)) if value]
    if not chosen:
        parser.error("-d/--dataset is required (or --pretrained, or --model)")
    if len(chosen) > 1:
        parser.error(f"{' and '.join(chosen)} each name the model: give one of them")
    if not 0 < args.step_size <= 1:
        parser.error(f"--step-size must be in (0, 1], got {args.step_size}")
    args.tile_size = parse_tile_size(parser, args.tile_size)
    if (args.lesion_masks or args.coverage != DEFAULT_COVERAGE) and not args.uncertainty:
        parser.error("--coverage and --lesion-masks need --uncertainty")
    if args.breast_masks and args.output_format == "dicom":
        parser.error("--breast-masks names NIfTI cases: use --output-format nifti")
    if args.uncertainty and args.output_format == "dicom":
        parser.error("--uncertainty writes NIfTI intervals: use --output-format nifti")
    if args.dicom_template and args.output_format != "dicom":
        parser.error("--dicom-template needs --output-format dicom")
    roots = roots_from_args(args)
    warnings.simplefilter("always", UserWarning)

    def body() -> int:
        with tempfile.TemporaryDirectory(prefix="iterdce-model-") as unpacked:
            return predict(Path(unpacked))

    def predict(unpacked: Path) -> int:
        refuse_output_inside_input(Path(args.input), Path(args.output))
        require_writable_folder(args.output, "-o")
        folds: list[int | str]
        if args.pretrained:
            model_folder, folds = pretrained_model_folder(args.pretrained), [PRETRAINED_FOLD]
        elif args.model:
            model_folder = resolve_model(args.model, models_root(roots.results, args.models_root), unpacked)
            folds = args.folds or trained_folds(model_folder, args.checkpoint)
        else:
            results = find_dataset(args.dataset, roots.results, "results")
            model_folder = results / model_folder_name(args.trainer, args.plans_name)
            folds = args.folds or [0, 1, 2, 3, 4]
        settings = PredictionSettings(folds, args.checkpoint, rank_device(args.device), args.tile_batch,
                                      args.step_size, tta=args.tta, progress=not args.quiet, tile_size=args.tile_size,
                                      target_times=args.target_times, tile_memory_gb=args.tile_memory_gb,
                                      precision=args.precision, compose=args.compose,
                                      ood_guard=args.ood_guard,
                                      coverage=args.coverage if args.uncertainty else None,
                                      lesion_masks=Path(args.lesion_masks) if args.lesion_masks else None,
                                      breast_masks=Path(args.breast_masks) if args.breast_masks else None)
        predictor = IterativePredictor(model_folder, settings)
        if args.output_format == "dicom":
            name = args.model or f"{model_folder.parent.name}/{model_folder.name}"
            exporter = DicomExporter(predictor, name,
                                     progress=not args.quiet)
            done = exporter.predict(args.input, args.output, args.dicom_template, args.overwrite,
                                    args.save_kinetic_map)
        else:
            done = predictor.predict_folder(Path(args.input), Path(args.output), args.overwrite,
                                            args.save_kinetic_map, args.num_processes, args.num_parts, args.part_id)
        print(f"predicted {len(done)} case(s) into {args.output} with folds {', '.join(predictor.folds)}")
        return 0

    return run_guarded(body)


def parse_tile_size(parser: argparse.ArgumentParser, values: list[str]) -> str | list[int]:
    """``--tile-size``: one of ``TILE_CHOICES``, or three positive integers."""
    if len(values) == 1 and values[0] in TILE_CHOICES:
        return values[0]
    if len(values) == 3 and all(v.isdigit() and int(v) > 0 for v in values):
        return [int(v) for v in values]
    parser.error(f"--tile-size {' '.join(values)}: give {' or '.join(TILE_CHOICES)}, or 3 positive integers X Y Z")


if __name__ == "__main__":
    sys.exit(main())
