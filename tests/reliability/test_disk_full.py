"""Area 6: a full disk gives a clear error, earlier outputs stay intact, no partial file.

Two simulations:

* ``full_disk``: Python-level writes (``Path.write_bytes``, what every atomic write of
  patchvad goes through) get a byte budget; the write that exceeds it writes what
  fits and raises ``OSError(ENOSPC)``, as a real full disk does.
* ``file_size_limit``: ``RLIMIT_FSIZE`` (with SIGXFSZ ignored), for writers in C and
  Rust (safetensors, x264 through PyAV) and for whole command-line runs: a write past
  the limit fails with ``EFBIG``.

After each failure: the error is a PatchvadError naming the file, the previous
version of the file (and every other finished output) is unchanged, nothing partial
sits under a final name, and no temporary file is left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from patchvad.errors import PatchvadError, PredictionError, VideoError
from patchvad.io.files import atomic_save_npy, atomic_write_json, atomic_write_text, load_npy

from .helpers import ENV, SMALL_ARGS, SMALL_SPEC, smooth_frames, temp_files


@pytest.fixture()
def full_disk(monkeypatch) -> Callable[..., None]:
    """``full_disk(budget, when=...)``: writes matching ``when(path)`` share ``budget`` bytes, then ENOSPC."""
    real = Path.write_bytes

    def arm(budget: int, when: Callable[[Path], bool] = lambda p: True) -> None:
        left = [budget]

        def write_bytes(self: Path, data: bytes) -> int:
            if when(self):
                if len(data) > left[0]:
                    real(self, bytes(data[:left[0]]))          # what fits, then the disk is full
                    left[0] = 0
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
                left[0] -= len(data)
            return real(self, data)

        monkeypatch.setattr(Path, "write_bytes", write_bytes)

    return arm


@contextlib.contextmanager
def file_size_limit(nbytes: int) -> Iterator[None]:
    """No file of this process may grow past ``nbytes`` (soft RLIMIT_FSIZE) inside the block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_atomic_writes_keep_the_old_version(tmp_path: Path, full_disk) -> None:
    atomic_write_text(tmp_path / "a.txt", "old text")
    atomic_write_json(tmp_path / "b.json", {"old": True})
    atomic_save_npy(tmp_path / "c.npy", np.arange(4))
    before = _listing(tmp_path)
    full_disk(10)
    for write in (lambda: atomic_write_text(tmp_path / "a.txt", "new text, longer than ten bytes"),
                  lambda: atomic_write_json(tmp_path / "b.json", {"new": list(range(50))}),
                  lambda: atomic_save_npy(tmp_path / "c.npy", np.arange(1000)),
                  lambda: atomic_write_text(tmp_path / "new" / "d.txt", "x" * 100)):
        with pytest.raises(PatchvadError, match="cannot write file \\(No space left on device\\)") as err:
            write()
        assert Path(err.value.path).parent in (tmp_path, tmp_path / "new")
    assert _listing(tmp_path) == before                       # old versions intact, no temporary file
    np.testing.assert_array_equal(load_npy(tmp_path / "c.npy"), np.arange(4))


def _dataset(root: Path, lengths: dict[str, int]) -> Path:
    from patchvad.data.folder import write_manifest
    from patchvad.io.video import write_video

    for i, (stem, n) in enumerate(lengths.items()):
        write_video(root / "videos" / f"{stem}.mp4", smooth_frames(n, 64, 48, seed=i), fps=25)
    write_manifest(root, [{"video": f"videos/{s}.mp4", "split": "train", "label": i % 2}
                          for i, s in enumerate(lengths)])
    return root


def test_feature_store_on_a_full_disk_stops_cleanly_and_resumes(tmp_path: Path, full_disk) -> None:
    from patchvad.features.backbones import PatchFeatureExtractor
    from patchvad.features.extract import extract_dataset
    from patchvad.features.store import FeatureStore

    root = _dataset(tmp_path / "d", {"v0": 16, "v1": 16, "v2": 16, "v3": 16})
    extractor = PatchFeatureExtractor(**SMALL_SPEC)
    feats = tmp_path / "feats"
    extract_dataset(root, feats, extractor=extractor, progress=False, splits=("none",))     # the store only
    done = {}

    def when(path: Path) -> bool:                  # the disk fills up while v2's array is written
        done.update({p.stem: 1 for p in feats.glob("v*.json")})
        return len(done) >= 2
    full_disk(1000, when)
    with pytest.raises(PatchvadError, match="v2.npy: cannot write file \\(No space left on device\\)"):
        extract_dataset(root, feats, extractor=extractor, progress=False)
    store = FeatureStore(feats)
    assert store.finished() == ["v0", "v1"] and all(store.is_complete(s) for s in ("v0", "v1"))
    assert not (feats / "v2.npy").exists() and temp_files(feats) == []
    kept = _listing(feats)

    full_disk(10 ** 9)                              # space freed: the rerun finishes the rest only
    report = extract_dataset(root, feats, extractor=extractor, progress=False)
    assert report.done == ["v2", "v3"] and report.skipped == ["v0", "v1"]
    assert {k: v for k, v in _listing(feats).items() if k.startswith(("v0", "v1"))} == \
        {k: v for k, v in kept.items() if k.startswith(("v0", "v1"))}


