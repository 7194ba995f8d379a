"""The project's exception family: every error a user can cause or fix is an ``IterdceError``.

Commands catch ``IterdceError`` (and only it) and print its one-line message; any other exception is a bug
in iterdce and keeps its traceback. Each error carries the file (or flag) it is about in ``path``.
"""
from __future__ import annotations

import os
from pathlib import Path


class IterdceError(Exception):
    """A problem with the user's files, flags or environment; ``str()`` is the message, ``path`` its file."""

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None


class UsageError(IterdceError, ValueError):
    """A flag or argument that cannot work (``path`` is None; the message names the flag)."""


class DataError(IterdceError, ValueError):
    """The data cannot support the requested work (too few cases for cross-validation, an empty fingerprint)."""


class OutputLocationError(IterdceError):
    """An output folder cannot be written, or writing there would replace a file iterdce did not write."""


class CorruptFileError(IterdceError):
    """A file iterdce wrote earlier is truncated or altered; the message says how to regenerate it."""


class JSONFileError(IterdceError, ValueError):
    """A JSON file is missing, unreadable, not valid JSON or has the wrong structure."""


class TrainingDivergedError(IterdceError):
    """The training loss became NaN or infinite (learning rate, data or plan to be looked at)."""


def listing(header: str, problems: list[str]) -> str:
    """One problem: itself, on one line; several: ``header: N problem(s):`` and one indented line each."""
    if len(problems) == 1:
        return problems[0]
    return f"{header}: {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems)


def torch_load_reason(exc: Exception) -> str:
    """The first line of a ``torch.load`` error, without torch's advice to load with ``weights_only=False``
    (never given to a user: that would run whatever code the file holds)."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return type(exc).__name__ if "weights_only" in first or not first else f"{type(exc).__name__}: {first}"
