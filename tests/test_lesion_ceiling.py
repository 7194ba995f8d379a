"""benchmarks/lesion_ceiling.py: the leave-one-case-out lesion readers that bound the three-input lesion error."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.lesion_ceiling import ceiling, read_curves

TIMES = (0.0, 60.0, 120.0, 240.0, 360.0)


def write_curves(folder: Path, seed: int = 0) -> Path:
    """A report whose real last phases follow a linear law of the inputs; the method is that law plus a bias."""
    rng = np.random.default_rng(seed)
    rows = []
    for case in range(8):
        for lesion in (1, 2):
            x0, x1 = rng.normal(-1.0, 0.2), rng.normal(0.5, 0.3)
            x2 = x1 + rng.normal(0.0, 0.3)
            slope = (x2 - x1) / 60.0
            real = [x0, x1, x2] + [x2 + 0.5 * slope * (t - 120.0) for t in TIMES[3:]]
            method = real[:3] + [v + 0.3 for v in real[3:]]
            rows += [{"case": f"c{case}", "lesion": lesion, "phase": k, "time_s": t, "real": r, "iterdce": m}
                     for k, (t, r, m) in enumerate(zip(TIMES, real, method))]
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "curves.csv", index=False)
    return folder


def test_readers_find_a_linear_law_the_method_misses(tmp_path: Path) -> None:
    result = ceiling(write_curves(tmp_path / "report"), n_inputs=3, method="iterdce")
    assert result["iterdce"]["ee_last"] == pytest.approx(0.09)  # the bias 0.3, squared
    assert result["linear reader (own site, leave-one-case-out)"]["ee_last"] < 1e-4
    assert result["iterdce corrected (own site, leave-one-case-out)"]["ee_last"] < 1e-4
    assert result["iterdce"]["lesions"] == 16


def test_a_case_is_never_in_its_own_readers_fit(tmp_path: Path) -> None:
    """With one case only there is nothing left to fit on: the reader cannot see the lesion it predicts."""
    report = write_curves(tmp_path / "report")
    frame = pd.read_csv(report / "curves.csv")
    frame[frame["case"] == "c0"].to_csv(report / "curves.csv", index=False)
    with pytest.raises(SystemExit, match="at least two cases"):
        ceiling(report, n_inputs=3, method="iterdce")


def test_a_missing_method_column_is_named(tmp_path: Path) -> None:
    report = write_curves(tmp_path / "report")
    with pytest.raises(SystemExit, match="no column 'regression'.*iterdce"):
        read_curves(report, "regression")


def test_a_correction_fitted_on_another_report_is_applied_unchanged(tmp_path: Path) -> None:
    """Fitted on a report that follows the same law, the correction removes the method's bias on this one."""
    result = ceiling(write_curves(tmp_path / "test", seed=1), n_inputs=3, method="iterdce",
                     transfer_from=write_curves(tmp_path / "other", seed=2))
    assert result["iterdce corrected (fitted on other)"]["ee_last"] < 1e-4
    assert result["iterdce"]["ee_last"] == pytest.approx(0.09)
