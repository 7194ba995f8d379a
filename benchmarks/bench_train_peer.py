"""Training step of iterdce's synthesizer against a peer built from MONAI's public components.

The peer follows the authors' published iterU-Net design: MONAI's ``BasicUNet`` (features 28/32/64/128/256/32)
with a ConvLSTM on the full-resolution features and a time embedding projected per voxel (sinusoidal encoding
of target and source time -> MLP -> 16 channels broadcast over the volume and concatenated to the input).
iterdce's ``IterativeSynthesizer`` gets the same widths (28/32/64/128/256). Both unroll the same recursion with
teacher forcing (the warm-up stage), use the same loss (iterdce's SynthesisLoss without the perceptual term),
AdamW and gradient clipping, on the same random batch, patch and batch size. ``--precision`` is iterdce's
arithmetic (``auto`` as ``iterdce_train``: bf16 autocast on CUDA and on CPUs with AMX bf16 units) and
``--peer-precision`` the peer's (default the same rule; ``fp32`` for a peer run in plain float32).

Each measurement runs in its own child process (the methods alternating), so peak memory (RSS above the level
after the model is built, sampled every 2 ms; CUDA's allocator peak on a GPU) is not hidden by memory the other
left behind. MONAI is a benchmark-only extra: ``pip install -e .[bench]``.

    python -m benchmarks.bench_train_peer --patch 64 64 32 --batch 2 --steps 3 --repeats 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from benchmarks.common import benchmark_network

TIMES_S = [0.0, 85.0, 155.0, 225.0, 295.0, 365.0]
FEATURES = [28, 32, 64, 128, 256]
TIME_CHANNELS = 16


class ConvLSTM3D(nn.Module):
    """A standard ConvLSTM cell (one 3x3x3 convolution for the four gates)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gates = nn.Conv3d(2 * channels, 4 * channels, 3, padding=1)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h, c = state if state is not None else (torch.zeros_like(x), torch.zeros_like(x))
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class MonaiPeer(nn.Module):
    """BasicUNet + ConvLSTM + per-voxel time embedding, unrolled like ``IterativeSynthesizer``."""

    def __init__(self) -> None:
        super().__init__()
        from monai.networks.nets import BasicUNet

        self.unet = BasicUNet(spatial_dims=3, in_channels=2 + TIME_CHANNELS, out_channels=1,
                              features=(*FEATURES, 32))
        self.lstm = ConvLSTM3D(FEATURES[0])
        self.time_mlp = nn.Sequential(nn.Linear(64, 64), nn.GELU(), nn.Linear(64, TIME_CHANNELS))

    def step(self, x: Tensor, target_s: Tensor, source_s: Tensor, state):
        from iterdce.network.time_embedding import sinusoidal_encoding

        code = torch.cat([sinusoidal_encoding(target_s / 365.0 * 1000.0, 32),
                          sinusoidal_encoding(source_s / 365.0 * 1000.0, 32)], dim=1)
        time_map = self.time_mlp(code)[:, :, None, None, None].expand(-1, -1, *x.shape[2:])
        u = self.unet
        x0 = u.conv_0(torch.cat([x, time_map.to(x.dtype)], dim=1))
        x0, state = self.lstm(x0, state)
        x1 = u.down_1(x0)
        x2 = u.down_2(x1)
        x3 = u.down_3(x2)
        x4 = u.down_4(x3)
        out = u.final_conv(u.upcat_1(u.upcat_2(u.upcat_3(u.upcat_4(x4, x3), x2), x1), x0))
        return x[:, -1:] + out, state

    def forward(self, inputs: Tensor, times_s: Tensor, teacher: Tensor) -> Tensor:
        pre, current, state, outputs = inputs[:, :1], inputs[:, 1:2], None, []
        for source in range(1, times_s.shape[1] - 1):
            prediction, state = self.step(torch.cat([pre, current], dim=1), times_s[:, source + 1],
                                          times_s[:, source], state)
            outputs.append(prediction)
            current = teacher[:, source + 1:source + 2]
        return torch.cat(outputs, dim=1)


def build(method: str) -> nn.Module:
    from iterdce.network.config import ModelConfig
    from iterdce.network.synthesizer import build_synthesizer

    torch.manual_seed(0)
    if method == "monai":
        return MonaiPeer()
    network = benchmark_network(FEATURES, time_embedding_dim=32)
    return build_synthesizer(ModelConfig.from_plan("iterative", network, [0, 1], len(TIMES_S)))


