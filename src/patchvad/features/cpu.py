"""CPU extraction work spread over Python threads instead of OpenMP.

With OpenMP, every torch operator is split over the cores and ends at a barrier that
waits for the slowest thread, and after it the team's threads spin, waiting for the
next operator. EfficientNet-Lite0 is about a hundred small operators per image; on a
2-core machine shared with the decoding thread (or with other jobs) a descheduled
thread stalls every barrier, and spinning threads take the cores the work needs.
Here each piece of work (a micro-batch of images, the motion channels of a snippet)
runs on its own worker thread with single-threaded torch operators; the threads only
meet when the caller collects the results. Torch releases the GIL inside its
operators, so the workers run in parallel. Inside :func:`serial_caller` the calling
thread's own operators (gathers, concatenations, resampling) are single-threaded too,
so no OpenMP team spins beside the workers (measured in docs/model.md, "Where the
demo's time goes").

The number of workers is ``torch.get_num_threads()`` at the time of the call (or when
:func:`serial_caller` was entered), so ``patchvad extract --threads N`` (and
``torch.set_num_threads``) keeps its meaning.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_pid = 0


_local = threading.local()        # .workers: the count saved by serial_caller, in this thread


def workers() -> int:
    """Worker threads a parallel call uses: torch's intra-op thread count (see :func:`serial_caller`)."""
    saved = getattr(_local, "workers", None)
    return saved if saved is not None else max(1, torch.get_num_threads())


@contextlib.contextmanager
def serial_caller() -> Iterator[int]:
    """Within it, this thread's torch operators run single-threaded; parallel calls keep the workers.

    For a thread that only hands out pieces and waits for them: its own few operators
    are not worth an OpenMP team, whose threads would spin beside the workers. Yields the
    number of workers; torch's thread count is restored on exit.
    """
    count = workers()
    if count == 1 or getattr(_local, "workers", None) is not None:
        yield count
        return
    _local.workers = count
    torch.set_num_threads(1)
    try:
        yield count
    finally:
        _local.workers = None
        torch.set_num_threads(count)


def _executor(size: int) -> ThreadPoolExecutor:
    """The shared pool, (re)built when the wanted size changes or in a forked child.

    A child made by ``fork`` inherits the pool object but none of its threads: work
    submitted to it there would wait forever, so the child builds its own.
    """
    global _pool, _pool_size, _pool_pid
    with _lock:
        if _pool is None or _pool_size != size or _pool_pid != os.getpid():
            if _pool is not None and _pool_pid == os.getpid():
                _pool.shutdown(wait=True)
            _pool = ThreadPoolExecutor(size, thread_name_prefix="patchvad-cpu")
            _pool_size, _pool_pid = size, os.getpid()
        return _pool


def _single_threaded(fn: Callable[[], R]) -> Callable[[], R]:
    """``fn`` for a worker thread: one torch thread, no autograd, the caller's CPU autocast.

    Grad mode and autocast are per thread in torch, so they are carried over here.
    ``torch.set_num_threads`` also sets the process-wide default that threads started
    later pick up, so :meth:`Batch.results` restores the caller's count afterwards; the
    worker's own OpenMP setting stays at one.
    """
    autocast = torch.is_autocast_enabled("cpu")
    dtype = torch.get_autocast_dtype("cpu")

    def run() -> R:
        if torch.get_num_threads() != 1:
            torch.set_num_threads(1)
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=autocast):
            return fn()
    return run


class Batch:
    """Pieces of CPU work submitted together; :meth:`results` waits for them.

    Use :func:`start`; when torch has one thread the pieces run in the calling thread
    when their results are asked for (same order, no pool).
    """

    def __init__(self, size: int):
        self.size = size
        self.caller_threads = torch.get_num_threads()
        self.futures: list[Future | Callable[[], object]] = []

    def add(self, fn: Callable[[], R]) -> int:
        """Submit ``fn`` (no arguments); returns its index in :meth:`results`."""
        if self.size > 1:
            self.futures.append(_executor(self.size).submit(_single_threaded(fn)))
        else:
            self.futures.append(fn)
        return len(self.futures) - 1

    def results(self) -> list:
        """The results of every piece, in the order added (re-raises a piece's error)."""
        try:
            return [f.result() if isinstance(f, Future) else f() for f in self.futures]
        finally:
            if self.size > 1:
                torch.set_num_threads(self.caller_threads)     # the process-wide count the workers changed


def start() -> Batch:
    """A new :class:`Batch` over :func:`workers` threads."""
    return Batch(workers())


def parallel_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(item) for item in items]`` with the items spread over :func:`workers` threads."""
    batch = start()
    for item in items:
        batch.add(functools.partial(fn, item))
    return batch.results()
