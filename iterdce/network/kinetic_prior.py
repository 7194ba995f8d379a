"""The kinetic prior: the fold's voxel-wise kinetic regression (iterdce/regression/model.py) as a torch module,
so the synthesizer can start each step from the regression's estimate of the next phase and learn only
what the regression misses (spatial context: lesion morphology, noise, partial volume).

The coefficients and clip limits are buffers: they travel in every checkpoint's state dict, so a trained
model predicts without the fit file. A new module is unfitted (``fitted`` is 0); the trainer fills it
from the fold's training cases before the first step, and model loading refuses an unfitted prior.
With three or more input phases the prior also reads the slope between the last two inputs
(``slope_degree > 0``, core/kinetic_terms.py), smoothed over ``slope_sigma_mm`` on the grid of ``spacing_mm`` (the
plan's); a two-input prior has exactly the buffers it always had, and a three-input checkpoint saved before the
smoothing loads with none (as it was trained).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from iterdce.core.kinetic_terms import (
    DEGREE,
    TIME_DEGREE,
    TIME_UNIT_S,
    gaussian_weights,
    kinetic_terms,
    n_terms,
    slope,
    slope_sigma_voxels,
)


def no_smoothing() -> dict[str, Tensor]:
    """The smoothing buffers with the values that mean "none" (sigma 0, unit spacing): a new module's, and a
    three-input checkpoint's saved before the smoothing existed."""
    return {"slope_sigma_mm": torch.zeros(()), "spacing_mm": torch.ones(3)}


