"""The sections of ``gpu_check.py``: each takes the run's ``Context`` and returns its result line (or
(status, line)); it raises on failure and ``Skip`` where it does not apply. Sizes shrink with ``--dry-run``."""
from __future__ import annotations

import json
import os
import socket
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from benchmarks.gpu_check_bench import bench_predict, bench_train
from benchmarks.gpu_check_fixtures import (
    Context,
    Skip,
    count_syncs,
    cudnn_flags,
    make_plan,
    make_trainer,
    model_folder,
    parameters_vector,
    peak_bytes,
    prepare_dataset,
    synthetic_batch,
)
from iterdce.core.file_names import CHECKPOINT_FINAL, CHECKPOINT_LATEST
from iterdce.core.folder_names import fold_folder

MiB = 2**20


def environment(ctx: Context) -> str:
    import importlib.util

    parts = [f"torch {torch.__version__}", f"{torch.get_num_threads()} CPU threads"]
    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        parts += [f"{props.name}, {props.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} GPU(s)",
                  f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}",
                  f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'NO'}"]
    parts.append(f"monai {'yes' if importlib.util.find_spec('monai') else 'no'}")
    parts.append(f"placeholders: {', '.join(ctx.placeholders) or 'none'}")
    return "; ".join(parts)


def _train_steps(trainer, model, batches: list[dict]) -> tuple[list[float], list[str]]:
    """The trainer's own ``train_step`` over ``batches``; losses read once, after the loop."""
    with count_syncs(trainer.device) as syncs:
        losses = [trainer.train_step(model, batch) for batch in batches]
    values = torch.stack(losses).float().cpu().tolist()
    if not all(np.isfinite(values)):
        raise FloatingPointError(f"non-finite training loss {values}")
    return values, syncs


def _stage(ctx: Context, name: str) -> tuple[str, str]:
    from iterdce.core.checkpoint import load_checkpoint
    from iterdce.training.trainer_recursive import RecursiveTrainer, WarmupTrainer

    plans = make_plan("tiny", ctx.dry_run)
    trainer = make_trainer(ctx, WarmupTrainer if name == "warmup" else RecursiveTrainer, plans, "results")
    note = ""
    if name == "recursive":
        if "warmup_folder" not in ctx.state:
            raise RuntimeError("needs the warm-up section's checkpoint, which it did not write")
        trainer.initial_weights()  # loads the warm-up stage's checkpoint_final.pth
        saved = load_checkpoint(fold_folder(ctx.state["warmup_folder"], 0) / CHECKPOINT_FINAL)["network_state"]
        same = all(torch.equal(v.cpu(), saved[k].cpu()) for k, v in trainer.model.state_dict().items())
        if not same:
            raise AssertionError("weights after initial_weights() differ from the warm-up checkpoint")
        note = "started from the warm-up checkpoint; "
    batches = [synthetic_batch(plans, ctx.device, seed=k) for k in range(4)]
    conv_dtypes: set[torch.dtype] = set()  # the output adds the fp32 input phase, so look at the convolutions
    hooks = [m.register_forward_hook(lambda _m, _i, out: conv_dtypes.add(out.dtype))
             for m in trainer.model.modules() if isinstance(m, torch.nn.Conv3d)]
    with torch.no_grad(), trainer.autocast:
        trainer.unroll(trainer.model, batches[0])
    for hook in hooks:
        hook.remove()
    dtype = "/".join(sorted(str(d).replace("torch.", "") for d in conv_dtypes))
    if ctx.cuda and conv_dtypes != {torch.bfloat16}:
        raise AssertionError(f"convolutions under the trainer's autocast ran in {dtype}, expected bfloat16")
    before = parameters_vector(trainer.model)
    trainer.model.train()
    losses, syncs = _train_steps(trainer, trainer.model, batches)
    if torch.equal(before, parameters_vector(trainer.model)):
        raise AssertionError("the weights did not change")
    trainer.output.mkdir(parents=True, exist_ok=True)
    trainer.copy_plans()
    trainer.epoch = trainer.total_epochs
    trainer.save(CHECKPOINT_FINAL)
    ctx.state[f"{name}_folder"] = trainer.output.parent
    result = (f"{note}{len(batches)} steps, patch {plans['patch_size']} x {plans['batch_size']}, convs in {dtype}, "
              f"loss {losses[0]:.4f} -> {losses[-1]:.4f}, host syncs in the step loop: {len(syncs)}"
              + (f" (first: {syncs[0][:80]})" if syncs else ""))
    return ("WARN" if syncs else "PASS"), result


