"""Receive-coil bias field augmentation: one smooth multiplicative field shared by every phase of a sample.

Scanners differ in coil sensitivity; the field multiplies the raw signal of all phases alike, so it changes
the image but not the kinetics. On TI-normalized data the raw signal is proportional to ``z - z_air``
(``z_air``: the sample's minimum, the air background), so the field is applied around that floor.
"""
from __future__ import annotations

import numpy as np
from batchgenerators.transforms.abstract_transforms import AbstractTransform
from scipy import ndimage

CONTROL_POINTS = 4


def random_bias_field(shape: tuple[int, ...], strength: float, rng: np.random.Generator) -> np.ndarray:
    """exp(smooth field) with log-amplitude at most ``strength``: cubic interpolation of a coarse random grid."""
    coarse = rng.uniform(-1.0, 1.0, size=(CONTROL_POINTS,) * len(shape))
    factors = [s / CONTROL_POINTS for s in shape]
    smooth = ndimage.zoom(coarse, factors, order=3, mode="nearest", grid_mode=True)
    smooth = smooth[tuple(slice(0, s) for s in shape)]
    peak = np.abs(smooth).max()
    return np.exp(strength * smooth / peak if peak > 0 else smooth).astype(np.float32)


class BiasFieldTransform(AbstractTransform):
    """With probability ``p_per_sample``, multiply a sample's signal above its floor by one random bias field."""

    def __init__(self, strength: float, p_per_sample: float, data_key: str = "data") -> None:
        self.strength, self.p_per_sample, self.data_key = float(strength), float(p_per_sample), data_key

    def __call__(self, **data_dict: np.ndarray) -> dict[str, np.ndarray]:
        data = data_dict[self.data_key]
        for b in range(data.shape[0]):
            if self.strength > 0 and np.random.uniform() < self.p_per_sample:
                # the global numpy generator is what the trainer seeds per batch (as for batchgenerators)
                rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))
                field = random_bias_field(tuple(data.shape[2:]), self.strength, rng)
                floor = data[b].min()
                data[b] = (data[b] - floor) * field[None] + floor
        data_dict[self.data_key] = data
        return data_dict
