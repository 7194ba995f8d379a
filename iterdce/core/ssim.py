"""The SSIM constants of Wang et al. 2004, shared by the SSIM metric (evaluation) and the SSIM loss term."""
from __future__ import annotations

SSIM_SIGMA = 1.5
SSIM_WINDOW = 11  # 2 * int(3.5 * 1.5 + 0.5) + 1: the Gaussian window
SSIM_K1, SSIM_K2 = 0.01, 0.03
