"""Kinetic parameters and proton density of the normal tissues, as a table of parameter sets per voxel.

Parameters vary smoothly inside a tissue through a random field that is quantised into a few bins, so the
kinetic model is solved once per bin, never once per voxel.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from iterdce.simulation.anatomy import Anatomy, Tissue
from iterdce.simulation.fields import quantile_bins, smooth_field
from iterdce.simulation.kinetics import ParamSet

PROTON_DENSITY = {
    Tissue.AIR: 0.0, Tissue.LUNG: 0.08, Tissue.BLOOD: 0.9, Tissue.MUSCLE: 0.75,
    Tissue.FAT: 1.0, Tissue.SKIN: 0.8, Tissue.FGT: 0.85, Tissue.LESION: 0.9, Tissue.CYST: 1.0,
}
BPE_KTRANS = (0.005, 0.05)  # 1/min, log-uniform per case: background parenchymal enhancement
CYST_T10_S = 3.0  # simple fluid at 3 T
FGT_BINS = 12
MUSCLE_BINS = 4


@dataclass
class TissueMaps:
    """``set_index`` points every voxel at a row of ``param_sets``; ``fat_sets`` are rows hit by fat saturation."""

    set_index: np.ndarray
    param_sets: list[ParamSet]
    proton_density: np.ndarray
    fat_sets: list[int]
    texture: np.ndarray
    bpe_ktrans_per_min: float = 0.0

    def add_sets(self, sets: Sequence[ParamSet]) -> int:
        """Append parameter sets and return the row of the first one."""
        offset = len(self.param_sets)
        self.param_sets.extend(sets)
        return offset


def _binned(
    maps: TissueMaps, where: np.ndarray, field: np.ndarray, n_bins: int, make: Callable[[float], ParamSet]
) -> None:
    """Quantise ``field`` inside ``where`` and give each bin the parameter set ``make(bin_mean)``."""
    if not where.any():
        return
    index, means = quantile_bins(field[where], n_bins)
    offset = maps.add_sets([make(float(m)) for m in means])
    maps.set_index[where] = offset + index


def tissue_maps(rng: np.random.Generator, anatomy: Anatomy, spacing: Sequence[float],
                bpe_range: Sequence[float] = BPE_KTRANS) -> TissueMaps:
    """Draw this case's normal-tissue parameters (background parenchymal enhancement level included).

    The BPE Ktrans is log-uniform in ``bpe_range``; FGT kinetics are slow (kep <= 0.25 /min), so BPE is
    persistent, as it mostly is in the clinic.
    """
    shape = anatomy.tissue.shape
    tissue = anatomy.tissue
    pd_lookup = np.array([PROTON_DENSITY[t] for t in Tissue], dtype=np.float32)
    texture = 1.0 + 0.05 * smooth_field(rng, shape, spacing, correlation_mm=2.0)
    proton_density = pd_lookup[tissue] * texture

    static = [
        ParamSet(t10_s=1.0),  # air: no signal (proton density 0)
        ParamSet(t10_s=1.3),  # lung
        ParamSet(t10_s=1.6, blood=True),  # heart and vessels follow the arterial input
        ParamSet(t10_s=float(rng.uniform(0.30, 0.42))),  # fat: non-enhancing
        ParamSet(ktrans_per_min=0.03, ve=0.3, vp=0.02, t10_s=1.0),  # skin
        ParamSet(t10_s=CYST_T10_S),  # cyst fluid: non-enhancing
    ]
    maps = TissueMaps(np.zeros(shape, dtype=np.int16), list(static), proton_density, [3], texture)
    for row, code in enumerate((Tissue.AIR, Tissue.LUNG, Tissue.BLOOD, Tissue.FAT, Tissue.SKIN, Tissue.CYST)):
        maps.set_index[tissue == code] = row

    muscle_k = float(rng.uniform(0.04, 0.06))
    muscle_field = smooth_field(rng, shape, spacing, correlation_mm=6.0)
    _binned(maps, tissue == Tissue.MUSCLE, 1.0 + 0.15 * muscle_field, MUSCLE_BINS,
            lambda m: ParamSet(ktrans_per_min=muscle_k * m, ve=0.15, vp=0.03 * m, t10_s=1.0))

    # background parenchymal enhancement: per-case level, smooth voxel-wise variation
    bpe = float(np.exp(rng.uniform(np.log(bpe_range[0]), np.log(bpe_range[1]))))
    ve, vp, t10 = rng.uniform(0.2, 0.4), rng.uniform(0.003, 0.015), rng.uniform(1.3, 1.7)
    fgt_field = np.clip(1.0 + 0.35 * smooth_field(rng, shape, spacing, correlation_mm=8.0), 0.3, 1.8)
    _binned(maps, tissue == Tissue.FGT, fgt_field, FGT_BINS,
            lambda m: ParamSet(ktrans_per_min=bpe * m, ve=float(ve), vp=float(vp) * m,
                               t10_s=float(t10) * (1.0 + 0.05 * (m - 1.0))))
    maps.bpe_ktrans_per_min = bpe
    return maps
