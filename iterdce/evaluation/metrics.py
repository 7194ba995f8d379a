"""Image-quality metrics of a synthesized phase against the real one: PSNR, 3D SSIM, MAE, enhancement error,
sharpness (gradient-energy ratio).

All metrics are evaluated inside a mask (the whole volume when none is given) and return NaN when the
mask is empty, so a lesion-free case contributes nothing to a ``nanmean``. Definitions:
documentation/evaluation.md.
"""
from __future__ import annotations

import numpy as np
import torch

from iterdce.core.ssim import ssim_map


def _prepare(
    pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 copies of pred and ref plus a boolean mask (nonzero = inside); checks shapes and finiteness."""
    pred = np.asarray(pred, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if mask is None:
        inside = np.ones(ref.shape, dtype=bool)
    else:
        inside = np.asarray(mask) != 0
        if inside.shape != ref.shape:
            raise ValueError(f"mask shape {inside.shape} differs from image shape {ref.shape}")
    if not (np.isfinite(pred[inside]).all() and np.isfinite(ref[inside]).all()):
        raise ValueError("prediction or reference has non-finite values (NaN/inf) inside the mask")
    return pred, ref, inside


def _data_range(ref: np.ndarray, inside: np.ndarray, data_range: float | None) -> float:
    """The given data range, else max - min of the reference inside the mask; must be positive."""
    if data_range is None:
        values = ref[inside]
        data_range = float(values.max() - values.min())
        if data_range <= 0:
            raise ValueError(
                "the reference is constant inside the mask (data range 0); pass data_range explicitly"
            )
    elif not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    return float(data_range)


def psnr(
    pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None, data_range: float | None = None
) -> float:
    """PSNR in dB, ``10 log10(R^2 / MSE)`` over the mask; R defaults to the reference's range in the mask.

    Identical images give ``inf``; an empty mask gives NaN.
    """
    pred, ref, inside = _prepare(pred, ref, mask)
    if not inside.any():
        return float("nan")
    mse = float(np.mean((pred[inside] - ref[inside]) ** 2))
    if mse == 0.0:
        return float("inf")
    rng = _data_range(ref, inside, data_range)
    return float(10.0 * np.log10(rng**2 / mse))


def ssim3d_numpy(
    pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None, data_range: float | None = None
) -> float:
    """3D SSIM (Gaussian window 11, sigma 1.5, population covariance) averaged over the mask.

    The SSIM map is computed on the whole volume (reflect padding at the borders, no edge crop: iterdce.core.ssim's
    ``"reflect"`` boundary, scikit-image's ``structural_similarity`` to ~1e-14) and its mean is taken inside the
    mask; R as in psnr. An empty mask gives NaN.
    """
    pred, ref, inside = _prepare(pred, ref, mask)
    if ref.ndim != 3:
        raise ValueError(f"ssim3d_numpy expects 3D volumes, got shape {ref.shape}")
    if not inside.any():
        return float("nan")
    rng = _data_range(ref, inside, data_range)
    with torch.no_grad():
        local = ssim_map(torch.from_numpy(pred)[None, None], torch.from_numpy(ref)[None, None], rng, "reflect")
    return float(np.mean(local[0, 0].numpy()[inside]))


def mae(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute error over the mask (in the images' units); NaN for an empty mask."""
    pred, ref, inside = _prepare(pred, ref, mask)
    if not inside.any():
        return float("nan")
    return float(np.mean(np.abs(pred[inside] - ref[inside])))


def enhancement_error(pred: np.ndarray, ref: np.ndarray, lesion_mask: np.ndarray) -> float:
    """Squared difference of the mean lesion intensity, ``(mean_L(pred) - mean_L(ref))^2`` (the paper's).

    Inputs are expected in TI-normalized units so values compare across cases; NaN for a lesion-free case.
    """
    if lesion_mask is None:
        raise ValueError("enhancement_error needs a lesion mask")
    pred, ref, inside = _prepare(pred, ref, lesion_mask)
    if not inside.any():
        return float("nan")
    return float((pred[inside].mean() - ref[inside].mean()) ** 2)


def sharpness(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Gradient-energy ratio ``mean_M |grad pred|^2 / mean_M |grad ref|^2`` (central differences per voxel).

    1 is as sharp as the real phase; a blurred synthesis scores below 1 (an image resampled from a grid twice as
    coarse keeps about a third of the gradient energy of textured tissue), added noise above 1. It tells a blurred
    output from a sharp one where PSNR alone can look good. NaN for an empty mask or a flat reference.
    """
    pred, ref, inside = _prepare(pred, ref, mask)
    if not inside.any():
        return float("nan")
    energy = [sum(g[inside] ** 2 for g in np.gradient(image)).mean() for image in (pred, ref)]
    return float(energy[0] / energy[1]) if energy[1] > 0 else float("nan")
