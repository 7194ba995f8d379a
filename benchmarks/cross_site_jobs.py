"""One cross-site run in its own process: score the baselines, or train one (variant, seed) and evaluate it on
the held-out site, or evaluate a model trained elsewhere; ``run_jobs`` runs them in parallel and rewrites
results.json / results.md after each."""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from benchmarks.cross_site_data import export_model, import_model, real_target_folder
from benchmarks.cross_site_table import aggregate, markdown, row_values
from iterdce.core.folder_names import IMAGES_TR, LABELS_TR
from iterdce.core.parallel import die_with_parent
from iterdce.inference.composition import DEFAULT_COMPOSE
from iterdce.regression.fit import load_regression

BASELINES = ("copy_last", "linear", "regression")
DEFAULT_TRAINER = "RecursiveTrainer"


def test_dataset_json(job: dict) -> Path | None:
    """The held-out site's dataset.json as scored: its own, or a copy naming the run's input phases."""
    return Path(job["test_dataset_json"]) if job.get("test_dataset_json") else None


def run_baselines(job: dict) -> dict:
    """Score the baselines on the held-out site once (they do not depend on the network or the seed)."""
    from iterdce.evaluation.folders import evaluate_folders

    start, results, test_dir = time.perf_counter(), Path(job["results"]), Path(job["test_dir"])
    targets = real_target_folder(test_dir, results / "real_targets", job["n_inputs"])
    summary = evaluate_folders(targets, test_dir / IMAGES_TR, results / "report", test_dir / LABELS_TR,
                               dataset_json=test_dataset_json(job), progress=False,
                               regression=load_regression(Path(job["regression"])), methods=BASELINES)
    return {"variant": "baselines", "seed": 0, "train_s": 0.0, "total_s": time.perf_counter() - start,
            "summary": summary}


def run_one(job: dict) -> dict:
    """Train one (variant, seed), predict the held-out site, evaluate; runs in its own process."""
    if job["variant"] == "baselines":
        return run_baselines(job)
    if job.get("model_file"):  # --evaluate-models: a model trained elsewhere
        folder = import_model(Path(job["model_file"]), Path(job["results"]) / "RecursiveTrainer__plans")
        return evaluate_model(folder, job, float("nan"), time.perf_counter())
    import torch

    torch.set_num_threads(job["threads"])
    from iterdce.preprocessing.plans_io import as_plans
    from iterdce.training.run_config import TrainingSetup
    from iterdce.training.variants import run_stages

    start = time.perf_counter()
    results = Path(job["results"])
    setup = TrainingSetup(Path(job["preprocessed"]), results, fold="all", num_workers=job["workers"],
                          device=job["device"], seed=job["seed"], resume=True, plans=as_plans(job["plans"]),
                          progress=False, pretrained_weights=job.get("pretrained_weights"),
                          precision=job.get("precision", "auto"))
    trainer = run_stages(job.get("trainer", DEFAULT_TRAINER), setup)
    train_s = time.perf_counter() - start
    model_folder = trainer.output.parent
    if job.get("export_to"):  # train only: the weights travel back, evaluation happens elsewhere
        export_model(model_folder, Path(job["export_to"]), f"{job['variant']}_seed{job['seed']}")
        return {"variant": job["variant"], "seed": job["seed"], "train_s": train_s, "total_s": train_s}
    return evaluate_model(model_folder, job, train_s, start)


def evaluate_model(model_folder: Path, job: dict, train_s: float, start: float) -> dict:
    """Predict the held-out site with a trained model folder and score the network's row."""
    from iterdce.evaluation.folders import evaluate_folders
    from iterdce.inference.predictor import IterativePredictor, PredictionSettings

    results = Path(job["results"])
    predictor = IterativePredictor(model_folder, PredictionSettings(folds=["all"], device=job["device"],
                                                                    progress=False, tta=job.get("tta", False),
                                                                    precision=job.get("precision", "auto"),
                                                                    compose=job.get("compose", DEFAULT_COMPOSE),
                                                                    ood_guard=job.get("ood_guard", False)))
    pred_dir = results / "test_predictions"
    predictor.predict_folder(Path(job["test_inputs"]), pred_dir)
    test_dir = Path(job["test_dir"])
    summary = evaluate_folders(pred_dir, test_dir / IMAGES_TR, results / "test_report", test_dir / LABELS_TR,
                               dataset_json=test_dataset_json(job), progress=False, methods=("iterdce",))
    return {"variant": job["variant"], "seed": job["seed"], "train_s": train_s,
            "total_s": time.perf_counter() - start, "summary": summary}


def run_jobs(jobs: list[dict], records: list[dict], args: argparse.Namespace, out: Path, plans: dict,
             clock: float) -> None:
    """Run (variant, seed) jobs in parallel processes; results.json / results.md rewritten after each."""
    context = multiprocessing.get_context("spawn")
    # the jobs die with this process: kill -9 of the benchmark leaves no training running
    with ProcessPoolExecutor(max_workers=args.parallel, mp_context=context, initializer=die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(run_one, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                record = future.result()
                print(f"{job['variant']} seed {job['seed']}: trained in {record['train_s']:.0f} s, done in "
                      f"{record['total_s']:.0f} s", flush=True)
            except Exception:  # one failed run must not lose the others' results
                record = {"variant": job["variant"], "seed": job["seed"], "error": traceback.format_exc()}
                print(f"{job['variant']} seed {job['seed']}: FAILED\n{record['error']}", flush=True)
            record["results"] = job["results"]
            records.append(record)
            write_results(records, args, out, plans, clock)


def write_results(records: list[dict], args: argparse.Namespace, out: Path, plans: dict, clock: float) -> None:
    """results.json (settings, plan, aggregated table, every run's rows) and results.md (the table)."""
    aggregated = aggregate(records)
    payload = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "plan": {k: plans[k] for k in ("spacing", "patch_size", "batch_size", "network", "training")},
               "elapsed_s": time.perf_counter() - clock, "aggregated": aggregated,
               "runs": [{k: v for k, v in r.items() if k != "summary"} | (
                   {"rows": row_values(r["summary"])} if "summary" in r else {}) for r in records]}
    (out / "results.json").write_text(json.dumps(payload, indent=1, default=str))
    (out / "results.md").write_text(markdown(aggregated) + "\n")
