"""Building blocks of the 3D U-Net: conv-norm-act, encoder stages and decoder stages.

Downsampling is a strided 3x3x3 convolution (stride = the stage's pool per axis, nnU-Net style), so the
network learns how to downsample and anisotropic pools such as (2, 2, 1) need no special case.
Upsampling is a transposed convolution with kernel = stride = pool.

Convolutions that feed an InstanceNorm have no bias (the norm removes any per-channel constant). For
the same reason a stage's time bias is added *before* the stage's last LeakyReLU: added after it, the
next conv + InstanceNorm would cancel it (except at the borders); before it, it shifts each channel's
activation threshold, a nonlinear effect that survives normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

LEAKY_SLOPE = 0.01


def _triple(values: Sequence[int]) -> tuple[int, int, int]:
    """One value per spatial axis (x, y, z)."""
    x, y, z = (int(v) for v in values)
    return x, y, z


class ConvNormAct(nn.Module):
    """3x3x3 convolution, InstanceNorm3d(affine=True) and LeakyReLU(0.01): the unit every stage stacks."""

    def __init__(self, in_channels: int, out_channels: int, stride: Sequence[int] = (1, 1, 1)) -> None:
        super().__init__()
        self.conv = nn.Conv3d(
            in_channels, out_channels, kernel_size=3, stride=_triple(stride), padding=1, bias=False
        )
        self.norm = nn.InstanceNorm3d(out_channels, affine=True)
        self.act = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        """Optional `bias` [B, C, 1, 1, 1] is added after the norm, before the activation."""
        h = self.norm(self.conv(x))
        if bias is not None:
            h = h + bias.to(h.dtype)
        return cast(Tensor, self.act(h))


class EncoderStage(nn.Module):
    """Two ConvNormAct units; the first one strides by `pool` (all ones for the full-resolution stage)."""

    def __init__(self, in_channels: int, out_channels: int, pool: Sequence[int] = (1, 1, 1)) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, out_channels, stride=pool)
        self.conv2 = ConvNormAct(out_channels, out_channels)

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        """`bias` [B, C, 1, 1, 1] (the time embedding) goes before the last activation."""
        return cast(Tensor, self.conv2(self.conv1(x), bias))


class DecoderStage(nn.Module):
    """Transposed-conv upsampling by `pool`, concatenation with the skip, then two ConvNormAct units."""

    def __init__(self, in_channels: int, skip_channels: int, pool: Sequence[int]) -> None:
        super().__init__()
        self.up = nn.ConvTranspose3d(in_channels, skip_channels, kernel_size=_triple(pool), stride=_triple(pool),
                                     bias=False)
        self.conv1 = ConvNormAct(2 * skip_channels, skip_channels)
        self.conv2 = ConvNormAct(skip_channels, skip_channels)

    def forward(self, x: Tensor, skip: Tensor, bias: Tensor | None = None) -> Tensor:
        """Upsample x, join the skip; `bias` [B, C, 1, 1, 1] goes before the last activation."""
        up = self.up(x)
        return cast(Tensor, self.conv2(self.conv1(torch.cat([up, skip.to(up.dtype)], dim=1)), bias))
