"""Cross-validation splits: seeded, disjoint, covering, balanced, stratified, and never overwritten."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from iterdce.preprocessing.splits import SPLITS_FILE, case_strata, load_or_create_splits, make_splits

CURVES = ("persistent", "plateau", "washout")


def check_partition(splits: list[dict[str, list[str]]], case_ids: list[str]) -> None:
    """Validation sets are disjoint, cover every case, differ in size by <= 1; train is the complement."""
    vals = [set(fold["val"]) for fold in splits]
    assert sum(len(v) for v in vals) == len(case_ids)
    assert set().union(*vals) == set(case_ids)
    sizes = [len(v) for v in vals]
    assert max(sizes) - min(sizes) <= 1
    for fold, val in zip(splits, vals):
        assert set(fold["train"]) == set(case_ids) - val
        assert fold["train"] == sorted(fold["train"]) and fold["val"] == sorted(fold["val"])


@pytest.mark.parametrize("n_cases", [2, 5, 7, 13, 40])
def test_splits_partition_the_cases(n_cases: int) -> None:
    case_ids = [f"case_{i:03d}" for i in range(n_cases)]
    splits = make_splits({c: "lesion" for c in case_ids})
    assert len(splits) == min(5, n_cases)
    check_partition(splits, case_ids)


def test_splits_are_seeded() -> None:
    strata = {f"case_{i:03d}": CURVES[i % 3] for i in range(23)}
    assert make_splits(strata, seed=7) == make_splits(dict(reversed(list(strata.items()))), seed=7)
    different = [make_splits(strata, seed=s) for s in range(5)]
    assert any(d != different[0] for d in different[1:]), "the seed must change the shuffling"


def test_each_stratum_is_spread_over_the_folds() -> None:
    strata = {f"case_{i:03d}": CURVES[i % 3] for i in range(15)}
    strata.update({f"none_{i}": "no_lesion" for i in range(7)})
    splits = make_splits(strata)
    check_partition(splits, sorted(strata))
    for stratum, members in Counter(strata.values()).items():
        per_fold = [sum(strata[c] == stratum for c in fold["val"]) for fold in splits]
        assert max(per_fold) - min(per_fold) <= 1, (stratum, per_fold)
        assert sum(per_fold) == members


def test_case_strata_reads_curve_types_from_cases_csv(tmp_path: Path) -> None:
    csv = tmp_path / "cases.csv"
    csv.write_text("case,lesion,curve_type,ktrans_per_min\n"
                   "a,1,washout,0.3\n"
                   "b,1,persistent,0.05\n"
                   "b,2,washout,0.4\n"
                   "b,3,washout,0.2\n"
                   "c,1,plateau,0.1\n")
    strata = case_strata(["a", "b", "c", "d"], csv, lesion_presence={"a": True})
    assert strata == {"a": "washout", "b": "persistent+washout", "c": "plateau", "d": "no_lesion"}
    fallback = case_strata(["a", "b"], tmp_path / "absent.csv", lesion_presence={"a": True, "b": False})
    assert fallback == {"a": "lesion", "b": "no_lesion"}
    assert case_strata(["a"], None, {}) == {"a": "no_lesion"}


def test_curve_types_from_cases_csv_are_stratified(tmp_path: Path) -> None:
    csv = tmp_path / "cases.csv"
    rows = [f"case_{i:03d},1,{CURVES[i % 3]}" for i in range(30)]
    csv.write_text("case,lesion,curve_type\n" + "\n".join(rows) + "\n")
    strata = case_strata([f"case_{i:03d}" for i in range(30)], csv, {})
    splits = make_splits(strata)
    for fold in splits:
        counts = Counter(strata[c] for c in fold["val"])
        assert counts == {"persistent": 2, "plateau": 2, "washout": 2}


def test_splits_file_is_written_once_and_never_overwritten(tmp_path: Path) -> None:
    strata = {f"case_{i:03d}": CURVES[i % 3] for i in range(12)}
    first = load_or_create_splits(tmp_path, strata)
    path = tmp_path / SPLITS_FILE
    content = path.read_bytes()
    assert json.loads(content) == first
    mtime = path.stat().st_mtime_ns
    other = {f"case_{i:03d}": "no_lesion" for i in range(20)}
    second = load_or_create_splits(tmp_path, other, seed=99)
    assert second == first
    assert path.read_bytes() == content and path.stat().st_mtime_ns == mtime
    assert make_splits(other, seed=99) != first


def test_too_few_cases_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 2 cases"):
        make_splits({"only": "lesion"})
