"""How synthesized phases reach the case's grid: every ``--compose`` mode of one or more trained models on the
cases of one simulated site, scored at the cases' native resolution against copy-last and the regression.

The question: on a site finer than the plan's grid, does the native base + the predicted change keep the
detail the plan grid loses (PSNR, SSIM, sharpness), and which base (the model's kinetic prior or the last input)
scores best? The regression row is the model's own kinetic prior (its fit travels in the checkpoint).

    python -m benchmarks.native_composition --pretrained phantom_all_sites --site E --cases 24 --workdir nc_e
    python -m benchmarks.native_composition --models DIR_OF_<name>.pth --site E --workdir nc_e

Writes ``results.json`` and ``results.md`` into ``--out`` (default the workdir); prediction wall time per mode
is measured on the same cases in one process.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

from benchmarks.cross_site_data import import_model, input_folder, real_target_folder, simulate_sites
from iterdce.core.folder_names import IMAGES_TR, LABELS_TR
from iterdce.core.kinetic_terms import DEGREE, TIME_DEGREE
from iterdce.evaluation.folders import evaluate_folders
from iterdce.inference.composition import model_priors
from iterdce.inference.predictor import IterativePredictor, PredictionSettings
from iterdce.network.precision import PRECISIONS
from iterdce.pretrained import PRETRAINED_MODELS, pretrained_model_folder
from iterdce.regression.model import KineticRegression

# name -> (--compose, out-of-distribution guard); "plan" without the guard is the export before this change
MODES = {"prior": ("prior", True), "prior_no_guard": ("prior", False), "last": ("last", True),
         "last_no_guard": ("last", False), "plan": ("plan", False)}
COLUMNS = (("psnr_last", "PSNR last"), ("ssim_last", "SSIM last"), ("sharpness_last", "sharpness last"),
           ("ee_last", "EE last"), ("scc", "SCC"), ("type_acc", "type acc."))


def row(summary: dict, method: str) -> dict[str, float | None]:
    """The last phase's image metrics and the kinetic summary of one method."""
    entry = summary["methods"][method]
    last = entry["per_phase"][max(entry["per_phase"], key=int)]
    kinetics = entry.get("kinetics", {})
    return {"psnr_last": last["psnr"]["mean"], "ssim_last": last["ssim"]["mean"],
            "sharpness_last": last["sharpness"]["mean"],
            "ee_last": kinetics.get("last_phase_enhancement_error", {}).get("mean"),
            "scc": kinetics.get("scc", {}).get("mean"), "type_acc": kinetics.get("curve_type_accuracy")}


def model_folders(args: argparse.Namespace) -> dict[str, Path]:
    """Name -> model folder: the shipped model, or every exported ``<name>.pth`` of ``--models``."""
    if args.pretrained:
        return {args.pretrained: pretrained_model_folder(args.pretrained)}
    return {path.stem: import_model(path, args.workdir / "models" / path.stem / "RecursiveTrainer__plans")
            for path in sorted(Path(args.models).glob("*.pth"))}


def score_model(name: str, folder: Path, args: argparse.Namespace, test_dir: Path, inputs: Path) -> dict:
    """Predict the site with every composition mode of one model; score each and the baselines."""
    results: dict = {"modes": {}, "seconds": {}}
    regression = None
    for mode in args.modes:
        compose, guard = MODES[mode]
        settings = PredictionSettings(folds=["all"], device=args.device, progress=False, precision=args.precision,
                                      compose=compose, ood_guard=guard)
        predictor = IterativePredictor(folder, settings)
        if regression is None and model_priors(predictor.models):
            fit = model_priors(predictor.models)[0]
            regression = KineticRegression(DEGREE, TIME_DEGREE, np.asarray(fit.coefficients), fit.low, fit.high)
        pred_dir = args.workdir / "predictions" / name / mode
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            predictor.predict_folder(inputs, pred_dir, overwrite=True)
        for warning in caught:
            print(f"{name} {mode}: {warning.message}", flush=True)
        results["seconds"][mode] = time.perf_counter() - start
        summary = evaluate_folders(pred_dir, test_dir / IMAGES_TR, args.workdir / "reports" / name / mode,
                                   test_dir / LABELS_TR, progress=False, methods=("iterdce",))
        results["modes"][mode] = row(summary, "iterdce")
        print(f"{name} {mode}: {results['modes'][mode]} ({results['seconds'][mode]:.1f} s)", flush=True)
    targets = real_target_folder(test_dir, args.workdir / "real_targets", 2)
    baselines = evaluate_folders(targets, test_dir / IMAGES_TR, args.workdir / "reports" / name / "baselines",
                                 test_dir / LABELS_TR, progress=False, regression=regression,
                                 methods=("copy_last", "regression") if regression else ("copy_last",))
    results["baselines"] = {m: row(baselines, m) for m in baselines["methods"]}
    return results


def markdown(results: dict) -> str:
    lines = ["| model | method | " + " | ".join(title for _, title in COLUMNS) + " | predict s |",
             "|" + "---|" * (len(COLUMNS) + 3)]

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4g}"

    for name, entry in results.items():
        for method, values in entry["baselines"].items():
            lines.append(f"| {name} | {method} | " + " | ".join(fmt(values[k]) for k, _ in COLUMNS) + " | |")
        for mode, values in entry["modes"].items():
            lines.append(f"| {name} | iterdce --compose {mode} | " + " | ".join(fmt(values[k]) for k, _ in COLUMNS)
                         + f" | {entry['seconds'][mode]:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pretrained", choices=list(PRETRAINED_MODELS), help="a model shipped with iterdce")
    source.add_argument("--models", type=Path, help="a folder of exported <name>.pth + <name>.plans.json")
    parser.add_argument("--site", default="E", help="the simulated site to predict (default E)")
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--shape", type=int, nargs=3, default=[160, 128, 48])
    parser.add_argument("--seed", type=int, default=2024, help="simulation seed (the cross-site benchmark's)")
    parser.add_argument("--workdir", type=Path, default=Path("native_composition_work"))
    parser.add_argument("--out", type=Path, help="folder for results.json / results.md (default: workdir)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--jobs", type=int, default=2, help="processes for the simulation")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES),
                        help="composition variants to score (default all)")
    args = parser.parse_args()
    out = args.out or args.workdir
    out.mkdir(parents=True, exist_ok=True)
    # the cross-site benchmark's folder name and seed for its test site (index 3), so both score the same cases
    raw = args.workdir / "raw"
    test_dir = simulate_sites(raw, ["A", "B", "C", args.site], [0, 0, 0, args.cases], args.shape, args.seed,
                              args.jobs)[3]
    inputs = input_folder(test_dir, args.workdir / "test_inputs", [0, 1])
    results = {name: score_model(name, folder, args, test_dir, inputs) for name, folder in model_folders(args).items()}
    payload = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "results": results}
    (out / "results.json").write_text(json.dumps(payload, indent=1))
    (out / "results.md").write_text(markdown(results) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
