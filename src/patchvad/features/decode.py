"""Decoding worker processes for parallel extraction (GPU machines), and the hand-over.

The worker half is kept apart from :mod:`patchvad.features.extract` so that a spawned
worker imports only PyAV and numpy, not torch: 15 workers start in well under a second.

Frames travel in shared-memory blocks of ``chunk`` snippets, by name through the
result queue (pickling ~1 GB/s of frames through a pipe would cost a copy and the
pipe's bandwidth). The copies are counted because at GPU speed they are the cost:

* worker: each snippet is written straight into the block (no list of snippets
  stacked into a batch and then copied again);
* main process: one copy from the block into a (pinned, on CUDA) tensor, then the
  block is unlinked; the device copy runs asynchronously from that pinned tensor.

Ownership: a block belongs to the worker until its name is put on the queue, then
to the main process, which unlinks it after reading (or in :func:`discard_shared`
when a run stops with blocks still queued).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from patchvad.errors import PatchvadError, VideoError
from patchvad.features.snippets import iter_snippets
from patchvad.io.video import VideoReader

if TYPE_CHECKING:  # pragma: no cover
    import torch


BLOCK_PREFIX = "pvad"
_blocks_made = 0


def _block_name() -> str:
    """``pvad_<pid>_<random>_<n>``: the pid lets the main process find what a killed worker left."""
    global _blocks_made
    _blocks_made += 1
    return f"{BLOCK_PREFIX}_{os.getpid()}_{os.urandom(3).hex()}_{_blocks_made}"


def remove_worker_blocks(pids: "Iterable[int]") -> int:
    """Unlink every block left by the worker processes ``pids`` (call once nothing is in flight).

    A worker killed with SIGKILL runs no cleanup and the block it was filling would stay
    in /dev/shm until reboot. Returns how many were removed.
    """
    shm_dir = Path("/dev/shm")
    if not shm_dir.is_dir():
        return 0
    removed = 0
    for pid in set(pids):
        for path in shm_dir.glob(f"{BLOCK_PREFIX}_{pid}_*"):
            discard_shared(path.name)
            removed += 1
    return removed


class _SharedChunk:
    """Up to ``capacity`` snippets of one video, written into one shared-memory block."""

    def __init__(self, capacity: int, snippet_shape: tuple[int, ...]):
        self.snippet_shape = tuple(snippet_shape)
        self.capacity = capacity
        size = capacity * int(np.prod(self.snippet_shape))
        self._shm = shared_memory.SharedMemory(name=_block_name(), create=True, size=max(1, size))
        self._view = np.ndarray((capacity, *self.snippet_shape), dtype=np.uint8, buffer=self._shm.buf)
        self.count = 0
        self._closed = False        # set by hand_over

    def add(self, snippet: np.ndarray) -> None:
        """Copy one uint8 snippet of ``snippet_shape`` into the next free slot."""
        self._view[self.count] = snippet          # every frame was resized to the same size
        self.count += 1

    @property
    def full(self) -> bool:
        """Every slot is filled."""
        return self.count == self.capacity

    def hand_over(self) -> tuple[str, tuple[int, ...]]:
        """Close the block for sending: its name and the shape of the filled part.

        It belongs to the main process once the message naming it is on the queue;
        until then :meth:`discard` still frees it.
        """
        name, shape = self._shm.name, (self.count, *self.snippet_shape)
        del self._view
        # The main process unlinks the block after reading it, so the resource tracker must
        # not unlink it too when this worker exits.
        # ``_name`` (with its leading "/") is what SharedMemory registered; ``name`` drops the "/".
        resource_tracker.unregister(self._shm._name, "shared_memory")  # type: ignore[attr-defined]
        self._shm.close()
        self._closed = True
        return name, shape

    def discard(self) -> None:
        """Free a block that was never sent (the video failed, or the worker is stopped)."""
        if self._closed:
            discard_shared(self._shm.name)
            return
        self._shm.unlink()              # first: the name must go even if closing fails
        del self._view
        try:
            self._shm.close()
        except BufferError:             # a view still alive (stopped mid-copy); the process is exiting
            pass


# Values of a worker's slot (``slots[i]``, shared with the main process) besides a video index.
SLOT_NOT_STARTED = -2     # the process has not reached its loop yet
SLOT_IDLE = -1            # between videos


def decode_worker(tasks, results, slots, slot, input_size, snippet_len, stride, chunk) -> None:
    """Entry point of a decode process: :func:`decode_loop`, reporting its video in ``slots[slot]``.

    The slot is written directly (not through the queue), so when this process dies the
    main process knows at once which video it was decoding, even while the messages it
    sent before are still queued. SIGTERM (the main process stopping early) frees the
    block being filled instead of leaving it in /dev/shm, and exits with 143.
    """
    import signal

    current: list[_SharedChunk | None] = [None]

    def stop(*_) -> None:
        if current[0] is not None:
            current[0].discard()
        os._exit(143)

    signal.signal(signal.SIGTERM, stop)
    slots[slot] = SLOT_IDLE

    def mark(index: int) -> None:
        slots[slot] = index

    decode_loop(tasks, results, input_size, snippet_len, stride, chunk, current=current, mark=mark)


def decode_loop(tasks, results, input_size, snippet_len, stride, chunk, current: list | None = None,
                mark=None) -> None:
    """Decode the videos of ``tasks`` (``(index, path)`` until ``None``) into chunks of uint8 snippets.

    Each worker decodes (and scales) single-threaded: many processes already use every
    core, and FFmpeg's own threads on top of them only contend.

    Messages (``results.put``): ``(index, "chunk", (part, block name, shape))`` with
    ``shape = (n, L, H, W, 3)``; ``(index, "done", (parts, starts, facts))``;
    ``(index, "error", message)``. ``mark(index)`` is called when a video starts and
    ``mark(SLOT_IDLE)`` once its last message is put; ``current[0]`` holds the block
    being filled (for a signal handler to free).
    """
    current = [None] if current is None else current
    mark = mark or (lambda index: None)
    while True:
        task = tasks.get()
        if task is None:
            return
        index, source = task
        mark(index)
        block: _SharedChunk | None = None
        try:
            reader = VideoReader(source)
            starts, n_frames, part = [], 0, 0
            frames = reader.frames(size=input_size, threads=1)
            for start, snippet, n_real in iter_snippets(frames, snippet_len, stride):
                if block is None:
                    block = current[0] = _SharedChunk(chunk, snippet.shape)
                block.add(snippet)
                starts.append(start)
                n_frames = max(n_frames, start + n_real)
                if block.full:
                    results.put((index, "chunk", (part, *block.hand_over())))
                    block = current[0] = None
                    part += 1
            if block is not None:
                results.put((index, "chunk", (part, *block.hand_over())))
                block = current[0] = None
                part += 1
            if not starts:
                raise VideoError("contains no frames", path=source)
            facts = {"frame_count": n_frames, "fps": reader.fps, "width": reader.width, "height": reader.height}
            results.put((index, "done", (part, starts, facts)))
        except PatchvadError as exc:
            results.put((index, "error", str(exc)))
        except Exception as exc:  # a worker must never die silently
            results.put((index, "error", f"{source}: {type(exc).__name__}: {exc}"))
        finally:
            if block is not None:
                block.discard()
            block = current[0] = None
            mark(SLOT_IDLE)


def take_shared(name: str, shape: tuple[int, ...], pin: bool = False) -> "torch.Tensor":
    """Copy a handed-over block into a new uint8 tensor (pinned if ``pin``) and unlink the block.

    One copy; a pinned tensor can then go to the GPU asynchronously.
    """
    import torch

    shm = shared_memory.SharedMemory(name=name)
    try:
        out = torch.empty(shape, dtype=torch.uint8, pin_memory=pin)
        view = np.ndarray(shape, dtype=np.uint8, buffer=shm.buf)
        out.numpy()[...] = view
        del view                    # no exported pointers may remain when the block closes
        return out
    finally:
        shm.close()
        shm.unlink()


def discard_shared(name: str) -> None:
    """Unlink a handed-over block that will not be read (the run stopped early)."""
    try:
        shm = shared_memory.SharedMemory(name=name)
    except FileNotFoundError:
        return
    shm.close()
    shm.unlink()
