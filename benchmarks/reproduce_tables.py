"""Analogues of the paper's Table 1 (PSNR, SSIM, enhancement error per phase) and Table 2 (SCC, DTW, last-phase
enhancement error) on the phantom: iterU-Net, the single-step baseline and the two ablations, trained with one
plan on one fold, with copy-last and linear extrapolation as extra rows.

CPU (2 cores), defaults: about 20-30 minutes for all four models. On a GPU, run it bigger, e.g.
  python benchmarks/reproduce_tables.py --cases 60 --shape 128 128 48 --preset default --epochs 100 100 \
      --iterations 250 --device cuda
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from iterdce.evaluation.cross_validation import validate_fold
from iterdce.preprocessing.pipeline import plan_and_preprocess
from iterdce.simulation import simulate_dataset
from iterdce.training.distributed import init_distributed
from iterdce.training.setup import TrainingSetup
from iterdce.training.variants import run_stages

MODELS = {"iterU-Net": "RecursiveTrainer", "single-step U-Nets": "SingleStepTrainer",
          "w/o warm-up": "NoWarmupTrainer", "w/o temporal (no time emb., no ConvLSTM)": "NoTemporalTrainer"}


def fmt(entry: dict | None) -> str:
    if not entry or entry.get("mean") is None:
        return "n/a"
    return f"{entry['mean']:.4f} ± {entry['std']:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("reproduce_tables_work"))
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 64, 24])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--epochs", type=int, nargs=2, default=[8, 8], metavar=("WARMUP", "RECURSIVE"))
    parser.add_argument("--iterations", type=int, default=25)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fold", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    raw = args.workdir / "raw" / "Dataset001_Phantom"
    if not (raw / "dataset.json").is_file():
        simulate_dataset(raw, args.cases, shape=args.shape, seed=11, jobs=2)
    plans = plan_and_preprocess(raw, args.workdir / "preprocessed", num_processes=2, preset=args.preset,
                                progress=False, log=lambda *_: None)
    plans["training"].update(warmup_epochs=args.epochs[0], recursive_epochs=args.epochs[1],
                             iterations_per_epoch=args.iterations, validation_every=max(args.epochs))
    context = init_distributed(args.device)
    summaries = {}
    for label, trainer_name in MODELS.items():
        setup = TrainingSetup(args.workdir / "preprocessed" / raw.name, args.workdir / "results" / raw.name,
                              fold=args.fold, num_workers=1, device=args.device, resume=True, plans=plans,
                              progress=False)
        trainer = run_stages(trainer_name, setup, context)
        train_cases, val_cases = setup.fold_cases()
        summaries[label] = validate_fold(trainer.output.parent, args.fold, setup.data_dir, val_cases, plans,
                                         device=context.device, progress=False, train_case_ids=train_cases)
    baseline_source = summaries["iterU-Net"]["methods"]
    rows = {label: s["methods"]["iterdce"] for label, s in summaries.items()}
    rows["copy last phase"] = baseline_source["copy_last"]
    rows["linear extrapolation"] = baseline_source["linear"]
    phases = [str(p) for p in plans["target_phases"]]
    times = [plans["phase_times_s"][int(p)] for p in phases]
    print(f"\n### Table 1 analogue: per target phase (fold {args.fold} validation, TI-normalized units)\n")
    for metric, title in (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("enhancement_error", "enhancement error")):
        print(f"\n{title}\n")
        print("| method | " + " | ".join(f"phase {p} ({t:.0f} s)" for p, t in zip(phases, times)) + " |")
        print("|---|" + "---|" * len(phases))
        for label, entry in rows.items():
            print(f"| {label} | " + " | ".join(fmt(entry["per_phase"][p][metric]) for p in phases) + " |")
    print(f"\n### Table 2 analogue: lesion kinetic curves and last phase ({times[-1]:.0f} s)\n")
    print("| method | SCC | DTW | enhancement error (last phase) | curve-type accuracy |")
    print("|---|---|---|---|---|")
    for label, entry in rows.items():
        kinetics = entry.get("kinetics", {})
        accuracy = kinetics.get("curve_type_accuracy")
        print(f"| {label} | {fmt(kinetics.get('scc'))} | {fmt(kinetics.get('dtw'))} | "
              f"{fmt(entry['per_phase'][phases[-1]]['enhancement_error'])} | "
              f"{'n/a' if accuracy is None else f'{accuracy:.3f}'} |")
    print(f"\n{len(val_cases)} validation cases; total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
