"""benchmarks/reproduce_tables.py: the tables aggregate every seed as mean and spread, with the baselines once."""
from __future__ import annotations

import pytest

from benchmarks.reproduce_tables import BASELINES, MODELS, aggregate, markdown

PHASES = ["2", "3"]


def summary(value: float, accuracy: float) -> dict:
    """A validation summary's method entry with every metric equal to ``value``."""
    metric = {"mean": value}
    return {"per_phase": {p: {"psnr": metric, "ssim": metric, "enhancement_error": metric} for p in PHASES},
            "kinetics": {"scc": metric, "dtw": metric, "last_phase_enhancement_error": metric,
                         "curve_type_accuracy": accuracy}}


def record(seed: int, network_value: float) -> dict:
    """One seed: each model's network row differs by seed, the baselines do not."""
    summaries = {}
    for index, label in enumerate(MODELS):
        summaries[label] = {"iterdce": summary(network_value + index, 0.5 + 0.1 * seed)}
    summaries["iterU-Net"].update({key: summary(10.0 * (k + 1), 0.25) for k, key in enumerate(BASELINES.values())})
    return {"seed": seed, "validation_cases": 6, "summaries": summaries}


def test_aggregate_gives_mean_and_spread_over_seeds() -> None:
    table = aggregate([record(0, 1.0), record(1, 3.0), record(2, 5.0)], PHASES)
    assert list(table) == [*MODELS, *BASELINES]
    iterunet = table["iterU-Net"]
    assert iterunet["psnr@2"] == pytest.approx({"mean": 3.0, "std": (8 / 3) ** 0.5, "n": 3})
    assert table["w/o warm-up"]["scc"]["mean"] == pytest.approx(5.0)
    assert iterunet["curve_type_accuracy"]["mean"] == pytest.approx(0.6)
    regression = table["voxel-wise kinetic regression"]
    assert regression["last_phase_enhancement_error"] == {"mean": 30.0, "std": 0.0, "n": 3}


def test_aggregate_skips_missing_values() -> None:
    first, second = record(0, 1.0), record(1, 3.0)
    first["summaries"]["iterU-Net"]["iterdce"]["kinetics"]["scc"] = {"mean": None}
    table = aggregate([first, second], PHASES)
    assert table["iterU-Net"]["scc"] == {"mean": 3.0, "std": 0.0, "n": 1}


def test_markdown_has_both_tables_and_every_row() -> None:
    table = aggregate([record(0, 1.0), record(1, 3.0)], PHASES)
    text = markdown(table, PHASES, [150.0, 300.0], [0, 1], 6)
    assert "### Table 1 analogue" in text and "### Table 2 analogue" in text and "(300 s)" in text
    for label in [*MODELS, *BASELINES]:
        assert text.count(f"| {label} |") == 4  # three Table 1 metrics and Table 2
    assert "| iterU-Net | 2.0000 ± 1.0000 | 2.0000 ± 1.0000 |" in text
