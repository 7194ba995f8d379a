"""Site profiles: the sub-ranges from which one acquisition site draws each case's protocol and lesions.

A multi-centre collection differs between sites in scanner, protocol and population. A profile holds, for
every varying setting, the range (or the weighted choices) a site draws from per case; six built-in sites
A-F differ on purpose so that a benchmark can train on some and test on a held-out one (D: coarse and
sagittal; E: finer than every plan's grid, the test of native-resolution synthesis; F: E without the heart in
the field of view, a case no shipped model was trained on). A profile can also
be read from JSON (the same field names; ranges as two-element lists, choices as {value: weight}).
"""
from __future__ import annotations

import math
import zlib
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import dcmri
import numpy as np

from iterdce.core.errors import UsageError
from iterdce.core.json_io import read_json

Range = tuple[float, float]
Choices = dict[str, float]

ORIENTATIONS = ("axial", "sagittal")
AXCODES = ("RAS", "LPS")
# hard limits of every range (documentation/simulation_sites.md)
LIMITS: dict[str, Range] = {
    "inplane_mm": (0.5, 2.0), "slice_mm": (0.8, 4.0), "oblique_deg": (0.0, 15.0), "body_fill": (0.6, 1.0),
    "snr": (5.0, 200.0), "bias": (0.0, 0.6), "fat_suppression_efficiency": (0.02, 0.6),
    "flip_deg": (5.0, 35.0), "tr_ms": (2.5, 10.0), "first_post_s": (30.0, 150.0), "gap_s": (30.0, 150.0),
    "jitter_s": (0.0, 20.0), "motion_mm": (0.0, 3.0), "bolus_arrival_s": (5.0, 40.0),
    "ktrans_malignant": (0.01, 3.0), "ktrans_benign": (0.01, 3.0), "ve": (0.05, 0.9), "vp": (0.001, 0.2),
    "aif_scale": (0.3, 3.0), "aif_stretch": (0.5, 2.0), "bpe_ktrans": (0.001, 0.3), "vessels": (0.0, 30.0),
    "cysts": (0.0, 10.0),
}
PROBABILITIES = ("fat_suppression_prob", "malignant_prob", "heart_prob")


