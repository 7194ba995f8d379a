"""iterdce's tile-major ``predict_volume`` against MONAI's ``sliding_window_inference``: time, memory, agreement.

Both run the same network (an IterativeSynthesizer with a random final conv, so it is not the identity) on
the same volume with the same patch, overlap 0.5, Gaussian blending (sigma = patch / 8) and the same number
of tiles per forward pass. MONAI gets the recursion inside its per-window callable, which returns every
target phase as a channel. A third run, "network", does only the forward passes over the same tile batches
(no stitching): the floor under both. Each measurement runs in its own child process (``--worker``), the
methods alternating, so that one run's peak-memory delta is not hidden by memory another left to the allocator
and a change in machine load hits all of them.

Reported: median and best wall time of each and their ratios (iterdce / MONAI), peak memory above the baseline after a
warm-up forward (RSS sampled every 2 ms on CPU; ``torch.cuda.max_memory_allocated`` on CUDA), the max absolute
difference of the outputs, whether the tile grids and Gaussian maps agree, and the achieved GFLOP/s (conv and
matmul FLOPs from ``FlopCounterMode`` for one tile, times the number of tiles, over the wall time) next to a
float32 matmul's GFLOP/s measured in the same run. MONAI is a benchmark-only extra: ``pip install -e .[bench]``.

    python -m benchmarks.bench_predict                              # 192 x 192 x 64, patch 64 x 64 x 32
    python -m benchmarks.bench_predict --shape 64 64 32 --patch 32 32 16 --threads 1 --repeats 3  # CPU
    python -m benchmarks.bench_predict --iterdce-tile 192 192 64  # iterdce: one whole-volume tile

``--iterdce-tile`` gives iterdce its own tile (MONAI and the bare forward keep ``--patch``): what iterdce's
``--tile-size`` saves against MONAI run as usual; the outputs then differ by the tile change, not by float error.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import benchmark_network, matmul_gflops

SIGMA_SCALE = 0.125
OVERLAP = 0.5


def build_model(features: list[int], steps: int, device: torch.device) -> torch.nn.Module:
    """The benchmark network: same seed, same weights in every process; a random final conv (not identity)."""
    from iterdce.network.config import ModelConfig
    from iterdce.network.synthesizer import build_synthesizer

    torch.manual_seed(0)
    model = build_synthesizer(ModelConfig.from_plan("iterative", benchmark_network(features), [0, 1], steps + 2))
    with torch.no_grad():
        torch.nn.init.normal_(model.net.final_conv.weight, std=0.1)
    return model.to(device).eval()


def make_inputs(shape: list[int], steps: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random input phases [2, X, Y, Z] (pre, post) and the phase times [steps + 2] in seconds."""
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(1, 2, *shape, generator=generator)
    smooth = torch.nn.functional.avg_pool3d(noise, 5, stride=1, padding=2, count_include_pad=False)[0]
    times = torch.tensor([0.0] + [85.0 + 70.0 * k for k in range(steps + 1)])
    return smooth.to(device), times.to(device)


class PeakSampler:
    """Peak memory above the level when started: RSS polled every 2 ms (CPU), or CUDA's allocator peak."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0

    def __enter__(self) -> PeakSampler:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return self
        import psutil

        self.process = psutil.Process()
        self.base = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss - self.base)
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.base
            return
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss - self.base)


def run_iterdce(model, inputs, times, patch, steps, tile_batch) -> torch.Tensor:
    from iterdce.inference.tiled import predict_volume  # imported before the clock starts (see worker)

    return predict_volume([model], inputs, times, patch, steps, tile_batch, step_fraction=1.0 - OVERLAP)


def run_monai(model, inputs, times, patch, steps, tile_batch) -> torch.Tensor:
    from monai.inferers import sliding_window_inference  # imported before the clock starts (see worker)

    def recursion(window: torch.Tensor) -> torch.Tensor:
        """All target phases of a window batch as channels: the whole recursion inside MONAI's callable."""
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=window.device.type == "cuda")
        with autocast:
            return model(window, times.expand(len(window), -1)).float()

    with torch.inference_mode():
        out = sliding_window_inference(inputs[None], patch, tile_batch, recursion, overlap=OVERLAP, mode="gaussian",
                                       sigma_scale=SIGMA_SCALE)
    return out[0]


