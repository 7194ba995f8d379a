"""Cross-site benchmark: train on phantom sites A-C, test on the held-out site D, against every baseline.

The question it answers is the one a new user asks: does the trained network predict the delayed phases
of a site it never saw better than copying the last input phase, a straight line in time, or a voxel-wise
kinetic regression fitted on the same training cases? Each variant (a set of plan overrides,
benchmarks/variants/<name>.json) is trained with every seed on all training cases (fold ``all``), predicts the
held-out site through the user path (``IterativePredictor.predict_folder``), and is scored with
``evaluate_folders``; the table gives mean and spread over seeds and the curve-type confusion matrix.

CPU, the ``cpu`` preset's own budget (one variant, 3 seeds, about 30 min of training each):
  python -m benchmarks.cross_site --variants preset --seeds 0 1 2
GPU, the ablation (all variants x 3 seeds in parallel processes sharing one GPU):
  python -m benchmarks.cross_site --device cuda --parallel 15 --jobs 16
Quick rehearsal (tiny sizes):
  python -m benchmarks.cross_site --quick

The runs themselves are in cross_site_jobs.py, the table in cross_site_table.py, the variants' loading in
cross_site_variants.py, the site datasets and model files in cross_site_data.py.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from benchmarks.cross_site_data import (
    dataset_json_with_inputs,
    export_model,
    input_folder,
    prepare_training_set,
    simulate_sites,
)
from benchmarks.cross_site_jobs import DEFAULT_TRAINER, run_jobs
from benchmarks.cross_site_table import aggregate, markdown
from benchmarks.cross_site_variants import apply_overrides, apply_variant, variant_names
from iterdce.core.file_names import CHECKPOINT_FINAL
from iterdce.core.folder_names import FOLD_ALL, fold_folder, model_folder_name
from iterdce.inference.composition import COMPOSE_MODES, DEFAULT_COMPOSE
from iterdce.network.precision import PRECISIONS
from iterdce.regression.fit import fit_fold_regression, stored_fit_for
from iterdce.regression.model import REGRESSION_FILE
from iterdce.simulation.sites import SiteProfile, site_profile
from iterdce.training.variants import trainer_names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked; ``--quick`` shrinks every size to a rehearsal's."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("cross_site_work"))
    parser.add_argument("--out", type=Path, help="folder for results.json / results.md (default: workdir)")
    parser.add_argument("--train-sites", nargs="+", default=["A", "B", "C"])
    parser.add_argument("--train-cases", nargs="+", type=int, default=[14, 13, 13])
    parser.add_argument("--test-site", default="D")
    parser.add_argument("--test-cases", type=int, default=24)
    parser.add_argument("--shape", type=int, nargs=3, default=[160, 128, 48])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--variants", nargs="*", default=variant_names(), choices=variant_names(),
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
    parser.add_argument("--pretrain-variant", default="preset", choices=variant_names(),
                        help="variant of the all-sites model")
    parser.add_argument("--pretrain-heart-prob", type=float, metavar="P",
                        help="the all-sites model's cases see the heart in their field of view with chance P (default: "
                             "each site's own, 1); a wider training distribution than the sites' (breast-only views)")
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
    parser.add_argument("--ood-guard", dest="ood_guard", action="store_true",
                        help="move out-of-distribution cases towards their last input (iterdce_predict "
                             "--ood-guard); added to each evaluated model's name")
    parser.add_argument("--input-phases", type=int, default=None,
                        help="how many first phases are the model's inputs (default 2: pre-contrast and the first "
                             "post-contrast phase; 3 adds the second post-contrast phase; with --early-frames K, "
                             "K+1: pre-contrast and the frames); use a fresh --workdir")
    parser.add_argument("--early-frames", type=int, default=0, metavar="K",
                        help="simulate every site with K ultrafast frames in the first 90 s (iterdce_simulate "
                             "--early-frames) before its delayed phases; use a fresh --workdir")
    parser.add_argument("--trainer", default=DEFAULT_TRAINER, choices=trainer_names(),
                        help="the trainer of every training run (iterdce_train -tr), e.g. InputChannelsTrainer; other "
                             "than RecursiveTrainer, it is added to each run's name (not with --finetune-cases or "
                             "--pretrain-cases)")
    parser.add_argument("--quick", action="store_true", help="a tiny rehearsal of the whole benchmark")
    args = parser.parse_args(argv)
    if args.trainer != DEFAULT_TRAINER and (args.finetune_cases or args.pretrain_cases):
        parser.error("--trainer other than RecursiveTrainer trains the variants only: leave out --finetune-cases "
                     "and --pretrain-cases")
    check_early_frames(parser, args)
    if args.input_phases is None:
        args.input_phases = args.early_frames + 1 if args.early_frames else 2
    # the site profiles acquire 6 phases, or pre-contrast, K frames and later phases: one must be a target
    most = args.early_frames + 1 if args.early_frames else 5
    if not 2 <= args.input_phases <= most:
        parser.error(f"--input-phases must be 2-{most} (the sites' phases before the delayed ones), got "
                     f"{args.input_phases}")
    if (args.input_phases != 2 or args.early_frames) and (args.finetune_cases or args.pretrain_cases):
        parser.error("--input-phases other than 2 and --early-frames are not combined with --finetune-cases or "
                     "--pretrain-cases")
    if args.quick:
        args.train_cases, args.test_cases, args.shape = [3, 3, 2], 3, [128, 112, 40]
        args.epochs, args.iterations, args.seeds = (1, 1), 2, args.seeds[:2]
        args.variants = args.variants[:2]
        args.finetune_cases = min(args.finetune_cases, 2)
        args.pretrain_cases = min(args.pretrain_cases, 1)
    return args


def check_early_frames(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--early-frames K must suit every simulated site's timing jitter (the simulator's own check)."""
    if not args.early_frames:
        return
    from iterdce.core.errors import UsageError
    from iterdce.simulation.config import SimulationConfig

    for site in dict.fromkeys([*args.train_sites, args.test_site]):
        try:
            SimulationConfig(site=site_profile(site), early_frames=args.early_frames).validate()
        except UsageError as exc:
            parser.error(f"--early-frames {args.early_frames}, site {site}: {exc}")


