"""Checks made before any work starts: can an output folder be written, can a case's files be named."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from iterdce.core.atomic import name_max, temporary_name_overhead
from iterdce.core.errors import OutputLocationError
from iterdce.core.file_names import KINETIC_MAP_SUFFIX

# the longest name derived from a case id: <case>_kinetics.nii.gz (predictions are <case>_<pppp>.nii.gz,
# preprocessed cases <case>.npz and <case>.json)
LONGEST_CASE_FILE_SUFFIX = KINETIC_MAP_SUFFIX


def require_writable_folder(folder: str | os.PathLike[str], flag: str) -> Path:
    """``folder`` (existing or to be created) can hold new files; else one OutputLocationError naming ``flag``.

    Nothing is created: for a folder that does not exist yet, its nearest existing parent is probed.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputLocationError(f"{flag} {folder}: exists and is not a folder", folder)
    probe = folder.absolute()
    while not probe.exists():
        if probe == probe.parent:
            raise OutputLocationError(f"{flag} {folder}: no existing parent folder", folder)
        probe = probe.parent
    if not probe.is_dir():
        raise OutputLocationError(f"{flag} {folder}: {probe} is not a folder, so {folder} cannot be created",
                                  folder)
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".iterdce-write-test."):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        where = "" if probe == folder.absolute() else f" (its parent {probe} cannot be written)"
        raise OutputLocationError(f"{flag} {folder}: cannot write there ({reason}){where}", folder) from exc
    return folder


def max_case_id_bytes(folder: str | os.PathLike[str]) -> int:
    """The longest case id (in bytes) whose every derived file name, temporaries included, fits in ``folder``."""
    return name_max(folder) - len(LONGEST_CASE_FILE_SUFFIX) - temporary_name_overhead()


def case_id_problem(case_id: str, folder: str | os.PathLike[str]) -> str | None:
    """Why ``case_id`` cannot be used (its file names would be too long), or None."""
    limit = max_case_id_bytes(folder)
    length = len(os.fsencode(case_id))
    if length > limit:
        return (f"case id is {length} bytes long; the files derived from it (e.g. {case_id[:20]}..."
                f"{LONGEST_CASE_FILE_SUFFIX} and its temporary name) allow at most {limit} on this file system")
    return None