@dataclass(frozen=True)
class SiteProfile:
    """Per-case draw ranges of one site. Ranges are uniform (lesion Ktrans and vp log-uniform); choices weighted."""

    name: str
    description: str
    inplane_mm: Range
    slice_mm: Range
    orientation: Choices
    axcodes: Choices
    oblique_deg: Range
    body_fill: Range
    snr: Range
    bias: Range
    fat_suppression_prob: float
    fat_suppression_efficiency: Range
    field_strength_t: Choices
    agent: Choices
    flip_deg: Range
    tr_ms: Range
    first_post_s: Range
    gap_s: Range
    jitter_s: Range
    motion_mm: Range
    bolus_arrival_s: Range
    malignant_prob: float
    ktrans_malignant: Range
    ktrans_benign: Range
    ve: Range
    vp: Range
    n_phases: int = 6
    aif_scale: Range = (0.8, 1.2)
    aif_stretch: Range = (0.9, 1.1)
    bpe_ktrans: Range = (0.005, 0.05)
    vessels: Range = (2.0, 8.0)
    cysts: Range = (0.0, 3.0)
    heart_prob: float = 1.0  # chance that the heart and thoracic vessels lie in the field of view (else lung only)

    def validate(self) -> None:
        """Raise ValueError naming every field that is missing, malformed or outside its hard limits."""
        problems = []
        for key, (low, high) in LIMITS.items():
            value = getattr(self, key)
            if len(value) != 2 or not (low <= value[0] <= value[1] <= high):
                problems.append(f"{key} must be [low, high] within [{low}, {high}], got {list(value)}")
        for key in PROBABILITIES:
            if not 0.0 <= getattr(self, key) <= 1.0:
                problems.append(f"{key} must be a probability in [0, 1], got {getattr(self, key)}")
        allowed = {"orientation": ORIENTATIONS, "axcodes": AXCODES, "field_strength_t": ("1.5", "3.0"),
                   "agent": tuple(_supported_agents())}
        for key, options in allowed.items():
            table = getattr(self, key)
            unknown = sorted(set(table) - set(options))
            if unknown or not table or any(w < 0 for w in table.values()) or sum(table.values()) <= 0:
                problems.append(f"{key} must weigh some of {list(options)} with non-negative weights, got {table}")
        if not 3 <= self.n_phases <= 12:
            problems.append(f"n_phases must be between 3 and 12, got {self.n_phases}")
        if self.jitter_s[1] >= self.gap_s[0] / 2 - 0.5:
            problems.append(f"jitter_s up to {self.jitter_s[1]} s must stay below half the shortest gap "
                            f"minus 0.5 s ({self.gap_s[0] / 2 - 0.5:g} s)")
        if problems:
            raise UsageError(f"site profile {self.name!r}: " + "; ".join(problems))

    @property
    def stream_key(self) -> int:
        """A stable number from the site's name, mixed into every case's random streams."""
        return zlib.crc32(self.name.encode("utf-8"))

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (ranges as lists), stored in dataset.json and readable by ``profile_from_json``."""
        payload = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in payload.items()}


def _supported_agents() -> list[str]:
    """Agents with a T1 blood relaxivity in dcmri at both 1.5 T and 3 T."""
    agents = []
    for agent in ("gadopentetate", "gadobutrol", "gadoteridol", "gadoterate", "gadodiamide", "gadobenate"):
        try:
            [dcmri.relaxivity(b0, "blood", agent) for b0 in (1.5, 3.0)]
        except (KeyError, ValueError):
            continue
        agents.append(agent)
    return agents


_COMMON: dict[str, Any] = {
    "fat_suppression_efficiency": (0.10, 0.25), "bolus_arrival_s": (10.0, 20.0), "ve": (0.1, 0.8),
    "vp": (0.002, 0.08), "n_phases": 6,
}
SITES: dict[str, SiteProfile] = {
    "A": SiteProfile(
        name="A", description="3 T academic centre: axial RAS, fine in-plane and thin slices, high SNR, "
                              "fat saturation, gadobutrol, fast protocol (gaps 60-75 s)",
        inplane_mm=(0.6, 0.8), slice_mm=(1.0, 1.5), orientation={"axial": 1.0}, axcodes={"RAS": 1.0},
        oblique_deg=(0.0, 3.0), body_fill=(0.85, 1.0), snr=(35.0, 60.0), bias=(0.10, 0.20),
        fat_suppression_prob=1.0, field_strength_t={"3.0": 1.0}, agent={"gadobutrol": 1.0},
        flip_deg=(10.0, 15.0), tr_ms=(4.0, 5.0), first_post_s=(60.0, 80.0), gap_s=(60.0, 75.0),
        jitter_s=(0.0, 5.0), motion_mm=(0.0, 0.5), malignant_prob=0.6,
        ktrans_malignant=(0.08, 1.5), ktrans_benign=(0.03, 0.5), aif_scale=(0.85, 1.15), aif_stretch=(0.9, 1.1),
        bpe_ktrans=(0.005, 0.04), vessels=(3.0, 8.0), cysts=(0.0, 3.0), **_COMMON),
    "B": SiteProfile(
        name="B", description="1.5 T community hospital: axial LPS, 0.8-1.0 mm in-plane, 1.5-2.5 mm slices, "
                              "fat saturation on 30 % of cases, gadoterate, gaps 80-100 s",
        inplane_mm=(0.8, 1.0), slice_mm=(1.5, 2.5), orientation={"axial": 1.0}, axcodes={"LPS": 1.0},
        oblique_deg=(0.0, 5.0), body_fill=(0.8, 0.95), snr=(20.0, 40.0), bias=(0.15, 0.30),
        fat_suppression_prob=0.3, field_strength_t={"1.5": 1.0}, agent={"gadoterate": 1.0},
        flip_deg=(10.0, 20.0), tr_ms=(4.5, 6.5), first_post_s=(80.0, 100.0), gap_s=(80.0, 100.0),
        jitter_s=(0.0, 8.0), motion_mm=(0.2, 0.8), malignant_prob=0.5,
        ktrans_malignant=(0.06, 1.2), ktrans_benign=(0.03, 0.4), aif_scale=(0.75, 1.25), aif_stretch=(0.85, 1.2),
        bpe_ktrans=(0.005, 0.05), vessels=(2.0, 6.0), cysts=(0.0, 4.0), **_COMMON),
    "C": SiteProfile(
        name="C", description="mixed 1.5 T / 3 T network: axial, RAS or LPS, 0.7-1.0 mm in-plane, 1-2 mm "
                              "slices, fat saturation on 70 %, gadopentetate or gadoterate, gaps 70-110 s",
        inplane_mm=(0.7, 1.0), slice_mm=(1.0, 2.0), orientation={"axial": 1.0},
        axcodes={"RAS": 0.5, "LPS": 0.5}, oblique_deg=(0.0, 5.0), body_fill=(0.8, 1.0), snr=(25.0, 50.0),
        bias=(0.10, 0.25), fat_suppression_prob=0.7, field_strength_t={"1.5": 0.5, "3.0": 0.5},
        agent={"gadopentetate": 0.5, "gadoterate": 0.5}, flip_deg=(12.0, 18.0), tr_ms=(3.5, 5.0),
        first_post_s=(70.0, 110.0), gap_s=(70.0, 110.0), jitter_s=(0.0, 10.0), motion_mm=(0.0, 1.0),
        malignant_prob=0.55, ktrans_malignant=(0.08, 1.5), ktrans_benign=(0.03, 0.5), aif_scale=(0.8, 1.2),
        aif_stretch=(0.85, 1.15),
        bpe_ktrans=(0.005, 0.06), vessels=(2.0, 8.0), cysts=(0.0, 3.0), **_COMMON),
    "D": SiteProfile(
        name="D", description="held-out site: sagittal acquisition, coarse 1.0-1.2 mm in-plane and 2.5-3 mm "
                              "slices, low SNR (15-30), strong bias, 3 T, gadoteridol, slow protocol "
                              "(gaps 100-120 s), more motion",
        inplane_mm=(1.0, 1.2), slice_mm=(2.5, 3.0), orientation={"sagittal": 1.0},
        axcodes={"RAS": 0.5, "LPS": 0.5}, oblique_deg=(0.0, 8.0), body_fill=(0.9, 1.0), snr=(15.0, 30.0),
        bias=(0.20, 0.35), fat_suppression_prob=0.5, field_strength_t={"3.0": 1.0}, agent={"gadoteridol": 1.0},
        flip_deg=(15.0, 25.0), tr_ms=(5.0, 7.0), first_post_s=(90.0, 120.0), gap_s=(100.0, 120.0),
        jitter_s=(0.0, 10.0), motion_mm=(0.5, 1.2), malignant_prob=0.65,
        ktrans_malignant=(0.06, 1.5), ktrans_benign=(0.03, 0.6), aif_scale=(0.7, 1.3), aif_stretch=(0.8, 1.25),
        bpe_ktrans=(0.01, 0.08), vessels=(1.0, 5.0), cysts=(0.0, 2.0), **_COMMON),
    "E": SiteProfile(
        name="E", description="held-out fine-resolution site: 0.6-0.8 mm in-plane and 1.0-1.6 mm slices, axial LPS "
                              "tilted 5-12 degrees, strong fat saturation on every case, smaller breasts with more "
                              "vessels and cysts, 3 T, gadodiamide, gaps 60-90 s",
        inplane_mm=(0.6, 0.8), slice_mm=(1.0, 1.6), orientation={"axial": 1.0}, axcodes={"LPS": 1.0},
        oblique_deg=(5.0, 12.0), body_fill=(0.6, 0.75), snr=(30.0, 50.0), bias=(0.05, 0.15),
        fat_suppression_prob=1.0, fat_suppression_efficiency=(0.03, 0.08), field_strength_t={"3.0": 1.0},
        agent={"gadodiamide": 1.0}, flip_deg=(10.0, 15.0), tr_ms=(3.5, 4.5), first_post_s=(60.0, 90.0),
        gap_s=(60.0, 90.0), jitter_s=(0.0, 5.0), motion_mm=(0.0, 0.6), bolus_arrival_s=(10.0, 20.0),
        malignant_prob=0.6, ktrans_malignant=(0.08, 1.5), ktrans_benign=(0.03, 0.5), ve=(0.1, 0.8),
        vp=(0.002, 0.08), n_phases=6, aif_scale=(0.8, 1.2), aif_stretch=(0.9, 1.1), bpe_ktrans=(0.005, 0.05),
        vessels=(8.0, 16.0), cysts=(2.0, 6.0)),
}
# F: site E's acquisition with another anatomy in the field of view: a breast-only slab above the heart, so no
# blood pool enhances and washes out; the TI-norm statistics of its cases differ from those of A-E, which
# makes it the out-of-distribution test of a shipped model (never in any training set)
SITES["F"] = replace(SITES["E"], name="F", heart_prob=0.0, description=(
    "out-of-distribution site: site E's fine-resolution, strongly fat-saturated acquisition of a breast-only field "
    "of view (no heart or thoracic vessels), smaller breasts with more vessels and cysts"))


def nominal_times(first_post_s: float, gap_s: float, n_phases: int) -> tuple[float, ...]:
    """Pre-contrast at 0 s, first post-contrast phase at ``first_post_s``, then one phase every ``gap_s``."""
    return (0.0,) + tuple(round(first_post_s + k * gap_s, 1) for k in range(n_phases - 1))


def site_nominal_times(site: SiteProfile) -> tuple[float, ...]:
    """The site's middle protocol (mid-range first phase and gap): dataset.json's phase_times_s."""
    return nominal_times(float(np.mean(site.first_post_s)), float(np.mean(site.gap_s)), site.n_phases)


def site_shortest_times(site: SiteProfile) -> tuple[float, ...]:
    """The site's earliest protocol (shortest first phase and gap): the fewest phases after the early frames."""
    return nominal_times(site.first_post_s[0], site.gap_s[0], site.n_phases)