@dataclass
class Study:
    """What every run of one benchmark shares: the settings, the A-C training set and its plan (with the budget
    flags), the held-out site and the extra sites, and the job fields common to all runs."""

    args: argparse.Namespace
    out: Path
    clock: float
    train_pre: Path
    plans: dict
    budget: dict[str, int]
    test_dir: Path
    finetune_dirs: list[Path]
    pretrain_dirs: list[Path]
    common: dict = field(default_factory=dict)

    @property
    def suffix(self) -> str:
        """Added to every run's name when the precision is not auto (preset_bf16) and the trainer not the default
        (preset_InputChannelsTrainer)."""
        trainer = "" if self.args.trainer == DEFAULT_TRAINER else f"_{self.args.trainer}"
        return trainer + ("" if self.args.precision == "auto" else f"_{self.args.precision}")

    def job(self, variant: str, seed: int, preprocessed_dataset: Path, tag: str, own_plans: dict | None = None,
            **extra: object) -> dict:
        """One training run; ``own_plans``: the dataset's own plan (another dataset's, adopted), else the A-C
        plan, either with the budget flags and the variant's overrides."""
        tag += self.suffix
        base = self.plans if own_plans is None else apply_overrides(own_plans, {"training": self.budget})
        return {**self.common, "variant": tag, "seed": seed, "plans": apply_variant(base, variant),
                "preprocessed": str(preprocessed_dataset),
                "results": str(self.args.workdir / "results" / f"{tag}_seed{seed}" / preprocessed_dataset.name),
                **extra}


