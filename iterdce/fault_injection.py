"""A deterministic crash for tests: ``ITERDCE_TEST_KILL_AT=<point>:<n>`` sends SIGKILL to the process the
``n``-th time it passes ``point``. Unset (always, outside the test suite) it does nothing.

Points: ``before_rename`` (a temporary file is complete but not yet renamed onto its target),
``after_rename`` (a file has just been put in place), ``iteration`` (a training step has finished) and
``collected`` (the main process received a worker's result). ``<point>:<n>:<text>`` counts only the passes
whose subject (the file being written) contains ``<text>``, e.g. ``before_rename:1:checkpoint_``.
Worker processes never count: the kill is meant for the process the test started. With
``ITERDCE_TEST_SIGNAL=SIGINT`` the process group receives SIGINT instead (Ctrl-C in a terminal), workers included.
"""
from __future__ import annotations

import os
import signal
from collections import Counter

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
            os.killpg(os.getpgrp(), signal.SIGINT)
            return
        os.kill(os.getpid(), signal.SIGKILL)
