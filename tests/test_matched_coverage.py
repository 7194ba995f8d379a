"""benchmarks/matched_coverage.py: the marginal interval's half-width at a given mean per-case coverage."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.matched_coverage import matched_half_width, mean_case_coverage


def test_coverage_is_averaged_per_case_not_per_voxel() -> None:
    small, large = np.array([0.1, 0.2]), np.full(8, 5.0)
    assert mean_case_coverage([small, large], 1.0) == pytest.approx(0.5)  # per voxel it would be 0.2


def test_half_width_reaches_the_coverage_and_no_less() -> None:
    residuals = [np.linspace(0.0, 1.0, 101), np.linspace(0.0, 2.0, 101)]
    half = matched_half_width(residuals, 0.75)
    assert mean_case_coverage(residuals, half) >= 0.75
    assert mean_case_coverage(residuals, half - 0.01) < 0.75
    assert matched_half_width(residuals, 1.0) == pytest.approx(2.0, abs=1e-3)
