"""Where raw, preprocessed and results data live: CLI flag > environment variable > ./iterdce_data.

Nothing here runs at import time; commands call ``resolve_roots`` when they start.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from iterdce.errors import IterdceError

ENV_VARS = {"raw": "ITERDCE_RAW", "preprocessed": "ITERDCE_PREPROCESSED", "results": "ITERDCE_RESULTS"}
DATASET_PATTERN = re.compile(r"^Dataset(\d{3})_(.+)$")


class DatasetNotFoundError(IterdceError, FileNotFoundError):
    """A dataset id, name or path did not resolve to exactly one dataset folder."""


@dataclass(frozen=True)
class Roots:
    """The three data roots of one run."""

    raw: Path
    preprocessed: Path
    results: Path


def resolve_roots(
    raw: str | os.PathLike[str] | None = None,
    preprocessed: str | os.PathLike[str] | None = None,
    results: str | os.PathLike[str] | None = None,
) -> Roots:
    """Each root from its flag, else its environment variable, else ``./iterdce_data/<name>``."""
    given = {"raw": raw, "preprocessed": preprocessed, "results": results}
    chosen = {}
    for key, flag in given.items():
        value = flag if flag is not None else os.environ.get(ENV_VARS[key])
        chosen[key] = Path(value) if value else Path.cwd() / "iterdce_data" / key
    return Roots(**chosen)


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``DatasetNNN_Name`` for an id and a name."""
    return f"Dataset{dataset_id:03d}_{name}"


def _looks_like_path(spec: str) -> bool:
    """True for specs written as paths (``/data/x``, ``./x``, ``a/b``) rather than an id or a name."""
    return os.sep in spec or bool(os.altsep and os.altsep in spec) or spec.startswith(".") or spec.startswith("~")


def find_dataset(spec: str | os.PathLike[str], root: Path) -> Path:
    """Resolve ``spec`` (an id like ``1``, a name like ``Phantom`` or ``Dataset001_Phantom``, or a path).

    A folder given as a path is returned even without dataset.json, so the verifier can say what is missing.
    """
    spec_str = str(spec)
    as_path = Path(spec_str).expanduser()
    if as_path.is_dir() and ((as_path / "dataset.json").is_file() or _looks_like_path(spec_str)):
        return as_path.resolve()
    if _looks_like_path(spec_str):
        raise DatasetNotFoundError(f"dataset {spec_str!r}: no such folder")
    if not root.is_dir():
        raise DatasetNotFoundError(f"dataset {spec_str!r}: not a folder, and the raw root {root} does not exist "
                                   "(set --raw or ITERDCE_RAW)")
    candidates = [p for p in sorted(root.iterdir()) if p.is_dir() and DATASET_PATTERN.match(p.name)]
    if spec_str.isdigit():
        matches = [p for p in candidates if int(DATASET_PATTERN.match(p.name).group(1)) == int(spec_str)]
    else:
        matches = [p for p in candidates if p.name == spec_str or DATASET_PATTERN.match(p.name).group(2) == spec_str]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = ", ".join(p.name for p in candidates) or "none"
        raise DatasetNotFoundError(f"dataset {spec_str!r} not found under {root} (datasets there: {known})")
    names = ", ".join(p.name for p in matches)
    raise DatasetNotFoundError(f"dataset {spec_str!r} is ambiguous under {root}: it matches {names}")


def dataset_in_root(dataset_dir: Path, root: Path) -> Path:
    """The folder of the same dataset name under another root (preprocessed or results)."""
    return root / dataset_dir.name
