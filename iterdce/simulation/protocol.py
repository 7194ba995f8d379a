"""The acquisition protocol of one case: fixed by the settings, or drawn per case from a site profile.

Site draws use their own random stream (seed, 2, case index, site), so the anatomy and lesion stream of a case
is the same whatever the profile draws, and the default (no site) phantom is unchanged by their existence.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from iterdce.simulation.acquisition import BIAS_AMPLITUDE
from iterdce.simulation.config import SimulationConfig
from iterdce.simulation.lesion_design import case_rng
from iterdce.simulation.sites import SiteProfile, nominal_times
from iterdce.simulation.tissues import BPE_KTRANS

FAT_SUPPRESSION = (0.10, 0.25)
BOLUS_ARRIVAL_S = (10.0, 20.0)
# the patient axis (0 left-right, 1 posterior-anterior, 2 inferior-superior) of each stored array axis
STORED_AXES = {"axial": (0, 1, 2), "sagittal": (1, 2, 0)}
POSITIVE = {"RAS": ("R", "A", "S"), "LPS": ("L", "P", "S")}


@dataclass(frozen=True)
class CaseProtocol:
    """Everything about how one case is acquired. Ranges are drawn later from the case's own stream."""

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    orientation: str = "axial"
    axcodes: str = "RAS"
    oblique_deg: tuple[float, ...] = (0.0, 0.0, 0.0)  # rotation vector (3 values); its norm is the angle
    body_fill: float = 1.0
    snr: float = 40.0
    bias_range: tuple[float, float] = BIAS_AMPLITUDE
    fat_suppression: bool = True
    fat_efficiency_range: tuple[float, float] = FAT_SUPPRESSION
    field_strength_t: float = 3.0
    agent: str = "gadopentetate"
    flip_angle_deg: float = 12.0
    tr_s: float = 0.004
    nominal_times_s: tuple[float, ...] = ()
    jitter_s: float = 0.0
    motion_mm: float = 0.0
    bolus_arrival_range: tuple[float, float] = BOLUS_ARRIVAL_S
    aif_scale: float = 1.0
    aif_stretch: float = 1.0
    bpe_range: tuple[float, float] = BPE_KTRANS
    vessels: int = 0
    cysts: int = 0
    heart: bool = True  # the heart and thoracic vessels in the field of view
    site: SiteProfile | None = None

    @property
    def stored_codes(self) -> tuple[str, str, str]:
        """Axis codes (nibabel convention) of the array as written: e.g. ('R','A','S') or ('P','S','L')."""
        letters = POSITIVE[self.axcodes]
        return tuple(letters[a] for a in STORED_AXES[self.orientation])  # type: ignore[return-value]

    def _patient_order(self, stored_values: tuple) -> tuple:
        """Per-axis values of the stored array, reordered to patient (RAS) axes."""
        out = [stored_values[0]] * 3
        for stored, patient in enumerate(STORED_AXES[self.orientation]):
            out[patient] = stored_values[stored]
        return tuple(out)

    @property
    def canonical_shape(self) -> tuple[int, int, int]:
        """The grid in patient (RAS) axis order, on which anatomy and physics are built."""
        return self._patient_order(self.shape)  # type: ignore[return-value]

    @property
    def canonical_spacing(self) -> tuple[float, float, float]:
        """Voxel size (mm) in patient (RAS) axis order."""
        return self._patient_order(self.spacing)  # type: ignore[return-value]

    def rotation(self) -> np.ndarray:
        """The small oblique rotation (3x3, rotation vector ``oblique_deg``) applied to the scanner-space affine."""
        return Rotation.from_rotvec(self.oblique_deg, degrees=True).as_matrix()

    def row(self) -> dict[str, Any]:
        """The drawn values, one row of ``acquisition.csv``."""
        return {
            "orientation": self.orientation, "axcodes": "".join(self.stored_codes),
            "spacing_mm": " ".join(f"{s:.3f}" for s in self.spacing),
            "fov_mm": " ".join(f"{n * s:.1f}" for n, s in zip(self.shape, self.spacing)),
            "oblique_deg": " ".join(f"{a:.2f}" for a in self.oblique_deg), "body_fill": round(self.body_fill, 3),
            "snr": round(self.snr, 2), "fat_suppression": int(self.fat_suppression),
            "field_strength_t": self.field_strength_t, "agent": self.agent,
            "flip_angle_deg": round(self.flip_angle_deg, 2), "tr_ms": round(self.tr_s * 1000.0, 3),
            "motion_mm": round(self.motion_mm, 3), "aif_scale": round(self.aif_scale, 3),
            "aif_stretch": round(self.aif_stretch, 3),
            "vessels": self.vessels, "cysts": self.cysts, "heart": int(self.heart),
        }


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _choice(rng: np.random.Generator, table: dict[str, float]) -> str:
    keys = sorted(table)
    weights = np.array([table[k] for k in keys], dtype=np.float64)
    return str(keys[int(rng.choice(len(keys), p=weights / weights.sum()))])


