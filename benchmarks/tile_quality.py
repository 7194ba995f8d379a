"""What the inference tile does to a trained model's output: predict one folder with several ``--tile-size``
settings, score each against the real phases and compare each with the first setting voxel by voxel.

For every setting (``patch``, ``auto``, or ``XxYxZ``) the folder is predicted through the user path
(``IterativePredictor.predict_folder``) into ``OUT/tile_<setting>`` (cases already predicted there with the same
model and settings are kept) and scored with ``evaluate_folders``. Reported per setting: wall and CPU seconds of
the prediction, the chosen tiles, PSNR and enhancement error of the last phase, SCC, curve-type accuracy, the
mean absolute error against the real delayed phases, and the mean / max absolute difference from the first
setting. Errors and differences are in TI-normalized units (each case's raw difference divided by the TI-norm
standard deviation of its own input, as the network sees it), so cases of different scanners weigh alike.

    python -m benchmarks.tile_quality --model-folder RESULTS/Dataset899_SitesABC/RecursiveTrainer__plans \\
        --folds all --inputs TEST_INPUTS --truth RAW/Dataset903_SiteD --out OUT --tiles patch auto [--num-parts 3]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.cross_site_table import row_values
from iterdce.commands.common import parse_fold
from iterdce.core.file_names import phase_file_name
from iterdce.core.folder_names import IMAGES_TR, LABELS_TR
from iterdce.dataset.nifti_io import read_image
from iterdce.evaluation.folders import evaluate_folders
from iterdce.inference.case_pipeline import prepare_case
from iterdce.inference.inputs import discover_inputs
from iterdce.inference.predictor import IterativePredictor, PredictionSettings
from iterdce.inference.tile_choice import TILE_CHOICES


def tile_setting(text: str) -> str | list[int]:
    """``patch`` / ``auto`` as they are, ``XxYxZ`` as three sizes."""
    return text if text in TILE_CHOICES else [int(v) for v in text.split("x")]


def scores(summary: dict) -> dict:
    """PSNR and enhancement error at the last phase, SCC and curve-type accuracy of the network's row."""
    return row_values(summary)["iterdce"]


def case_scales(predictor: IterativePredictor, inputs: Path) -> dict[str, float]:
    """Each case's TI-norm standard deviation (raw units per normalized unit), from its own input phases."""
    cases, _ = discover_inputs(inputs, predictor.input_phases)
    return {case_id: prepare_case(files, predictor.case_times(files), predictor.plans).properties.ti_norm.std
            for case_id, files in cases.items()}


def voxel_errors(folder: Path, reference: Path | None, truth: Path, scales: dict[str, float]) -> dict:
    """Mean absolute error against the real phases and, with ``reference``, mean / max absolute difference from
    that folder's outputs; TI-normalized units, averaged over every synthesized file."""
    errors, means, maxima = [], [], []
    for path in sorted(folder.glob("*_[0-9][0-9][0-9][0-9].nii.gz")):
        case_id = path.name[:-len(phase_file_name("", 0))]
        output = read_image(path)[0].astype(np.float64) / scales[case_id]
        errors.append(float(np.abs(output - read_image(truth / path.name)[0] / scales[case_id]).mean()))
        if reference is not None:
            gap = np.abs(output - read_image(reference / path.name)[0] / scales[case_id])
            means.append(float(gap.mean()))
            maxima.append(float(gap.max()))
    result = {"mae_vs_truth": float(np.mean(errors)), "files": len(errors)}
    if reference is not None:
        result.update(mean_abs_diff=float(np.mean(means)), max_abs_diff=float(np.max(maxima)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-folder", type=Path, required=True)
    parser.add_argument("--folds", nargs="+", type=parse_fold, default=["all"])
    parser.add_argument("--inputs", type=Path, required=True, help="folder of <case>_0000.nii.gz, ... (input phases)")
    parser.add_argument("--truth", type=Path, required=True, help="raw dataset folder with imagesTr/ and labelsTr/")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tiles", nargs="+", default=["patch", "auto"], help="patch, auto or XxYxZ (first: reference)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tile-memory-gb", type=float)
    parser.add_argument("--num-parts", type=int, default=1, help="predict only every K-th case (default 1: all)")
    args = parser.parse_args()
    rows, scales, first = {}, None, None
    for name in args.tiles:
        settings = PredictionSettings(folds=args.folds, device=args.device, progress=False,
                                      tile_size=tile_setting(name), tile_memory_gb=args.tile_memory_gb)
        predictor = IterativePredictor(args.model_folder, settings)
        scales = scales or case_scales(predictor, args.inputs)
        folder = args.out / f"tile_{name}"
        wall, cpu = time.perf_counter(), time.process_time()
        done = predictor.predict_folder(args.inputs, folder, num_parts=args.num_parts)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        summary = evaluate_folders(folder, args.truth / IMAGES_TR, args.out / f"report_{name}",
                                   args.truth / LABELS_TR, progress=False, methods=("iterdce",))
        tiles = sorted({tuple(json.loads(p.read_text()).get("tile_size") or ()) for p in folder.glob("*.json")})
        rows[name] = {"predicted_cases": len(done), "wall_s": wall, "cpu_s": cpu, "tiles": tiles,
                      **scores(summary), **voxel_errors(folder, first, args.truth / IMAGES_TR, scales)}
        first = first or folder
        print(name, json.dumps(rows[name]), flush=True)
    (args.out / "tile_quality.json").write_text(json.dumps(rows, indent=1))
    print("| tile | PSNR last | EE last | SCC | type acc. | MAE vs truth | mean abs diff | max abs diff | CPU s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['psnr_last']:.3f} | {row['ee_last']:.4f} | {row['scc']:.4f} | "
              f"{100 * row['type_acc']:.1f} % | {row['mae_vs_truth']:.4f} | {row.get('mean_abs_diff', 0):.4f} | "
              f"{row.get('max_abs_diff', 0):.3f} | {row['cpu_s']:.0f} |")


if __name__ == "__main__":
    main()