def run_forward_only(model, inputs, times, patch, steps, tile_batch) -> torch.Tensor:
    """The network alone over the same tile batches, no blending: the floor both methods sit on."""
    from iterdce.inference.sliding_window import tile_grid

    tiles = tile_grid(tuple(inputs.shape[1:]), patch, 1.0 - OVERLAP)
    with torch.inference_mode():
        for start in range(0, len(tiles), tile_batch):
            batch = torch.stack([inputs[(slice(None), *tile)] for tile in tiles[start:start + tile_batch]])
            autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=batch.device.type == "cuda")
            with autocast:
                model(batch, times.expand(len(batch), -1))
    return torch.zeros(steps, *inputs.shape[1:])


def worker(args: argparse.Namespace) -> None:
    """One timed run of one method in this fresh process; prints a JSON line, saves the output to --save."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = build_model(args.features, args.steps, device)
    inputs, times = make_inputs(args.shape, args.steps, device)
    # imports stay out of the timed region, and every worker makes the same ones (same process state)
    import monai.inferers  # noqa: F401

    import iterdce.inference.tiled  # noqa: F401
    run = {"iterdce": run_iterdce, "monai": run_monai, "forward": run_forward_only}[args.worker]
    patch = args.iterdce_tile if args.worker == "iterdce" and args.iterdce_tile else args.patch
    with torch.inference_mode():  # warm-up: one tile batch through the network (kernel selection, allocations)
        window = inputs[(slice(None), *[slice(0, p) for p in args.patch])][None].expand(args.tile_batch, -1, -1, -1, -1)
        model(window.contiguous(), times.expand(args.tile_batch, -1))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    with PeakSampler(device) as memory:
        start = time.perf_counter()
        output = run(model, inputs, times, patch, args.steps, args.tile_batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    np.save(args.save, output.float().cpu().numpy())
    print(json.dumps({"method": args.worker, "seconds": seconds, "peak_mb": memory.peak / 2**20}))


def flops_per_tile(features: list[int], steps: int, patch: list[int]) -> int:
    """Conv / matmul FLOPs of the whole recursion on one tile (FlopCounterMode; norms and pointwise ops excluded)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(features, steps, torch.device("cpu"))
    inputs, times = make_inputs(patch, steps, torch.device("cpu"))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(inputs[None], times[None])
    return int(counter.get_total_flops())


def grid_and_weights_agree(shape: list[int], patch: list[int]) -> tuple[bool, float]:
    """(same tile starts as MONAI's scan?, max relative difference of the normalised Gaussian maps)."""
    from monai.data.utils import compute_importance_map, dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    from iterdce.inference.sliding_window import gaussian_importance_map, tile_grid
    from iterdce.inference.tiled import importance_floor

    ours = {tuple(s.start for s in tile) for tile in tile_grid(shape, patch, 1.0 - OVERLAP)}
    interval = _get_scan_interval(shape, patch, len(shape), (OVERLAP,) * len(shape))
    theirs = {tuple(s.start for s in tile) for tile in dense_patch_slices(shape, patch, interval)}
    our_map = gaussian_importance_map(patch, SIGMA_SCALE, min_weight=importance_floor(patch, SIGMA_SCALE)).double()
    their_map = compute_importance_map(tuple(patch), mode="gaussian", sigma_scale=SIGMA_SCALE).double()
    their_map = their_map / their_map.max()
    return ours == theirs, float(((our_map - their_map).abs() / their_map).max())