def test_rewriting_predictions_on_a_full_disk_never_leaves_a_mixed_folder(tmp_path: Path, full_disk) -> None:
    from patchvad.predictions import prediction_stems, read_prediction, write_prediction

    pred = tmp_path / "pred"
    for stem in ("a", "b"):
        write_prediction(pred, stem, np.full(20, 0.2), None, np.zeros((30, 8, 8)))
    b_before = _listing(pred / "b")
    full_disk(2000, lambda p: p.parent.name == "a")           # boxes.csv (~800 bytes) fits, maps.npy (4 kB) not
    boxes = np.column_stack([np.arange(20), np.zeros((20, 2)), np.full((20, 2), 5), np.full(20, 0.9)])
    with pytest.raises(PredictionError, match="a/maps.npy: cannot write file \\(No space left on device\\)"):
        write_prediction(pred, "a", np.full(20, 0.9), boxes, np.ones((30, 8, 8)))
    # The new boxes are on disk, but without scores the folder is not complete: never read as a whole.
    assert prediction_stems(pred) == ["b"]
    with pytest.raises(PredictionError, match="a/scores.npy: file not found"):
        read_prediction(pred, "a")
    assert _listing(pred / "b") == b_before and temp_files(pred) == []


def test_overlay_video_on_a_full_disk(tmp_path: Path) -> None:
    from patchvad.io.video import write_video

    target = tmp_path / "overlay.mp4"
    write_video(target, smooth_frames(4, 64, 48), fps=25)
    old = target.read_bytes()
    frames = [np.random.default_rng(k).integers(0, 255, (240, 320, 3), dtype=np.uint8) for k in range(10)]
    with file_size_limit(20_000), pytest.raises(VideoError) as err:
        write_video(target, frames, fps=25)
    assert str(err.value).startswith(f"{target}: ")
    assert target.read_bytes() == old and temp_files(tmp_path) == []


def _tiny_model(tmp_path: Path):
    import importlib.util

    from patchvad.config import ModelConfig, RunConfig, TrainConfig
    from patchvad.training import fit

    spec = importlib.util.spec_from_file_location("toydata", Path(__file__).parents[1] / "model" / "toydata.py")
    toydata = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toydata)
    toydata.make_toy_dataset(tmp_path / "data", tmp_path / "feats", n_train=8, n_test=0, grid=(4, 4), snippets=(6, 8))
    cfg = RunConfig(model=ModelConfig(width=16, appearance_dims=8, change_dims=4),
                    train=TrainConfig(steps=2, batch_size=4, eval_every=2, log_every=2, device="cpu", threads=1))
    result = fit(tmp_path / "data", tmp_path / "feats", tmp_path / "run", method="proximity", config=cfg, log=None)
    from patchvad.model.model import load_model

    return load_model(result.checkpoint), result.checkpoint


def test_checkpoint_save_on_a_full_disk_keeps_the_old_checkpoint(tmp_path: Path) -> None:
    model, ckpt = _tiny_model(tmp_path)
    old = ckpt.read_bytes()
    with file_size_limit(len(old) // 2), pytest.raises(Exception):    # noqa: B017 - the type: see the next test
        model.save(ckpt)
    assert ckpt.read_bytes() == old and temp_files(ckpt.parent) == []


def test_checkpoint_save_on_a_full_disk_is_a_clear_error(tmp_path: Path) -> None:
    from patchvad.errors import CheckpointError

    model, ckpt = _tiny_model(tmp_path)
    with file_size_limit(ckpt.stat().st_size // 2):
        try:
            model.save(ckpt)
        except CheckpointError as exc:
            assert str(exc).startswith(f"{ckpt}: ")
            return
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(f"{type(exc).__name__}: {exc}") from exc
    raise AssertionError("no error on a full disk")


@pytest.mark.slow
def test_command_line_extract_on_a_full_disk(tmp_path: Path) -> None:
    """``patchvad extract`` under a file-size limit: one clear line, exit 2, finished videos kept."""
    from patchvad.features.store import FeatureStore

    # Short videos' arrays fit under the limit, the long one's does not.
    root = _dataset(tmp_path / "d", {"a_short": 8, "b_short": 8, "c_long": 64, "d_short": 8})

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, resource.RLIM_INFINITY))

    feats = tmp_path / "feats"
    proc = subprocess.run([sys.executable, "-m", "patchvad", "extract", str(root), "--out", str(feats), *SMALL_ARGS],
                          env=ENV, capture_output=True, text=True, preexec_fn=limit, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.endswith(f"\npatchvad extract: error: {feats / 'c_long.npy'}: cannot write file "
                                f"(File too large)\n")
    assert "Traceback" not in proc.stderr
    store = FeatureStore(feats)
    assert store.finished() == ["a_short", "b_short"] and all(store.is_complete(s) for s in store.finished())
    assert not (feats / "c_long.npy").exists() and temp_files(feats) == []
