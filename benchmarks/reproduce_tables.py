"""Analogues of the paper's Table 1 (PSNR, SSIM, enhancement error per phase) and Table 2 (SCC, DTW, last-phase
enhancement error, curve-type accuracy) on the hardened phantom (one site profile): iterU-Net, the single-step
baseline and the two ablations, each trained with every seed on one fold with one plan, reported as mean ± standard
deviation over the seeds, with copy-last, linear extrapolation and the voxel-wise kinetic regression as extra rows
(they do not depend on the seed).

Each seed runs in its own process (``--parallel``) and writes ``<workdir>/seed_<k>.json`` when its four models are
trained and validated, so a run cut short keeps the seeds it finished and a rerun does only the missing ones.

CPU (2 cores), defaults (tiny preset, 30 site-C cases of 128 x 112 x 40, 8 + 8 epochs of 25 iterations, 3 seeds):
  python -m benchmarks.reproduce_tables --parallel 2 --threads 1 --out documentation/results/reproduce_tables
On a GPU, run it bigger, e.g.
  python -m benchmarks.reproduce_tables --cases 60 --shape 128 128 48 --preset default --epochs 100 100 \\
      --iterations 250 --device cuda
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks.common import mean_std
from iterdce.core.parallel import die_with_parent

MODELS = {"iterU-Net": "RecursiveTrainer", "single-step U-Nets": "SingleStepTrainer",
          "w/o warm-up": "NoWarmupTrainer", "w/o temporal (no time emb., no ConvLSTM)": "NoTemporalTrainer"}
BASELINES = {"copy last phase": "copy_last", "linear extrapolation": "linear",
             "voxel-wise kinetic regression": "regression"}
PHASE_METRICS = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("enhancement_error", "enhancement error"))


def run_seed(job: dict) -> dict:
    """Train and validate the four models with one seed (in its own process); returns each model's summary."""
    import torch

    from iterdce.inference.predictor import PredictionSettings
    from iterdce.preprocessing.plans_io import load_plans
    from iterdce.training.distributed import init_distributed
    from iterdce.training.run_config import TrainingSetup
    from iterdce.training.variants import run_stages
    from iterdce.workflow.cross_validation import validate_fold

    torch.set_num_threads(job["threads"])
    plans = load_plans(Path(job["plans_file"])).replace(training=job["training"])
    context = init_distributed(job["device"])
    summaries = {}
    for label, trainer_name in MODELS.items():
        setup = TrainingSetup(Path(job["preprocessed"]), Path(job["results"]), fold=job["fold"], num_workers=1,
                              device=job["device"], seed=job["seed"], resume=True, plans=plans, progress=False)
        trainer = run_stages(trainer_name, setup, context)
        train_cases, val_cases = setup.fold_cases()
        settings = PredictionSettings(device=str(context.device), progress=False)
        summaries[label] = validate_fold(trainer.output.parent, job["fold"], setup.data_dir, val_cases, settings,
                                         train_case_ids=train_cases)["methods"]
    return {"seed": job["seed"], "validation_cases": len(val_cases), "summaries": summaries}


def method_rows(record: dict) -> dict[str, dict]:
    """One seed's rows: each model's network row and the baselines (from the iterU-Net validation)."""
    rows = {label: methods["iterdce"] for label, methods in record["summaries"].items()}
    source = record["summaries"]["iterU-Net"]
    rows.update({label: source[key] for label, key in BASELINES.items() if key in source})
    return rows


def aggregate(records: list[dict], phases: list[str]) -> dict[str, dict]:
    """Per method: every metric as mean and std over the seeds (of each seed's mean over cases or lesions)."""
    per_seed = [method_rows(r) for r in records]
    out: dict[str, dict] = {}
    for label in per_seed[0]:
        rows = [seed_rows[label] for seed_rows in per_seed if label in seed_rows]
        entry = {f"{metric}@{p}": mean_std([r["per_phase"][p][metric]["mean"] for r in rows])
                 for metric, _ in PHASE_METRICS for p in phases}
        for key in ("scc", "dtw", "last_phase_enhancement_error"):
            entry[key] = mean_std([r.get("kinetics", {}).get(key, {}).get("mean") for r in rows])
        entry["curve_type_accuracy"] = mean_std([r.get("kinetics", {}).get("curve_type_accuracy") for r in rows])
        out[label] = entry
    return out


