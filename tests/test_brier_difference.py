"""benchmarks/brier_difference.py: the paired Brier difference and its case-bootstrap interval."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchmarks.brier_difference import lesion_brier, paired_difference


def write_lesions(path: Path, p_washout: float) -> Path:
    """Six washout lesions in three cases, each given ``p_washout`` and the rest to persistent."""
    rows = [{"case": f"c{i // 2}", "lesion": i % 2 + 1, "true_type": "washout", "p_persistent": 1 - p_washout,
             "p_plateau": 0.0, "p_washout": p_washout} for i in range(6)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_a_better_model_has_a_negative_difference(tmp_path: Path) -> None:
    reference = lesion_brier(write_lesions(tmp_path / "ref.csv", 0.5))
    assert reference.iloc[0] == pytest.approx(0.5)  # 0.5^2 + 0.5^2
    better = lesion_brier(write_lesions(tmp_path / "model.csv", 1.0))
    mean, (low, high), per_model = paired_difference(reference, [better, reference])
    assert per_model == [pytest.approx(-0.5), pytest.approx(0.0)]
    assert mean == pytest.approx(-0.25) and low == pytest.approx(-0.25) and high == pytest.approx(-0.25)


def test_reports_of_other_lesions_are_refused(tmp_path: Path) -> None:
    reference = lesion_brier(write_lesions(tmp_path / "ref.csv", 0.5))
    with pytest.raises(SystemExit, match="same lesions"):
        paired_difference(reference, [reference.iloc[:4]])
    pd.DataFrame([{"case": "c0", "lesion": 1, "true_type": "washout"}]).to_csv(tmp_path / "plain.csv", index=False)
    with pytest.raises(SystemExit, match="p_persistent"):
        lesion_brier(tmp_path / "plain.csv")
