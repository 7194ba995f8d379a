"""Foreground (body) masks for cases that come without a breast mask."""
from __future__ import annotations

from typing import cast

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu


def derive_foreground_mask(image: np.ndarray) -> np.ndarray:
    """Body mask from the phases [P, X, Y, Z]: Otsu threshold of the phase-mean, holes filled.

    Real scans have noise in the air background, so ``image != 0`` would select everything; Otsu on the
    mean over phases separates tissue from air whatever the scanner's intensity scale. The mean and the
    threshold are computed in float64 on a copy rescaled to [0, 1], so the mask does not depend on the
    scale (x 1e-20 or x 1e28 give the same mask) and Otsu's weighted variances cannot overflow.
    """
    mean_image = image.mean(axis=0, dtype=np.float64)
    finite = mean_image[np.isfinite(mean_image)]
    if finite.size == 0 or finite.max() == finite.min():
        return np.ones(mean_image.shape, dtype=bool)
    low, high = float(finite.min()), float(finite.max())
    scaled = (mean_image - low) / (high - low)
    mask = scaled > threshold_otsu(scaled[np.isfinite(scaled)])
    mask = ndimage.binary_opening(mask, iterations=1) if mask.sum() > 1000 else mask
    return ndimage.binary_fill_holes(mask) if mask.any() else np.ones(mean_image.shape, dtype=bool)


def nonzero_mask(image: np.ndarray) -> np.ndarray:
    """Voxels that are nonzero in any phase (the region kept by cropping)."""
    return cast(np.ndarray, np.any(image != 0, axis=0))
