"""A/B timings of inference variants on one volume, interleaved in one process: speed and output difference.

By default the network is a ``tiny``-plan-sized one (features 8-16-32, patch 32 x 32 x 16, time embedding 16)
with random weights and a random last layer on a 160 x 128 x 48 volume of smooth noise. With ``--model-folder``
and ``--case`` it is a trained model (fold 0, its plan's patch) on a preprocessed case, and each variant's mean
absolute error against the case's real delayed phases is reported too: that is the quality check that matters,
since a random network reacts to tile-wise InstanceNorm statistics far more than a trained one does.
Every variant runs ``--repeats`` times, the variants alternating, so a change in the machine's load hits all of
them; reported are the median wall time, the median CPU time of this process (steadier on a shared machine)
and the max / mean absolute difference of the output from the first variant (normally ``baseline``).

Variants (``--variants``):
- ``baseline``: ``predict_volume`` with the time embedding recomputed on every forward (the model is wrapped so
  ``bind_times`` cannot precompute it: what predict_volume did before the embedding was cached);
- ``time-cache``: ``predict_volume`` as it is (embedding once per volume);
- ``tile-<X>x<Y>x<Z>``: tiles of that size instead of the training patch;
- ``step-<f>``: step fraction f (0.5 = half-tile overlap, the default);
- ``threads-<n>``: ``torch.set_num_threads(n)`` for that run only;
- ``channels-last``: inputs and weights in ``torch.channels_last_3d``;
- ``compile``: ``torch.compile`` of the model (falls back with a note if it fails).

    python -m benchmarks.bench_inference_ab --variants baseline time-cache --repeats 3
    python -m benchmarks.bench_inference_ab \
        --model-folder results/Dataset001_Phantom/RecursiveTrainer__plans \
        --case preprocessed/Dataset001_Phantom/plans_data/case_0011.npz --variants baseline tile-48x48x40 step-0.75
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from benchmarks.common import benchmark_network
from iterdce.inference.tiled import predict_volume
from iterdce.network.config import ModelConfig
from iterdce.network.synthesizer import build_synthesizer

TIMES_S = [0.0, 85.0, 155.0, 225.0, 295.0, 365.0]
PATCH = [32, 32, 16]


class PerCallEmbedding(nn.Module):
    """The model without ``time_biases``: predict_volume then embeds the times on every forward, as it used to."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: Tensor, times_s: Tensor) -> Tensor:
        return self.model(inputs, times_s)


def tiny_model(features: list[int]) -> nn.Module:
    torch.manual_seed(0)
    model = build_synthesizer(ModelConfig.from_plan("iterative", benchmark_network(features), [0, 1], len(TIMES_S)))
    with torch.no_grad():
        torch.nn.init.normal_(model.net.final_conv.weight, std=0.1)
    return model.eval()


def smooth_inputs(shape: list[int]) -> Tensor:
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(1, 2, *shape, generator=generator)
    return torch.nn.functional.avg_pool3d(noise, 5, stride=1, padding=2, count_include_pad=False)[0]


def trained_case(model_folder: Path, case: Path) -> tuple[nn.Module, list[int], Tensor, Tensor, Tensor]:
    """(fold-0 model, training patch, input phases, times, true target phases) from a model folder and a
    preprocessed case (``<case>.npz`` + ``<case>.json`` from iterdce_plan_and_preprocess)."""
    import numpy as np

    from iterdce.inference.model_loading import load_fold_models
    from iterdce.preprocessing.plans_io import load_plans

    plans = load_plans(model_folder / "plans.json")
    models, _, _ = load_fold_models(model_folder, [0], "final", "cpu")
    with np.load(case, allow_pickle=False) as npz:
        data = torch.from_numpy(npz["data"].astype(np.float32))
    times = torch.tensor(json.loads(case.with_suffix(".json").read_text())["phase_times_s"], dtype=torch.float32)
    n_in = len(plans["input_phases"])
    return models[0].eval(), list(plans["patch_size"]), data[:n_in], times, data[n_in:]