def draw_protocol(seed: int, index: int, config: SimulationConfig) -> CaseProtocol:
    """The protocol of case ``index``: the fixed settings, or a draw from ``config.site``."""
    site = config.site
    if site is None:
        return CaseProtocol(
            shape=config.shape, spacing=config.spacing, snr=config.snr, fat_suppression=config.fat_suppression,
            field_strength_t=config.field_strength_t, agent=config.agent, flip_angle_deg=config.flip_angle_deg,
            tr_s=config.tr_s, nominal_times_s=config.case_times(index), jitter_s=config.timing_jitter_s,
            motion_mm=config.motion_mm)
    rng = case_rng(seed, index, stream=2, site_key=site.stream_key)
    inplane, slice_mm = _uniform(rng, site.inplane_mm), _uniform(rng, site.slice_mm)
    orientation, axcodes = _choice(rng, site.orientation), _choice(rng, site.axcodes)
    angle = _uniform(rng, site.oblique_deg)
    axis = rng.standard_normal(3)
    oblique = tuple(float(a) for a in angle * axis / np.linalg.norm(axis))
    first_post, gap = _uniform(rng, site.first_post_s), _uniform(rng, site.gap_s)
    protocol = CaseProtocol(
        shape=config.shape, spacing=(inplane, inplane, slice_mm), orientation=orientation, axcodes=axcodes,
        oblique_deg=oblique, body_fill=_uniform(rng, site.body_fill), snr=_uniform(rng, site.snr),
        bias_range=site.bias, fat_suppression=bool(rng.random() < site.fat_suppression_prob),
        fat_efficiency_range=site.fat_suppression_efficiency,
        field_strength_t=float(_choice(rng, site.field_strength_t)), agent=_choice(rng, site.agent),
        flip_angle_deg=_uniform(rng, site.flip_deg), tr_s=_uniform(rng, site.tr_ms) / 1000.0,
        nominal_times_s=nominal_times(first_post, gap, site.n_phases), jitter_s=_uniform(rng, site.jitter_s),
        motion_mm=_uniform(rng, site.motion_mm), bolus_arrival_range=site.bolus_arrival_s,
        aif_scale=_uniform(rng, site.aif_scale), aif_stretch=_uniform(rng, site.aif_stretch),
        bpe_range=site.bpe_ktrans,
        vessels=int(rng.integers(int(site.vessels[0]), int(site.vessels[1]) + 1)),
        cysts=int(rng.integers(int(site.cysts[0]), int(site.cysts[1]) + 1)),
        # drawn last and only when it can fail, so the cases of sites that always show the heart are unchanged
        heart=bool(rng.random() < site.heart_prob) if site.heart_prob < 1.0 else True, site=site)
    # the early frames replace the site's early phases after every draw, so the draws do not depend on them
    return replace(protocol, nominal_times_s=config.acquired(protocol.nominal_times_s))
