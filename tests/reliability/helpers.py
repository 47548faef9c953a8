"""Helpers of the reliability suite: running the CLI in a subprocess, killing it, odd videos."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# One thread per process: the 2-core test machine is shared, and equal thread counts
# give bitwise-equal features (docs/features.md).
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
# Extraction settings small enough for a test: 4x4 grid on 64x64 frames, 8-frame snippets.
SMALL_SPEC = dict(grid=4, input_size=64, snippet_len=8, passes=2)
SMALL_ARGS = ["--grid", "4", "--input-size", "64", "--snippet-len", "8", "--threads", "1"]


def patchvad(*args: str | Path, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m patchvad ARGS`` to completion; stdout and stderr as text."""
    proc = subprocess.run([sys.executable, "-m", "patchvad", *map(str, args)], env=ENV, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"patchvad {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def start(*args: str | Path) -> subprocess.Popen:
    """Start ``python -m patchvad ARGS`` in the background (output discarded)."""
    return subprocess.Popen([sys.executable, "-m", "patchvad", *map(str, args)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_when(proc: subprocess.Popen, condition: Callable[[], bool], what: str, timeout: float = 240) -> None:
    """SIGKILL ``proc`` as soon as ``condition()`` holds (polled every 5 ms).

    The kill point is defined by the files the process has written, not by a clock,
    so it lands at the same stage of the work on a fast or a slow machine. Fails the
    test if the process ends (or the time runs out) before the condition holds.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}:\n"
                                 f"{proc.stderr.read()[-3000:] if proc.stderr else ''}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if proc.stderr:
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, f"the process was not killed mid-run (exit {proc.returncode})"


def mtimes(paths: Sequence[Path]) -> dict[Path, int]:
    """Modification times (ns) of files: equal before and after a rerun = not rewritten."""
    return {Path(p): Path(p).stat().st_mtime_ns for p in paths}


def temp_files(folder: Path) -> list[Path]:
    """Temporary files (``.<name>.<random>.tmp<suffix>``) anywhere under ``folder``."""
    return sorted(p for p in folder.rglob(".*") if ".tmp" in p.name)


def smooth_frames(n: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """RGB frames of a soft gradient with a bright square moving right (compress well at any size)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = ((xx * 160 // max(1, width - 1) + yy * 60 // max(1, height - 1)) + rng.integers(0, 30)).astype(np.uint8)
    frames = []
    for t in range(n):
        frame = np.repeat(base[:, :, None], 3, axis=2)
        side = max(1, min(width, height) // 5)
        x0 = (t * max(1, width // 20)) % max(1, width - side)
        y0 = max(0, height // 2 - side // 2)
        frame[y0:y0 + side, x0:x0 + side] = (230, 60, 60)
        frames.append(frame)
    return frames


def write_raw_video(path: Path, frames: Sequence[np.ndarray], *, fmt: str, codec: str, pix_fmt: str,
                    rate: int = 25, pts_ms: Sequence[int] | None = None) -> Path:
    """Encode frames with any PyAV codec/container (odd sizes, grey, hand-set timestamps).

    ``frames`` are ``(H, W, 3)`` RGB or ``(H, W)`` grey uint8. With ``pts_ms`` each frame
    gets that presentation time in milliseconds: a variable frame rate.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    container = av.open(str(path), "w", format=fmt)
    stream = container.add_stream(codec, rate=rate)
    h, w = frames[0].shape[:2] if len(frames) else (16, 16)
    stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
    if pts_ms is not None:
        stream.time_base = Fraction(1, 1000)
    for i, array in enumerate(frames):
        if array.ndim == 2:
            frame = av.VideoFrame.from_ndarray(array, format="gray")
        else:
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        frame = frame.reformat(format=pix_fmt)
        if pts_ms is not None:
            frame.pts = int(pts_ms[i])
            frame.time_base = Fraction(1, 1000)
        for packet in stream.encode(frame):
            container.mux(packet)
    if len(frames) == 0:
        container.start_encoding()
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    return path
