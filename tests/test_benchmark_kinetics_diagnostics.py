"""The two kinetics diagnostics of benchmarks/: the time-origin bases of the regression and the curve-type
accuracy by horizon."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks.regression_time_origin import TimeOriginRegression, design, time_factors
from benchmarks.type_by_horizon import accuracy_by_horizon
from iterdce.core.kinetic_terms import DEGREE, TIME_DEGREE, TIME_UNIT_S, kinetic_terms, n_terms
from iterdce.regression.model import KineticRegression


def test_since_last_basis_is_the_package_regressions() -> None:
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=50), rng.normal(size=50)
    ours = design("since_last", u, v, 90.0, 290.0)
    theirs = kinetic_terms(u, v, 2.0, DEGREE, TIME_DEGREE)
    assert len(ours) == len(theirs) == n_terms()
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b)
    coefficients = rng.normal(size=n_terms())
    low, high = (-1.0, -2.0, 0.5), (2.0, 2.0, 3.0)
    package = KineticRegression(DEGREE, TIME_DEGREE, coefficients, low, high)
    prototype = TimeOriginRegression("since_last", coefficients, np.array([-1.0, -2.0, 60.0, 100.0, 50.0]),
                                     np.array([2.0, 2.0, 120.0, 500.0, 300.0]))
    phases = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    times, targets = [0.0, 90.0], [150.0, 300.0, 700.0]  # tau 0.6, 2.1 and 6.1 (clipped to 3.0)
    np.testing.assert_allclose(prototype.predict(phases, times, targets), package.predict(phases, times, targets),
                               rtol=1e-5, atol=1e-5)


def test_since_start_basis_is_zero_at_the_last_input_and_depends_on_its_time() -> None:
    assert time_factors("since_start", 100.0, 100.0) == [0.0, 0.0, 0.0]
    early, late = time_factors("since_start", 60.0, 260.0), time_factors("since_start", 120.0, 320.0)
    assert early[0] == pytest.approx(late[0]) == pytest.approx(200.0 / TIME_UNIT_S)  # linear: time since input
    assert late[1] > early[1]  # t**2 - t_last**2 grows with the time of the last input
    assert len(time_factors("since_last_x_last", 90.0, 200.0)) == 2 * TIME_DEGREE
    with pytest.raises(ValueError, match="unknown basis"):
        time_factors("since_injection", 1.0, 2.0)


def test_accuracy_by_horizon_classifies_scanner_intensities_per_cut() -> None:
    times = [0.0, 100.0, 200.0, 300.0]
    raw_curve = np.array([100.0, 200.0, 230.0, 170.0])  # persistent after phase 2, washout after phase 3
    std, mean = 40.0, 150.0
    normalized = (raw_curve - mean) / std
    predicted = normalized.copy()
    predicted[3] = (240.0 - mean) / std  # predicted persistent to the end
    table = pd.DataFrame({"case": "c", "lesion": 1, "phase": range(4), "time_s": times, "real": normalized,
                          "pred": predicted})
    true_types: dict[int, list[str]] = {}
    accuracy = accuracy_by_horizon(table, {("c", 1): raw_curve}, true_types)
    assert accuracy == {2: 1.0, 3: 0.0}
    assert true_types == {2: ["persistent"], 3: ["washout"]}
