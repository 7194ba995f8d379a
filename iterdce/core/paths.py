"""Where raw, preprocessed and results data live: CLI flag > environment variable > ./iterdce_data.

Nothing here runs at import time; commands call ``resolve_roots`` when they start.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from iterdce.core.errors import IterdceError
from iterdce.core.folder_names import DATASET_PATTERN, MODELS_FOLDER

ENV_VARS = {"raw": "ITERDCE_RAW", "preprocessed": "ITERDCE_PREPROCESSED", "results": "ITERDCE_RESULTS"}
MODELS_ENV = "ITERDCE_MODELS"  # where iterdce_install_model puts shared models (default <results>/models)


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


def models_root(results: Path, flag: str | os.PathLike[str] | None = None) -> Path:
    """The installed models' root: ``--models-root``, else ``ITERDCE_MODELS``, else ``<results>/models``."""
    value = flag if flag is not None else os.environ.get(MODELS_ENV)
    return Path(value) if value else Path(results) / MODELS_FOLDER


def _looks_like_path(spec: str) -> bool:
    """True for specs written as paths (``/data/x``, ``./x``, ``a/b``) rather than an id or a name."""
    return os.sep in spec or bool(os.altsep and os.altsep in spec) or spec.startswith(".") or spec.startswith("~")


def find_dataset(spec: str | os.PathLike[str], root: Path, kind: str = "raw") -> Path:
    """Resolve ``spec`` (an id like ``1``, a name like ``Phantom`` or ``Dataset001_Phantom``, or a path) under
    ``root``, the ``kind`` root (raw, preprocessed or results: errors name it and its flag).

    A folder given as a path is returned even without dataset.json, so the verifier can say what is missing.
    """
    spec_str = str(spec)
    as_path = Path(spec_str).expanduser()
    if as_path.is_dir() and ((as_path / "dataset.json").is_file() or _looks_like_path(spec_str)):
        return as_path.resolve()
    if _looks_like_path(spec_str):
        raise DatasetNotFoundError(f"dataset {spec_str!r}: no such folder")
    if not root.is_dir():
        raise DatasetNotFoundError(f"dataset {spec_str!r}: not a folder, and the {kind} root {root} does not exist "
                                   f"(set --{kind} or {ENV_VARS[kind]})")
    named = [(p, m) for p in sorted(root.iterdir()) if p.is_dir() and (m := DATASET_PATTERN.match(p.name))]
    candidates = [p for p, _ in named]
    if spec_str.isdigit():
        matches = [p for p, m in named if int(m.group(1)) == int(spec_str)]
    else:
        matches = [p for p, m in named if p.name == spec_str or m.group(2) == spec_str]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = ", ".join(p.name for p in candidates) or "none"
        raise DatasetNotFoundError(f"dataset {spec_str!r} not found under the {kind} root {root} (datasets there: "
                                   f"{known})")
    names = ", ".join(p.name for p in matches)
    raise DatasetNotFoundError(f"dataset {spec_str!r} is ambiguous under {root}: it matches {names}")
