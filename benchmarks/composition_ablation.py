"""Every ``--compose`` mode from one synthesis: per model and case the network runs once, its plan-grid output is
put on the case's grid with each mode, and each mode's folder is scored like the cross-site benchmark's network
row (last-phase PSNR, SSIM, sharpness, lesion enhancement error, SCC, curve-type accuracy; native resolution).

Synthesized phases are cached under <workdir>/<model>/synthesized, so a rerun with other modes skips the
network. Separates what the composition does from what the network does, at a fraction of the cost of one cross-site
evaluation per mode. With ``--prior-only`` the network's output is replaced by the model's kinetic prior on the
plan grid (a zero change from it; nothing cached): ``prior`` is then the prior on each case's own grid and ``plan``
the prior sent through the plan grid and back, what the resampling alone does to the lesions.

    python -m benchmarks.composition_ablation --models cs_native/models --test-dir cs_eval_D/raw/Dataset903_SiteD \
        --inputs cs_eval_D/test_inputs --workdir ablation_D [--modes prior last plan] [--cases 24]
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.cross_site_data import import_model
from benchmarks.cross_site_table import row_values
from benchmarks.gain_composition import gain_phases, parse_gain_mode
from iterdce.core.folder_names import IMAGES_TR, LABELS_TR
from iterdce.inference.case_pipeline import prepare_case
from iterdce.inference.composition import COMPOSE_MODES, native_phases, resolve_composition
from iterdce.inference.export import write_phases
from iterdce.inference.inputs import discover_inputs
from iterdce.inference.predictor import IterativePredictor, PredictionSettings
from iterdce.network.precision import PRECISIONS

COLUMNS = ("psnr_last", "ssim_last", "sharpness_last", "ee_last", "scc", "type_acc")


def compose_model(model_file: Path, args: argparse.Namespace) -> dict[str, dict[str, float | None]]:
    """One exported model (``<name>.pth`` + ``<name>.plans.json``): synthesize each case once, write every mode's
    composition, score every mode; returns {mode: row}."""
    from iterdce.evaluation.folders import evaluate_folders

    work = args.workdir / model_file.stem
    folder = import_model(model_file, work / "RecursiveTrainer__plans")
    predictor = IterativePredictor(folder, PredictionSettings(folds=["all"], device="cpu", progress=False,
                                                              precision=args.precision))
    compositions = {m: resolve_composition(m, predictor.composition.priors) for m in args.modes
                    if not m.startswith("gain")}
    gains = {m: parse_gain_mode(m) for m in args.modes if m.startswith("gain")}
    priors = resolve_composition("prior", predictor.composition.priors)
    cases, problems = discover_inputs(args.inputs, predictor.input_phases)
    if problems:
        raise SystemExit("\n".join(problems))
    first_target = len(predictor.input_phases)
    for case_id in sorted(cases)[:args.cases]:
        start = time.perf_counter()
        files = cases[case_id]
        prepared = prepare_case(files, predictor.case_times(files), predictor.plans)
        cached = work / "synthesized" / f"{case_id}.npy"
        if args.prior_only:
            synthesized = priors.base(prepared.data, prepared.times_s, prepared.properties.target_spacing)
        elif cached.exists():
            synthesized = np.load(cached)
        else:
            synthesized = predictor.synthesize_normalized(prepared.data, prepared.times_s)
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.save(cached, synthesized)
        for mode in args.modes:
            if mode in gains:
                native = gain_phases(synthesized, prepared.data, prepared.image, prepared.times_s,
                                     prepared.properties, priors, *gains[mode])
            else:
                native = native_phases(synthesized, prepared.data, prepared.image, prepared.times_s,
                                       prepared.properties, compositions[mode])
            out = work / mode
            out.mkdir(parents=True, exist_ok=True)
            write_phases(native, prepared.geometry, out, case_id, range(first_target, first_target + len(native)))
        print(f"{model_file.stem} {case_id}: {time.perf_counter() - start:.1f} s", flush=True)
    rows = {}
    for mode in args.modes:
        summary = evaluate_folders(work / mode, args.test_dir / IMAGES_TR, work / f"report_{mode}",
                                   args.test_dir / LABELS_TR, progress=False, methods=("iterdce",))
        rows[mode] = row_values(summary)["iterdce"]
    return rows


def mode_name(text: str) -> str:
    """A ``--modes`` entry: a composition mode other than ``auto`` or ``gain-<eps>-<sigma>``."""
    if text in COMPOSE_MODES and text != "auto" or re.fullmatch(r"gain-[0-9.]+-[0-9.]+", text):
        return text
    raise argparse.ArgumentTypeError(f"unknown mode {text!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, required=True, help="folder of exported <variant>_seed<k>.pth models")
    parser.add_argument("--test-dir", type=Path, required=True, help="the held-out site's raw dataset (the truth)")
    parser.add_argument("--inputs", type=Path, required=True, help="the held-out site's input phases")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--modes", nargs="+", default=["prior", "last", "plan"], type=mode_name,
                        help=f"{', '.join(m for m in COMPOSE_MODES if m != 'auto')}, or the experimental "
                             "gain-<eps>-<sigma> (benchmarks/gain_composition.py)")
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--prior-only", action="store_true",
                        help="compose the kinetic prior instead of the network's output (use another --workdir)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    args = parser.parse_args()
    results: dict[str, dict[str, dict[str, float | None]]] = {}
    for model_file in sorted(args.models.glob("*_seed*.pth")):
        results[model_file.stem] = compose_model(model_file, args)
        (args.workdir / "results.json").write_text(json.dumps(results, indent=1))
    print("mode | " + " | ".join(COLUMNS))
    for mode in args.modes:
        cells = []
        for column in COLUMNS:
            values = [v for r in results.values() if (v := r[mode][column]) is not None]
            spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.3f}{spread}" if values else "-")
        print(f"{mode} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
