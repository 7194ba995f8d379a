"""Keep freed memory in the C heap while training on the CPU (glibc's ``mallopt``).

By default glibc serves an allocation above a threshold (128 KiB, raised dynamically up to 32 MiB) with its own
``mmap``, returns it with ``munmap`` when it is freed, and trims the top of the heap above 128 KiB. A CPU training
step allocates and frees the same activation and gradient buffers every step; those above the 32 MiB ceiling
(float32 at the default plan's widths) are mapped, zeroed (page faults) and unmapped every step, memory the
process asks for again milliseconds later. Serving them from the heap (``M_MMAP_MAX = 0``) and never trimming it
(``M_TRIM_THRESHOLD`` at its largest) keeps the pages for the next step. The cost is resident memory: the process
keeps its high-water mark. This is ``MALLOC_MMAP_MAX_=0`` with a high ``MALLOC_TRIM_THRESHOLD_``, applied from
inside the process so that ``iterdce_train`` gets it without the user knowing about it; the measurement is in
documentation/performance.md.

Nothing is changed where the C library is not glibc, where the user already chose with one of those environment
variables (glibc read it at start), or where ``ITERDCE_SYSTEM_MALLOC=1`` asks for the library's defaults.
"""
from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_MAX = -4
LARGEST_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int
USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")
OPT_OUT = "ITERDCE_SYSTEM_MALLOC"


def keep_freed_memory() -> bool:
    """Apply the heap-keeping setting to this process (and children it forks); True when it was applied."""
    if os.environ.get(OPT_OUT, "") not in ("", "0") or any(name in os.environ for name in USER_SETTINGS):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, LARGEST_TRIM_THRESHOLD))
