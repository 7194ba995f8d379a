"""Acquisition imperfections: timing jitter, coil bias field, inter-phase motion and Rician noise."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

BIAS_AMPLITUDE = (0.10, 0.25)


def jitter_times(rng: np.random.Generator, times_s: Sequence[float], jitter_s: float) -> np.ndarray:
    """Shift each post-contrast time by up to +-``jitter_s`` (uniform, 0.1 s resolution); pre-contrast stays.

    The config check keeps jitter below half the shortest gap, so the times stay strictly increasing.
    """
    times = np.asarray(times_s, dtype=np.float64).copy()
    if jitter_s > 0:
        times[1:] = np.round(times[1:] + rng.uniform(-jitter_s, jitter_s, size=times.size - 1), 1)
    if np.any(np.diff(times) <= 0):
        raise ValueError(f"jittered phase times are not strictly increasing: {times.tolist()}")
    return times


def bias_field(
    rng: np.random.Generator, shape: Sequence[int], amplitude_range: Sequence[float] = BIAS_AMPLITUDE
) -> np.ndarray:
    """Smooth multiplicative receive-coil field exp(a * p(x, y, z)), p a random quadratic scaled to [-1, 1].

    The amplitude a is uniform in ``amplitude_range``.
    The same field multiplies every phase, as a coil sensitivity does.
    """
    axes = [np.linspace(-1.0, 1.0, int(n), dtype=np.float32) for n in shape]
    x, y, z = (a.reshape([-1 if i == k else 1 for i in range(3)]) for k, a in enumerate(axes))
    terms = [x, y, z, x * x, y * y, z * z, x * y, x * z, y * z]
    coefficients = rng.normal(0.0, 1.0, size=len(terms)) * np.array([1, 1, 0.5, 0.7, 0.7, 0.3, 0.5, 0.3, 0.3])
    poly = np.zeros(tuple(int(n) for n in shape), dtype=np.float32)
    for c, term in zip(coefficients, terms):
        poly += np.float32(c) * term
    peak = float(np.abs(poly).max())
    amplitude = rng.uniform(float(amplitude_range[0]), float(amplitude_range[1]))
    return np.exp(np.float32(amplitude / peak if peak > 0 else 0.0) * poly)


def motion_shifts(
    rng: np.random.Generator, n_phases: int, motion_mm: float, spacing: Sequence[float]
) -> np.ndarray:
    """Per-phase translation in voxels [P, 3]: none for the pre-contrast, random direction and size after.

    The random numbers are drawn even for ``motion_mm == 0`` so that the noise that follows is the same.
    """
    directions = rng.standard_normal((n_phases - 1, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    sizes = rng.uniform(0.0, 1.0, size=(n_phases - 1, 1)) * float(motion_mm)
    shifts = np.zeros((n_phases, 3))
    shifts[1:] = directions * sizes / np.asarray(spacing, dtype=np.float64)
    return shifts


def apply_motion(images: np.ndarray, shifts_vox: np.ndarray) -> np.ndarray:
    """Translate each phase [P, X, Y, Z] by its shift (linear interpolation, edge values repeated)."""
    out = images.copy()
    for phase, shift in enumerate(shifts_vox):
        if np.any(shift != 0):
            out[phase] = ndimage.shift(images[phase], shift, order=1, mode="nearest")
    return out


def add_rician_noise(rng: np.random.Generator, images: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise of standard deviation ``sigma`` per channel.

    Rounded to integers (stored as float32), as scanner magnitude images are.
    """
    out = np.empty_like(images, dtype=np.float32)
    for phase in range(images.shape[0]):
        real = images[phase] + np.float32(sigma) * rng.standard_normal(images.shape[1:], dtype=np.float32)
        imag = np.float32(sigma) * rng.standard_normal(images.shape[1:], dtype=np.float32)
        out[phase] = np.round(np.hypot(real, imag))
    return out
