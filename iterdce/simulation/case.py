"""One phantom case from (seed, case index): anatomy, lesions, kinetics, signal, then acquisition effects."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from iterdce.core.kinetics_rule import CURVE_CODES, classify_ratio, curve_ratio
from iterdce.simulation.acquisition import (
    add_rician_noise,
    apply_motion,
    bias_field,
    jitter_times,
    motion_shifts,
)
from iterdce.simulation.anatomy import Tissue, build_anatomy
from iterdce.simulation.breast_structures import add_cysts, add_vessels
from iterdce.simulation.config import SimulationConfig
from iterdce.simulation.kinetics import Physics
from iterdce.simulation.lesion_design import case_rng, draw_lesion_specs, draw_site_lesion_specs
from iterdce.simulation.lesion_kinetics import lesion_kinetics
from iterdce.simulation.lesions import place_lesions
from iterdce.simulation.protocol import CaseProtocol, draw_protocol
from iterdce.simulation.scanner_geometry import stored_affine, to_stored
from iterdce.simulation.tissues import PROTON_DENSITY, tissue_maps

S0_SCALE = 10000.0
CHECK_MARGIN = 0.045


@dataclass
class SimulatedCase:
    """Images [P, X, Y, Z] float32, lesion labels and breast mask (uint8), times and one row per lesion.

    Arrays are in the stored (acquired) axis order that ``affine`` describes; ``acquisition`` holds the
    protocol values drawn for the case (one row of acquisition.csv).
    """

    case_id: str
    images: np.ndarray
    labels: np.ndarray
    breast_mask: np.ndarray
    times_s: np.ndarray
    lesion_rows: list[dict[str, Any]]
    affine: np.ndarray
    acquisition: dict[str, Any]
    noiseless: np.ndarray | None = field(default=None, repr=False)


def case_id_for(index: int, prefix: str = "phantom") -> str:
    """The case identifier of case ``index`` (``phantom_000``, ...)."""
    return f"{prefix}_{index:03d}"


def _curve_type(ratio: float) -> str:
    """The rule's curve type for a curve ratio."""
    code = int(classify_ratio(ratio))
    return next(name for name, value in CURVE_CODES.items() if value == code)


def _lesion_ratios(images: np.ndarray, labels: np.ndarray, rows: list[dict], times: np.ndarray) -> list[float]:
    """Curve ratio of each lesion's mean curve over its label in ``images`` [P, X, Y, Z]."""
    return [float(curve_ratio(images[:, labels == row["lesion"]].astype(np.float64).mean(axis=1), times))
            for row in rows]


def _check_lesion_curves(noiseless: np.ndarray, labels: np.ndarray, rows: list[dict], times: np.ndarray) -> None:
    """Re-derive every lesion's type from the assembled noiseless image; a mismatch is a simulator bug."""
    for row, ratio in zip(rows, _lesion_ratios(noiseless, labels, rows, times)):
        if _curve_type(ratio) != row["curve_type"] or min(abs(ratio - 0.1), abs(ratio + 0.1)) < CHECK_MARGIN:
            raise RuntimeError(f"{row['case']}: lesion {row['lesion']} curve ratio {ratio:.3f} does not give the "
                               f"declared type {row['curve_type']} with margin")


def _moved(noiseless: np.ndarray, shifts: np.ndarray, labels: np.ndarray, rows: list[dict],
           times: np.ndarray) -> tuple[np.ndarray, float]:
    """Apply inter-phase motion, halving it (at most 4 times, then none) while it would change a lesion's type.

    Motion mixes a lesion's edge with its surroundings; the declared type must stay true of the written images.
    Returns the moved images and the factor the shifts were scaled by.
    """
    for attempt in range(5):
        factor = 0.5**attempt if attempt < 4 else 0.0
        moved = apply_motion(noiseless, shifts * factor)
        ratios = _lesion_ratios(moved, labels, rows, times)
        if all(_curve_type(r) == row["curve_type"]
               for row, r in zip(rows, ratios)):
            return moved, factor
    return moved, factor


def _lesion_prior(protocol: CaseProtocol, malignant: bool | None) -> dict[str, tuple[float, float]] | None:
    """The site's (Ktrans, ve, vp) prior for a lesion, or None for the type's own ranges (no site)."""
    site = protocol.site
    if site is None or malignant is None:
        return None
    return {"ktrans": site.ktrans_malignant if malignant else site.ktrans_benign, "ve": site.ve, "vp": site.vp}