def fmt(entry: dict | None, digits: int = 4) -> str:
    if not entry:
        return "n/a"
    return f"{entry['mean']:.{digits}f} ± {entry['std']:.{digits}f}"


def markdown(table: dict[str, dict], phases: list[str], times: list[float], seeds: list[int], n_val: int) -> str:
    lines = [f"Fold validation ({n_val} cases), TI-normalized units, mean ± std over seeds {seeds} "
             "(the baselines do not depend on the seed).", "", "### Table 1 analogue: per target phase"]
    for metric, title in PHASE_METRICS:
        lines += ["", title, "", "| method | " + " | ".join(f"phase {p} ({t:.0f} s)" for p, t in zip(phases, times))
                  + " |", "|---|" + "---|" * len(phases)]
        lines += [f"| {label} | " + " | ".join(fmt(entry[f"{metric}@{p}"]) for p in phases) + " |"
                  for label, entry in table.items()]
    lines += ["", f"### Table 2 analogue: lesion kinetic curves and last phase ({times[-1]:.0f} s)", "",
              "| method | SCC | DTW | enhancement error (last phase, per lesion) | curve-type accuracy |",
              "|---|---|---|---|---|"]
    lines += [f"| {label} | {fmt(e['scc'])} | {fmt(e['dtw'])} | {fmt(e['last_phase_enhancement_error'])} | "
              f"{fmt(e['curve_type_accuracy'], 3)} |" for label, e in table.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("reproduce_tables_work"))
    parser.add_argument("--out", type=Path, help="folder for results.json / results.md (default: workdir)")
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 112, 40],
                        help="volume size; the site profiles need about this much room for their lesions")
    parser.add_argument("--site", default="C", help="simulator site profile (A-D) of the phantom")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--epochs", type=int, nargs=2, default=[8, 8], metavar=("WARMUP", "RECURSIVE"))
    parser.add_argument("--iterations", type=int, default=25)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=1, help="seeds trained at once, each in its own process")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per process")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fold", type=int, default=0)
    args = parser.parse_args()
    from iterdce.preprocessing.pipeline import plan_and_preprocess
    from iterdce.simulation import simulate_dataset

    start = time.perf_counter()
    out = args.out or args.workdir
    out.mkdir(parents=True, exist_ok=True)
    raw = args.workdir / "raw" / "Dataset001_Phantom"
    if not (raw / "dataset.json").is_file():
        simulate_dataset(raw, args.cases, shape=args.shape, seed=11, jobs=2, site=args.site)
    plans = plan_and_preprocess(raw, args.workdir / "preprocessed", num_processes=2, preset=args.preset,
                                progress=False, log=lambda *_: None)
    training = {"warmup_epochs": args.epochs[0], "recursive_epochs": args.epochs[1],
                "iterations_per_epoch": args.iterations, "validation_every": max(args.epochs)}
    records, jobs = [], []
    for seed in args.seeds:
        done = args.workdir / f"seed_{seed}.json"
        if done.is_file():
            records.append(json.loads(done.read_text()))
            continue
        jobs.append({"seed": seed, "threads": args.threads, "device": args.device, "fold": args.fold,
                     "training": training, "plans_file": str(args.workdir / "preprocessed" / raw.name / "plans.json"),
                     "preprocessed": str(args.workdir / "preprocessed" / raw.name),
                     "results": str(args.workdir / f"results_seed{seed}" / raw.name)})
    with ProcessPoolExecutor(max_workers=args.parallel, mp_context=multiprocessing.get_context("spawn"),
                             initializer=die_with_parent, initargs=(os.getpid(),)) as pool:  # they die with it
        for record in pool.map(run_seed, jobs):
            (args.workdir / f"seed_{record['seed']}.json").write_text(json.dumps(record))
            records.append(record)
            print(f"seed {record['seed']} done at {time.perf_counter() - start:.0f} s", flush=True)
    records.sort(key=lambda r: r["seed"])
    phases = [str(p) for p in plans.target_phases]
    times = [float(t) for t in plans.target_times_s]
    table = aggregate(records, phases)
    text = markdown(table, phases, times, [r["seed"] for r in records], records[0]["validation_cases"])
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({"settings": {k: str(v) if isinstance(v, Path) else v
                                                                for k, v in vars(args).items()},
                                                   "table": table}, indent=1))
    print(text)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
