"""A/B of the SSIM loss's separable Gaussian filter: banded matrix products (iterdce today) against grouped 1D
convolutions (iterdce before 2026-11-27), on the same inputs, alternating.

Checks that both give the same SSIM and gradient, times the loss forward + backward at the `cpu` preset's
training shape (batch 2 x 4 target phases = 8 pairs of 40 x 40 x 32), and, with ``--preprocessed``, whole
warm-up training steps of that folder's plan (bf16 autocast on CPUs that have it, the loss in float32):

  python -m benchmarks.bench_ssim --threads 2 --preprocessed cross_site_work/preprocessed/Dataset899_SitesABC
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from iterdce.core import ssim
from iterdce.losses import synthesis as losses

if TYPE_CHECKING:
    from iterdce.preprocessing.plan_schema import Plans

MATMUL_FILTER = ssim.gaussian_filter


def conv_filter(x: Tensor, kernels: list[Tensor], boundary: ssim.Boundary = "valid") -> Tensor:
    """The earlier implementation: one grouped 1D convolution per axis (the loss's "valid" boundary only)."""
    channels = x.shape[1]
    for axis, k in enumerate(kernels):
        shape = [1, 1, 1]
        shape[axis] = k.numel()
        x = F.conv3d(x, k.reshape(1, 1, *shape).expand(channels, 1, *shape), groups=channels)
    return x


Filter = Callable[[Tensor, list[Tensor], ssim.Boundary], Tensor]
FILTERS: dict[str, Filter] = {"matmul": MATMUL_FILTER, "conv": conv_filter}


def timed(run: Callable[[], object], repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - start) / repeats


def loss_ab(rounds: int, repeats: int) -> dict[str, float]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1, 40, 40, 32, generator=generator, requires_grad=True)
    y = torch.randn(8, 1, 40, 40, 32, generator=generator)
    mask = (torch.rand(x.shape, generator=generator) > 0.3).float()
    values, grads = {}, {}
    for name, fn in FILTERS.items():
        ssim.gaussian_filter = fn
        value = losses.ssim3d(x, y, 10.0, mask=mask)
        values[name], grads[name] = value.detach(), torch.autograd.grad(value, x)[0]
    result = {"ssim_difference": float((values["matmul"] - values["conv"]).abs()),
              "gradient_difference_rel": float((grads["matmul"] - grads["conv"]).abs().max()
                                               / grads["conv"].abs().max())}
    times: dict[str, list[float]] = {name: [] for name in FILTERS}
    for _ in range(rounds):
        for name, fn in FILTERS.items():
            ssim.gaussian_filter = fn
            times[name].append(timed(lambda: losses.ssim3d(x, y, 10.0, mask=mask).backward(), repeats))
    ssim.gaussian_filter = MATMUL_FILTER
    result.update({f"ssim_fwd_bwd_ms_{name}": 1000 * statistics.median(t) for name, t in times.items()})
    return result


def step_ab(preprocessed: Path, rounds: int, repeats: int) -> dict[str, float]:
    from iterdce.preprocessing.plans_io import load_plans

    plans = load_plans(preprocessed / "plans.json")
    with tempfile.TemporaryDirectory(prefix="bench_ssim_") as scratch:  # the trainer's output folder, discarded
        return _step_ab(plans, preprocessed, Path(scratch), rounds, repeats)


def _step_ab(plans: Plans, preprocessed: Path, scratch: Path, rounds: int, repeats: int) -> dict[str, float]:
    from iterdce.training.data_loader import PatchSampler, make_loader
    from iterdce.training.run_config import TrainingSetup
    from iterdce.training.trainer_recursive import WarmupTrainer

    setup = TrainingSetup(preprocessed, scratch, "plans", fold=0, epochs=1, iterations_per_epoch=repeats,
                          num_workers=0, device="cpu", progress=False, plans=plans, precision="auto")
    trainer = WarmupTrainer(setup)
    trainer.fit_kinetic_prior()
    sampler = PatchSampler(setup.data_dir, trainer.train_cases, plans.patch_size, plans.batch_size,
                           plans.augmentation, 0)
    batches = list(make_loader(sampler, 0, repeats, 0, False))
    trainer.model.train()
    for batch in batches[:2]:  # allocator and kernel warm-up
        trainer.train_step(trainer.model, batch)
    times: dict[str, list[float]] = {name: [] for name in FILTERS}
    for _ in range(rounds):
        for name, fn in FILTERS.items():
            ssim.gaussian_filter = fn
            start = time.perf_counter()
            for batch in batches:
                trainer.train_step(trainer.model, batch)
            times[name].append((time.perf_counter() - start) / len(batches))
    ssim.gaussian_filter = MATMUL_FILTER
    return {"precision": trainer.precision, **{f"step_s_{name}": statistics.median(t) for name, t in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians are reported)")
    parser.add_argument("--repeats", type=int, default=10, help="loss calls, or training steps, per round")
    parser.add_argument("--preprocessed", type=Path, help="a preprocessed dataset folder: also time training steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result: dict[str, object] = {"threads": args.threads, **loss_ab(args.rounds, args.repeats)}
    if args.preprocessed is not None:
        result.update(step_ab(args.preprocessed, args.rounds, args.repeats))
    for key, value in result.items():
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