def simulate_case(
    seed: int, index: int, config: SimulationConfig, keep_noiseless: bool = False, case_prefix: str = "phantom"
) -> SimulatedCase:
    """Simulate case ``index`` of the dataset with ``seed``; the result depends only on these and ``config``.

    ``case_prefix`` only names the case (``<prefix>_007``).
    """
    protocol = draw_protocol(seed, index, config)
    rng = case_rng(seed, index, site_key=None if protocol.site is None else protocol.site.stream_key)
    case_id = case_id_for(index, case_prefix)
    shape, spacing = protocol.canonical_shape, protocol.canonical_spacing
    times = jitter_times(rng, protocol.nominal_times_s, protocol.jitter_s)
    bolus_arrival = float(rng.uniform(*protocol.bolus_arrival_range))
    physics = Physics(times, bolus_arrival, protocol.tr_s, protocol.flip_angle_deg,
                      protocol.field_strength_t, protocol.agent, protocol.aif_scale, protocol.aif_stretch)
    anatomy = build_anatomy(rng, shape, spacing, protocol.body_fill, protocol.heart)
    if protocol.site is None:
        specs = draw_lesion_specs(rng, seed, index)
    else:
        specs = draw_site_lesion_specs(rng, protocol.site.malignant_prob)
    lesions = place_lesions(rng, anatomy, specs, spacing)
    if protocol.site is not None:
        free = np.ones(anatomy.tissue.shape, dtype=bool)
        for lesion in lesions:
            free[lesion.voxels] = False
        add_cysts(rng, anatomy, spacing, protocol.cysts, free)
        add_vessels(rng, anatomy, spacing, protocol.vessels, free)
    maps = tissue_maps(rng, anatomy, spacing, protocol.bpe_range)
    bias = bias_field(rng, shape, protocol.bias_range)
    fat_factor = float(rng.uniform(*protocol.fat_efficiency_range))  # drawn either way: same stream after it
    fat_factor = fat_factor if protocol.fat_suppression else 1.0

    labels = np.zeros(anatomy.tissue.shape, dtype=np.uint8)
    rows = []
    voxel_volume_ml = float(np.prod(spacing)) / 1000.0
    for lesion in lesions:
        vox = lesion.voxels
        labels[vox] = lesion.spec.label
        anatomy.tissue[vox] = Tissue.LESION
        maps.proton_density[vox] = PROTON_DENSITY[Tissue.LESION] * maps.texture[vox]
        weights = maps.proton_density[vox].astype(np.float64) * bias[vox]
        kinetics = lesion_kinetics(rng, lesion, weights, physics, _lesion_prior(protocol, lesion.spec.malignant))
        maps.set_index[vox] = maps.add_sets(kinetics.sets) + kinetics.voxel_set
        rows.append({
            "case": case_id, "lesion": lesion.spec.label, "curve_type": lesion.spec.curve_type,
            "ktrans_per_min": round(kinetics.base.ktrans_per_min, 5), "ve": round(kinetics.base.ve, 4),
            "vp": round(kinetics.base.vp, 4), "volume_ml": round(lesion.n_voxels * voxel_volume_ml, 4),
            "morphology": lesion.spec.morphology, "pattern": lesion.spec.pattern,
            "curve_ratio": round(kinetics.ratio, 4), "diameter_mm": round(lesion.spec.diameter_mm, 2),
            "host_tissue": lesion.spec.host, "t10_s": round(kinetics.base.t10_s, 3),
            "bolus_arrival_s": round(bolus_arrival, 2), "breast_density": anatomy.density,
            "malignant": "" if lesion.spec.malignant is None else int(lesion.spec.malignant),
        })

    curves = physics.signals(maps.param_sets) * S0_SCALE
    curves[maps.fat_sets] *= fat_factor
    curves = curves.astype(np.float32)
    amplitude = maps.proton_density * bias
    noiseless = np.stack([amplitude * curves[:, p][maps.set_index] for p in range(len(times))])
    _check_lesion_curves(noiseless, labels, rows, times)

    fgt = anatomy.tissue == Tissue.FGT
    reference = float(noiseless[0][fgt if fgt.any() else anatomy.breast_mask].mean())
    shifts = motion_shifts(rng, len(times), protocol.motion_mm, spacing)
    moved, factor = _moved(noiseless, shifts, labels, rows, times)
    images = add_rician_noise(rng, moved, reference / protocol.snr)
    shift_mm = float(np.linalg.norm(shifts * factor * np.asarray(spacing), axis=1).max())
    acquisition = {"case": case_id, **protocol.row(), "bias_amplitude": round(float(np.abs(np.log(bias)).max()), 4),
                   "fat_factor": round(fat_factor, 4), "bolus_arrival_s": round(bolus_arrival, 2),
                   "phase_times_s": " ".join(f"{t:g}" for t in times),
                   "max_shift_mm": round(shift_mm, 3)}
    return SimulatedCase(case_id, to_stored(images, protocol), to_stored(labels, protocol),
                         to_stored(anatomy.breast_mask.astype(np.uint8), protocol), times, rows,
                         stored_affine(protocol), acquisition,
                         to_stored(noiseless, protocol) if keep_noiseless else None)
