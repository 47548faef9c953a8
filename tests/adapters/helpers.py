"""Helpers for the dataset-adapter tests.

The real annotation files live in ``<repo>/../shared/data`` (never copied into the
package). Each test copies the files it needs into ``tmp_path`` in the dataset's
official layout, next to stand-in videos: empty placeholder files or folders whose
frame counts come from :class:`FakeProbe` (the real datasets have videos of up to
~100k frames), or tiny real videos written by ``patchvad.io.video.write_video``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from patchvad.data.adapters.common import MediaInfo

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def copy_files(src_root: Path, dst_root: Path, mapping: Mapping[str, str]) -> None:
    """Copy ``src_root/<key>`` to ``dst_root/<value>`` (files or whole folders)."""
    for src, dst in mapping.items():
        target = dst_root / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        if (src_root / src).is_dir():
            shutil.copytree(src_root / src, target)
        else:
            shutil.copy2(src_root / src, target)


class FakeProbe:
    """Stand-in frame-count probe: ``path -> MediaInfo`` looked up by the path's stem.

    Records the paths it was asked about, so tests can check that every video was
    probed once.
    """

    def __init__(self, table: Mapping[str, MediaInfo] | Callable[[Path], MediaInfo],
                 default: MediaInfo | None = None):
        self.table = table
        self.default = default
        self.calls: list[Path] = []

    def __call__(self, path: Path) -> MediaInfo:
        self.calls.append(Path(path))
        if callable(self.table):
            return self.table(Path(path))
        name = Path(path).stem if Path(path).is_file() else Path(path).name
        if name in self.table:
            return self.table[name]
        if self.default is None:
            raise KeyError(f"FakeProbe has no entry for {path}")
        return self.default


def touch(path: Path) -> Path:
    """An empty placeholder video file (its frame count comes from a FakeProbe)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path
