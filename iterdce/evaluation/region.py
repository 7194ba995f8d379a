"""The one definition of where and in which units a synthesized phase is scored, shared by the fold
validation report (plan space) and iterdce_evaluate (the cases' own geometry).

Default region ``foreground``: the body foreground of the input phases (Otsu threshold of their mean, holes
filled; dataset/masks.py). Alternative ``breast``: the dataset's breast masks. In both, every phase (real and
synthesized) is TI-normalized with the mean and standard deviation of the real reference phase inside the same
region, so MAE and enhancement error are in the same units whichever path computed them; PSNR and SSIM take
their data range from the reference inside the region.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from iterdce.core.errors import IterdceError
from iterdce.dataset.masks import derive_foreground_mask
from iterdce.preprocessing.normalization import TINormStats, ti_norm_stats

REGIONS = ("foreground", "breast")
RESOLUTIONS = ("native", "plan")
DEFAULT_REGION = "foreground"
REGION_TEXT = {"foreground": "the body foreground of the input phases (Otsu, holes filled)",
               "breast": "the dataset's breast masks"}


class RegionError(IterdceError, ValueError):
    """The scoring region cannot be built (e.g. ``breast`` without breast masks)."""


@dataclass(frozen=True)
class Scoring:
    """Region and normalization of one report; written into summary.json and the report's header."""

    region: str
    reference_phase: int
    resolution: str = "native"  # "native": each case's own grid; "plan": the plan's grid (fold validation without
    # the raw dataset), where detail finer than the plan spacing is not scored

    def __post_init__(self) -> None:
        if self.region not in REGIONS:
            raise RegionError(f"scoring region must be one of {', '.join(REGIONS)}, got {self.region!r}")
        if self.resolution not in RESOLUTIONS:
            raise RegionError(f"scoring resolution must be one of {', '.join(RESOLUTIONS)}, got {self.resolution!r}")

    def describe(self) -> dict[str, str]:
        """The summary.json entry."""
        return {"region": self.region, "region_definition": REGION_TEXT[self.region], "resolution": self.resolution,
                "normalization": f"TI-norm: (x - mean) / std of real phase {self.reference_phase} inside the region"}

    def mask(self, inputs: np.ndarray, breast_mask: np.ndarray | None) -> np.ndarray:
        """The scoring region of one case from its real input phases [n_in, ...] (and breast mask)."""
        if self.region == "breast":
            if breast_mask is None or not np.any(breast_mask):
                raise RegionError("region 'breast' needs a non-empty breast mask for every case")
            return np.asarray(breast_mask) > 0
        return derive_foreground_mask(inputs)

    def normalize(self, real: np.ndarray, synthesized: np.ndarray, mask: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, TINormStats]:
        """Real [P, ...] and synthesized [T, ...] phases in TI-normalized units of this region."""
        stats = ti_norm_stats(real, mask, self.reference_phase)
        return (real - stats.mean) / stats.std, (synthesized - stats.mean) / stats.std, stats