def launch(method: str, args: argparse.Namespace, save: Path) -> dict:
    command = [sys.executable, "-m", "benchmarks.bench_predict", "--worker", method, "--save", str(save),
               "--device", args.device, "--threads", str(args.threads), "--steps", str(args.steps),
               "--tile-batch", str(args.tile_batch),
               "--shape", *map(str, args.shape), "--patch", *map(str, args.patch),
               "--features", *map(str, args.features)]
    if args.iterdce_tile:
        command += ["--iterdce-tile", *map(str, args.iterdce_tile)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{method} worker failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[192, 192, 64])
    parser.add_argument("--patch", type=int, nargs=3, default=[64, 64, 32])
    parser.add_argument("--features", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--iterdce-tile", type=int, nargs=3, help="iterdce's tile (default: --patch, as MONAI's)")
    parser.add_argument("--steps", type=int, default=4, help="target phases (recursion steps)")
    parser.add_argument("--tile-batch", type=int, default=2, help="tiles per forward (MONAI's sw_batch_size)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each method (median reported)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch CPU threads (on a shared machine 1 gives steadier timings)")
    parser.add_argument("--worker", choices=["iterdce", "monai", "forward"], help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    from iterdce.inference.sliding_window import tile_grid

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n_tiles = len(tile_grid(args.shape, args.patch, 1.0 - OVERLAP))
    same_grid, map_difference = grid_and_weights_agree(args.shape, args.patch)
    print(f"device {args.device} ({args.threads} threads), volume {args.shape}, patch {args.patch}, {n_tiles} tiles, "
          f"tile batch {args.tile_batch}, features {args.features}, {args.steps} steps; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"tile grid identical to MONAI's: {same_grid}; Gaussian maps differ by at most {map_difference:.1e} "
          "(relative, after scaling both to max 1)")
    gflops_before = matmul_gflops(device)
    runs: dict[str, list[dict]] = {"iterdce": [], "monai": [], "forward": []}
    with tempfile.TemporaryDirectory() as scratch:
        outputs = {m: Path(scratch) / f"{m}.npy" for m in runs}
        for _ in range(args.repeats):
            for method in runs:  # alternate, so a change in machine load hits both
                runs[method].append(launch(method, args, outputs[method]))
                print(f"  {method:8s} {runs[method][-1]['seconds']:8.2f} s  peak {runs[method][-1]['peak_mb']:8.1f} MB")
        gap = np.abs(np.load(outputs["iterdce"]) - np.load(outputs["monai"]))
        difference, mean_difference = float(gap.max()), float(gap.mean())
        scale = float(np.abs(np.load(outputs["monai"])).max())
    gflops_after = matmul_gflops(device)
    median = {m: statistics.median(r["seconds"] for r in runs[m]) for m in runs}
    best = {m: min(r["seconds"] for r in runs[m]) for m in runs}
    peak = {m: max(r["peak_mb"] for r in runs[m]) for m in runs}
    flops = flops_per_tile(args.features, args.steps, args.patch) * n_tiles
    tile = args.iterdce_tile or args.patch
    work = {"iterdce": flops_per_tile(args.features, args.steps, tile) * len(tile_grid(args.shape, tile, 1.0 - OVERLAP))
            if args.iterdce_tile else flops, "monai": flops, "forward": flops}
    print("           median     best   peak memory   GFLOP/s (best)")
    for method, label in (("iterdce", "iterdce"), ("monai", "MONAI  "), ("forward", "network")):
        print(f"{label}  {median[method]:8.2f} s {best[method]:7.2f} s   +{peak[method]:7.1f} MB   "
              f"{work[method] / best[method] / 1e9:8.1f}")
    print(f"time ratio iterdce / MONAI: {median['iterdce'] / median['monai']:.3f} (medians), "
          f"{best['iterdce'] / best['monai']:.3f} (best runs); 'network' is the forward passes alone over the same "
          "tile batches, no stitching")
    print(f"network FLOPs {flops / 1e9:.1f} GFLOP ({n_tiles} tiles); float32 matmul {gflops_before:.1f} GFLOP/s "
          f"before, {gflops_after:.1f} after")
    tile_note = f" (iterdce tile {args.iterdce_tile}: differs by design)" if args.iterdce_tile else ""
    print(f"max |iterdce - MONAI| = {difference:.2e}, mean {mean_difference:.2e} (outputs up to {scale:.2f}); "
          f"{'OK' if difference < 1e-4 else 'ABOVE 1e-4'}{tile_note}")
    if not math.isfinite(difference):
        raise SystemExit("non-finite outputs")


if __name__ == "__main__":
    main()
