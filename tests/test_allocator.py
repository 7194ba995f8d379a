"""The heap-keeping allocator setting of CPU training: applied, kept, and left alone where the user chose."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from iterdce.training import allocator

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Resident memory (MB) after a 64 MB buffer was written and freed, in a fresh process.
PROBE = """
import os, sys
from iterdce.training.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "apply" else False
page = os.sysconf("SC_PAGE_SIZE")
def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * page / 2**20
before = resident_mb()
buffer = bytearray(64 * 2**20)
buffer[::4096] = b"x" * len(buffer[::4096])
del buffer
print(applied, resident_mb() - before)
"""


def _probe(mode: str, **env: str) -> tuple[bool, float]:
    clean = {k: v for k, v in os.environ.items() if k not in (*allocator.USER_SETTINGS, allocator.OPT_OUT)}
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                          env={**clean, **env})
    applied, kept = done.stdout.split()
    return applied == "True", float(kept)


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_freed_buffer_stays_in_the_heap_only_when_applied() -> None:
    applied, kept = _probe("apply")
    assert applied
    assert kept > 48  # the 64 MB came from the heap and stayed there for the next step
    not_applied, released = _probe("default")
    assert not not_applied
    assert released < 16  # glibc's default: a large buffer is its own mapping, unmapped when freed


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_opt_out_and_user_choice_are_respected() -> None:
    assert _probe("apply", ITERDCE_SYSTEM_MALLOC="1") == (False, pytest.approx(0.0, abs=16))
    applied, released = _probe("apply", MALLOC_MMAP_MAX_="65536")
    assert not applied and released < 16


def test_opt_out_returns_false_without_touching_the_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(allocator.OPT_OUT, "1")
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: pytest.fail("libc must not be loaded"))
    assert allocator.keep_freed_memory() is False
