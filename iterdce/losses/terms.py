"""The built-in loss terms, registered in the order they are evaluated and summed: L1, 1 - SSIM, gradient
difference, lesion L1 and the Med3D perceptual distance (the paper's weights 0.1, 1, 0.1, -, 1).

Each term is one ``register_loss_term`` entry (registry.py); a term of the user's is the same, in their own file.
"""
from __future__ import annotations

import torch
from torch import Tensor

from iterdce.core.ssim import SSIM_SIGMA, SSIM_WINDOW, ssim_map, valid_region
from iterdce.losses.registry import LossInputs, register_loss_term


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """The mean of ``values`` over the voxels where ``mask`` (broadcastable, weights) is set; all when None."""
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
    """Mean 3D SSIM of [B, C, X, Y, Z] volumes in float32: iterdce.core.ssim's map with the ``"valid"`` boundary
    (the window shrinks, staying odd, on axes smaller than window_size). With a mask, the map is averaged over the
    mask voxels at the window centres. Differentiable."""
    local = ssim_map(x.float(), y.float(), data_range, "valid", window_size, sigma)
    if mask is not None:
        mask = valid_region(mask, tuple(x.shape[2:]), window_size)
    return masked_mean(local, mask)


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
        total = total + masked_mean((gx - gy).abs(), m)
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


@register_loss_term("l1", 0.1, evaluated_at_weight_0=True)
def l1(inputs: LossInputs) -> Tensor:
    """Mean absolute error over the (masked) patch."""
    return masked_mean((inputs.pred - inputs.target).abs(), inputs.mask)


@register_loss_term("ssim", 1.0, evaluated_at_weight_0=True)
def one_minus_ssim(inputs: LossInputs) -> Tensor:
    """1 - SSIM, SSIM over the (masked) patch with the plan's intensity range as data range."""
    return 1.0 - ssim3d(inputs.pred, inputs.target, inputs.data_range, mask=inputs.mask)


@register_loss_term("gradient_difference", 0.1, evaluated_at_weight_0=True)
def gradient_difference(inputs: LossInputs) -> Tensor:
    """Gradient difference: keeps edges sharp where L1 and SSIM tolerate blur."""
    return gradient_difference_loss(inputs.pred, inputs.target, inputs.mask)


@register_loss_term("lesion_l1", 0.0, needs=("lesion",))
def lesion_l1(inputs: LossInputs) -> Tensor:
    """Mean absolute error over lesion voxels only: an enhancement-aware term that puts pressure on the lesion
    intensity level (what enhancement error measures), which SSIM and a whole-patch L1 barely see because lesions
    are a small share of the voxels. Off (0) in the paper's loss."""
    assert inputs.lesion is not None  # needs=("lesion",)
    return masked_mean((inputs.pred - inputs.target).abs(), inputs.lesion.to(inputs.pred.dtype).expand_as(inputs.pred))


@register_loss_term("perceptual", 1.0, needs=("med3d",))
def perceptual(inputs: LossInputs) -> Tensor:
    """Distance of frozen Med3D ResNet-10 features of the (masked) prediction and target; the target's features
    carry no gradient."""
    assert inputs.med3d is not None  # needs=("med3d",)
    pred, target, mask = inputs.pred, inputs.target, inputs.mask
    p, t = (pred, target) if mask is None else (pred * mask, target * mask)
    with torch.no_grad():
        target_features = inputs.med3d(t)
    return perceptual_distance(inputs.med3d(p), target_features, inputs.sample_weights)