def simulate(args: argparse.Namespace) -> tuple[list[Path], Path, list[Path], list[Path]]:
    """The sites as raw datasets: (training sites, held-out site, fine-tuning sites, pre-training sites)."""
    sites: list[str | SiteProfile] = [*args.train_sites, args.test_site]
    counts = [*args.train_cases, 0 if args.train_only else args.test_cases]
    extra_sites: list[str | SiteProfile] = []
    extra_counts: list[int] = []
    if args.finetune_cases:
        extra_sites.append(f"{args.test_site}")
        extra_counts.append(args.finetune_cases)
    if args.pretrain_cases:
        extra_sites += [pretrain_site(s, args.pretrain_heart_prob) for s in [*args.train_sites, args.test_site]]
        extra_counts += [args.pretrain_cases] * (len(args.train_sites) + 1)
    folders = simulate_sites(args.workdir / "raw", sites + extra_sites, counts + extra_counts, args.shape, seed=2024,
                             jobs=args.jobs, early_frames=args.early_frames)
    finetune_dirs = folders[len(sites):len(sites) + (1 if args.finetune_cases else 0)]
    return (folders[:len(args.train_sites)], folders[len(args.train_sites)], finetune_dirs,
            folders[len(sites) + len(finetune_dirs):])


def pretrain_site(name: str, heart_prob: float | None) -> str | SiteProfile:
    """A site of the all-sites model's training set: the built-in profile, or with ``heart_prob`` a copy of it
    whose cases see the heart with that chance (named e.g. ``AHeart50``)."""
    if heart_prob is None:
        return name
    if not 0.0 <= heart_prob <= 1.0:
        raise SystemExit(f"--pretrain-heart-prob must lie in 0-1, got {heart_prob}")
    return replace(site_profile(name), name=f"{name}Heart{round(100 * heart_prob)}", heart_prob=heart_prob)


def fit_regression(args: argparse.Namespace, train_pre: Path, plans: dict, cases: list[str]) -> Path:
    """The kinetic-regression baseline fitted on the training sites, written once (refitted on a new format)."""
    from iterdce.preprocessing.pipeline import data_folder

    path = args.workdir / REGRESSION_FILE
    if stored_fit_for(path, len(plans["input_phases"])) is None:
        model = fit_fold_regression(data_folder(train_pre, "plans"), cases, len(plans["input_phases"]))
        path.write_text(json.dumps(model.to_json()))
    return path


def scored_dataset_json(args: argparse.Namespace, test_dir: Path) -> Path | None:
    """With other than 2 input phases, a copy of the held-out site's dataset.json naming the run's inputs (the
    cases scored with them); None otherwise."""
    if args.input_phases == 2 or args.train_only:
        return None
    return dataset_json_with_inputs(test_dir, args.input_phases,
                                    args.workdir / f"{test_dir.name}_scored_with_{args.input_phases}_inputs")


def prepare(args: argparse.Namespace, out: Path, clock: float) -> Study:
    """Simulate the sites, preprocess the training set, fit the regression baseline, cut the held-out inputs."""
    train_dirs, test_dir, finetune_dirs, pretrain_dirs = simulate(args)
    print(f"simulated in {time.perf_counter() - clock:.0f} s", flush=True)
    train_pre, plans, all_cases = prepare_training_set(train_dirs, args.workdir / "raw", args.workdir / "preprocessed",
                                                       f"Dataset899_Sites{''.join(args.train_sites)}", args.preset,
                                                       args.jobs, input_phases=args.input_phases)
    regression = fit_regression(args, train_pre, plans, all_cases)
    print(f"planned and preprocessed in {time.perf_counter() - clock:.0f} s: patch {plans['patch_size']}, "
          f"spacing {plans['spacing']}, network {plans['network']['features_per_stage']}", flush=True)
    test_inputs = None if args.train_only else input_folder(test_dir, args.workdir / "test_inputs",
                                                            plans["input_phases"])
    budget: dict[str, int] = {}
    if args.epochs:
        budget.update(warmup_epochs=args.epochs[0], recursive_epochs=args.epochs[1])
    if args.iterations:
        budget.update(iterations_per_epoch=args.iterations)
    scored_json = scored_dataset_json(args, test_dir)
    common = {"test_dataset_json": None if scored_json is None else str(scored_json),
              "threads": args.threads, "workers": args.workers, "device": args.device, "precision": args.precision,
              "tta": args.tta, "compose": args.compose, "ood_guard": args.ood_guard, "trainer": args.trainer,
              "test_inputs": str(test_inputs), "test_dir": str(test_dir), "regression": str(regression)}
    return Study(args, out, clock, train_pre, apply_overrides(plans, {"training": budget}), budget, test_dir,
                 finetune_dirs, pretrain_dirs, common)


