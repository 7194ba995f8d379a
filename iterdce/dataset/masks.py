"""Foreground (body) masks for cases that come without a breast mask."""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu


def derive_foreground_mask(image: np.ndarray) -> np.ndarray:
    """Body mask from the phases [P, X, Y, Z]: Otsu threshold of the phase-mean, holes filled.

    Real scans have noise in the air background, so ``image != 0`` would select everything; Otsu on the
    mean over phases separates tissue from air whatever the scanner's intensity scale.
    """
    mean_image = image.mean(axis=0)
    finite = mean_image[np.isfinite(mean_image)]
    if finite.size == 0 or finite.max() == finite.min():
        return np.ones(mean_image.shape, dtype=bool)
    mask = mean_image > threshold_otsu(finite)
    mask = ndimage.binary_opening(mask, iterations=1) if mask.sum() > 1000 else mask
    return ndimage.binary_fill_holes(mask) if mask.any() else np.ones(mean_image.shape, dtype=bool)


def nonzero_mask(image: np.ndarray) -> np.ndarray:
    """Voxels that are nonzero in any phase (the region kept by cropping)."""
    return np.any(image != 0, axis=0)
