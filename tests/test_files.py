"""Atomic writes, the restricted unpickler, and paths that must stay inside a root."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from patchvad.errors import PatchvadError, UnsafeFileError
from patchvad.io.files import (atomic_path, atomic_save_npy, atomic_write_text, load_npy, resolve_inside,
                               safe_pickle_load)


def test_atomic_write_keeps_old_version_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(ZeroDivisionError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-writ")
            1 / 0
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_npy_round_trip_without_pickles(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.float16).reshape(3, 4)
    atomic_save_npy(tmp_path / "x.npy", arr)
    np.testing.assert_array_equal(load_npy(tmp_path / "x.npy"), arr)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(PatchvadError, match="obj.npy"):
        load_npy(tmp_path / "obj.npy")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/patchvad_pwned",))


def test_restricted_unpickler_refuses_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Evil(), protocol=0))
    with pytest.raises(UnsafeFileError, match="posix.system|os.system"):
        safe_pickle_load(path)
    assert not Path("/tmp/patchvad_pwned").exists()


def test_restricted_unpickler_loads_builtins(tmp_path: Path) -> None:
    data = {"Arrest001_x264": [[1, 2, 3, 4], (5.0, "a")], "n": None, "s": {1, 2}}
    for protocol in (0, 2, 4):
        path = tmp_path / f"ok{protocol}.pkl"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        assert safe_pickle_load(path) == data


def test_restricted_unpickler_refuses_numpy(tmp_path: Path) -> None:
    path = tmp_path / "np.pkl"
    path.write_bytes(pickle.dumps(np.zeros(3)))
    with pytest.raises(UnsafeFileError):
        safe_pickle_load(path)


def test_resolve_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "videos").mkdir(parents=True)
    assert resolve_inside(root, "videos/a.mp4") == (root / "videos" / "a.mp4").resolve()
    with pytest.raises(UnsafeFileError, match="leaves the dataset root"):
        resolve_inside(root, "../../etc/passwd", source="m.csv", line=3)
    with pytest.raises(UnsafeFileError, match="absolute path"):
        resolve_inside(root, "/etc/passwd")
    (root / "link").symlink_to("/etc")
    with pytest.raises(UnsafeFileError, match="leaves the dataset root"):
        resolve_inside(root, "link/passwd")


def test_one_sync_defers_the_per_file_fsync_to_one_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from patchvad.io.files import one_sync

    calls = {"fsync": 0, "sync": 0}
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.__setitem__("fsync", calls["fsync"] + 1) or real_fsync(fd))
    monkeypatch.setattr(os, "sync", lambda: calls.__setitem__("sync", calls["sync"] + 1))
    atomic_write_text(tmp_path / "a.txt", "a")
    assert calls == {"fsync": 1, "sync": 0}
    with one_sync():
        for i in range(5):
            atomic_write_text(tmp_path / f"b{i}.txt", str(i))
        assert calls == {"fsync": 1, "sync": 0}
    assert calls == {"fsync": 1, "sync": 1}                     # one sync for the five files
    assert [(tmp_path / f"b{i}.txt").read_text() for i in range(5)] == ["0", "1", "2", "3", "4"]
    atomic_write_text(tmp_path / "c.txt", "c")                  # the marker after the block: its own fsync
    assert calls == {"fsync": 2, "sync": 1}
    with pytest.raises(RuntimeError), one_sync():
        raise RuntimeError("stage failed")
    assert calls["sync"] == 2                                   # what was written is still flushed
    assert not list(tmp_path.glob(".*.tmp*"))
