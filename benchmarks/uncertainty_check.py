"""The uncertainty issue's measurement: calibrated intervals and curve-type probabilities of exported cross-site
models on the held-out site and on new cases of the training sites, against the references the issue names.

Per model (``<variant>_seed<k>.pth``): ``iterdce_calibrate`` on a held-back set of new training-site cases, then
``iterdce_predict --uncertainty --lesion-masks`` on each test set and ``iterdce_evaluate`` of the outputs (body
and lesion-mean coverage and width per phase, Brier score of the curve-type probabilities). Once, the references:

- the voxel-wise kinetic regression the models were trained beside, calibrated on the same cases the same way
  (normalized scores: its intervals and curve-type probabilities), and with a marginal interval (one width per time
  bin in TI-normalized units, the regression residual's split-conformal interval);
- constant curve-type probabilities: the training set's type frequencies (true types of its lesions by the
  evaluation's rule) and the evaluated set's own (in-sample, from iterdce_evaluate).

    python -m benchmarks.uncertainty_check --models cs_native/models --training-raw cs_native/raw/Dataset899_SitesABC \
        --regression cs_native/kinetic_regression.json --test D=cs_eval_D/raw/Dataset903_SiteD --work unc_check
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.cross_site_data import (
    dataset_json_with_inputs,
    import_model,
    input_folder,
    merge_sites,
    simulate_sites,
)
from iterdce.core.folder_names import IMAGES_TR, LABELS_TR, dataset_folder_name
from iterdce.core.kinetics_rule import CURVE_TYPES
from iterdce.dataset.case import DCECase, load_case
from iterdce.dataset.layout import discover_cases
from iterdce.evaluation.folders import evaluate_folders
from iterdce.evaluation.kinetics import curve_type, lesion_curve
from iterdce.evaluation.uncertainty import PROBABILITY_COLUMNS, brier_score
from iterdce.inference.case_pipeline import input_facts
from iterdce.inference.conformal import (
    DEFAULT_DIFFICULTY,
    DIFFICULTIES,
    EPSILON,
    time_bin_edges,
)
from iterdce.inference.export import write_phases
from iterdce.inference.predictor import IterativePredictor, PredictionSettings
from iterdce.inference.uncertainty import Uncertainty, write_uncertainty
from iterdce.network.precision import PRECISIONS
from iterdce.preprocessing.normalization import apply_ti_norm, undo_ti_norm
from iterdce.preprocessing.plan_schema import Plans
from iterdce.regression.fit import RegressionEnsemble, load_regression
from iterdce.workflow.calibration import ScoreSet, calibrate, folder_jobs

TRAINING_SITES = ("A", "B", "C")
CALIBRATION_SEED, HELD_OUT_SEED = 20100, 30100  # the cross-site sets use 2024-based seeds, the OOD check 9100+
MARGINAL_EPSILON = 1e6  # a difficulty this large is constant: the scores become residuals / std, scaled by 1e-6
# (stored unrounded: iterdce_calibrate's 6 decimals would round them to 0)
COVERAGE = 0.9


def new_site_cases(work: Path, dataset_id: int, name: str, per_site: int, seed: int, shape: list[int], jobs: int
                   ) -> Path:
    """``per_site`` new cases of each training site merged into one raw dataset ``Dataset<id>_<name>``."""
    folders = simulate_sites(work / f"sites_{name}", list(TRAINING_SITES), [per_site] * len(TRAINING_SITES),
                             shape, seed=seed, jobs=jobs)
    return merge_sites(folders, work / "raw" / dataset_folder_name(dataset_id, name))


def regression_phases(regression: RegressionEnsemble, plans: Plans, case: DCECase) -> tuple[np.ndarray, float]:
    """The regression's target phases of one case (native grid and intensities) and the case's TI-norm std,
    normalized as the predictor normalizes (``input_facts``)."""
    n_in = len(plans.input_phases)
    inputs = dataclasses.replace(case, image=case.image[:n_in])
    pre, _ = input_facts(inputs, plans)
    stats = pre.properties.ti_norm
    times = [float(t) for t in case.times_s]
    predicted = regression.predict(apply_ti_norm(case.image[:n_in].astype(np.float32), stats), times[:n_in],
                                   times[n_in:], case.geometry.spacing[:3])
    return undo_ti_norm(predicted.astype(np.float32), stats), float(stats.std)


def regression_calibration(regression: RegressionEnsemble, plans: Plans, cal_dir: Path, epsilon: float,
                           model_folder: Path) -> None:
    """The regression's split-conformal calibration on the held-back cases, written into ``model_folder`` in the
    format ``iterdce_predict --uncertainty`` reads (the same scores as ``iterdce_calibrate``, with ``epsilon``)."""
    scores = ScoreSet(time_bin_edges(plans.trained_target_times_s), epsilon=epsilon)
    n_in = len(plans.input_phases)
    for _, files in sorted(discover_cases(cal_dir).cases.items()):
        case = load_case(files, plans.phase_times_s)
        scores.add(case, n_in, *regression_phases(regression, plans, case))
    model_folder.mkdir(parents=True, exist_ok=True)
    # unrounded: the marginal variant's scores are of the order of 1e-6
    scores.calibration(f"regression reference, {cal_dir}", decimals=None).save(model_folder)


def regression_predictions(regression: RegressionEnsemble, plans: Plans, calibration_folder: Path, raw_dir: Path,
                           out: Path) -> None:
    """The regression's phases with intervals and lesion kinetics for every case of ``raw_dir``, written as
    ``iterdce_predict --uncertainty --lesion-masks`` writes them."""
    from iterdce.inference.conformal import load_calibration

    uncertainty = Uncertainty.of(load_calibration(calibration_folder), COVERAGE, raw_dir / LABELS_TR)
    out.mkdir(parents=True, exist_ok=True)
    n_in = len(plans.input_phases)
    for case_id, files in sorted(discover_cases(raw_dir).cases.items()):
        case = load_case(files, plans.phase_times_s)
        predicted, std = regression_phases(regression, plans, case)
        write_phases(predicted, case.geometry, out, case_id, range(n_in, n_in + len(predicted)))
        write_uncertainty(uncertainty, predicted, case.image[:n_in], case.times_s, std, case.geometry, out, case_id,
                          None, False)


def training_frequency(raw_dir: Path, plans: Plans) -> np.ndarray:
    """The curve-type frequencies of the training set's lesions, typed from their real curves by the rule."""
    counts = dict.fromkeys(CURVE_TYPES, 0)
    for files in discover_cases(raw_dir).cases.values():
        case = load_case(files, plans.phase_times_s)
        if case.lesion is None:
            continue
        for label in [int(v) for v in np.unique(case.lesion) if v > 0]:
            kind = curve_type(lesion_curve(case.image, case.lesion == label), case.times_s)
            if kind in counts:
                counts[kind] += 1
    total = sum(counts.values())
    return np.array([counts[t] / total for t in CURVE_TYPES])


