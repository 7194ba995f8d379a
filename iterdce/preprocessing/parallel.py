"""A process pool with a progress bar that keeps results in input order."""
from __future__ import annotations

import multiprocessing as mp
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
    with ProcessPoolExecutor(max_workers=num_processes, mp_context=context) as pool:
        futures = {pool.submit(function, item): index for index, item in enumerate(items)}
        for future in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="case", disable=not progress):
            results[futures[future]] = future.result()
    return results
