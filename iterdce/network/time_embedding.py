"""Sinusoidal encoding of acquisition times and its projection to per-stage channel biases.

Frequency choice: a time t (seconds) becomes the position p = t / time_scale_s * POSITION_SCALE, encoded
with the transformer frequencies 1 / 10000^(2i/dim). With the default time_scale_s = 365 s a 70 s step
moves p by ~192, i.e. ~192 rad at the highest frequency and ~0.02 rad at the lowest, so seconds-scale
differences are distinguishable (1 s moves the highest frequency by ~2.7 rad) while the lowest
frequency stays unambiguous (no wrap-around) up to 2*pi*10000 / 1000 * time_scale_s ~ 23,000 s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

POSITION_SCALE = 1000.0
MAX_PERIOD = 10000.0


def sinusoidal_encoding(t: Tensor, dim: int) -> Tensor:
    """Transformer-style encoding [sin(t*f_i), cos(t*f_i)] of positions t [B] -> [B, dim] (float32)."""
    if dim <= 0 or dim % 2:
        raise ValueError(f"sinusoidal encoding dimension must be a positive even number, got {dim}")
    if t.ndim != 1:
        raise ValueError(f"positions must be a 1D tensor [B], got shape {tuple(t.shape)}")
    half = dim // 2
    exponent = torch.arange(half, device=t.device, dtype=torch.float32) * (2.0 / dim)
    freqs = torch.exp(-math.log(MAX_PERIOD) * exponent)
    angles = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class StageProjection(nn.Module):
    """Linear-GELU-Linear map from the time encoding to one stage's channels."""

    def __init__(self, in_features: int, hidden: int, channels: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Linear(hidden, channels))

    def forward(self, encoding: Tensor) -> Tensor:
        return cast(Tensor, self.mlp(encoding))


class TimeEmbedding(nn.Module):
    """Encodes (target, source) times once per step and projects them to a [B, C, 1, 1, 1] bias per stage.

    The target and source encodings are concatenated so the step length is known to every stage.
    """

    def __init__(self, dim: int, time_scale_s: float, stage_channels: Sequence[int]) -> None:
        super().__init__()
        if dim <= 0 or dim % 2:
            raise ValueError(f"time_embedding_dim must be a positive even number, got {dim}")
        if not time_scale_s > 0:
            raise ValueError(f"time_scale_s must be positive, got {time_scale_s}")
        self.dim = dim
        self.time_scale_s = float(time_scale_s)
        self.projections = nn.ModuleList(StageProjection(2 * dim, dim, c) for c in stage_channels)

    def encode(self, target_time_s: Tensor, source_time_s: Tensor) -> Tensor:
        """Concatenated sinusoidal encodings of target and source times, [B, 2*dim] float32."""
        scale = POSITION_SCALE / self.time_scale_s
        target = sinusoidal_encoding(target_time_s.to(torch.float32) * scale, self.dim)
        source = sinusoidal_encoding(source_time_s.to(torch.float32) * scale, self.dim)
        return torch.cat([target, source], dim=1)

    def forward(self, target_time_s: Tensor, source_time_s: Tensor) -> list[Tensor]:
        encoding = self.encode(target_time_s, source_time_s)
        return [proj(encoding)[:, :, None, None, None] for proj in self.projections]