def scored(report: Path, summary: dict, frequency: np.ndarray) -> dict:
    """The columns of one evaluated folder: coverage and width per phase, Brier scores (model and references)."""
    entry = summary["methods"]["iterdce"]
    row: dict = {"per_phase": {p: {k: v["mean"] for k, v in metrics.items() if k.startswith("interval_")}
                               for p, metrics in entry["per_phase"].items()}}
    probabilities = entry.get("kinetics", {}).get("curve_type_probabilities")
    if probabilities:
        lesions = pd.read_csv(report / "lesions.csv")
        lesions = lesions[(lesions["method"] == "iterdce") & lesions["true_type"].isin(CURVE_TYPES)]
        lesions = lesions.dropna(subset=list(PROBABILITY_COLUMNS))
        truth = np.array([CURVE_TYPES.index(t) for t in lesions["true_type"]])
        row.update(lesions=probabilities["lesions"], brier=probabilities["brier"], ece=probabilities["ece"],
                   brier_in_sample_frequency=probabilities["references"]["frequency"]["brier"],
                   brier_training_frequency=brier_score(np.broadcast_to(frequency, (truth.size, 3)), truth))
    return row


def evaluate(pred: Path, raw_dir: Path, report: Path, frequency: np.ndarray, n_inputs: int = 2) -> dict:
    """Score one prediction folder; with other than 2 inputs against a copy of the set's dataset.json naming them."""
    scored_json = None if n_inputs == 2 else dataset_json_with_inputs(raw_dir, n_inputs,
                                                                      report.parent / f"{raw_dir.name}_scored")
    summary = evaluate_folders(pred, raw_dir / IMAGES_TR, report, raw_dir / LABELS_TR, dataset_json=scored_json,
                               progress=False, methods=("iterdce",))
    return scored(report, summary, frequency)