def evaluation_jobs(study: Study) -> list[dict]:
    """--evaluate-models: one job per exported <variant>_seed<k>.pth, named with the composition and guard."""
    args = study.args
    composed = ("" if args.compose == DEFAULT_COMPOSE else f"_compose_{args.compose}") + \
        ("_ood_guard" if args.ood_guard else "")
    return [{**study.common, "variant": path.stem.rsplit("_seed", 1)[0] + composed,
             "seed": int(path.stem.rsplit("_seed", 1)[1]), "model_file": str(path),
             "results": str(args.workdir / "results" / f"eval_{path.stem}{composed}")}
            for path in sorted(args.evaluate_models.glob("*_seed*.pth"))]


def first_jobs(study: Study) -> list[dict]:
    """The baselines, every (variant, seed) (or the models to evaluate), and the all-sites model if asked for."""
    args = study.args
    jobs = [study.job(v, s, study.train_pre, v) for v in args.variants for s in args.seeds]
    if args.train_only:
        jobs = [{**j, "export_to": str(study.out)} for j in jobs]
    elif args.evaluate_models:
        jobs = evaluation_jobs(study)
    if not args.train_only:
        jobs.insert(0, {**study.common, "variant": "baselines", "seed": 0,
                        "n_inputs": len(study.plans["input_phases"]),
                        "results": str(args.workdir / "results" / "baselines")})
    if study.pretrain_dirs:
        pre_pre, pre_plans, _ = prepare_training_set(study.pretrain_dirs, args.workdir / "raw",
                                                     args.workdir / "preprocessed", "Dataset898_PretrainAllSites",
                                                     args.preset, args.jobs, plan_from=study.train_pre / "plans.json")
        extra = {"export_to": str(study.out)} if args.train_only else {}
        tag = "pretrained_all_sites" + ("" if args.pretrain_variant == "preset" else f"_{args.pretrain_variant}")
        jobs.append(study.job(args.pretrain_variant, 0, pre_pre, tag, own_plans=pre_plans, **extra))
    return jobs


def finetune_jobs(study: Study, records: list[dict]) -> list[dict]:
    """The best variant (lowest last-phase enhancement error) fine-tuned on the new test-site cases, against the
    same variant trained from scratch on them, per seed."""
    args, suffix = study.args, study.suffix
    ranked = aggregate(records)
    best = min((v for v in args.variants if v + suffix in ranked and ranked[v + suffix]["ee_last"]),
               key=lambda v: ranked[v + suffix]["ee_last"]["mean"])
    tune_pre, tune_plans, _ = prepare_training_set(study.finetune_dirs, args.workdir / "raw",
                                                   args.workdir / "preprocessed", "Dataset897_FinetuneSiteD",
                                                   args.preset, args.jobs, plan_from=study.train_pre / "plans.json")
    jobs = []
    for seed in args.seeds:
        source = args.workdir / "results" / f"{best}{suffix}_seed{seed}" / study.train_pre.name
        checkpoint = fold_folder(source / model_folder_name("RecursiveTrainer", "plans"), FOLD_ALL) / CHECKPOINT_FINAL
        jobs.append(study.job(best, seed, tune_pre, f"{best}+finetune{args.finetune_cases}", own_plans=tune_plans,
                              pretrained_weights=str(checkpoint)))
        jobs.append(study.job(best, seed, tune_pre, f"{best}_scratch{args.finetune_cases}", own_plans=tune_plans))
    return jobs


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = args.out or args.workdir
    out.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()
    study = prepare(args, out, clock)
    records: list[dict] = []
    jobs = first_jobs(study)
    run_jobs(jobs, records, args, out, study.plans, clock)
    if study.pretrain_dirs and not args.train_only:
        export_model(Path(jobs[-1]["results"]) / "RecursiveTrainer__plans", out, f"pretrained_all_sites{study.suffix}")
    if study.finetune_dirs and not args.train_only:
        run_jobs(finetune_jobs(study, records), records, args, out, study.plans, clock)
    print(markdown(aggregate(records)))
    print(f"total {time.perf_counter() - clock:.0f} s")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
