"""Experimental composition ``gain``: the share of the network's change that scales the kinetic prior's change
is applied at native resolution, the rest is resampled as an additive change.

Hypothesis (reports/native_resolution.md, "Why site D's lesion column is worse"): in a lesion a few plan voxels
across, the prior composition keeps the lesion's native contrast while the network's correction comes back
blurred, so where the network lowers the prior's enhancement (a washout lesion) the lesion keeps most of the
prior's overshoot. On the plan grid the lesion blurs in the prior's change and in the network's change alike, so
their ratio there is the lesion's own gain; multiplying the *native* prior change by that gain carries the
correction at the lesion's scale.

Per target phase, on the plan grid (TI-normalized; L the last input, P the prior, S the synthesized phase):
``g = G(dS * dP) / (G(dP ** 2) + eps ** 2)`` with dP = P - L, dS = S - L, G a Gaussian of ``sigma`` plan voxels
(0: none), g clipped to ``GAIN_LIMITS``; the residual r = dS - g dP. On the case's grid:
``L_n + up(g) * (P_n - L_n) + up(r)``. With g = 1 this is the ``prior`` composition exactly; where the prior
changes nothing (dP -> 0) it is the ``last`` composition.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from iterdce.inference.composition import Composition, canonical_base, case_orientation
from iterdce.preprocessing.case_properties import CaseProperties
from iterdce.preprocessing.cropping import crop
from iterdce.preprocessing.orientation import reorient_view
from iterdce.preprocessing.resampling import resample_phases

GAIN_LIMITS = (-2.0, 3.0)


def parse_gain_mode(mode: str) -> tuple[float, float]:
    """``gain-<eps>-<sigma>`` -> (eps, sigma)."""
    _, eps, sigma = mode.split("-")
    return float(eps), float(sigma)


def plan_gain(synthesized: np.ndarray, prior: np.ndarray, last: np.ndarray, eps: float, sigma: float
              ) -> tuple[np.ndarray, np.ndarray]:
    """(gain, residual) [T, x, y, z] on the plan grid."""
    d_prior = prior - last[None]
    d_synth = synthesized - last[None]
    numerator, denominator = d_synth * d_prior, d_prior * d_prior
    if sigma > 0:
        numerator = np.stack([gaussian_filter(p, sigma) for p in numerator])
        denominator = np.stack([gaussian_filter(p, sigma) for p in denominator])
    gain = np.clip(numerator / (denominator + np.float32(eps * eps)), *GAIN_LIMITS).astype(np.float32)
    return gain, (d_synth - gain * d_prior).astype(np.float32)


def gain_phases(synthesized: np.ndarray, plan_inputs: np.ndarray, inputs: np.ndarray,
                times_s: Sequence[float] | np.ndarray, properties: CaseProperties, priors: Composition,
                eps: float, sigma: float) -> np.ndarray:
    """Target phases on the case's grid in its intensity scale (``composition.native_phases``'s contract)."""
    prior_plan = priors.base(plan_inputs, times_s, properties.target_spacing)
    gain, residual = plan_gain(synthesized, prior_plan, plan_inputs[-1], eps, sigma)
    gain = resample_phases(gain, properties.target_spacing, properties.cropped_shape)
    residual = resample_phases(residual, properties.target_spacing, properties.cropped_shape)
    residual *= np.float32(properties.ti_norm.std)
    full = canonical_base(inputs, times_s, properties, priors, gain.shape[0])  # the native prior
    last = crop(reorient_view(inputs, np.asarray(properties.orientation_transform)), properties.crop_box)[-1]
    box = crop(full, properties.crop_box)
    last32 = last.astype(np.float32)[None]
    box[...] = last32 + gain * (box - last32) + residual
    return case_orientation(full, properties)
