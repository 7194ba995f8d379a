"""Five-fold cross-validation splits, seeded and stratified, written once and never overwritten."""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import cast

import numpy as np

from iterdce.core.atomic import write_json_atomic
from iterdce.core.errors import DataError, JSONFileError
from iterdce.core.json_io import read_json

SPLITS_FILE = "splits_final.json"
SPLIT_SEED = 12345  # of the fold split (its own fact: changing the training seed must not move cases between folds)


def case_strata(case_ids: list[str], cases_csv: Path | None, lesion_presence: dict[str, bool]) -> dict[str, str]:
    """Stratum per case: its lesions' curve types from ``cases.csv`` when given, else lesion presence."""
    if cases_csv is not None and cases_csv.is_file():
        types: dict[str, list[str]] = defaultdict(list)
        try:
            with cases_csv.open(newline="") as handle:
                for row in csv.DictReader(handle):
                    if row.get("case") and row.get("curve_type"):
                        types[row["case"]].append(row["curve_type"])
        except (UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"{cases_csv}: not a readable CSV table ({type(exc).__name__}: {exc})", cases_csv) from exc
        return {c: "+".join(sorted(set(types[c]))) or "no_lesion" for c in case_ids}
    return {c: "lesion" if lesion_presence.get(c, False) else "no_lesion" for c in case_ids}


def make_splits(strata: dict[str, str], n_folds: int = 5, seed: int = SPLIT_SEED) -> list[dict[str, list[str]]]:
    """Deal each stratum's shuffled cases round-robin over the folds, continuing where the last one stopped.

    Folds differ in size by at most one case and each stratum is spread as evenly as possible.
    """
    case_ids = sorted(strata)
    if len(case_ids) < 2:
        raise DataError(f"cross-validation needs at least 2 cases, found {len(case_ids)}")
    n_folds = min(n_folds, len(case_ids))
    rng = np.random.default_rng(seed)
    groups: dict[str, list[str]] = defaultdict(list)
    for case in case_ids:
        groups[strata[case]].append(case)
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    position = 0
    for stratum in sorted(groups):
        members = list(groups[stratum])
        rng.shuffle(members)
        for case in members:
            folds[position % n_folds].append(case)
            position += 1
    return [{"train": sorted(c for c in case_ids if c not in set(val)), "val": sorted(val)} for val in folds]


def read_splits(path: Path) -> list[dict[str, list[str]]]:
    """``splits_final.json``: a list of ``{"train": [case, ...], "val": [case, ...]}``; JSONFileError names the
    file and the first fold that breaks this."""
    splits = read_json(path, expect=list)
    if not splits:
        raise JSONFileError(f"{path}: holds no folds; delete it and rerun iterdce_plan_and_preprocess", path)
    for index, fold in enumerate(splits):
        if not (isinstance(fold, dict) and all(isinstance(fold.get(k), list) and all(isinstance(c, str)
                                                                                     for c in fold[k])
                                               for k in ("train", "val"))):
            raise JSONFileError(f"{path}: fold {index} must be {{\"train\": [case ids], \"val\": [case ids]}}; "
                                "delete the file and rerun iterdce_plan_and_preprocess to split anew", path)
    return cast(list[dict[str, list[str]]], splits)


def load_or_create_splits(out_dir: Path, strata: dict[str, str], n_folds: int = 5, seed: int = SPLIT_SEED
                          ) -> list[dict[str, list[str]]]:
    """Existing ``splits_final.json`` is kept as it is (reproducible folds) when every case it names is in the
    dataset (``strata`` holds the dataset's cases); otherwise create and write it."""
    path = out_dir / SPLITS_FILE
    if path.is_file():
        splits = read_splits(path)
        unknown = sorted({c for fold in splits for k in ("train", "val") for c in fold[k]} - set(strata))
        if unknown:
            listed = ", ".join(unknown[:3]) + (", ..." if len(unknown) > 3 else "")
            raise JSONFileError(f"{path}: names {len(unknown)} case(s) the dataset does not hold ({listed}); it is "
                                "never overwritten: edit it, or delete it to split the dataset anew, and rerun "
                                "iterdce_plan_and_preprocess", path)
        return splits
    splits = make_splits(strata, n_folds, seed)
    write_json_atomic(path, splits)
    return splits