class KineticPrior(nn.Module):
    """``early + sum_j c_j * u**a v**b s**c tau**m`` with the inputs clipped to the fitted range (no parameters)."""

    coefficients: Tensor
    low: Tensor
    high: Tensor
    fitted: Tensor
    slope_range: Tensor
    slope_sigma_mm: Tensor
    spacing_mm: Tensor

    def __init__(self, slope_degree: int = 0) -> None:
        super().__init__()
        self.slope_degree = int(slope_degree)
        self.register_buffer("coefficients", torch.zeros(n_terms(slope_degree=self.slope_degree)))
        self.register_buffer("low", torch.zeros(3))  # (u, v, tau)
        self.register_buffer("high", torch.zeros(3))
        if self.slope_degree:
            self.register_buffer("slope_range", torch.zeros(2))
            for name, value in no_smoothing().items():
                self.register_buffer(name, value)
        self.kernels: list[Tensor | None] = [None, None, None]  # per axis, built from the buffers (smoothing)
        self.kernel_cache: dict[tuple[torch.device, torch.dtype], list[Tensor | None]] = {}
        self.register_buffer("fitted", torch.zeros((), dtype=torch.uint8))

    def set_fit(self, degree: int, time_degree: int, coefficients: Sequence[float], low: Sequence[float],
                high: Sequence[float], slope_degree: int = 0, slope_range: Sequence[float] = (0.0, 0.0),
                slope_sigma_mm: float = 0.0, spacing_mm: Sequence[float] = (1.0, 1.0, 1.0)) -> None:
        """Copy a fit in (a KineticRegression's fields; ``spacing_mm``: the grid the prior will read, the plan's);
        it must use this module's terms."""
        count = n_terms(slope_degree=self.slope_degree)
        if (degree, time_degree, slope_degree) != (DEGREE, TIME_DEGREE, self.slope_degree) \
                or len(coefficients) != count:
            raise ValueError(f"the kinetic prior uses degree {DEGREE}, time degree {TIME_DEGREE} and slope degree "
                             f"{self.slope_degree} ({count} terms), got a fit of degree {degree}, time degree "
                             f"{time_degree}, slope degree {slope_degree}")
        with torch.no_grad():
            self.coefficients.copy_(torch.as_tensor(list(coefficients), dtype=torch.float32))
            self.low.copy_(torch.as_tensor(list(low), dtype=torch.float32))
            self.high.copy_(torch.as_tensor(list(high), dtype=torch.float32))
            if self.slope_degree:
                self.slope_range.copy_(torch.as_tensor(list(slope_range), dtype=torch.float32))
                self.slope_sigma_mm.fill_(float(slope_sigma_mm))
                self.spacing_mm.copy_(torch.as_tensor(list(spacing_mm), dtype=torch.float32))
            self.fitted.fill_(1)
        self.build_kernels()

    def build_kernels(self) -> None:
        """The smoothing's 1D kernels per axis from the buffers (one host read: at fit and load time only)."""
        if not self.slope_degree:
            return
        sigmas = slope_sigma_voxels(float(self.slope_sigma_mm.item()), self.spacing_mm.tolist(), 3)
        self.kernel_cache = {}
        self.kernels = [None if sigma <= 0 else torch.as_tensor(gaussian_weights(sigma), dtype=torch.float32,
                                                                   device=self.coefficients.device)
                        for sigma in sigmas]

    def _load_from_state_dict(self, state_dict: dict[str, Tensor], prefix: str, *args: Any) -> None:
        """A three-input checkpoint saved before the smoothing has no smoothing buffers: it loads with none."""
        if self.slope_degree and f"{prefix}slope_range" in state_dict:
            for name, value in no_smoothing().items():
                state_dict.setdefault(f"{prefix}{name}", value)
        super()._load_from_state_dict(state_dict, prefix, *args)
        self.build_kernels()

    def smooth(self, s: Tensor) -> Tensor:
        """``s`` [B, 1, X, Y, Z] filtered along each axis with the kernels (edges: the nearest voxel repeated, as
        kinetic_terms.smoothed on the numpy side)."""
        key = (s.device, s.dtype)
        if key not in self.kernel_cache:  # once per device: no transfer per step
            self.kernel_cache[key] = [None if k is None else k.to(device=s.device, dtype=s.dtype)
                                      for k in self.kernels]
        with torch.autocast(device_type=s.device.type, enabled=False):  # the slope stays in float32
            for axis, kernel in enumerate(self.kernel_cache[key]):
                if kernel is None:
                    continue
                radius = (kernel.numel() - 1) // 2
                pad = [0, 0, 0, 0, 0, 0]
                pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius  # F.pad lists the last axis first
                shape = [1, 1, 1, 1, 1]
                shape[2 + axis] = kernel.numel()
                s = F.conv3d(F.pad(s, pad, mode="replicate"), kernel.reshape(shape))
        return s

    def is_fitted(self) -> bool:
        """Whether a fit was set (one host read: call it when loading a model, not per step)."""
        return bool(self.fitted.item())

    def forward(self, pre: Tensor, early: Tensor, early_time_s: Tensor, target_time_s: Tensor,
                previous: Tensor | None = None, previous_time_s: Tensor | None = None) -> Tensor:
        """pre, early [B, 1, X, Y, Z] (TI-normalized), times [B] in seconds -> the estimate at the target time.

        ``previous`` / ``previous_time_s``: the input before ``early`` and its time, read by a prior with slope
        terms (the synthesizers pass them with three or more inputs)."""
        shape = (-1,) + (1,) * (early.ndim - 1)
        tau = ((target_time_s - early_time_s) / TIME_UNIT_S).clamp(self.low[2], self.high[2]).reshape(shape)
        u = (early - pre).clamp(self.low[0], self.high[0])
        v = pre.clamp(self.low[1], self.high[1])
        s = None
        if self.slope_degree:
            if previous is None or previous_time_s is None:
                raise ValueError("this kinetic prior reads the slope between the last two inputs: pass previous and "
                                 "previous_time_s")
            s = self.smooth(slope(early.float(), previous.float(), early_time_s.reshape(shape),
                                  previous_time_s.reshape(shape))).clamp(self.slope_range[0], self.slope_range[1])
        terms = kinetic_terms(u.float(), v.float(), tau.float(), s=s, slope_degree=self.slope_degree)
        change = torch.zeros_like(u, dtype=torch.float32)
        for c, term in zip(self.coefficients.unbind(), terms):
            change = change + c * term
        return early + change.to(early.dtype)
