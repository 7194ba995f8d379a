"""Which files the predictor wrote: every output carries ``iterdce-predict model <id>`` in its NIfTI header
description, where ``<id>`` hashes the checkpoints and settings that produced it.

"Already predicted" then means "written by iterdce with this model and still readable", not "a file of that
name exists", and a file without the mark is never overwritten.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from iterdce.dataset.nifti_io import ImageReadError, read_header, read_image

DESCRIPTION_PREFIX = "iterdce-predict model "


class OutputState(Enum):
    """What an output name holds before a case is predicted."""

    MISSING = "missing"
    DONE = "done"  # written by iterdce with this model, reads completely
    REDO = "redo"  # written by iterdce with this model but truncated or altered
    OTHER_MODEL = "other model"  # written by iterdce with another model or settings
    FOREIGN = "foreign"  # not written by iterdce (or unreadable, so it cannot be known)


def model_id(checkpoints: Sequence[Path], settings: dict[str, Any]) -> str:
    """16 hex digits of SHA-256 over the checkpoint files' bytes and the settings that change the output."""
    digest = hashlib.sha256(repr(sorted(settings.items())).encode())
    for path in checkpoints:
        digest.update(Path(path).name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def description(identifier: str) -> str:
    """The header description of an output of model ``identifier`` (fits NIfTI's 80 bytes)."""
    return DESCRIPTION_PREFIX + identifier


def written_by(path: Path) -> str | None:
    """The model id in the header of ``path``, or None when it has no iterdce mark or no readable header."""
    try:
        image, _ = read_header(path)
    except ImageReadError:  # an unreadable header means: not provably ours
        return None
    text = bytes(np.asarray(image.header["descrip"]).tobytes()).split(b"\0", 1)[0].decode("ascii", "replace")
    return text[len(DESCRIPTION_PREFIX):].strip() if text.startswith(DESCRIPTION_PREFIX) else None


def output_state(path: Path, identifier: str) -> OutputState:
    """Classify an output name; a file of this model is read completely, so a truncated one is redone."""
    if not path.exists():
        return OutputState.MISSING
    owner = written_by(path)
    if owner is None:
        return OutputState.FOREIGN
    if owner != identifier:
        return OutputState.OTHER_MODEL
    try:
        data, _ = read_image(path)
    except ImageReadError:  # truncated gzip, short file: a file that does not read completely is redone
        return OutputState.REDO
    return OutputState.DONE if data.size else OutputState.REDO
