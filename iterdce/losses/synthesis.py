"""Synthesis losses: L1, 3D SSIM, Med3D perceptual loss and gradient difference loss (paper weights
0.1, 1, 1, 0.1).

All terms are computed in float32 with autocast off. SSIM takes the data range of the (normalised)
intensities explicitly; nothing assumes 8-bit images. No term calls .item(), so the loss never forces a
host sync; the components are returned detached for logging.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from iterdce.core.ssim import SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW
from iterdce.network.med3d import Med3DFeatures

# the loss terms and their default weights (the planner writes these into every new plan)
DEFAULT_LOSS_WEIGHTS = {"l1": 0.1, "ssim": 1.0, "perceptual": 1.0, "gradient_difference": 0.1, "lesion_l1": 0.0}
LOSS_TERMS = tuple(DEFAULT_LOSS_WEIGHTS)
# terms added after the paper's four: a loss (or a version-1 plan) without them gets weight 0 (the paper's loss)
OPTIONAL_LOSS_TERMS = ("lesion_l1",)
MED3D_ENV = "ITERDCE_MED3D_WEIGHTS"


def _gaussian_1d(size: int, sigma: float, device: torch.device) -> Tensor:
    coords = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    return g / g.sum()


def _window_sizes(spatial: tuple[int, ...], window_size: int) -> list[int]:
    """Per-axis window: `window_size`, shrunk to the largest odd size that fits a smaller axis."""
    sizes = []
    for n in spatial:
        w = min(window_size, n)
        sizes.append(w if w % 2 else w - 1)
    return sizes


def _valid_filter_matrix(kernel: Tensor, length: int) -> Tensor:
    """The [length - w + 1, length] banded matrix that applies the 1D ``kernel`` (size w) in 'valid' mode."""
    width = kernel.numel()
    out = length - width + 1
    rows = torch.arange(out, device=kernel.device).unsqueeze(1)
    columns = rows + torch.arange(width, device=kernel.device)
    matrix = torch.zeros(out, length, dtype=kernel.dtype, device=kernel.device)
    return matrix.scatter_(1, columns, kernel.expand(out, width))


def _gaussian_filter(x: Tensor, kernels: list[Tensor]) -> Tensor:
    """Separable 'valid' Gaussian filtering of [N, C, X, Y, Z] with one 1D kernel per axis.

    Each axis is one matrix product with a banded matrix: the same arithmetic as a grouped 1D convolution, but
    on a CPU the convolution's backward pass ran at well under 1 GFLOP/s for these one-channel kernels (SSIM was
    a fifth of a `cpu`-preset training step; reports/performance_sessions.md), while a matrix product runs at the
    BLAS rate forwards and backwards."""
    for axis, k in enumerate(kernels):
        dim = 2 + axis
        matrix = _valid_filter_matrix(k, x.shape[dim])
        x = torch.movedim(torch.movedim(x, dim, -1) @ matrix.T, -1, dim)
    return x


def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return values.mean()
    weights = mask.to(values.dtype).expand_as(values)
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def ssim3d(
    x: Tensor,
    y: Tensor,
    data_range: float,
    window_size: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
    mask: Tensor | None = None,
) -> Tensor:
    """Mean 3D SSIM of [B, C, X, Y, Z] volumes with a separable Gaussian window (valid region only).

    data_range is the intensity range of the data (required: normalised MRI is not 0..255). The
    window shrinks (staying odd) on axes smaller than window_size. With a mask, the SSIM map is
    averaged over the mask voxels at the window centres.
    """
    if x.shape != y.shape or x.ndim != 5:
        raise ValueError(f"ssim3d needs two [B, C, X, Y, Z] tensors of equal shape, got {x.shape}, {y.shape}")
    if not (isinstance(data_range, (int, float)) and math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"ssim3d data_range must be a positive number, got {data_range!r}")
    if window_size < 1 or sigma <= 0:
        raise ValueError(f"ssim3d needs window_size >= 1 and sigma > 0, got {window_size}, {sigma}")
    x, y = x.float(), y.float()
    sizes = _window_sizes(tuple(x.shape[2:]), window_size)
    kernels = [_gaussian_1d(w, sigma, x.device) for w in sizes]
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    # the five local moments in one filtering pass (the filter matrices are built once per call)
    moments = _gaussian_filter(torch.cat([x, y, x * x, y * y, x * y], dim=1), kernels)
    mu_x, mu_y, xx, yy, xy = moments.chunk(5, dim=1)
    var_x = xx - mu_x**2
    var_y = yy - mu_y**2
    cov = xy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    if mask is not None:
        r = [(w - 1) // 2 for w in sizes]
        mask = mask[..., r[0] : mask.shape[2] - r[0], r[1] : mask.shape[3] - r[1], r[2] : mask.shape[4] - r[2]]
    return _masked_mean(ssim_map, mask)


def gradient_difference_loss(x: Tensor, y: Tensor, mask: Tensor | None = None) -> Tensor:
    """Gradient difference loss (Mathieu et al. 2016, alpha=1): sum over the three axes of the mean
    | |d x| - |d y| | of forward differences; zero for identical volumes and for a constant offset.

    With a mask, a difference counts where both of its voxels are inside the mask.
    """
    if x.shape != y.shape or x.ndim != 5:
        raise ValueError(f"gradient_difference_loss needs equal [B, C, X, Y, Z] tensors, got {x.shape}, {y.shape}")
    total = x.new_zeros((), dtype=torch.float32)
    x, y = x.float(), y.float()
    for dim in (2, 3, 4):
        n = x.shape[dim]
        if n < 2:
            continue
        gx = (x.narrow(dim, 1, n - 1) - x.narrow(dim, 0, n - 1)).abs()
        gy = (y.narrow(dim, 1, n - 1) - y.narrow(dim, 0, n - 1)).abs()
        m = None
        if mask is not None:
            m = mask.narrow(dim, 1, n - 1).float() * mask.narrow(dim, 0, n - 1).float()
        total = total + _masked_mean((gx - gy).abs(), m)
    return total


def perceptual_distance(features_a: list[Tensor], features_b: list[Tensor], sample_weights: Tensor | None = None
                        ) -> Tensor:
    """Mean over layers of the squared difference of channel-unit-normalised features (LPIPS-style):
    summed over channels, averaged over batch (weighted by ``sample_weights`` [B] when given) and voxels.
    Normalising each voxel's feature vector keeps layers of different magnitude on one scale."""
    terms = []
    for fa, fb in zip(features_a, features_b):
        na = fa / torch.sqrt((fa * fa).sum(dim=1, keepdim=True) + 1e-10)
        nb = fb / torch.sqrt((fb * fb).sum(dim=1, keepdim=True) + 1e-10)
        distance = ((na - nb) ** 2).sum(dim=1)
        if sample_weights is None:
            terms.append(distance.mean())
        else:
            per_sample = distance.flatten(1).mean(dim=1)
            terms.append((per_sample * sample_weights).sum() / sample_weights.sum().clamp_min(1e-12))
    return torch.stack(terms).mean()