def train_warmup(ctx: Context) -> tuple[str, str]:
    return _stage(ctx, "warmup")


def train_recursive(ctx: Context) -> tuple[str, str]:
    return _stage(ctx, "recursive")


def resume(ctx: Context) -> tuple[str, str]:
    """2 steps, checkpoint, 2 more steps; a fresh trainer resumed from the checkpoint repeats the last 2."""
    from iterdce.training.trainer_recursive import WarmupTrainer

    plans = make_plan("tiny", ctx.dry_run)
    batches = [synthetic_batch(plans, ctx.device, seed=10 + k) for k in range(4)]
    with cudnn_flags(benchmark=False, deterministic=True):
        first = make_trainer(ctx, WarmupTrainer, plans, "results_resume")
        first.model.train()
        _train_steps(first, first.model, batches[:2])
        first.epoch = 1
        first.output.mkdir(parents=True, exist_ok=True)
        first.save(CHECKPOINT_LATEST)
        _train_steps(first, first.model, batches[2:])
        second = make_trainer(ctx, WarmupTrainer, plans, "results_resume", resume=True)
        if not second.resume():
            raise AssertionError(f"resume() found no {CHECKPOINT_LATEST}")
        second.model.train()
        _train_steps(second, second.model, batches[2:])
    difference = float((parameters_vector(first.model) - parameters_vector(second.model)).abs().max())
    if difference == 0.0:
        return "PASS", "weights identical after resume + the same 2 steps (cuDNN deterministic)"
    status = "WARN" if difference < 1e-3 else "FAIL"
    return status, f"max |weight difference| after resume + the same 2 steps: {difference:.3e}"


def pinned_loader(ctx: Context) -> str:
    """The trainer's loader with 2 worker processes, pinned memory on CUDA, non-blocking copies."""
    from iterdce.preprocessing.plan_schema import Plans
    from iterdce.training.data_loader import PatchSampler, make_loader

    plans = make_plan("tiny", ctx.dry_run)
    root = prepare_dataset(ctx, plans)
    from iterdce.preprocessing.pipeline import data_folder

    augment = "batchgenerators" not in ctx.placeholders
    sampler = PatchSampler(data_folder(root, plans["plans_name"]), ["case_000", "case_001"], plans["patch_size"],
                           plans["batch_size"], Plans.from_dict(plans).augmentation if augment else None,
                           seed=1)
    n = 4 if ctx.dry_run else 16
    loader = make_loader(sampler, 0, n, num_workers=2, pin_memory=ctx.cuda)
    pinned, wait, total = [], 0.0, torch.zeros((), device=ctx.device)
    iterator = iter(loader)
    for _ in range(n):
        tick = time.perf_counter()
        batch = next(iterator)
        wait += time.perf_counter() - tick
        pinned.append(bool(batch["data"].is_pinned()) if ctx.cuda else False)
        total += batch["data"].to(ctx.device, non_blocking=True).float().mean()
    if not torch.isfinite(total):
        raise FloatingPointError("non-finite batch values")
    if ctx.cuda and not all(pinned):
        raise AssertionError(f"{pinned.count(False)} of {n} batches were not in pinned memory")
    return (f"{n} batches by 2 workers, pinned {'yes' if ctx.cuda else 'n/a (CPU)'}, augmentation "
            f"{'on' if augment else 'OFF (batchgenerators not installed)'}, {1000 * wait / n:.1f} ms wait per batch")


