"""Cross-site benchmark: train on phantom sites A-C, test on the held-out site D, against every baseline.

The question it answers is the one a new user asks: does the trained network predict the delayed phases
of a site it never saw better than copying the last input phase, a straight line in time, or a voxel-wise
kinetic regression fitted on the same training cases? Each variant (a set of plan overrides, see VARIANTS)
is trained with every seed on all training cases (fold ``all``), predicts the held-out site through the
user path (``IterativePredictor.predict_folder``), and is scored with ``evaluate_folders``; the table gives
mean and spread over seeds and the curve-type confusion matrix.

CPU, the ``cpu`` preset's own budget (one variant, 3 seeds, about 30 min of training each):
  python -m benchmarks.cross_site --variants preset --seeds 0 1 2
GPU, the ablation (all variants x 3 seeds in parallel processes sharing one GPU):
  python -m benchmarks.cross_site --device cuda --parallel 15 --jobs 16
Quick rehearsal (tiny sizes):
  python -m benchmarks.cross_site --quick
"""
from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.cross_site_data import (
    export_model,
    import_model,
    input_folder,
    prepare_training_set,
    real_target_folder,
    simulate_sites,
)
from iterdce.evaluation.baselines import REGRESSION_FILE, REGRESSION_FORMAT
from iterdce.evaluation.regression_baseline import fit_fold_regression, load_regression
from iterdce.inference.composition import COMPOSE_MODES, DEFAULT_COMPOSE
from iterdce.network.precision import PRECISIONS

PAPER_LOSS: dict[str, Any] = {"loss_weights": {"l1": 0.1, "ssim": 1.0, "perceptual": 1.0, "gradient_difference": 0.1,
                               "lesion_l1": 0.0},
              "training": {"loss_mask": "none"}, "optimizer": {"lr": 3e-4, "recursive_lr": 1e-4},
              "network": {"kinetic_prior": False}}
# Each variant changes the plan in one respect more than the one before it (documentation/training.md).
VARIANTS: dict[str, dict] = {
    "paper": PAPER_LOSS,
    "l1": {**PAPER_LOSS, "loss_weights": {**PAPER_LOSS["loss_weights"], "l1": 1.0}},
    "l1_fg": {**PAPER_LOSS, "loss_weights": {**PAPER_LOSS["loss_weights"], "l1": 1.0},
              "training": {"loss_mask": "foreground"}},
    "l1_fg_lesion": {**PAPER_LOSS, "loss_weights": {**PAPER_LOSS["loss_weights"], "l1": 1.0, "lesion_l1": 1.0},
                     "training": {"loss_mask": "foreground"}},
    "l1_fg_lesion_lr": {"loss_weights": {**PAPER_LOSS["loss_weights"], "l1": 1.0, "lesion_l1": 1.0},
                        "training": {"loss_mask": "foreground"}, "optimizer": {"lr": 1e-3, "recursive_lr": 3e-4}},
    "l1_fg_lesion_prior": {**PAPER_LOSS, "loss_weights": {**PAPER_LOSS["loss_weights"], "l1": 1.0, "lesion_l1": 1.0},
                           "training": {"loss_mask": "foreground"}, "network": {"kinetic_prior": True}},
    "preset": {},  # the plan exactly as the preset writes it
    # the preset with 3x the lesion term and 3x the learning rates (documentation/training.md, hypothesis 3)
    "preset_lesion3_lr3": {"loss_weights": {"lesion_l1": 3.0}, "optimizer": {"lr": 9e-4, "recursive_lr": 3e-4}},
    # the preset with the contrast-uptake augmentation on half the samples (training.md, hypothesis 4)
    "preset_enhscale": {"augmentation": {"probability_enhancement_scale": 0.5}},
    # the preset with 3x its steps per epoch (2,400 steps; training.md, hypothesis 5)
    "preset_steps3x": {"training": {"iterations_per_epoch": 150}},
    # 2x the first preset's steps per epoch (1,600 steps; training.md, hypothesis 5)
    "preset_steps2x": {"training": {"iterations_per_epoch": 100}},
    # 4x the first preset's steps per epoch (3,200 steps): the shipped all-sites model, not bound to 30 minutes
    "preset_steps4x": {"training": {"iterations_per_epoch": 200}},
}