def resolve_med3d_path(med3d_weights: str | Path | None) -> Path | None:
    """The Med3D weights path: the explicit argument, else env ITERDCE_MED3D_WEIGHTS, else None."""
    if med3d_weights is not None and str(med3d_weights) != "":
        return Path(med3d_weights)
    env = os.environ.get(MED3D_ENV, "")
    return Path(env) if env else None


def _validate_weights(weights: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(weights, Mapping):
        raise ValueError(f"loss weights must be a dict with keys {list(LOSS_TERMS)}, got {weights!r}")
    weights = {**{k: 0.0 for k in OPTIONAL_LOSS_TERMS}, **weights}
    missing = [k for k in LOSS_TERMS if k not in weights]
    unknown = sorted(k for k in weights if k not in LOSS_TERMS)
    if missing or unknown:
        raise ValueError(f"loss weights: missing keys {missing}, unknown keys {unknown}")
    out = {}
    for k in LOSS_TERMS:
        w = weights[k]
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"loss weight {k!r} must be a non-negative number, got {w!r}")
        out[k] = float(w)
    return out


class SynthesisLoss(nn.Module):
    """w_l1*L1 + w_ssim*(1 - SSIM) + w_perc*perceptual + w_gd*GDL (+ w_les*lesion L1) between predicted and
    true phases.

    The lesion L1 is the mean absolute error over lesion voxels only: an enhancement-aware term that puts
    pressure on the lesion intensity level (what enhancement error measures), which SSIM and a whole-patch
    L1 barely see because lesions are a small share of the voxels.

    The perceptual term uses a frozen Med3D ResNet-10 loaded from `med3d_weights` (else env
    ITERDCE_MED3D_WEIGHTS); without a weights file, or with weight 0, that term is disabled.
    Inputs are expected TI-normalised (already on MedicalNet's z-score scale), so they are not
    re-normalised per volume: that would hide global enhancement errors from the perceptual term.
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        data_range: float,
        med3d_weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.weights = _validate_weights(weights)
        if isinstance(data_range, bool) or not isinstance(data_range, (int, float)) or not (
            math.isfinite(data_range) and data_range > 0
        ):
            raise ValueError(f"SynthesisLoss data_range must be a positive number, got {data_range!r}")
        self.data_range = float(data_range)
        path = resolve_med3d_path(med3d_weights)
        self.med3d_path = path
        self.med3d: Med3DFeatures | None = None
        if path is not None and self.weights["perceptual"] > 0:
            self.med3d = Med3DFeatures(path)

    @property
    def perceptual_enabled(self) -> bool:
        """True when the Med3D perceptual term is part of the loss."""
        return self.med3d is not None

    def describe(self) -> str:
        """One line for the training log: the weighted terms and whether the perceptual term is on."""
        w = self.weights
        terms = " + ".join(f"{w[k]}*{k}" for k in LOSS_TERMS
                           if k != "perceptual" and (w[k] > 0 or k not in OPTIONAL_LOSS_TERMS))
        if self.perceptual_enabled:
            return f"loss = {terms} + {w['perceptual']}*perceptual (Med3D weights {self.med3d_path})"
        if w["perceptual"] == 0:
            why = "its weight is 0"
        else:
            why = f"no Med3D weights file (pass med3d_weights or set {MED3D_ENV})"
        return f"loss = {terms}; perceptual term DISABLED: {why}; SSIM data_range={self.data_range}"

    def terms(self, pred: Tensor, target: Tensor, mask: Tensor | None, lesion: Tensor | None = None,
              sample_weights: Tensor | None = None) -> dict[str, Tensor]:
        """Each enabled term, unweighted (float32 inputs, mask expanded to pred's shape, already multiplied by
        ``sample_weights`` when given, see ``forward``). A new term is one entry here plus its default weight in
        DEFAULT_LOSS_WEIGHTS (documentation/architecture.md)."""
        terms = {
            "l1": _masked_mean((pred - target).abs(), mask),
            "ssim": 1.0 - ssim3d(pred, target, self.data_range, mask=mask),
            "gradient_difference": gradient_difference_loss(pred, target, mask),
        }
        if lesion is not None and self.weights["lesion_l1"] > 0:
            terms["lesion_l1"] = _masked_mean((pred - target).abs(), lesion.to(pred.dtype).expand_as(pred))
        if self.med3d is not None:
            p, t = (pred, target) if mask is None else (pred * mask, target * mask)
            with torch.no_grad():
                target_features = self.med3d(t)
            terms["perceptual"] = perceptual_distance(self.med3d(p), target_features, sample_weights)
        return terms

    def forward(
        self, pred: Tensor, target: Tensor, mask: Tensor | None = None, lesion: Tensor | None = None,
        sample_weights: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and the unweighted, detached terms ("l1", "ssim" = 1 - SSIM, "gradient_difference",
        "perceptual" when enabled, "lesion_l1" when weighted and ``lesion`` is given). `mask` (broadcastable to
        pred, 1 = counts) restricts the voxels; `lesion` (same form) marks the lesion voxels.

        ``sample_weights`` [B] (0 or 1: whether a sample counts) multiply the mask and the lesion voxels, so a
        sample of weight 0 adds neither loss nor gradient, and the others are pooled exactly as without it (the
        trainer leaves out the padded phases of shorter cases this way; no host synchronisation)."""
        if pred.shape != target.shape or pred.ndim != 5:
            raise ValueError(f"SynthesisLoss needs equal [B, C, X, Y, Z] shapes, got {pred.shape}, {target.shape}")
        with torch.autocast(device_type=pred.device.type, enabled=False):
            pred, target = pred.float(), target.float()
            if sample_weights is not None:
                sample_weights = sample_weights.float().reshape(-1)
                counts = sample_weights.reshape(-1, 1, 1, 1, 1)
                mask = counts if mask is None else mask.to(pred.dtype) * counts
                lesion = None if lesion is None else lesion.to(pred.dtype) * counts
            if mask is not None:
                mask = mask.to(pred.dtype).expand_as(pred)
            terms = self.terms(pred, target, mask, lesion, sample_weights)
            total = torch.stack([self.weights[k] * v for k, v in terms.items()]).sum()
        return total, {k: v.detach() for k, v in terms.items()}
