"""Measured peak memory of one inference forward pass against ``tile_choice.forward_bytes``' estimate.

Each (features, tile, tiles per forward) runs in its own child process on the CPU: the peak resident set size
(``ru_maxrss``) after a warm-up forward on a small tile is the baseline, then one forward of the
IterativeSynthesizer (4 target phases, inference mode) over the tile batch; reported are the rise of the peak,
the estimate and their ratio (the estimate should be at or above the measurement for large tiles; small tiles
add a fixed allocator overhead that does not matter for budgets of GiB).

    python -m benchmarks.tile_memory
    python -m benchmarks.tile_memory --case 8,16,32:160,128,48:1 --case 32,64,128:96,96,48:1
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

from benchmarks.common import benchmark_network

DEFAULT_CASES = ["8,16,32:160,128,48:1", "8,16,32:64,64,48:1", "8,16,32,64:88,72,40:1", "32,64,128:96,96,48:1",
                 "32,64,128,256:64,64,32:2"]
TIMES = [0.0, 85.0, 155.0, 225.0, 295.0, 365.0]


def measure(features: list[int], tile: list[int], batch: int) -> dict:
    """One forward in this process: peak RSS rise and the estimate."""
    import torch

    from iterdce.inference.tile_choice import NetworkShape, forward_bytes
    from iterdce.network.config import ModelConfig
    from iterdce.network.synthesizer import build_synthesizer

    torch.set_num_threads(1)
    network = benchmark_network(features)
    model = build_synthesizer(ModelConfig.from_plan("iterative", network, [0, 1], len(TIMES))).eval()
    inputs = torch.randn(batch, 2, *tile)
    times = torch.tensor([TIMES] * batch)
    with torch.inference_mode():
        model(torch.randn(1, 2, *[2 ** len(features)] * 3), times[:1])
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        model(inputs, times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    estimate = forward_bytes(tile, batch, NetworkShape.from_config(model.net.config, len(TIMES) - 2))
    return {"features": features, "tile": tile, "batch": batch, "measured_mb": round(peak / 2**20, 1),
            "estimate_mb": round(estimate / 2**20, 1), "estimate_over_measured": round(estimate / max(peak, 1), 2)}


def parse(case: str) -> tuple[list[int], list[int], int]:
    features, tile, batch = case.split(":")
    return [int(v) for v in features.split(",")], [int(v) for v in tile.split(",")], int(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", help="FEATURES:TILE:BATCH, e.g. 8,16,32:160,128,48:1")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(*parse(args.worker))))
        return
    for case in args.case or DEFAULT_CASES:
        done = subprocess.run([sys.executable, "-m", "benchmarks.tile_memory", "--worker", case], capture_output=True,
                              text=True, check=True)
        print(done.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
