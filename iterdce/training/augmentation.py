"""Augmentation with batchgenerators: one spatial transform shared by every phase and mask of a sample,
intensity changes (gamma, brightness, a receive-coil bias field) shared by all phases, so the enhancement
kinetics between phases survive; optionally one contrast-uptake factor on every phase's enhancement
(enhancement_scale.py); noise is drawn independently per phase, as on a scanner.

Rotation is in-plane (about the canonical inferior-superior axis): breast DCE slabs are acquired axially
or sagittally with thick slices, and out-of-plane rotation would interpolate across them. Mirroring is
left-right only, the one flip that gives anatomy a scanner can produce.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from batchgenerators.transforms.abstract_transforms import Compose
from batchgenerators.transforms.color_transforms import BrightnessMultiplicativeTransform, GammaTransform
from batchgenerators.transforms.noise_transforms import GaussianNoiseTransform
from batchgenerators.transforms.spatial_transforms import MirrorTransform, SpatialTransform

from iterdce.preprocessing.plan_schema import AugmentationPlan
from iterdce.training.bias_field import BiasFieldTransform
from iterdce.training.enhancement_scale import EnhancementScaleTransform


def extraction_size(patch_size: Sequence[int], augmentation: AugmentationPlan | None) -> list[int]:
    """Patch to cut before the spatial transform so that rotation and zoom-out never reach its border."""
    if augmentation is None or augmentation.probability_spatial <= 0:
        return [int(p) for p in patch_size]
    angle = math.radians(augmentation.rotation_deg)
    min_scale = min(augmentation.scale_range)
    in_plane = (math.cos(angle) + math.sin(angle)) / min_scale
    factors = [in_plane, in_plane, 1.0 / min_scale]
    return [int(math.ceil(p * f / 2) * 2) for p, f in zip(patch_size, factors)]


def build_transforms(patch_size: Sequence[int], augmentation: AugmentationPlan | None) -> Compose | None:
    """The batchgenerators pipeline from the plan's ``augmentation`` section (None: no augmentation)."""
    if augmentation is None:
        return None
    a = augmentation
    angle = math.radians(a.rotation_deg)
    p_spatial = a.probability_spatial
    transforms = [
        SpatialTransform(
            list(patch_size), patch_center_dist_from_border=None, do_elastic_deform=False,
            do_rotation=p_spatial > 0, angle_x=(0.0, 0.0), angle_y=(0.0, 0.0), angle_z=(-angle, angle),
            do_scale=p_spatial > 0, scale=tuple(a.scale_range), border_mode_data="nearest", order_data=3,
            border_mode_seg="constant", border_cval_seg=0, order_seg=0, random_crop=False,
            p_rot_per_sample=p_spatial, p_scale_per_sample=p_spatial,
        ),
        EnhancementScaleTransform(tuple(a.enhancement_scale_range), a.probability_enhancement_scale),
        GammaTransform(tuple(a.gamma_range), per_channel=False, retain_stats=True,
                       p_per_sample=a.probability_gamma),
        BrightnessMultiplicativeTransform(tuple(a.multiplicative_range), per_channel=False,
                                          p_per_sample=a.probability_multiplicative),
        BiasFieldTransform(a.bias_field_strength, a.probability_bias_field),
        GaussianNoiseTransform(tuple(a.noise_variance), p_per_sample=a.probability_noise, per_channel=False),
    ]
    if a.mirror_axes:
        transforms.append(MirrorTransform(tuple(a.mirror_axes)))
    return Compose(transforms)


def center_crop(array: np.ndarray, patch_size: Sequence[int]) -> np.ndarray:
    """Central ``patch_size`` region of the last three axes (used when augmentation is off)."""
    starts = [(s - p) // 2 for s, p in zip(array.shape[-3:], patch_size)]
    index: tuple[Any, ...] = (..., *(slice(b, b + p) for b, p in zip(starts, patch_size)))
    return array[index]
