"""What native-resolution composition costs: per case, the network's synthesis once, then putting its output on
the case's grid with every ``--compose`` mode (alternating, ``--repeats`` times each), in one process.

The end-to-end ratio is (read + preprocess + synthesize + compose + write) with each mode over the same with
``plan`` (the export before native composition); read, preprocess and write are timed once per case.

    python -m benchmarks.bench_composition --input early24/ --pretrained phantom_all_sites [--cases 24]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from iterdce.inference.case_pipeline import prepare_case
from iterdce.inference.composition import COMPOSE_MODES, native_phases, resolve_composition
from iterdce.inference.export import write_phases
from iterdce.inference.inputs import discover_inputs
from iterdce.inference.predictor import IterativePredictor, PredictionSettings
from iterdce.network.precision import PRECISIONS
from iterdce.pretrained import PRETRAINED_MODELS, pretrained_model_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True, help="folder of <case>_0000/_0001.nii.gz inputs")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pretrained", choices=list(PRETRAINED_MODELS))
    source.add_argument("--model", type=Path, help="a model folder with fold_all (or fold_0)")
    parser.add_argument("--fold", default="all")
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tile-size", nargs="+", default=["patch"])
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    args = parser.parse_args()
    folder = pretrained_model_folder(args.pretrained) if args.pretrained else args.model
    tile = args.tile_size[0] if len(args.tile_size) == 1 else [int(v) for v in args.tile_size]
    predictor = IterativePredictor(folder, PredictionSettings(folds=[args.fold], device="cpu", progress=False,
                                                              tile_size=tile, precision=args.precision))
    modes = [m for m in COMPOSE_MODES if m != "auto" and (m != "prior" or predictor.composition.priors)]
    compositions = {m: resolve_composition(m, predictor.composition.priors) for m in modes}
    cases, problems = discover_inputs(args.input, predictor.input_phases)
    if problems:
        raise SystemExit("\n".join(problems))
    seconds: dict[str, list[float]] = {"prepare": [], "synthesize": [], "write": [],
                                       **{f"compose_{m}": [] for m in modes}}
    with tempfile.TemporaryDirectory() as scratch:
        for case_id in sorted(cases)[:args.cases]:
            files = cases[case_id]
            start = time.perf_counter()
            prepared = prepare_case(files, predictor.case_times(files), predictor.plans)
            seconds["prepare"].append(time.perf_counter() - start)
            start = time.perf_counter()
            synthesized = predictor.synthesize_normalized(prepared.data, prepared.times_s)
            seconds["synthesize"].append(time.perf_counter() - start)
            per_mode: dict[str, list[float]] = {m: [] for m in modes}
            for _ in range(args.repeats):
                for mode in modes:
                    start = time.perf_counter()
                    native = native_phases(synthesized, prepared.data, prepared.image, prepared.times_s,
                                           prepared.properties, compositions[mode])
                    per_mode[mode].append(time.perf_counter() - start)
            for mode in modes:
                seconds[f"compose_{mode}"].append(statistics.median(per_mode[mode]))
            start = time.perf_counter()
            write_phases(native, prepared.geometry, Path(scratch), case_id, range(2, 2 + len(native)))
            seconds["write"].append(time.perf_counter() - start)
            print(f"{case_id}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in seconds.items()), flush=True)
    means = {k: statistics.mean(v) for k, v in seconds.items()}
    common = means["prepare"] + means["synthesize"] + means["write"]
    print(f"\n{len(seconds['prepare'])} cases, mean seconds per case: "
          + ", ".join(f"{k} {v:.3f}" for k, v in means.items()))
    for mode in modes:
        ratio = (common + means[f"compose_{mode}"]) / (common + means["compose_plan"])
        print(f"end to end per case with --compose {mode}: {common + means[f'compose_{mode}']:.2f} s "
              f"({ratio:.3f}x plan)")


if __name__ == "__main__":
    main()
