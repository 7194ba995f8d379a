"""Which arithmetic the network runs in: bf16 autocast or float32, one rule for training and prediction.

``auto`` picks bf16 autocast on CUDA (as before) and on CPUs with native bf16 matrix units (Intel AMX with
AVX-512 BF16), where oneDNN made a default-plan training step 1.5-2.7x faster than in float32
(documentation/performance.md, "bf16 on the CPU"); on other CPUs bf16 would be emulated and slower, so
``auto`` stays float32 there. Weights, optimiser state, ConvLSTM states and the loss stay float32 either way
(autocast only lowers the matrix products and convolutions).
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

PRECISIONS = ("auto", "bf16", "fp32")


def cpu_has_native_bf16() -> bool:
    """True on CPUs whose matrix units compute in bf16 (AMX tiles and AVX-512 BF16)."""
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_amx_tile_supported() and cpu._is_avx512_bf16_supported())  # type: ignore[union-attr]
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(preference: str, device: torch.device) -> str:
    """``bf16`` or ``fp32`` for ``preference`` (one of PRECISIONS) on ``device``."""
    if preference not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {preference!r}")
    if preference != "auto":
        return preference
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return "bf16"
    return "fp32"


def autocast_context(precision: str, device: torch.device) -> AbstractContextManager[None]:
    """The autocast region for a resolved ``precision`` (``bf16`` or ``fp32``) on ``device``."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp32":
        return nullcontext()
    raise ValueError(f"resolve the precision first (bf16 or fp32), got {precision!r}")
