"""Decoding worker processes for parallel extraction (GPU machines).

Kept apart from :mod:`patchvad.features.extract` so that a spawned worker imports
only PyAV and numpy, not torch: 15 workers start in well under a second.
"""

from __future__ import annotations

import numpy as np

from patchvad.errors import PatchvadError, VideoError
from patchvad.io.video import VideoReader, iter_snippets


def _to_shared(array: np.ndarray) -> tuple[str, tuple[int, ...]]:
    """Copy ``array`` (uint8) into a new shared-memory block; the receiver unlinks it.

    Passing chunks of decoded frames by name instead of pickling them through a pipe
    saves a copy and the pipe's bandwidth (~1 GB/s of frames at GPU speed).
    """
    from multiprocessing import resource_tracker, shared_memory

    shm = shared_memory.SharedMemory(create=True, size=max(1, array.nbytes))
    np.ndarray(array.shape, dtype=np.uint8, buffer=shm.buf)[...] = array
    # The main process owns the block from now on (it unlinks it after reading).
    resource_tracker.unregister(shm._name, "shared_memory")  # noqa: SLF001
    shm.close()
    return shm.name, array.shape


def _from_shared(name: str, shape: tuple[int, ...]) -> np.ndarray:
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(name=name)
    try:
        return np.ndarray(shape, dtype=np.uint8, buffer=shm.buf).copy()
    finally:
        shm.close()
        shm.unlink()


def _decode_worker(tasks, results, input_size, snippet_len, stride, chunk) -> None:
    """Worker process: decode videos into chunks of uint8 snippets for the main process.

    Each worker decodes single-threaded: many processes already use every core, and
    FFmpeg's own threads on top of them only contend.
    """
    while True:
        task = tasks.get()
        if task is None:
            return
        index, source = task
        try:
            reader = VideoReader(source)
            buffer, starts, n_frames, part = [], [], 0, 0
            frames = reader.frames(size=input_size, threads=1)
            for start, snippet, n_real in iter_snippets(frames, snippet_len, stride):
                buffer.append(snippet)
                starts.append(start)
                n_frames = max(n_frames, start + n_real)
                if len(buffer) == chunk:
                    results.put((index, "chunk", (part, *_to_shared(np.stack(buffer)))))
                    buffer, part = [], part + 1
            if buffer:
                results.put((index, "chunk", (part, *_to_shared(np.stack(buffer)))))
                part += 1
            if not starts:
                raise VideoError("contains no frames", path=source)
            facts = {"frame_count": n_frames, "fps": reader.fps, "width": reader.width, "height": reader.height}
            results.put((index, "done", (part, starts, facts)))
        except PatchvadError as exc:
            results.put((index, "error", str(exc)))
        except Exception as exc:  # noqa: BLE001 - a worker must never die silently
            results.put((index, "error", f"{source}: {type(exc).__name__}: {exc}"))
