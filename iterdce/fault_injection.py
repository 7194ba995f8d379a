"""A deterministic crash for tests: ``ITERDCE_TEST_KILL_AT=<point>:<n>`` sends SIGKILL to the process the
``n``-th time it passes ``point``. Unset (always, outside the test suite) it does nothing.

Points: ``before_rename`` (a temporary file is complete but not yet renamed onto its target),
``after_rename`` (a file has just been put in place) and ``iteration`` (a training step has finished).
"""
from __future__ import annotations

import os
import signal
from collections import Counter

ENV_VAR = "ITERDCE_TEST_KILL_AT"
_passed: Counter[str] = Counter()


def fault_point(point: str) -> None:
    """Count a pass through ``point`` and kill this process when the environment asks for it."""
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    name, _, count = spec.partition(":")
    if name != point:
        return
    _passed[point] += 1
    if _passed[point] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