def _predictor(ctx: Context, patch: list[int] | None = None):
    from iterdce.inference.predictor import IterativePredictor, PredictionSettings

    plans = make_plan("tiny", ctx.dry_run)
    settings = PredictionSettings(folds=[0], device=str(ctx.device), tile_batch=4, progress=False, tile_size="patch")
    predictor = IterativePredictor(model_folder(ctx, plans), settings)
    if patch is not None:
        predictor.plans = predictor.plans.replace(patch_size=patch)
    torch.manual_seed(0)
    with torch.no_grad():  # a random last layer: outputs that differ when anything in the stitching differs
        torch.nn.init.normal_(predictor.models[0].net.final_conv.weight, std=0.1)
    return predictor


def predict_oom_injected(ctx: Context) -> tuple[str, str]:
    """The first predict_volume call raises OutOfMemoryError; the predictor must retry with CPU stitching."""
    import iterdce.inference.predictor as predictor_module

    predictor = _predictor(ctx)
    shape = [24, 24, 10] if ctx.dry_run else [96, 96, 40]
    inputs = np.stack([np.asarray(p) for p in _inputs(shape)])
    times = np.asarray(predictor.plans.phase_times_s, np.float32)
    reference = predictor.synthesize_normalized(inputs, times)
    original, calls = predictor_module.predict_volume, []

    def faulty(*args, **kwargs):
        calls.append(kwargs.get("stitch_device"))
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (injected by gpu_check)")
        return original(*args, **kwargs)

    predictor_module.predict_volume = faulty
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            output = predictor.synthesize_normalized(inputs, times)
    except torch.OutOfMemoryError:
        if ctx.cuda:
            raise
        return "PASS", "CPU: the injected OutOfMemoryError is re-raised, as documented (no retry off CUDA)"
    finally:
        predictor_module.predict_volume = original
    if not ctx.cuda:
        raise AssertionError("on CPU the out-of-memory error should have been raised")
    messages = [str(w.message) for w in caught if "out of memory" in str(w.message)]
    difference = float(np.abs(output - reference).max())
    if len(calls) != 2 or calls[1] != torch.device("cpu") or not messages or difference > 1e-3:
        raise AssertionError(f"retry calls {calls}, warnings {messages}, max |difference| {difference:.2e}")
    return "PASS", (f"retried with stitching on {calls[1]}, warned '{messages[0][:50]}...', "
                    f"max |output difference| vs no fault {difference:.1e}")


def _inputs(shape: list[int]) -> np.ndarray:
    from benchmarks.gpu_check_fixtures import smooth_phases

    return smooth_phases(shape, 2, seed=7)