def make_variant(name: str, model: nn.Module, tile_batch: int, patch: list[int], n_targets: int
                 ) -> Callable[[Tensor, Tensor], Tensor]:
    """``(inputs, times) -> synthesized phases`` for a variant name (see the module docstring)."""
    training_patch = patch

    def run(m: nn.Module, patch: list[int] = training_patch, step: float = 0.5, prepare=lambda x: x):
        return lambda inputs, times: predict_volume([m], prepare(inputs), times, patch, n_targets, tile_batch, step)

    if name == "baseline":
        return run(PerCallEmbedding(model))
    if name == "time-cache":
        return run(model)
    if name.startswith("tile-"):
        return run(model, patch=[int(v) for v in name[5:].split("x")])
    if name.startswith("step-"):
        return run(model, step=float(name[5:]))
    if name.startswith("threads-"):
        inner = run(model)

        def threaded(inputs: Tensor, times: Tensor) -> Tensor:
            before = torch.get_num_threads()
            torch.set_num_threads(int(name[8:]))
            try:
                return inner(inputs, times)
            finally:
                torch.set_num_threads(before)
        return threaded
    if name == "channels-last":
        import copy

        last = copy.deepcopy(model).to(memory_format=torch.channels_last_3d)
        return run(last, prepare=lambda x: x)
    if name == "compile":
        compiled = torch.compile(model, dynamic=False)
        return run(compiled)
    raise SystemExit(f"unknown variant {name!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["baseline", "time-cache"])
    parser.add_argument("--shape", type=int, nargs=3, default=[160, 128, 48])
    parser.add_argument("--features", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--tile-batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--model-folder", type=Path, help="a trained model folder (<Trainer>__<plans>, fold 0) "
                        "instead of the random tiny network; needs --case")
    parser.add_argument("--case", type=Path, help="a preprocessed case (.npz) to predict; its delayed phases are "
                        "the truth the mean absolute error is measured against")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    truth = None
    if args.model_folder:
        model, patch, inputs, times, truth = trained_case(args.model_folder, args.case)
    else:
        model, patch = tiny_model(args.features), PATCH
        inputs, times = smooth_inputs(args.shape), torch.tensor(TIMES_S)
    n_targets = len(times) - inputs.shape[0]
    variants = {name: make_variant(name, model, args.tile_batch, patch, n_targets) for name in args.variants}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, Tensor] = {}
    for name, run in variants.items():
        if name == "compile":  # compilation is not timed
            run(inputs, times)
    for _ in range(args.repeats):
        for name, run in variants.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            outputs[name] = run(inputs, times)
            seconds[name].append(time.perf_counter() - start)
            cpu_seconds[name].append(time.process_time() - cpu_start)
    reference = outputs.get("baseline", next(iter(outputs.values())))
    print(f"volume {list(inputs.shape[1:])}, patch {patch}, "
          f"{'model ' + str(args.model_folder) if args.model_folder else f'features {args.features}'}, "
          f"tile batch {args.tile_batch}, {args.threads} threads, "
          f"{args.repeats} interleaved repeats; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    first = next(iter(seconds))
    base, cpu_base = statistics.median(seconds[first]), statistics.median(cpu_seconds[first])
    scale = float(reference.std())
    print(f"  times: median wall and median process CPU seconds; ratios to {first}; output std {scale:.3f}")
    results = []
    for name in variants:
        median, cpu = statistics.median(seconds[name]), statistics.median(cpu_seconds[name])
        difference = outputs[name] - reference
        result = {"variant": name, "median_s": median, "median_cpu_s": cpu, "all_s": seconds[name],
                  "max_abs_diff": float(difference.abs().max()), "mean_abs_diff": float(difference.abs().mean()),
                  "output_std": scale}
        if truth is not None:
            result["mae_vs_truth"] = float((outputs[name] - truth).abs().mean())
        results.append(result)
        print(f"  {name:16s} wall {median:7.2f} s ({median / base:5.2f}x)  CPU {cpu:7.2f} s ({cpu / cpu_base:5.2f}x)  "
              f"max |diff| {result['max_abs_diff']:.2e}  mean |diff| {result['mean_abs_diff']:.2e}"
              + (f"  MAE vs truth {result['mae_vs_truth']:.4f}" if truth is not None else ""))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
