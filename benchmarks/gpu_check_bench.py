"""The benchmark sections of ``gpu_check.py`` (a predict and a train step timed at a plan's real sizes, or toy
sizes with ``--dry-run``), kept apart from the pass/fail checks of gpu_check_sections.py."""
from __future__ import annotations

import statistics
import time

import torch

from benchmarks.common import synchronize
from benchmarks.gpu_check_fixtures import (
    Context,
    cudnn_flags,
    make_plan,
    make_trainer,
    peak_bytes,
    synthetic_batch,
)

MiB = 2**20


def _benchmark_model(ctx: Context, plans: dict) -> torch.nn.Module:
    from iterdce.network.config import ModelConfig
    from iterdce.network.synthesizer import build_synthesizer

    torch.manual_seed(0)
    model = build_synthesizer(ModelConfig.from_plan("iterative", plans["network"], plans["input_phases"],
                                           plans["max_phases"]))
    with torch.no_grad():
        torch.nn.init.normal_(model.net.final_conv.weight, std=0.1)
    return model.to(ctx.device).eval()


def _time(ctx: Context, run) -> tuple[float, int, torch.Tensor]:
    synchronize(ctx.device)
    start = time.perf_counter()
    output, peak = peak_bytes(ctx, run)
    synchronize(ctx.device)
    return time.perf_counter() - start, peak, output


def bench_predict(ctx: Context) -> str:
    """iterdce vs MONAI (when installed) vs the bare forward passes, default plan's network and patch."""
    import importlib.util

    from benchmarks import bench_predict as bp
    from iterdce.inference.sliding_window import tile_grid

    plans = make_plan("default", ctx.dry_run)
    patch = [int(p) for p in plans["patch_size"]]
    shape = [32, 32, 16] if ctx.dry_run else [256, 256, 96]
    steps = len(plans["target_times_s"])
    tile_batch, repeats = (2, 1) if ctx.dry_run else (4, 3)
    model = _benchmark_model(ctx, plans)
    inputs, times = bp.make_inputs(shape, steps, ctx.device)
    methods = {"iterdce": bp.run_iterdce, "network": bp.run_forward_only}
    if importlib.util.find_spec("monai") is not None:
        methods["MONAI"] = bp.run_monai
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    peaks, outputs = {}, {}
    with cudnn_flags(benchmark=True, deterministic=False):
        for run in methods.values():  # warm-up: cuDNN autotuning and allocations, not timed
            run(model, inputs, times, patch, steps, tile_batch)
        for _ in range(repeats):
            for name, run in methods.items():  # alternating, so a change in load hits every method
                elapsed, peaks[name], outputs[name] = _time(
                    ctx, lambda run=run: run(model, inputs, times, patch, steps, tile_batch))
                seconds[name].append(elapsed)
    median = {m: statistics.median(v) for m, v in seconds.items()}
    n_tiles = len(tile_grid(shape, patch, 0.5))
    parts = [f"{'x'.join(map(str, shape))}, patch {'x'.join(map(str, patch))}, {n_tiles} tiles, batch {tile_batch}, "
             f"features {plans['network']['features_per_stage']}, {steps} steps, median of {repeats}:"]
    parts += [f"{m} {median[m]:.3f} s (+{peaks[m] / MiB:.0f} MiB)" for m in methods]
    if "MONAI" in methods:
        difference = float((outputs["iterdce"].float() - outputs["MONAI"].float().to(ctx.device)).abs().max())
        parts.append(f"iterdce/MONAI {median['iterdce'] / median['MONAI']:.3f}, max |difference| {difference:.1e}")
    else:
        parts.append("MONAI not installed")
    return " ".join(parts[:1]) + " " + "; ".join(parts[1:])


def bench_train(ctx: Context) -> str:
    """Seconds per training step of both stages with the default plan's network, patch and batch (bf16 on CUDA)."""
    from torch.utils.flop_counter import FlopCounterMode

    from iterdce.network.med3d import ResNet10
    from iterdce.training.trainer_recursive import RecursiveTrainer, WarmupTrainer

    plans = make_plan("default", ctx.dry_run)
    # the perceptual term as in real training: a Med3D ResNet-10 (random weights cost what the released ones do)
    med3d = ctx.work / "med3d_random.pth"
    torch.manual_seed(0)
    torch.save(ResNet10().state_dict(), med3d)
    plans["perceptual"] = {**plans["perceptual"], "med3d_weights": str(med3d)}
    warmup_steps, timed = (0, 1) if ctx.dry_run else (3, 15)
    parts = [f"patch {'x'.join(map(str, plans['patch_size']))} x batch {plans['batch_size']}, features "
             f"{plans['network']['features_per_stage']}:"]
    with cudnn_flags(benchmark=True, deterministic=False):
        for trainer_class in (WarmupTrainer,) if ctx.dry_run else (WarmupTrainer, RecursiveTrainer):
            trainer = make_trainer(ctx, trainer_class, plans, "results_bench")
            batches = [synthetic_batch(plans, ctx.device, seed=k) for k in range(2)]
            with torch.no_grad(), trainer.autocast, FlopCounterMode(display=False) as counter:
                trainer.unroll(trainer.model, batches[0])
            trainer.model.train()
            for k in range(warmup_steps):
                trainer.train_step(trainer.model, batches[k % 2])

            def steps(trainer=trainer, batches=batches) -> torch.Tensor:
                return torch.stack([trainer.train_step(trainer.model, batches[k % 2]) for k in range(timed)])

            elapsed, _, losses = _time(ctx, steps)
            if not torch.isfinite(losses).all():
                raise FloatingPointError(f"{trainer.name}: non-finite loss")
            per_step = elapsed / timed
            tflops = 3 * counter.get_total_flops() / per_step / 1e12
            peak = f", peak {torch.cuda.max_memory_allocated(ctx.device) / 2**30:.2f} GiB" if ctx.cuda else ""
            parts.append(f"{trainer.name} {per_step:.3f} s/step ({tflops:.2f} TFLOP/s{peak})")
            perceptual = trainer.loss.perceptual_enabled
            del trainer, batches
    parts[0] += f" perceptual loss {'on' if perceptual else 'OFF'},"
    return " ".join(parts[:1]) + " " + "; ".join(parts[1:])
