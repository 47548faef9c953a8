"""Fixtures of the reliability suite: a no-training checkpoint for predict, and its videos."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchvad.data.folder import write_manifest
from patchvad.io.video import write_video

from .helpers import SMALL_SPEC, smooth_frames


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread():
    """One torch thread while this suite runs in-process (as its subprocesses do).

    On a shared 2-core machine, torch's spinning worker threads make small backbone
    calls 10-30x slower than one thread does. Restored afterwards for other suites.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def floor_ckpt(tmp_path_factory) -> Path:
    """A ``motion_floor`` checkpoint on the small extraction spec (no training: quick, deterministic)."""
    from patchvad.features.extract import extract_dataset
    from patchvad.training import fit

    base = tmp_path_factory.mktemp("floor")
    rows = []
    for i in range(4):
        write_video(base / "data" / "videos" / f"v{i}.mp4", smooth_frames(24, 64, 48, seed=i), fps=25)
        rows.append({"video": f"videos/v{i}.mp4", "split": "train", "label": i % 2})
    write_manifest(base / "data", rows)
    extract_dataset(base / "data", base / "feats", progress=False, **SMALL_SPEC)
    return fit(base / "data", base / "feats", base / "run", method="motion_floor", seed=0, log=None).checkpoint
