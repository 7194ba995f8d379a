"""How far outside its trained times a model's predictions hold: the shipped pretrained model of sites A-C
(``phantom_sites_abc``, trained on target times of 123-512 s) predicts phantom cases acquired out to 645 s, and
every synthesized phase is scored against the real one, next to the copy-last and linear baselines, per
acquisition time.

    python -m benchmarks.time_extrapolation --work /tmp/extrapolation [-n 4] [--shape 96 96 32]

Prints one row per target time (mean over cases, TI-normalized units); documentation/prediction.md quotes it.
"""
from __future__ import annotations

import argparse
import shutil
import warnings
from pathlib import Path

import pandas as pd

from iterdce.core.file_names import phase_file_name, sidecar_name
from iterdce.core.folder_names import IMAGES_TR, LABELS_TR

TIMES_S = (0.0, 80.0, 165.0, 245.0, 325.0, 405.0, 485.0, 565.0, 645.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (raw data, predictions, report)")
    parser.add_argument("-n", "--num-cases", type=int, default=4)
    parser.add_argument("--shape", type=int, nargs=3, default=[96, 96, 32])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--model", default="phantom_sites_abc", help="which shipped model (iterdce.pretrained)")
    args = parser.parse_args()

    from iterdce.evaluation.folders import evaluate_folders
    from iterdce.inference.predictor import IterativePredictor, PredictionSettings
    from iterdce.pretrained import PRETRAINED_FOLD, pretrained_model_folder
    from iterdce.simulation import simulate_dataset

    raw = args.work / "Dataset950_Late"
    if not (raw / "dataset.json").is_file():
        simulate_dataset(raw, args.num_cases, shape=args.shape, seed=args.seed, phase_times_s=TIMES_S,
                         overwrite=True)
    early = args.work / "early"
    shutil.rmtree(early, ignore_errors=True)
    early.mkdir(parents=True)
    for path in sorted((raw / IMAGES_TR).glob("*_000[01].nii.gz")):
        shutil.copy(path, early)
    first = phase_file_name("", 0)  # _0000.nii.gz
    for case in sorted({p.name.removesuffix(first) for p in early.glob(phase_file_name("*", 0))}):  # its own times
        (early / sidecar_name(case)).write_text(f'{{"phase_times_s": {list(TIMES_S)}}}')
    settings = PredictionSettings(folds=[PRETRAINED_FOLD], device="cpu", progress=False)
    predictor = IterativePredictor(pretrained_model_folder(args.model), settings)
    print(f"trained target times {predictor.plans.trained_target_times_s} s; predicting at {TIMES_S[2:]} s")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor.predict_folder(early, args.work / "pred", overwrite=True)
    for warning in caught:
        print(f"warning: {warning.message}")
    evaluate_folders(args.work / "pred", raw / IMAGES_TR, args.work / "report", labels=raw / LABELS_TR,
                     progress=False, methods=("iterdce", "copy_last", "linear"))
    table = pd.read_csv(args.work / "report" / "per_case.csv")
    summary = table.pivot_table(index="time_s", columns="method", values=["psnr", "enhancement_error"],
                                aggfunc="mean")
    print(summary.round(4).to_string())


if __name__ == "__main__":
    main()
