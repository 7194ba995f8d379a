"""What several benchmarks share: mean and spread over seeds, markdown tables, the device's reachable FLOP rate,
the benchmark network and the toy-size plan.

Defined once here so two benchmarks that report the same quantity compute and print it the same way. Only torch
and numpy are imported at module level (gpu_check runs where nothing else is installed).
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from iterdce.preprocessing.case_properties import CaseProperties

TOY_PATCH = [16, 16, 8]
TOY_BATCH = 2


def mean_std(values: Iterable[float | None]) -> dict[str, float] | None:
    """``{"mean", "std", "n"}`` over the finite values (None and NaN left out: a run that did not score); None
    when there is none."""
    kept = [float(v) for v in values if v is not None and np.isfinite(v)]
    return {"mean": float(np.mean(kept)), "std": float(np.std(kept)), "n": len(kept)} if kept else None


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table: the header, the separator, one line per row (cells as ``str``; ``|`` inside a cell
    written as ``/`` so it does not split the cell)."""

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(row) for row in rows)])


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on CPU. Timings read after it are the work's."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 5
                  ) -> float:
    """Achieved GFLOP/s of a ``size`` x ``size`` matmul: the reference for what this device can do right now (other
    load included), next to which a benchmark's own GFLOP/s is read."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b  # warm-up: kernel selection and allocation, not timed
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def benchmark_network(features: Sequence[int], time_embedding_dim: int = 16) -> dict[str, Any]:
    """The network section of the speed benchmarks' synthesizer: 2 inputs, ``features`` per stage, 2x pooling on
    every axis, the time embedding and the ConvLSTM on."""
    return {"in_channels": 2, "features_per_stage": list(features),
            "pool_per_stage": [[2, 2, 2]] * (len(features) - 1), "time_embedding_dim": time_embedding_dim,
            "time_scale_s": 365.0, "use_time_embedding": True, "use_convlstm": True}


def toy_plan(plans: dict[str, Any], features: Sequence[int] = (4, 8)) -> dict[str, Any]:
    """``plans`` (JSON form, changed in place and returned) shrunk to toy size for tests and dry runs: ``features``
    per stage with in-plane pooling, an 8-channel time embedding, a 16 x 16 x 8 patch and 2 patches a batch."""
    plans["network"].update(features_per_stage=list(features), pool_per_stage=[[2, 2, 1]] * (len(features) - 1),
                            time_embedding_dim=8)
    plans["patch_size"] = list(TOY_PATCH)
    plans["batch_size"] = TOY_BATCH
    return plans


def hand_made_properties(case_id: str, shape: Sequence[int], times_s: Sequence[float],
                         transform: Sequence[Sequence[float]] = ((0, 1), (1, 1), (2, 1)),
                         target_spacing: Sequence[float] = (1.0, 1.0, 1.0),
                         resampled_shape: Sequence[int] | None = None,
                         ti_norm: tuple[float, float] = (0.0, 1.0)) -> CaseProperties:
    """The preprocessing record of a hand-made case of ``shape`` (identity affine, 1 mm voxels, nothing cropped;
    TI-norm (mean, std) ``ti_norm`` on phase 1), for fixtures that build preprocessed cases themselves."""
    from iterdce.preprocessing.case_properties import CaseProperties, matrix_rows
    from iterdce.preprocessing.normalization import TINormStats

    eye = matrix_rows(np.eye(4))
    grid = tuple(int(s) for s in shape)
    return CaseProperties(
        case=case_id, original_shape=grid, original_affine=eye, qform_code=1, sform_code=1,
        orientation_transform=matrix_rows(transform), canonical_shape=grid, canonical_affine=eye,
        canonical_spacing=(1.0, 1.0, 1.0), crop_box=tuple((0, n) for n in grid), cropped_shape=grid,
        target_spacing=tuple(float(s) for s in target_spacing),
        resampled_shape=grid if resampled_shape is None else tuple(int(s) for s in resampled_shape),
        ti_norm=TINormStats(ti_norm[0], ti_norm[1], 1), ti_norm_mask="foreground",
        phase_times_s=tuple(float(t) for t in times_s), has_lesion_labels=True)


def synthetic_sidecar(case_id: str, shape: Sequence[int], times_s: Sequence[float]) -> dict[str, Any]:
    """The ``<case>.json`` of a hand-made preprocessed case of ``shape`` (``hand_made_properties``), for fixtures
    that write ``<case>.npz`` themselves."""
    from iterdce.preprocessing.case_properties import CaseSidecar

    return CaseSidecar(hand_made_properties(case_id, shape, times_s)).to_dict()
