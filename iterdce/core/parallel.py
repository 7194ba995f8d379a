"""A process pool with a progress bar that keeps results in input order."""
from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any, TypeVar

from tqdm import tqdm

from iterdce.core.fault_injection import fault_point

T = TypeVar("T")


def map_with_progress(function: Callable[..., T], items: Sequence[Any], num_processes: int, desc: str,
                      progress: bool = True) -> list[T]:
    """``[function(item) for item in items]`` over ``num_processes`` workers (1: in-process)."""
    if num_processes <= 1 or len(items) <= 1:
        return [function(item) for item in tqdm(items, desc=desc, unit="case", disable=not progress)]
    results: list[Any] = [None] * len(items)
    context = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    pool = ProcessPoolExecutor(max_workers=num_processes, mp_context=context, initializer=ignore_interrupts,
                               initargs=(os.getpid(),))
    try:
        futures = {submit_quietly(pool, function, item): index for index, item in enumerate(items)}
        for future in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="case", disable=not progress):
            results[futures[future]] = future.result()
            fault_point("collected")
    except BaseException:
        # Ctrl-C or a failed case: drop the queued cases (the running ones finish their atomic writes)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results


@contextmanager
def interrupts_blocked() -> Iterator[None]:
    """Ctrl-C (SIGINT) held back in this thread meanwhile: processes started inside are born with it blocked.
    Ctrl-C in a terminal reaches the whole process group, and a worker interrupted while it starts (a spawned
    one imports torch for seconds) would print its own traceback; this process receives a pending Ctrl-C right
    after, as a KeyboardInterrupt."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def submit_quietly(pool: ProcessPoolExecutor, function: Callable[..., T], *args: Any) -> Future[T]:
    """``pool.submit`` with Ctrl-C blocked (``interrupts_blocked``): a submit may start a worker process."""
    with interrupts_blocked():
        return pool.submit(function, *args)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def ignore_interrupts(parent: int | None = None) -> None:
    """Worker initializer: Ctrl-C is handled by the main process alone (one line, not one traceback per
    worker); the workers finish their current case and stop when the main process shuts the pool down. A worker
    also dies with its parent: killed with ``kill -9``, the main process cannot shut the pool down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent)


def die_with_parent(parent: int | None = None) -> None:
    """Ask the kernel to send SIGKILL to this process when its parent dies (Linux ``prctl``; elsewhere nothing).
    ``parent``: the pid of the process that started this one (passed by it: a parent that died before this
    process got here is then noticed too); a parent already gone ends this process at once."""
    parent = os.getppid() if parent is None else parent
    library = ctypes.util.find_library("c")
    if library is None:
        return
    try:
        libc = ctypes.CDLL(library, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: no parent-death signal to ask for
        return
    if os.getppid() != parent:
        os._exit(1)
