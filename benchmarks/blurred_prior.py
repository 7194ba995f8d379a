"""The kinetic prior alone, once on each case's own grid and once sent through the plan grid and back (the former
export's resampling), scored like the cross-site network row: how much of a lesion-error difference between the
native composition and the former export is the resampling's blur rather than the network.

    python -m benchmarks.blurred_prior --model gain_D/preset_bf16_seed0/RecursiveTrainer__plans \
        --inputs cs_eval_D/test_inputs --test-dir cs_eval_D/raw/Dataset903_SiteD --workdir blurred_prior_D
"""
from __future__ import annotations

import argparse
from pathlib import Path

from iterdce.core.folder_names import IMAGES_TR, LABELS_TR
from iterdce.evaluation.folders import evaluate_folders
from iterdce.inference.case_pipeline import prepare_case
from iterdce.inference.composition import native_phases, resolve_composition
from iterdce.inference.export import write_phases
from iterdce.inference.inputs import discover_inputs
from iterdce.inference.predictor import IterativePredictor, PredictionSettings

MODES = {"native_prior": "prior", "blurred_prior": "plan"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a model folder with a kinetic prior (fold all)")
    parser.add_argument("--inputs", type=Path, required=True, help="the held-out site's input phases")
    parser.add_argument("--test-dir", type=Path, required=True, help="the held-out site's raw dataset (the truth)")
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args()
    predictor = IterativePredictor(args.model, PredictionSettings(folds=["all"], device="cpu", progress=False))
    prior = resolve_composition("prior", predictor.composition.priors)
    cases, problems = discover_inputs(args.inputs, predictor.input_phases)
    if problems:
        raise SystemExit("\n".join(problems))
    first_target = len(predictor.input_phases)
    for case_id in sorted(cases):
        files = cases[case_id]
        prepared = prepare_case(files, predictor.case_times(files), predictor.plans)
        plan_prior = prior.base(prepared.data, prepared.times_s, prepared.properties.target_spacing)
        for name, mode in MODES.items():  # the plan-grid prior as the "synthesized" phases: zero change from it
            native = native_phases(plan_prior, prepared.data, prepared.image, prepared.times_s, prepared.properties,
                                   resolve_composition(mode, predictor.composition.priors))
            (args.workdir / name).mkdir(parents=True, exist_ok=True)
            write_phases(native, prepared.geometry, args.workdir / name, case_id,
                         range(first_target, first_target + len(native)))
        print(case_id, flush=True)
    for name in MODES:
        evaluate_folders(args.workdir / name, args.test_dir / IMAGES_TR, args.workdir / f"report_{name}",
                         args.test_dir / LABELS_TR, progress=False, methods=("iterdce",))


if __name__ == "__main__":
    main()
