"""The end-to-end demo on the built-in phantom: simulate (one site profile) -> verify -> figures -> plan (cpu
preset) -> train fold 0 -> predict the held-out cases -> evaluate against copy-last, linear extrapolation and
the voxel-wise kinetic regression fitted on the fold's training cases.

Every step reuses what an earlier run left (the phantom, the preprocessed cases, finished checkpoints), so an
interrupted demo picks up where it stopped.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from iterdce.core.atomic import copy_atomic
from iterdce.core.file_names import phase_file_name, sidecar_name
from iterdce.core.folder_names import IMAGES_TR, LABELS_TR, TIMES_TR
from iterdce.dataset.verify import require_valid_dataset
from iterdce.evaluation.dataset_figures import dataset_figures
from iterdce.evaluation.folders import evaluate_folders
from iterdce.inference.predictor import IterativePredictor, PredictionSettings
from iterdce.preprocessing.pipeline import plan_and_preprocess
from iterdce.regression.fit import ensure_fold_regression
from iterdce.training.distributed import init_distributed
from iterdce.training.run_config import TrainingSetup
from iterdce.training.variants import run_stages

DATASET = "Dataset001_Phantom"


@dataclass
class DemoConfig:
    """Size of the demo: chosen so that it runs in minutes on 2 CPU cores and the model beats copy-last."""

    num_cases: int = 40
    shape: tuple[int, int, int] = (128, 112, 40)
    site: str = "C"
    seed: int = 7
    preset: str = "cpu"
    warmup_epochs: int = 6
    recursive_epochs: int = 6
    iterations_per_epoch: int = 25
    num_workers: int = 1
    device: str = "auto"
    fold: int = 0


def run_demo(out_dir: Path, config: DemoConfig | None = None, log=print) -> dict:
    """Run every step into ``out_dir``; returns the evaluation summary."""
    from iterdce.simulation import simulate_dataset

    config = config or DemoConfig()
    start = time.perf_counter()
    raw = out_dir / "raw" / DATASET
    if not (raw / "dataset.json").is_file():
        log(f"[1/6] simulating {config.num_cases} phantom cases of {config.shape} (site {config.site}) into {raw}")
        # overwrite: replaces only a phantom iterdce_simulate wrote there (a run interrupted by an older version)
        simulate_dataset(raw, config.num_cases, shape=config.shape, seed=config.seed, jobs=2, site=config.site,
                         overwrite=True)
    require_valid_dataset(raw, progress=False)
    figures = dataset_figures(raw, out_dir / "phantom_figures")
    log(f"[2/6] verified; phantom figures: {', '.join(map(str, figures))}")

    log(f"[3/6] planning and preprocessing ({config.preset} preset)")
    plans = plan_and_preprocess(raw, out_dir / "preprocessed", num_processes=2, preset=config.preset,
                                progress=False, log=lambda *_: None)
    plans = plans.replace(training={"warmup_epochs": config.warmup_epochs,
                                    "recursive_epochs": config.recursive_epochs,
                                    "iterations_per_epoch": config.iterations_per_epoch,
                                    "validation_every": max(config.warmup_epochs, config.recursive_epochs)})
    setup = TrainingSetup(out_dir / "preprocessed" / DATASET, out_dir / "results" / DATASET, fold=config.fold,
                          num_workers=config.num_workers, device=config.device, resume=True, plans=plans,
                          progress=False)
    log(f"[4/6] training fold {config.fold}: warm-up {config.warmup_epochs} + recursive {config.recursive_epochs} "
        f"epochs x {config.iterations_per_epoch} iterations")
    context = init_distributed(config.device)
    trainer = run_stages("RecursiveTrainer", setup, context)

    train_cases, held_out = setup.fold_cases()
    regression = ensure_fold_regression(trainer.output, setup.data_dir, train_cases, len(plans.input_phases))
    inputs = out_dir / "demo_input"
    inputs.mkdir(exist_ok=True)
    for case_id in held_out:
        names = [phase_file_name(case_id, phase) for phase in plans.input_phases]
        sources = [raw / IMAGES_TR / name for name in names]
        times = raw / TIMES_TR / sidecar_name(case_id)
        if times.is_file():  # the case's own acquisition times
            sources.append(times)
        for source in sources:
            if not (inputs / source.name).is_file():
                copy_atomic(source, inputs / source.name)  # a killed copy leaves no half file
    log(f"[5/6] predicting the {len(held_out)} held-out cases from their first two phases")
    predictor = IterativePredictor(trainer.output.parent, PredictionSettings(folds=[config.fold], device=config.device,
                                                                             progress=False))
    predictor.predict_folder(inputs, out_dir / "predictions", save_kinetic_map=True)

    log("[6/6] evaluating against the real delayed phases")
    report = out_dir / "report"
    summary = evaluate_folders(out_dir / "predictions", raw / IMAGES_TR, report, labels=raw / LABELS_TR,
                               progress=False, regression=regression)  # prints the verdict line and the table
    log(f"\nverdict: {summary['verdict']}")
    log(f"figures: {report / 'montage.png'}, {report / 'kinetic_curves'}/, {figures[0]}, {figures[1]}")
    log(f"per-case metrics: {report / 'per_case.csv'}; summary: {report / 'summary.json'}")
    log(f"demo finished in {time.perf_counter() - start:.0f} s")
    return summary