def worker(args: argparse.Namespace) -> None:
    """Time ``--steps`` training steps of one method in this fresh process; print a JSON line."""
    from benchmarks.bench_predict import PeakSampler
    from iterdce.losses.synthesis import SynthesisLoss
    from iterdce.network.precision import autocast_context, resolve_precision

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = build(args.worker).to(device).train()
    loss_fn = SynthesisLoss({"l1": 0.1, "ssim": 1.0, "perceptual": 0.0, "gradient_difference": 0.1}, 15.0).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    generator = torch.Generator().manual_seed(1)
    data = torch.randn(args.batch, len(TIMES_S), *args.patch, generator=generator).to(device)
    times = torch.tensor(TIMES_S).expand(args.batch, -1).to(device)
    chosen = resolve_precision(args.precision if args.worker == "iterdce" else args.peer_precision, device)
    autocast = autocast_context(chosen, device)

    def step() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            predictions = model(data[:, :2], times, teacher=data)
        loss = torch.stack([loss_fn(predictions[:, t:t + 1].float(), data[:, 2 + t:3 + t])[0]
                            for t in range(predictions.shape[1])]).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.detach()

    step()  # warm-up: allocations and kernel selection, not timed
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    with PeakSampler(device) as memory:
        start, cpu_start = time.perf_counter(), time.process_time()
        losses = torch.stack([step() for _ in range(args.steps)])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(json.dumps({"method": args.worker, "precision": chosen, "s_per_step": seconds / args.steps,
                      "cpu_s_per_step": cpu / args.steps,
                      "peak_mb": memory.peak / 2**20, "parameters": sum(p.numel() for p in model.parameters()),
                      "final_loss": float(losses[-1])}))


def main() -> None:
    from iterdce.network.precision import PRECISIONS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, nargs=3, default=[64, 64, 32])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each method (median reported)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="iterdce's arithmetic, as iterdce_train's flag (default auto)")
    parser.add_argument("--peer-precision", default="auto", choices=PRECISIONS,
                        help="the peer's arithmetic (default auto: the same rule as iterdce's)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", choices=["iterdce", "monai"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    runs: dict[str, list[dict]] = {"iterdce": [], "monai": []}
    for _ in range(args.repeats):
        for method in runs:  # alternating, so a change in machine load hits both
            command = [sys.executable, "-m", "benchmarks.bench_train_peer", "--worker", method, "--device", args.device,
                       "--threads", str(args.threads), "--batch", str(args.batch), "--steps", str(args.steps),
                       "--precision", args.precision, "--peer-precision", args.peer_precision,
                       "--patch", *map(str, args.patch)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode:
                raise SystemExit(f"{method} worker failed:\n{done.stderr[-3000:]}")
            runs[method].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"  {method:8s} {runs[method][-1]}", flush=True)
    summary = {m: {"s_per_step": statistics.median(r["s_per_step"] for r in rs),
                   "cpu_s_per_step": statistics.median(r["cpu_s_per_step"] for r in rs),
                   "peak_mb": max(r["peak_mb"] for r in rs), "parameters": rs[0]["parameters"],
                   "precision": rs[0]["precision"]}
               for m, rs in runs.items()}
    print(f"device {args.device} ({args.threads} threads), patch {args.patch}, batch {args.batch}, "
          f"features {FEATURES}, {len(TIMES_S) - 2} unrolled steps, {args.steps} timed steps x {args.repeats} runs; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for method, s in summary.items():
        print(f"  {method:8s} ({s['precision']}) {s['s_per_step']:7.2f} s/step (CPU {s['cpu_s_per_step']:.2f} s)  "
              f"peak +{s['peak_mb']:.0f} MB  {s['parameters'] / 1e6:.2f} M parameters")
    ratio = summary["iterdce"]["s_per_step"] / summary["monai"]["s_per_step"]
    print(f"iterdce / MONAI peer: time {ratio:.2f}x, CPU time "
          f"{summary['iterdce']['cpu_s_per_step'] / summary['monai']['cpu_s_per_step']:.2f}x, peak memory "
          f"{summary['iterdce']['peak_mb'] / max(summary['monai']['peak_mb'], 1e-9):.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
