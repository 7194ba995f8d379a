"""3D SSIM (Wang et al. 2004): the one implementation behind the SSIM metric (evaluation) and the SSIM loss term.

Both compute the same local statistics (Gaussian window, sigma 1.5, 11 taps, population covariance) with the
same separable filter; they differ only at the volume's borders, chosen by ``boundary``:

- ``"reflect"`` (the metric): the volume is mirrored at its faces (scipy's "reflect", as scikit-image's
  ``structural_similarity``), so the map covers every voxel and every axis keeps the full window.
- ``"valid"`` (the loss): only windows that lie inside the volume count, so the map is smaller by the window
  radius on each side, and on an axis shorter than the window the window shrinks to the largest odd size that
  fits (a training patch may be thinner than 11 voxels).

The filter is one matrix product per axis with a banded [out, length] matrix (the boundary rule folded into
the matrix): the arithmetic of a 1D convolution, but differentiable at the BLAS rate on a CPU, where the
convolution's backward pass was the slow part of a training step (reports/performance_sessions.md).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

SSIM_SIGMA = 1.5
SSIM_WINDOW = 11  # 2 * int(3.5 * 1.5 + 0.5) + 1: the Gaussian window, truncated at 3.5 sigma
SSIM_K1, SSIM_K2 = 0.01, 0.03

Boundary = Literal["reflect", "valid"]
BOUNDARIES: tuple[Boundary, ...] = ("reflect", "valid")


def gaussian_kernel(size: int, sigma: float, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    """The normalised 1D Gaussian of ``size`` taps centred on the middle tap."""
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    return g / g.sum()


def window_sizes(spatial: tuple[int, ...], window_size: int, boundary: Boundary) -> list[int]:
    """Per-axis window: ``window_size``; with ``"valid"`` shrunk to the largest odd size that fits a smaller axis."""
    if boundary == "reflect":
        return [window_size] * len(spatial)
    sizes = []
    for n in spatial:
        w = min(window_size, n)
        sizes.append(w if w % 2 else w - 1)
    return sizes


def _reflected(index: Tensor, length: int) -> Tensor:
    """Indices outside [0, length) mirrored back as scipy's "reflect" does (d c b a | a b c d | d c b a),
    repeatedly, so an axis shorter than the window radius works too."""
    period = index.remainder(2 * length)
    return torch.where(period >= length, 2 * length - 1 - period, period)


def filter_matrix(kernel: Tensor, length: int, boundary: Boundary) -> Tensor:
    """The matrix that applies the 1D ``kernel`` (w taps) along an axis of ``length`` voxels: [length - w + 1,
    length] for ``"valid"``, [length, length] with the taps beyond the faces folded back for ``"reflect"``."""
    width = kernel.numel()
    if boundary == "valid":
        out = length - width + 1
        rows = torch.arange(out, device=kernel.device).unsqueeze(1)
        columns = rows + torch.arange(width, device=kernel.device)
        matrix = torch.zeros(out, length, dtype=kernel.dtype, device=kernel.device)
        return matrix.scatter_(1, columns, kernel.expand(out, width))
    rows = torch.arange(length, device=kernel.device).unsqueeze(1)
    columns = _reflected(rows + torch.arange(width, device=kernel.device) - (width - 1) // 2, length)
    matrix = torch.zeros(length, length, dtype=kernel.dtype, device=kernel.device)
    return matrix.scatter_add_(1, columns, kernel.expand(length, width))


def gaussian_filter(x: Tensor, kernels: list[Tensor], boundary: Boundary) -> Tensor:
    """Separable filtering of [N, C, X, Y, Z] with one 1D kernel per spatial axis (one matrix product each)."""
    for axis, k in enumerate(kernels):
        dim = 2 + axis
        matrix = filter_matrix(k, x.shape[dim], boundary)
        x = torch.movedim(torch.movedim(x, dim, -1) @ matrix.T, -1, dim)
    return x


def ssim_map(
    x: Tensor,
    y: Tensor,
    data_range: float,
    boundary: Boundary,
    window_size: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
) -> Tensor:
    """The local SSIM of two [N, C, X, Y, Z] volumes, in their dtype: the input's shape with ``"reflect"``, the
    valid region (smaller by each axis's window radius on both sides) with ``"valid"``.

    ``data_range`` is the intensity range of the data (required: normalised MRI is not 0..255).
    """
    if x.shape != y.shape or x.ndim != 5:
        raise ValueError(f"SSIM needs two [N, C, X, Y, Z] tensors of equal shape, got {x.shape}, {y.shape}")
    if isinstance(data_range, bool) or not (isinstance(data_range, (int, float)) and math.isfinite(data_range)
                                            and data_range > 0):
        raise ValueError(f"SSIM data_range must be a positive number, got {data_range!r}")
    if window_size < 1 or sigma <= 0:
        raise ValueError(f"SSIM needs window_size >= 1 and sigma > 0, got {window_size}, {sigma}")
    if boundary not in BOUNDARIES:
        raise ValueError(f"SSIM boundary must be one of {BOUNDARIES}, got {boundary!r}")
    sizes = window_sizes(tuple(x.shape[2:]), window_size, boundary)
    kernels = [gaussian_kernel(w, sigma, x.device, x.dtype) for w in sizes]
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    # the five local moments in one filtering pass (the filter matrices are built once per call)
    moments = gaussian_filter(torch.cat([x, y, x * x, y * y, x * y], dim=1), kernels, boundary)
    mu_x, mu_y, xx, yy, xy = moments.chunk(5, dim=1)
    var_x = xx - mu_x**2
    var_y = yy - mu_y**2
    cov = xy - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def valid_region(volume: Tensor, spatial: tuple[int, ...], window_size: int = SSIM_WINDOW) -> Tensor:
    """The voxels of a [.., X, Y, Z] ``volume`` (e.g. a mask) at the centres of the ``"valid"`` map's windows."""
    r = [(w - 1) // 2 for w in window_sizes(spatial, window_size, "valid")]
    return volume[..., r[0]: volume.shape[-3] - r[0], r[1]: volume.shape[-2] - r[1], r[2]: volume.shape[-1] - r[2]]
