"""Atomic, durable file writing: write a temporary file in the same folder, fsync it, rename it into place,
fsync the folder. A reader never sees a half-written file, a power loss never leaves a renamed-but-empty one,
and the written file gets the mode a plain ``open()`` would give under the current umask.

Temporary names are ``.<target>.p<pid>.<random>.tmp[<suffix>]``: a later run recognises those whose process
is gone (killed while writing) and removes them with ``remove_stale_temporaries``.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from iterdce.core.fault_injection import fault_point

TEMPORARY = re.compile(r"^\.(?P<target>.+)\.p(?P<pid>\d+)\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z.]+)?$")
LEGACY_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z.]+)?$")
LEGACY_STALE_AFTER_S = 3600.0  # temporaries of older versions carry no pid: stale once an hour old
LONGEST_SUFFIX = ".nii.gz"
PID_DIGITS = 7  # /proc/sys/kernel/pid_max is at most 4194304


def current_umask() -> int:
    """The process umask (read from /proc where possible, which leaves it untouched for other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_name_overhead() -> int:
    """How many bytes a temporary name adds to its target's name at most (dot, pid, random part, suffix)."""
    return len(".") + len(".p") + PID_DIGITS + len(".") + 8 + len(".tmp") + len(LONGEST_SUFFIX)


def name_max(folder: str | os.PathLike[str]) -> int:
    """The longest file name (bytes) the file system of ``folder`` (or its nearest existing parent) allows."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return int(os.pathconf(path, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # folders cannot be opened for syncing on some platforms
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success make it durable and rename it onto ``target``,
    else delete it.

    ``suffix`` lets writers that infer the format from the name (nibabel: ``.nii.gz``) see it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.p{os.getpid()}.", suffix=".tmp" + suffix,
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        fault_point("before_rename", target.name)
        os.replace(tmp, target)
        _fsync_folder(target.parent)
        fault_point("after_rename", target.name)
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


def copy_atomic(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Copy the bytes of ``source`` onto ``target`` atomically."""
    write_atomic(target, lambda tmp: tmp.write_bytes(Path(source).read_bytes()))


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` (on this machine) still runs; this process counts as alive, a zombie (dead, not yet
    reaped: e.g. a killed worker whose parent died too, under an init that does not reap) does not."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (not Linux): kill(0) is all there is
    return state != "Z"


def is_stale_temporary(path: Path, now: float | None = None) -> bool:
    """A temporary file left by a writer that died (its process is gone, or an old one of an older version)."""
    match = TEMPORARY.match(path.name)
    if match:
        return not process_alive(int(match["pid"]))
    if LEGACY_TEMPORARY.match(path.name):
        try:
            age = (now or time.time()) - path.stat().st_mtime
        except OSError:
            return False
        return age > LEGACY_STALE_AFTER_S
    return False


def remove_stale_temporaries(*folders: str | os.PathLike[str]) -> list[Path]:
    """Delete the stale temporaries in ``folders`` (not recursive; missing folders are skipped)."""
    removed = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name.startswith(".") and path.is_file() and is_stale_temporary(path):
                try:
                    path.unlink()
                    removed.append(path)
                except FileNotFoundError:
                    pass
    return removed
