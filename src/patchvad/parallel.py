"""Run independent CPU jobs (fits, tests) in spawned processes, one torch thread budget each."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any


def _call(packed: tuple[Callable[[Any], Any], Any, int]) -> Any:
    fn, item, threads = packed
    if threads:
        import torch

        torch.set_num_threads(threads)
    return fn(item)


def run_parallel(fn: Callable[[Any], Any], items: Sequence[Any], jobs: int) -> Iterator[Any]:
    """Yield ``fn(item)`` for every item, in the order they finish.

    ``jobs`` <= 1 (or one item): in this process, in order, torch threads untouched.
    Otherwise ``jobs`` spawned processes (a clean interpreter: no inherited torch
    threads), each with ``cores // jobs`` torch threads: patchvad's small models use one
    or two cores well, so on a 2-core machine two single-threaded fits side by side
    finish sooner than one fit with two threads. ``fn`` must be a module-level function.
    Another ``jobs`` gives each job another thread count, which can change the order of
    float sums and so results slightly.
    """
    if jobs <= 1 or len(items) <= 1:
        for item in items:
            yield fn(item)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_call, (fn, item, threads)) for item in items]
        for future in as_completed(futures):
            yield future.result()
