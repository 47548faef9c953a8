"""Shared fixtures: small real video files and dataset folders made by the project itself."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest

from patchvad.data.folder import write_manifest, write_tracks
from patchvad.io.video import write_video

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


def under_ci() -> bool:
    """True when the environment variable CI says so (``true``, ``1`` or ``yes``)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test for a missing outside resource; under CI (``CI=true``) fail instead.

    A green CI run must not hide tests that never ran (the adapter, metric and video
    tests on the shared data, the report in a real browser).
    """
    if under_ci():
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def require_shared(*parts: str) -> Path:
    """``SHARED_DATA/<parts>``; the test is skipped when it is missing (failed under CI)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        skip_or_fail(f"{path} not found: the tests' real data is expected in <repo>/../shared/data")
    return path


def moving_square_frames(n: int = 40, size: tuple[int, int] = (96, 64), square: int = 12, speed: int = 2,
                         seed: int = 0) -> tuple[list[np.ndarray], list[tuple[int, int, int, int]]]:
    """Frames of a bright square moving right over a noisy textured background.

    Returns the RGB frames and the square's inclusive xyxy box per frame.
    """
    rng = np.random.default_rng(seed)
    w, h = size
    background = (rng.random((h, w, 3)) * 60 + 40).astype(np.uint8)
    frames, boxes = [], []
    for t in range(n):
        frame = background.copy()
        x0 = (4 + speed * t) % (w - square)
        y0 = h // 2 - square // 2
        frame[y0:y0 + square, x0:x0 + square] = (230, 60, 60)
        frames.append(frame)
        boxes.append((x0, y0, x0 + square - 1, y0 + square - 1))
    return frames, boxes


@pytest.fixture()
def square_video(tmp_path: Path) -> Path:
    frames, _ = moving_square_frames()
    path = tmp_path / "square.mp4"
    write_video(path, frames, fps=25)
    return path


def load_toydata():
    """tests/model/toydata.py as a module (by path: only tests in tests/model import it by name)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("toydata", REPO / "tests" / "model" / "toydata.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_tiny_dataset(root: Path, n_train: int = 3, n_test: int = 2, frames: int = 40) -> Path:
    """A dataset folder of moving-square videos; odd test videos are anomalous with a track."""
    rows = []
    for split, count in (("train", n_train), ("test", n_test)):
        for i in range(count):
            stem = f"{split}_{i:02d}"
            label = i % 2
            vid_frames, boxes = moving_square_frames(n=frames, seed=i + (100 if split == "test" else 0))
            write_video(root / "videos" / f"{stem}.mp4", vid_frames, fps=25)
            rows.append({"video": f"videos/{stem}.mp4", "split": split, "label": label,
                         "class": "square" if label else "normal"})
            if split == "test" and label:
                write_tracks(root, stem, [(0, t, *boxes[t]) for t in range(10, 30)])
    write_manifest(root, rows)
    return root


def write_vfr_video(path: Path, frames: list[np.ndarray], pts_ms: list[int]) -> None:
    """An H.264 mp4 whose frames are shown at ``pts_ms`` milliseconds (variable frame rate).

    Made with PyAV directly: patchvad's own writer only writes constant rates.
    """
    from fractions import Fraction

    import av

    assert len(frames) == len(pts_ms)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for img, pts in zip(frames, pts_ms):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module", autouse=True)
def _torch_threads_restored_per_module():
    """Give every test module the torch thread count the previous one started with.

    Some tests (and ``fit``, which sizes its thread pool) set torch's global thread
    count; oneDNN's results for different batch sizes can differ with it, so a count
    left behind by one module made another module's exact comparisons depend on test
    order.
    """
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def tiny_dataset(tmp_path: Path) -> Path:
    return make_tiny_dataset(tmp_path / "data")
