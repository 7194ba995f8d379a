"""benchmarks/site_shift_width.py: the leave-one-site-out widening of the marginal interval."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.site_shift_width import shift_factors, widened_interval


def uniform(scale: float, cases: int = 3) -> list[np.ndarray]:
    """Residuals spread evenly over [0, scale] in every case."""
    return [np.linspace(0.0, scale, 1001) for _ in range(cases)]


def test_a_site_with_twice_the_errors_gives_a_factor_of_two() -> None:
    factors = shift_factors({3: uniform(1.0)}, {3: uniform(2.0), 4: uniform(1.0)}, coverage=0.9)
    assert list(factors) == [3]  # only phases both sets have
    assert factors[3] == pytest.approx(2.0, rel=1e-2)


def test_the_widened_interval_covers_a_test_site_with_the_same_shift() -> None:
    rows = widened_interval({3: uniform(1.0)}, {3: uniform(2.0)}, {3: uniform(4.0)}, {3: 2.0}, coverage=0.9)
    row = rows[3]
    assert row["coverage_unwidened"] == pytest.approx(0.45, abs=0.01)
    assert row["reference_width_at_unwidened_coverage"] == pytest.approx(3.6, rel=1e-2)
    assert row["coverage_widened"] == pytest.approx(0.9, abs=0.01)
    assert row["width_widened"] == pytest.approx(3.6, rel=1e-2)
    assert row["reference_width_at_that_coverage"] == pytest.approx(7.2, rel=1e-2)  # the reference errs twice as much