def markdown_tables(paths: list[Path]) -> str:
    """The measurement's tables from one or more results.json (models of several runs pooled): per test set,
    interval coverage and width per phase (mean +- sd over models; the references once), and the Brier scores."""
    runs: dict = {}
    for path in paths:
        runs.update({k: v for k, v in json.loads(path.read_text()).items() if k != "training_frequency"})
    models = sorted(k for k in runs if not k.startswith("regression"))
    lines = [f"models: {', '.join(models)}"]
    sets = sorted({name for run in runs.values() for name in run})
    for name in sets:
        phases = sorted({p for run in runs.values() for p in run.get(name, {}).get("per_phase", {})}, key=int)
        lines += ["", f"{name}: coverage / width (TI-norm units) at nominal {COVERAGE:.0%}, per phase",
                  "| method | " + " | ".join(f"phase {p} body | phase {p} lesion" for p in phases) + " |",
                  "|---|" + "---|---|" * len(phases)]
        rows = [("iterdce (mean +- sd over models)", models)] + [(r, [r]) for r in ("regression", "regression_marginal")
                                                                 if r in runs]
        for label, keys in rows:
            cells = []
            for phase in phases:
                for family in ("body", "lesion"):
                    cov = [runs[k][name]["per_phase"][phase].get(f"interval_coverage_{family}") for k in keys]
                    wid = [runs[k][name]["per_phase"][phase].get(f"interval_width_{family}") for k in keys]
                    cov = [c for c in cov if c is not None]
                    wid = [w for w in wid if w is not None]
                    cells.append(f"{np.mean(cov):.1%} / {np.mean(wid):.2f}" + (f" (sd {np.std(cov):.1%})"
                                 if len(cov) > 1 else "") if cov else "-")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += ["", f"{name}: curve-type probabilities (Brier, lower is better; ECE)",
                  "| method | lesions | Brier | ECE | Brier of the training frequencies | Brier of the set's own "
                  "frequencies |", "|---|---|---|---|---|---|"]
        for key in models + [r for r in ("regression",) if r in runs]:
            entry = runs[key].get(name, {})
            if "brier" in entry:
                lines.append(f"| {key} | {entry['lesions']} | {entry['brier']:.3f} | {entry['ece']:.3f} | "
                             f"{entry['brier_training_frequency']:.3f} | {entry['brier_in_sample_frequency']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, nargs="+", metavar="RESULTS_JSON",
                        help="only print the tables of finished runs (their results.json) and stop")
    parser.add_argument("--models", type=Path, help="folder of exported <variant>_seed<k>.pth")
    parser.add_argument("--training-raw", type=Path, help="the models' training set (raw)")
    parser.add_argument("--regression", type=Path, help="the regression fitted on that set")
    parser.add_argument("--test", nargs="+", default=[], metavar="NAME=RAW_DIR", help="held-out test sets")
    parser.add_argument("--work", type=Path, default=Path("uncertainty_check"))
    parser.add_argument("--calibration-cases", type=int, default=7, help="per training site")
    parser.add_argument("--held-out-cases", type=int, default=4, help="per training site")
    parser.add_argument("--shape", type=int, nargs=3, default=[160, 128, 48])
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--difficulty", default=DEFAULT_DIFFICULTY, choices=sorted(DIFFICULTIES),
                        help="the models' calibration difficulty (iterdce_calibrate --difficulty)")
    args = parser.parse_args()
    if args.table:
        print(markdown_tables(args.table))
        return
    if args.models is None or args.training_raw is None or args.regression is None:
        parser.error("--models, --training-raw and --regression are needed (or --table)")
    cal_dir = new_site_cases(args.work, 960, "calibration", args.calibration_cases, CALIBRATION_SEED, args.shape,
                             args.jobs)
    tests = {"held-out A-C": new_site_cases(args.work, 961, "heldout", args.held_out_cases, HELD_OUT_SEED,
                                            args.shape, args.jobs)}
    tests.update({name: Path(path) for name, path in (item.split("=", 1) for item in args.test)})
    models = sorted(args.models.glob("*_seed*.pth"))
    results_path = args.work / "results.json"
    results: dict = json.loads(results_path.read_text()) if results_path.is_file() else {}
    first = import_model(models[0], args.work / models[0].stem / "RecursiveTrainer__plans")
    plans = IterativePredictor(first, PredictionSettings(folds=["all"], device="cpu", progress=False)).plans
    frequency = training_frequency(args.training_raw, plans)
    n_in = len(plans.input_phases)
    results["training_frequency"] = dict(zip(CURVE_TYPES, frequency.tolist()))
    regression = load_regression(args.regression)
    for reference, epsilon in (("regression", EPSILON), ("regression_marginal", MARGINAL_EPSILON)):
        if reference in results:
            continue
        folder = args.work / reference
        regression_calibration(regression, plans, cal_dir, epsilon, folder)
        results[reference] = {}
        for name, raw_dir in tests.items():
            tag = name.replace(" ", "_")
            regression_predictions(regression, plans, folder, raw_dir, folder / f"pred_{tag}")
            results[reference][name] = evaluate(folder / f"pred_{tag}", raw_dir, folder / f"report_{tag}", frequency,
                                                n_in)
        results_path.write_text(json.dumps(results, indent=1))
    for model_file in models:
        if model_file.stem in results:
            continue
        folder = import_model(model_file, args.work / model_file.stem / "RecursiveTrainer__plans")
        settings = PredictionSettings(folds=["all"], device="cpu", progress=False, precision=args.precision)
        calibrate(folder, folder_jobs(cal_dir, ["all"]), str(cal_dir), settings, difficulty=args.difficulty)
        results[model_file.stem] = {}
        for name, raw_dir in tests.items():
            tag = name.replace(" ", "_")
            inputs = input_folder(raw_dir, args.work / f"inputs_{tag}", list(plans.input_phases))
            pred = args.work / model_file.stem / f"pred_{tag}"
            predictor = IterativePredictor(folder, dataclasses.replace(settings, coverage=COVERAGE,
                                                                       lesion_masks=raw_dir / LABELS_TR))
            predictor.predict_folder(inputs, pred)
            results[model_file.stem][name] = evaluate(pred, raw_dir, args.work / model_file.stem / f"report_{tag}",
                                                      frequency, n_in)
        results_path.write_text(json.dumps(results, indent=1))
        print(f"{model_file.stem}: done", flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