def deep_merge(base: dict, override: dict) -> dict:
    """``base`` with ``override``'s keys replaced, recursing into dicts."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


BASELINES = ("copy_last", "linear", "regression")


def test_dataset_json(job: dict) -> Path | None:
    """The held-out site's dataset.json as scored: its own, or a copy naming the run's input phases."""
    return Path(job["test_dataset_json"]) if job.get("test_dataset_json") else None


def run_baselines(job: dict) -> dict:
    """Score the baselines on the held-out site once (they do not depend on the network or the seed)."""
    from iterdce.evaluation.folders import evaluate_folders

    start, results, test_dir = time.perf_counter(), Path(job["results"]), Path(job["test_dir"])
    targets = real_target_folder(test_dir, results / "real_targets", job["n_inputs"])
    summary = evaluate_folders(targets, test_dir / "imagesTr", results / "report", test_dir / "labelsTr",
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
    from iterdce.training.run_config import TrainingSetup
    from iterdce.training.variants import run_stages

    start = time.perf_counter()
    results = Path(job["results"])
    setup = TrainingSetup(Path(job["preprocessed"]), results, fold="all", num_workers=job["workers"],
                          device=job["device"], seed=job["seed"], resume=True, plans=job["plans"], progress=False,
                          pretrained_weights=job.get("pretrained_weights"), precision=job.get("precision", "auto"))
    trainer = run_stages("RecursiveTrainer", setup)
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
                                                                    ood_guard=job.get("ood_guard", True)))
    pred_dir = results / "test_predictions"
    predictor.predict_folder(Path(job["test_inputs"]), pred_dir)
    test_dir = Path(job["test_dir"])
    summary = evaluate_folders(pred_dir, test_dir / "imagesTr", results / "test_report", test_dir / "labelsTr",
                               dataset_json=test_dataset_json(job), progress=False, methods=("iterdce",))
    return {"variant": job["variant"], "seed": job["seed"], "train_s": train_s,
            "total_s": time.perf_counter() - start, "summary": summary}


def row_values(summary: dict) -> dict[str, dict[str, float | None]]:
    """Per method: PSNR, SSIM, sharpness and enhancement error at the last phase, SCC, curve-type accuracy."""
    out = {}
    for method, entry in summary["methods"].items():
        last = entry["per_phase"][max(entry["per_phase"], key=int)]
        kinetics = entry.get("kinetics", {})
        out[method] = {"psnr_last": last["psnr"]["mean"], "ssim_last": last["ssim"]["mean"],
                       "sharpness_last": last.get("sharpness", {}).get("mean"),
                       "ee_last": kinetics.get("last_phase_enhancement_error", {}).get("mean"),
                       "scc": kinetics.get("scc", {}).get("mean"),
                       "type_acc": kinetics.get("curve_type_accuracy")}
    return out


def aggregate(records: list[dict]) -> dict:
    """Mean and std over seeds per variant (the baselines, which do not depend on the seed, once).
    Confusion matrices are summed over seeds."""
    done = [r for r in records if "summary" in r]
    table: dict[str, dict] = {}
    for record in done:
        for method, values in row_values(record["summary"]).items():
            entry = table.setdefault(record["variant"] if method == "iterdce" else method,
                                     {**{k: [] for k in values}, "confusion": {}})
            for key, value in values.items():
                if value is not None:
                    entry[key].append(value)
            matrix = record["summary"]["methods"][method].get("kinetics", {}).get("confusion_matrix", {})
            for true, row in matrix.get("rows_true_cols_predicted", {}).items():
                for predicted, count in row.items():
                    key = f"{true}->{predicted}"
                    entry["confusion"][key] = entry["confusion"].get(key, 0) + int(count)
    return {name: {k: v if k == "confusion" else (
        {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)} if v else None)
        for k, v in entry.items()} for name, entry in table.items()}


def markdown(aggregated: dict) -> str:
    lines = ["| model | PSNR last | SSIM last | sharpness last | EE last | SCC | type acc. | n |",
             "|---|---|---|---|---|---|---|---|"]

    def fmt(stats, scale=1.0, digits=3):
        if not stats:
            return "n/a"
        return f"{stats['mean'] * scale:.{digits}g} ± {stats['std'] * scale:.{digits - 1}g}"

    for name, entry in aggregated.items():
        n = entry["psnr_last"]["n"] if entry["psnr_last"] else 0
        lines.append(f"| {name} | {fmt(entry['psnr_last'])} | {fmt(entry.get('ssim_last'))} | "
                     f"{fmt(entry.get('sharpness_last'))} | {fmt(entry['ee_last'])} | {fmt(entry['scc'])} | "
                     f"{fmt(entry['type_acc'], 100)} % | {n} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("cross_site_work"))
    parser.add_argument("--out", type=Path, help="folder for results.json / results.md (default: workdir)")
    parser.add_argument("--train-sites", nargs="+", default=["A", "B", "C"])
    parser.add_argument("--train-cases", nargs="+", type=int, default=[14, 13, 13])
    parser.add_argument("--test-site", default="D")
    parser.add_argument("--test-cases", type=int, default=24)
    parser.add_argument("--shape", type=int, nargs=3, default=[160, 128, 48])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS),
                        help="variants to train (none: only the baselines and any --pretrain-cases model)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, nargs=2, metavar=("WARMUP", "RECURSIVE"),
                        help="override the preset's epochs (default: the preset's budget)")
    parser.add_argument("--iterations", type=int, help="override the preset's iterations per epoch")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="network arithmetic; other than auto, it is added to each run's name (preset_bf16)")
    parser.add_argument("--parallel", type=int, default=1, help="(variant, seed) runs at once")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--workers", type=int, default=1, help="data workers per run")
    parser.add_argument("--jobs", type=int, default=2, help="processes for simulation and preprocessing")
    parser.add_argument("--finetune-cases", type=int, default=0,
                        help="also fine-tune the best variant's models on this many new cases of the test site, "
                             "against training from scratch on them")
    parser.add_argument("--pretrain-cases", type=int, default=0,
                        help="also train one model on this many new cases of every site (the shipped model)")
    parser.add_argument("--pretrain-variant", default="preset", help="variant of the all-sites model")
    parser.add_argument("--train-only", action="store_true",
                        help="train and export each model (<variant>_seed<k>.pth + .plans.json) to --out; "
                             "no test site, no evaluation (for a machine whose CPUs are the bottleneck)")
    parser.add_argument("--evaluate-models", type=Path, metavar="DIR",
                        help="evaluate the exported <variant>_seed<k>.pth models of DIR on the test site")
    parser.add_argument("--tta", action="store_true",
                        help="predict the held-out site with test-time mirroring (the plan's mirror axes)")
    parser.add_argument("--compose", default=DEFAULT_COMPOSE, choices=COMPOSE_MODES,
                        help="how the held-out site's phases reach its grid (iterdce_predict --compose); other than "
                             "auto, it is added to each evaluated model's name")
    parser.add_argument("--no-ood-guard", dest="ood_guard", action="store_false",
                        help="keep the network's whole change on out-of-distribution cases (iterdce_predict "
                             "--no-ood-guard); added to each evaluated model's name")
    parser.add_argument("--input-phases", type=int, default=2,
                        help="how many first phases are the model's inputs (default 2: pre-contrast and the first "
                             "post-contrast phase; 3 adds the second post-contrast phase); use a fresh --workdir")
    parser.add_argument("--quick", action="store_true", help="a tiny rehearsal of the whole benchmark")
    args = parser.parse_args()
    if not 2 <= args.input_phases <= 5:  # the site profiles acquire 6 phases; at least one must be a target
        parser.error(f"--input-phases must be 2-5 (the sites have 6 phases), got {args.input_phases}")
    if args.input_phases != 2 and (args.finetune_cases or args.pretrain_cases):
        parser.error("--input-phases other than 2 is not combined with --finetune-cases or --pretrain-cases")
    if args.quick:
        args.train_cases, args.test_cases, args.shape = [3, 3, 2], 3, [128, 112, 40]
        args.epochs, args.iterations, args.seeds = (1, 1), 2, args.seeds[:2]
        args.variants = args.variants[:2]
        args.finetune_cases = min(args.finetune_cases, 2)
        args.pretrain_cases = min(args.pretrain_cases, 1)
    out = args.out or args.workdir
    out.mkdir(parents=True, exist_ok=True)
    from iterdce.preprocessing.pipeline import data_folder

    clock = time.perf_counter()
    raw_root, preprocessed = args.workdir / "raw", args.workdir / "preprocessed"
    sites = [*args.train_sites, args.test_site]
    counts = [*args.train_cases, 0 if args.train_only else args.test_cases]
    extra_sites, extra_counts = [], []
    if args.finetune_cases:
        extra_sites.append(f"{args.test_site}")
        extra_counts.append(args.finetune_cases)
    if args.pretrain_cases:
        extra_sites += [*args.train_sites, args.test_site]
        extra_counts += [args.pretrain_cases] * (len(args.train_sites) + 1)
    folders = simulate_sites(raw_root, sites + extra_sites, counts + extra_counts, args.shape, seed=2024,
                             jobs=args.jobs)
    test_dir = folders[len(args.train_sites)]
    finetune_dirs = folders[len(sites):len(sites) + (1 if args.finetune_cases else 0)]
    pretrain_dirs = folders[len(sites) + len(finetune_dirs):]
    print(f"simulated in {time.perf_counter() - clock:.0f} s", flush=True)
    train_pre, plans, all_cases = prepare_training_set(folders[:len(args.train_sites)], raw_root, preprocessed,
                                                       f"Dataset899_Sites{''.join(args.train_sites)}", args.preset,
                                                       args.jobs, input_phases=args.input_phases)
    regression_path = args.workdir / REGRESSION_FILE
    if not regression_path.is_file() or json.loads(regression_path.read_text()).get("format") != REGRESSION_FORMAT:
        model = fit_fold_regression(data_folder(train_pre, "plans"), all_cases, len(plans["input_phases"]))
        regression_path.write_text(json.dumps(model.to_json()))
    print(f"planned and preprocessed in {time.perf_counter() - clock:.0f} s: patch {plans['patch_size']}, "
          f"spacing {plans['spacing']}, network {plans['network']['features_per_stage']}", flush=True)
    test_inputs = None if args.train_only else input_folder(test_dir, args.workdir / "test_inputs",
                                                            plans["input_phases"])
    budget: dict[str, int] = {}
    if args.epochs:
        budget.update(warmup_epochs=args.epochs[0], recursive_epochs=args.epochs[1])
    if args.iterations:
        budget.update(iterations_per_epoch=args.iterations)
    plans = deep_merge(plans, {"training": budget})
    scored_json = None
    if args.input_phases != 2 and not args.train_only:  # the held-out cases scored with the run's inputs
        info = json.loads((test_dir / "dataset.json").read_text())
        scored_json = args.workdir / f"{test_dir.name}_scored_with_{args.input_phases}_inputs" / "dataset.json"
        scored_json.parent.mkdir(parents=True, exist_ok=True)
        if not (scored_json.parent / "timesTr").exists():  # each case's own times, read beside dataset.json
            (scored_json.parent / "timesTr").symlink_to((test_dir / "timesTr").resolve())
        scored_json.write_text(json.dumps({**info, "input_phases": list(range(args.input_phases))}, indent=2))
    common = {"test_dataset_json": None if scored_json is None else str(scored_json),
              "threads": args.threads, "workers": args.workers, "device": args.device, "precision": args.precision,
              "tta": args.tta, "compose": args.compose, "ood_guard": args.ood_guard,
              "test_inputs": str(test_inputs), "test_dir": str(test_dir), "regression": str(regression_path)}

    suffix = "" if args.precision == "auto" else f"_{args.precision}"

    def job(variant: str, seed: int, preprocessed_dataset: Path, tag: str, own_plans: dict | None = None,
            **extra) -> dict:
        """One training run; ``own_plans``: the dataset's own plan (another dataset's, adopted), else the A-C
        plan, either with the budget flags and the variant's overrides."""
        tag += suffix
        base = plans if own_plans is None else deep_merge(own_plans, {"training": budget})
        return {**common, "variant": tag, "seed": seed, "plans": deep_merge(base, VARIANTS[variant]),
                "preprocessed": str(preprocessed_dataset),
                "results": str(args.workdir / "results" / f"{tag}_seed{seed}" / preprocessed_dataset.name), **extra}

    phase1 = [job(v, s, train_pre, v) for v in args.variants for s in args.seeds]
    if args.train_only:
        phase1 = [{**j, "export_to": str(out)} for j in phase1]
    elif args.evaluate_models:
        composed = ("" if args.compose == DEFAULT_COMPOSE else f"_compose_{args.compose}") + \
            ("" if args.ood_guard else "_no_guard")
        phase1 = [{**common, "variant": path.stem.rsplit("_seed", 1)[0] + composed,
                   "seed": int(path.stem.rsplit("_seed", 1)[1]), "model_file": str(path),
                   "results": str(args.workdir / "results" / f"eval_{path.stem}{composed}")}
                  for path in sorted(args.evaluate_models.glob("*_seed*.pth"))]
    if not args.train_only:
        phase1.insert(0, {**common, "variant": "baselines", "seed": 0, "n_inputs": len(plans["input_phases"]),
                          "results": str(args.workdir / "results" / "baselines")})
    if pretrain_dirs:
        pre_pre, pre_plans, _ = prepare_training_set(pretrain_dirs, raw_root, preprocessed,
                                                     "Dataset898_PretrainAllSites", args.preset, args.jobs,
                                                     plan_from=train_pre / "plans.json")
        extra = {"export_to": str(out)} if args.train_only else {}
        tag = "pretrained_all_sites" + ("" if args.pretrain_variant == "preset" else f"_{args.pretrain_variant}")
        phase1.append(job(args.pretrain_variant, 0, pre_pre, tag, own_plans=pre_plans, **extra))
    records: list[dict] = []
    run_jobs(phase1, records, args, out, plans, clock)
    if pretrain_dirs and not args.train_only:
        export_model(Path(phase1[-1]["results"]) / "RecursiveTrainer__plans", out, f"pretrained_all_sites{suffix}")
    if finetune_dirs and not args.train_only:
        ranked = aggregate(records)
        best = min((v for v in args.variants if v + suffix in ranked and ranked[v + suffix]["ee_last"]),
                   key=lambda v: ranked[v + suffix]["ee_last"]["mean"])
        tune_pre, tune_plans, _ = prepare_training_set(finetune_dirs, raw_root, preprocessed,
                                                       "Dataset897_FinetuneSiteD", args.preset, args.jobs,
                                                       plan_from=train_pre / "plans.json")
        phase2 = []
        for seed in args.seeds:
            source = args.workdir / "results" / f"{best}{suffix}_seed{seed}" / train_pre.name
            checkpoint = source / "RecursiveTrainer__plans" / "fold_all" / "checkpoint_final.pth"
            phase2.append(job(best, seed, tune_pre, f"{best}+finetune{args.finetune_cases}", own_plans=tune_plans,
                              pretrained_weights=str(checkpoint)))
            phase2.append(job(best, seed, tune_pre, f"{best}_scratch{args.finetune_cases}", own_plans=tune_plans))
        run_jobs(phase2, records, args, out, plans, clock)
    print(markdown(aggregate(records)))
    print(f"total {time.perf_counter() - clock:.0f} s")


def run_jobs(jobs: list[dict], records: list[dict], args: argparse.Namespace, out: Path, plans: dict,
             clock: float) -> None:
    """Run (variant, seed) jobs in parallel processes; results.json / results.md rewritten after each."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.parallel, mp_context=context) as pool:
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
            aggregated = aggregate(records)
            payload = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                       "plan": {k: plans[k] for k in ("spacing", "patch_size", "batch_size", "network", "training")},
                       "elapsed_s": time.perf_counter() - clock, "aggregated": aggregated,
                       "runs": [{k: v for k, v in r.items() if k != "summary"} | (
                           {"rows": row_values(r["summary"])} if "summary" in r else {}) for r in records]}
            (out / "results.json").write_text(json.dumps(payload, indent=1, default=str))
            (out / "results.md").write_text(markdown(aggregated) + "\n")

if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
