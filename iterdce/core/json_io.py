"""The one JSON reader of the project: every JSON file iterdce reads (dataset.json, timing sidecars, plans,
splits, preprocessed-case sidecars, fingerprints, summaries) goes through ``read_json``, whose errors name
the file and, for a syntax error, the line and column."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from iterdce.core.errors import JSONFileError

KIND_NAMES: dict[type, str] = {dict: "object", list: "array"}


def read_json(path: str | os.PathLike[str], expect: type | None = None, hint: str = "") -> Any:
    """Parse the JSON file ``path``; ``expect`` (dict or list) checks the top level. ``hint`` is appended to
    the message of a missing file (e.g. the command that creates it)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError as exc:
        raise JSONFileError(f"{path}: file not found{'; ' + hint if hint else ''}", path) from exc
    except IsADirectoryError as exc:
        raise JSONFileError(f"{path}: is a folder, not a JSON file", path) from exc
    except UnicodeDecodeError as exc:
        raise JSONFileError(f"{path}: not valid JSON (not UTF-8 text: byte {exc.start} is "
                            f"{exc.object[exc.start]:#04x})", path) from exc
    except OSError as exc:
        raise JSONFileError(f"{path}: cannot be read ({exc.strerror or exc})", path) from exc
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JSONFileError(f"{path}: not valid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})",
                            path) from exc
    except RecursionError as exc:
        raise JSONFileError(f"{path}: not valid JSON (nested too deeply)", path) from exc
    if expect is not None and not isinstance(payload, expect):
        raise JSONFileError(f"{path}: the top level must be a JSON {KIND_NAMES.get(expect) or expect.__name__}, "
                            f"got {type(payload).__name__}", path)
    return payload
