"""A deterministic crash for tests: ``ITERDCE_TEST_KILL_AT=<point>:<n>`` sends SIGKILL to the process the
``n``-th time it passes ``point``. Unset (always, outside the test suite) it does nothing.

Points: ``before_rename`` (a temporary file is complete but not yet renamed onto its target),
``after_rename`` (a file has just been put in place), ``iteration`` (a training step has finished),
``collected`` (the main process received a worker's result) and ``submitted`` (a case went to a worker process
of ``iterdce_predict -np``, the first ones while the workers start). ``<point>:<n>:<text>`` counts only the passes
whose subject (the file being written) contains ``<text>``, e.g. ``before_rename:1:checkpoint_``.
Worker processes never count: the kill is meant for the process the test started. With
``ITERDCE_TEST_SIGNAL=SIGINT`` the process group receives SIGINT instead (Ctrl-C in a terminal), workers included.
"""
from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

ENV_VAR = "ITERDCE_TEST_KILL_AT"
SIGNAL_VAR = "ITERDCE_TEST_SIGNAL"
_passed: Counter[str] = Counter()


MAIN_PID_VAR = "ITERDCE_TEST_KILL_PID"  # the process the test started; its workers inherit it and never count
if os.environ.get(ENV_VAR) and MAIN_PID_VAR not in os.environ:
    os.environ[MAIN_PID_VAR] = str(os.getpid())


def fault_point(point: str, subject: str = "") -> None:
    """Count a pass through ``point`` (about ``subject``, e.g. a file name) and kill this process when the
    environment asks for it."""
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    if os.environ.get(MAIN_PID_VAR) != str(os.getpid()):
        return
    name, _, rest = spec.partition(":")
    count, _, text = rest.partition(":")
    if name != point or text not in subject:
        return
    _passed[point] += 1
    if _passed[point] == int(count or 1):
        if os.environ.get(SIGNAL_VAR) == "SIGINT":
            wait_for_children_to_start()
            os.killpg(os.getpgrp(), signal.SIGINT)
            return
        os.kill(os.getpid(), signal.SIGKILL)


def wait_for_children_to_start(timeout_s: float = 60.0) -> None:
    """Wait until every child process of this one runs Python code (it catches or ignores SIGINT): a spawned
    worker is then importing its modules, the moment a Ctrl-C used to print a worker's traceback. Linux only
    (``/proc``); elsewhere it returns at once."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not all(_handles_sigint(pid) for pid in _children()):
        time.sleep(0.02)


def _children() -> list[int]:
    """The pids of this process's children (``/proc/<pid>/status``, PPid)."""
    me, found = str(os.getpid()), []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = dict(line.split(":", 1) for line in (entry / "status").read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == me:
            found.append(int(entry.name))
    return found


def _handles_sigint(pid: int) -> bool:
    """Whether process ``pid`` catches or ignores SIGINT (or is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return True
    masks = {key: int(value, 16) for key, _, value in (line.partition(":\t") for line in lines)
             if key in ("SigCgt", "SigIgn")}
    bit = 1 << (signal.SIGINT - 1)
    return any(mask & bit for mask in masks.values())
