"""Contrast-uptake augmentation: one random factor per sample on every post-contrast phase's enhancement.

Sites differ in how strongly the same tissue enhances (agent relaxivity, dose, flip angle, arterial input),
so a model trained on a few sites meets other enhancement levels elsewhere. Multiplying each post-contrast
phase's difference from the pre-contrast phase (phase 0) by one log-uniform factor keeps every voxel's curve
shape and timing and changes only its height, the same way on input and target phases.
"""
from __future__ import annotations

import math

import numpy as np
from batchgenerators.transforms.abstract_transforms import AbstractTransform


class EnhancementScaleTransform(AbstractTransform):
    """With probability ``p_per_sample``: phases 1.. of a sample = pre + factor x (phase - pre)."""

    def __init__(self, scale_range: tuple[float, ...], p_per_sample: float, data_key: str = "data") -> None:
        low, high = (float(v) for v in scale_range)
        if not 0 < low <= high:
            raise ValueError(f"enhancement scale range must be 0 < low <= high, got {list(scale_range)}")
        self.log_range = (math.log(low), math.log(high))
        self.p_per_sample, self.data_key = float(p_per_sample), data_key

    def __call__(self, **data_dict: np.ndarray) -> dict[str, np.ndarray]:
        data = data_dict[self.data_key]
        for b in range(data.shape[0]):
            # the global numpy generator is what the trainer seeds per batch (as for batchgenerators)
            if self.p_per_sample > 0 and np.random.uniform() < self.p_per_sample:
                factor = math.exp(np.random.uniform(*self.log_range))
                pre = data[b, :1]
                data[b, 1:] = pre + factor * (data[b, 1:] - pre)
        data_dict[self.data_key] = data
        return data_dict
