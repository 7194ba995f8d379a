"""Training-speed benchmark: seconds per iteration, time spent waiting for data, and achieved GFLOP/s.

For each plan preset (``tiny``, ``default``) a phantom dataset is planned and preprocessed, a WarmupTrainer is
built exactly as ``iterdce_train`` builds it, and ``iterations`` optimizer steps are timed with the trainer's
own ``train_step`` on batches from the trainer's own loader. Reported per preset:

- s/iteration: median wall time per step, data loading included (the mean is in the JSON; the loader's
  first batch, which includes worker start-up, is timed separately and excluded);
- data wait: time blocked in ``next(loader)`` divided by the total;
- GFLOP/s: forward FLOPs of the unrolled synthesizer (torch.utils.flop_counter, convolutions and matmuls)
  x 3 for forward + backward, per second; the loss is not counted. Compared with a float32 2048x2048 matmul
  measured in the same run (and a bf16 one where training runs under bf16 autocast: ``--precision``, whose
  ``auto`` picks bf16 on CUDA and on CPUs with AMX bf16 units, as ``iterdce_train``).

The default plan is sized for a GPU; on CPU its patch is scaled down (``--default-patch-scale``, 0.5 per axis
unless given) and only a few iterations run. Every number printed says which patch and device it used.

    python -m benchmarks.bench_train                       # both presets, phantom in ./bench_train_work
    python -m benchmarks.bench_train --presets tiny --iterations 20 --json results.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import matmul_gflops, synchronize
from iterdce.network.precision import PRECISIONS, resolve_precision
from iterdce.preprocessing.pipeline import plan_and_preprocess
from iterdce.training.data_loader import PatchSampler, make_loader
from iterdce.training.run_config import TrainingSetup
from iterdce.training.trainer_recursive import WarmupTrainer

DATASET = "Dataset001_Phantom"


def make_phantom(work: Path, cases: int, shape: list[int]) -> Path:
    """The raw phantom dataset (iterdce.simulation when present, else the test helper's synthetic cases)."""
    raw = work / "raw" / DATASET
    if (raw / "dataset.json").is_file():
        return raw
    try:
        from iterdce.simulation import simulate_dataset
    except ImportError:
        from tests.helpers import make_raw_dataset

        return make_raw_dataset(work / "raw", n_cases=cases, shape=shape, n_phases=6)
    return simulate_dataset(raw, cases, shape=shape, seed=0, overwrite=True).dataset_dir


def scaled_patch(patch: Sequence[int], pools: Sequence[Sequence[int]], scale: float) -> list[int]:
    """``patch`` x ``scale`` per axis, rounded down to a multiple of the network's total pooling (at least one)."""
    divisor = [1, 1, 1]
    for pool in pools:
        divisor = [d * p for d, p in zip(divisor, pool)]
    return [max(d, int(p * scale) // d * d) for p, d in zip(patch, divisor)]


def forward_flops(trainer: WarmupTrainer, batch: dict[str, torch.Tensor]) -> int:
    """FLOPs of one unrolled forward pass (all steps) on ``batch``."""
    with torch.no_grad(), trainer.autocast, FlopCounterMode(display=False) as counter:
        trainer.unroll(trainer.model, batch)
    return int(counter.get_total_flops())


def bench_preset(raw: Path, work: Path, preset: str, iterations: int, patch_scale: float, device: str,
                 num_workers: int, precision: str = "auto") -> dict:
    """Plan + preprocess ``raw`` with ``preset``, then time ``iterations`` training steps."""
    plans_name = f"plans_{preset}"
    plans = plan_and_preprocess(raw, work / "preprocessed", num_processes=min(4, os.cpu_count() or 1),
                                preset=preset, plans_name=plans_name, progress=False, log=lambda *a: None)
    planned_patch = list(plans.patch_size)
    if patch_scale != 1.0:
        plans = plans.replace(patch_size=scaled_patch(planned_patch, plans.network.pool_per_stage, patch_scale))
    setup = TrainingSetup(work / "preprocessed" / DATASET, work / "results" / DATASET, plans_name, fold=0,
                          epochs=1, iterations_per_epoch=iterations, num_workers=num_workers, device=device,
                          progress=False, plans=plans, precision=precision)
    trainer = WarmupTrainer(setup)
    device_ = trainer.device
    sampler = PatchSampler(setup.data_dir, trainer.train_cases, plans.patch_size, plans.batch_size,
                           plans.augmentation, setup.seed)
    pin = device_.type == "cuda"

    def to_device(batch: dict) -> dict:
        return {k: v.to(device_, non_blocking=True) for k, v in batch.items()}

    warm_batch = to_device(next(iter(make_loader(sampler, 0, 1, 0, pin))))
    flops = forward_flops(trainer, warm_batch)
    trainer.model.train()
    trainer.train_step(trainer.model, warm_batch)  # allocator / kernel warm-up, not timed
    synchronize(device_)

    loader = iter(make_loader(sampler, 1, iterations + 2, num_workers, pin))
    start = time.perf_counter()
    next_batch = next(loader)
    startup_s = time.perf_counter() - start
    wait_s, step_times = 0.0, []
    start = time.perf_counter()
    for step in range(iterations):
        tick = time.perf_counter()
        if step > 0:
            next_batch = next(loader)
        wait_s += time.perf_counter() - tick
        batch = to_device(next_batch)
        loss = trainer.train_step(trainer.model, batch)
        synchronize(device_)
        step_times.append(time.perf_counter() - tick)
    total_s = time.perf_counter() - start
    per_iteration = statistics.median(step_times)  # robust to other processes stealing the CPU now and then
    result = {
        "preset": preset, "device": str(device_), "precision": trainer.precision,
        "torch_threads": torch.get_num_threads(),
        "num_workers": num_workers, "planned_patch": planned_patch, "patch": list(plans.patch_size),
        "batch_size": plans.batch_size, "features": list(plans.network.features_per_stage),
        "unrolled_steps": plans.max_phases - 2, "iterations": iterations,
        "s_per_iteration": per_iteration, "mean_s_per_iteration": total_s / iterations,
        "data_wait_fraction": wait_s / total_s,
        "loader_startup_s": startup_s, "forward_gflop": flops / 1e9,
        "achieved_gflops": 3 * flops / 1e9 / per_iteration, "final_loss": float(loss.item()),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("bench_train_work"), help="scratch folder (kept)")
    parser.add_argument("--presets", nargs="+", default=["tiny", "default"], choices=["tiny", "default"])
    parser.add_argument("--cases", type=int, default=4, help="phantom cases (default 4)")
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 128, 48], help="phantom shape")
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations, tiny plan (default 10)")
    parser.add_argument("--default-iterations", type=int, default=None,
                        help="timed iterations, default plan (default 3 on CPU, 20 on CUDA)")
    parser.add_argument("--default-patch-scale", type=float, default=None,
                        help="scale the default plan's patch per axis (default 0.5 on CPU, 1 on CUDA)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("-nw", "--num-workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="background data workers (default as iterdce_train: min(2, cores))")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help="as iterdce_train (default auto)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device(args.device if args.device != "auto" else ("cuda" if cuda else "cpu"))
    args.work.mkdir(parents=True, exist_ok=True)
    raw = make_phantom(args.work, args.cases, args.shape)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.num_workers} data workers")
    results = []
    for preset in args.presets:
        reference = {"matmul_fp32_gflops": matmul_gflops(device)}  # measured next to each preset's timing
        bf16 = resolve_precision(args.precision, device) == "bf16"
        if bf16:
            reference["matmul_bf16_gflops"] = matmul_gflops(device, torch.bfloat16)
        if preset == "default":
            iterations = args.default_iterations or (20 if cuda else 3)
            scale = args.default_patch_scale if args.default_patch_scale is not None else (1.0 if cuda else 0.5)
        else:
            iterations, scale = args.iterations, 1.0
        r = bench_preset(raw, args.work, preset, iterations, scale, str(device), args.num_workers, args.precision)
        r.update(reference, fraction_of_matmul=r["achieved_gflops"] / reference["matmul_fp32_gflops"])
        results.append(r)
        patch = "x".join(map(str, r["patch"]))
        note = "" if r["patch"] == r["planned_patch"] else f" (plan: {'x'.join(map(str, r['planned_patch']))})"
        print(f"{preset:8s} ({r['precision']}) patch {patch}{note}, batch {r['batch_size']}, features {r['features']}, "
              f"{r['unrolled_steps']} steps, {r['iterations']} it: {r['s_per_iteration']:.3f} s/it "
              f"(mean {r['mean_s_per_iteration']:.3f}), "
              f"data wait {100 * r['data_wait_fraction']:.1f}% (loader start-up {r['loader_startup_s']:.2f} s), "
              f"{r['forward_gflop']:.2f} GFLOP fwd -> {r['achieved_gflops']:.1f} GFLOP/s = "
              f"{100 * r['fraction_of_matmul']:.0f}% of fp32 matmul ({r['matmul_fp32_gflops']:.1f} GFLOP/s"
              + (f", bf16 {r['matmul_bf16_gflops']:.1f}" if bf16 else "") + ")")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
