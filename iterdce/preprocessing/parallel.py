"""A process pool with a progress bar that keeps results in input order."""
from __future__ import annotations

import multiprocessing as mp
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def map_with_progress(function: Callable[..., T], items: Sequence[Any], num_processes: int, desc: str,
                      progress: bool = True) -> list[T]:
    """``[function(item) for item in items]`` over ``num_processes`` workers (1: in-process)."""
    if num_processes <= 1 or len(items) <= 1:
        return [function(item) for item in tqdm(items, desc=desc, unit="case", disable=not progress)]
    results: list[Any] = [None] * len(items)
    context = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    pool = ProcessPoolExecutor(max_workers=num_processes, mp_context=context, initializer=ignore_interrupts)
    try:
        futures = {pool.submit(function, item): index for index, item in enumerate(items)}
        for future in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="case", disable=not progress):
            results[futures[future]] = future.result()
    except BaseException:
        # Ctrl-C or a failed case: drop the queued cases (the running ones finish their atomic writes)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results


def ignore_interrupts() -> None:
    """Worker initializer: Ctrl-C is handled by the main process alone (one line, not one traceback per
    worker); the workers finish their current case and stop when the main process shuts the pool down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