def predict_oom_cap(ctx: Context) -> tuple[str, str]:
    """A real CUDA OOM: the per-process memory cap sits between what CPU stitching and GPU stitching need."""
    import iterdce.inference.predictor as predictor_module

    shape, patch = ([32, 32, 16], [16, 16, 8]) if ctx.dry_run else ([384, 384, 128], [64, 64, 32])
    predictor = _predictor(ctx, patch)
    inputs = _inputs(shape)
    times = np.asarray(predictor.plans.phase_times_s, np.float32)
    times_t = torch.from_numpy(times).to(ctx.device)
    n_targets = len(predictor.target_phases)

    def direct(stitch: torch.device | None) -> torch.Tensor:  # what synthesize_normalized runs, input copy included
        return predictor_module.predict_volume(predictor.models, torch.from_numpy(inputs).to(ctx.device), times_t,
                                               patch, n_targets, 4, 0.5, stitch_device=stitch)

    reference, gpu_peak = peak_bytes(ctx, lambda: direct(None))
    reference = reference.cpu().numpy()
    _, cpu_peak = peak_bytes(ctx, lambda: direct(torch.device("cpu")))
    if not ctx.cuda:
        output = predictor.synthesize_normalized(inputs, times)
        difference = float(np.abs(output - reference).max())
        raise Skip(f"CUDA only (memory cap); the CPU path ran, max |difference| {difference:.1e}")
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(ctx.device).total_memory
    cap = torch.cuda.memory_reserved(ctx.device) + (gpu_peak + cpu_peak) // 2
    # the memory-fraction API needs a device index ("cuda" alone is refused)
    index = ctx.device.index if ctx.device.index is not None else torch.cuda.current_device()
    try:
        torch.cuda.set_per_process_memory_fraction(cap / total, index)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            output = predictor.synthesize_normalized(inputs, times)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, index)
        torch.cuda.empty_cache()
    messages = [str(w.message) for w in caught if "out of memory" in str(w.message)]
    difference = float(np.abs(output - reference).max())
    retries = f"{len(messages)} OOM retr{'y' if len(messages) == 1 else 'ies'}"
    result = (f"{'x'.join(map(str, shape))}, cap {cap / MiB:.0f} MiB (GPU stitching needs +{gpu_peak / MiB:.0f}, "
              f"CPU stitching +{cpu_peak / MiB:.0f} MiB): {retries}, max |output difference| vs uncapped "
              f"{difference:.1e}")
    if not messages:
        return "WARN", result + " (the cap did not cause an OOM)"
    return ("PASS" if difference < 5e-2 else "FAIL"), result


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ddp_worker(rank: int, port: int, work: str, device_type: str, dry_run: bool) -> None:
    """One rank: 2 train steps on its own batches through DDP; rank 0 writes the weight spread across ranks."""
    import torch.distributed as dist

    from benchmarks.gpu_check_placeholders import install_placeholders

    placeholders = install_placeholders()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from torch.nn.parallel import DistributedDataParallel

    from iterdce.training.distributed import shutdown
    from iterdce.training.trainer_recursive import WarmupTrainer

    ctx = Context(device=torch.device(device_type), dry_run=dry_run, work=Path(work), placeholders=placeholders)
    plans = make_plan("tiny", dry_run)
    trainer = make_trainer(ctx, WarmupTrainer, plans, f"results_ddp_{rank}", device=device_type)
    device = trainer.device
    model = DistributedDataParallel(trainer.model, device_ids=[device.index] if device.type == "cuda" else None)
    model.train()
    batches = [synthetic_batch(plans, device, seed=100 * rank + k) for k in range(2)]
    losses = torch.stack([trainer.train_step(model, b) for b in batches])
    weights = parameters_vector(trainer.model)
    reference = weights.clone()
    dist.broadcast(reference, 0)
    spread = (weights - reference).abs().max()
    dist.all_reduce(spread, op=dist.ReduceOp.MAX)
    if rank == 0:
        Path(work, "ddp.json").write_text(json.dumps({"spread": float(spread), "losses": losses.tolist(),
                                                      "backend": dist.get_backend()}))
    dist.barrier()  # no rank tears gloo down while the other still talks to it (a SIGABRT race at exit)
    shutdown(trainer.context)


def ddp(ctx: Context) -> tuple[str, str]:
    import torch.multiprocessing as mp

    if ctx.cuda and torch.cuda.device_count() < 2:
        raise Skip(f"needs 2 GPUs, found {torch.cuda.device_count()}")
    if not ctx.cuda and not ctx.dry_run:
        raise Skip("CPU: covered by tests/test_ddp.py (gloo)")
    prepare_dataset(ctx, make_plan("tiny", ctx.dry_run))
    (ctx.work / "ddp.json").unlink(missing_ok=True)
    processes = mp.start_processes(ddp_worker, args=(free_port(), str(ctx.work), ctx.device.type, ctx.dry_run),
                                   nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + 120
    while not processes.join(timeout=1):
        if time.monotonic() > deadline:
            for process in processes.processes:
                process.kill()
            raise TimeoutError("the 2 DDP ranks did not finish within 120 s")
    result = json.loads((ctx.work / "ddp.json").read_text())
    line = (f"2 ranks ({result['backend']}), 2 steps on different batches, rank 0 losses "
            f"{', '.join(f'{v:.4f}' for v in result['losses'])}, max weight spread across ranks {result['spread']:.1e}")
    return ("PASS" if result["spread"] == 0.0 else "FAIL"), line


SECTIONS = [
    ("environment", environment),
    ("train warm-up (bf16)", train_warmup),
    ("train recursive (bf16)", train_recursive),
    ("checkpoint resume", resume),
    ("pinned loader", pinned_loader),
    ("predict OOM (injected)", predict_oom_injected),
    ("predict OOM (memory cap)", predict_oom_cap),
    ("DDP 2 processes", ddp),
    ("bench predict", bench_predict),
    ("bench train", bench_train),
]