def profile_from_json(payload: dict[str, Any]) -> SiteProfile:
    """A validated profile from a JSON object; missing fields are taken from ``base`` (a site name) if given."""
    if not isinstance(payload, dict):
        raise UsageError("a site profile must be a JSON object")
    payload = dict(payload)
    base_name = payload.pop("base", None)
    known = {f.name for f in fields(SiteProfile)}
    unknown = sorted(set(payload) - known)
    if unknown:
        raise UsageError(f"site profile: unknown field(s) {unknown}; expected some of {sorted(known)}")
    if base_name is not None:
        if base_name not in SITES:
            raise UsageError(f"site profile: base must be one of {sorted(SITES)}, got {base_name!r}")
        base = SITES[base_name].to_json()
        base["name"] = payload.get("name", f"{base_name}-custom")
        payload = {**base, **payload}
    missing = sorted(known - set(payload) - {f.name for f in fields(SiteProfile) if f.default is not MISSING})
    if missing:
        raise UsageError(f"site profile: missing field(s) {missing} (or give \"base\": \"A\".. \"D\")")
    try:
        values: dict[str, Any] = {k: tuple(float(x) for x in v) if k in LIMITS else v for k, v in payload.items()}
        values = {k: {str(c): float(w) for c, w in v.items()} if isinstance(v, dict) else v
                  for k, v in values.items()}
        profile = SiteProfile(**values)
        profile = replace(profile, name=str(profile.name), n_phases=int(profile.n_phases),
                          fat_suppression_prob=float(profile.fat_suppression_prob),
                          malignant_prob=float(profile.malignant_prob), heart_prob=float(profile.heart_prob))
    except (TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"site profile: malformed value ({exc})") from exc
    if any(isinstance(v, float) and not math.isfinite(v) for v in asdict(profile).values()):
        raise UsageError("site profile: values must be finite")
    profile.validate()
    return profile


def load_site_profile(path: str | Path) -> SiteProfile:
    """Read and validate a JSON site profile; errors name the file."""
    path = Path(path)
    payload = read_json(path)
    try:
        return profile_from_json(payload)
    except ValueError as exc:
        raise UsageError(f"{path}: {exc}", path) from exc


def site_profile(name: str) -> SiteProfile:
    """A built-in site profile by name (A-F)."""
    if name not in SITES:
        raise UsageError(f"unknown site {name!r}; choose one of {', '.join(sorted(SITES))} or pass a JSON profile")
    return SITES[name]
