"""Atomic file writing: write to a temporary name in the same folder, then rename into place."""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success rename it onto ``target``, else delete it.

    ``suffix`` lets writers that infer the format from the name (nibabel: ``.nii.gz``) see it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_atomic(target: str | os.PathLike[str], writer: Callable[[Path], object], suffix: str = "") -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``target`` only if it succeeded."""
    with atomic_path(target, suffix=suffix) as tmp:
        writer(tmp)


def write_json_atomic(target: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    write_atomic(target, lambda p: p.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n"))
