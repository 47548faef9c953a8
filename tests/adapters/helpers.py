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


def street_scene_tree(src: Path, frames: int = 4) -> Path:
    """Street Scene as Train.tgz / Test.tgz unpack, cut to Train001 and Test001 (real tiny JPEGs)."""
    import numpy as np
    from PIL import Image

    for name in ("Train/Train001", "Test/Test001"):
        (src / name).mkdir(parents=True)
        for k in range(1, frames + 1):
            Image.fromarray(np.full((24, 32, 3), 30 * k, dtype=np.uint8)).save(src / name / f"{k:03d}.jpg")
    (src / "Test" / "Test001" / "Test001_gt.txt").write_text("001.jpg 0 10 10 4 4\n")
    return src


# Ped1 clips with pixel masks in v1p2 (its README names Test004_gt, Test014_gt, Test018_gt among the 10).
PED1_MASKED = ("Test003", "Test004", "Test014", "Test018", "Test019", "Test021", "Test022", "Test023", "Test024",
               "Test032")
UCSD_FRAMES, UCSD_SIZE = 2, (8, 6)
# Where each subset's stand-in masks draw their one object (inclusive x1, y1, x2, y2): the
# two differ, so a region says which subset's mask it came from.
UCSD_BOX = {"UCSDped1": (0, 1, 1, 2), "UCSDped2": (5, 3, 6, 4)}


def ucsd_v1p2_tree(base: Path) -> Path:
    """``UCSD_Anomaly_Dataset.v1p2`` as it unpacks, both subsets, with stand-in media.

    Every clip folder holds ``UCSD_FRAMES`` empty ``.tif`` placeholders (frame counts
    come from :func:`ucsd_probe`); every ``TestNNN_gt`` folder real BMP masks of
    ``UCSD_SIZE`` with the subset's box of ``UCSD_BOX`` on every frame; each ``.m``
    file marks every frame of every clip. Clip names are the official ones: Ped1
    Train001-034 / Test001-036 (masks for ``PED1_MASKED``), Ped2 Train001-016 /
    Test001-012 (masks for all), so both subsets share Train001, Test001, Test003_gt, ...
    """
    import numpy as np
    from PIL import Image

    for folder, train, test, masked in (("UCSDped1", 34, 36, PED1_MASKED),
                                        ("UCSDped2", 16, 12, tuple(f"Test{k:03d}" for k in range(1, 13)))):
        sub = base / folder
        x1, y1, x2, y2 = UCSD_BOX[folder]
        mask = np.zeros((UCSD_SIZE[1], UCSD_SIZE[0]), dtype=np.uint8)
        mask[y1:y2 + 1, x1:x2 + 1] = 255
        for split, n in (("Train", train), ("Test", test)):
            for k in range(1, n + 1):
                clip = sub / split / f"{split}{k:03d}"
                clip.mkdir(parents=True)
                for f in range(1, UCSD_FRAMES + 1):
                    (clip / f"{f:03d}.tif").touch()
        for clip in masked:
            (sub / "Test" / f"{clip}_gt").mkdir()
            for f in range(1, UCSD_FRAMES + 1):
                Image.fromarray(mask).save(sub / "Test" / f"{clip}_gt" / f"{f:03d}.bmp")
        (sub / "Test" / f"{folder}.m").write_text(
            "TestVideoFile = {};\n" + f"TestVideoFile{{end+1}}.gt_frame = [1:{UCSD_FRAMES}];\n" * test)
    return base


def ucsd_probe() -> FakeProbe:
    """Every stand-in UCSD clip: ``UCSD_FRAMES`` frames of ``UCSD_SIZE``, no rate."""
    return FakeProbe({}, default=MediaInfo(UCSD_FRAMES, *UCSD_SIZE, None))


def shanghaitech_tree(src: Path, lists: Path | None = None) -> Path:
    """A ShanghaiTech download cut to four videos, with the RTFM lists in ``lists`` (default ``src/list``).

    SH_Train: 01_001 (normal) and 01_0016 (anomalous); SH_Test: 01_0014 (anomalous, frame
    mask 10 normal, 5 anomalous, 25 normal frames) and 01_002 (normal). Every video has 40
    frames: original training videos are placeholder ``training/videos/<id>.avi`` files
    (see :func:`shanghaitech_probe`), original test videos ``testing/frames/<id>/`` folders
    of 40 empty ``.jpg`` placeholders.
    """
    import numpy as np

    lists = src / "list" if lists is None else lists
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "SH_Train.txt").write_text("01_001\n01_0016")
    (lists / "SH_Test.txt").write_text("01_0014\n01_002")
    masks = src / "testing" / "test_frame_mask"
    masks.mkdir(parents=True)
    np.save(masks / "01_0014.npy", np.repeat(np.uint8([0, 1, 0]), [10, 5, 25]))
    np.save(masks / "01_0016.npy", np.ones(40, dtype=np.uint8))
    for vid in ("01_001", "01_002"):
        touch(src / "training" / "videos" / f"{vid}.avi")
    for vid in ("01_0014", "01_0016"):
        for k in range(40):
            touch(src / "testing" / "frames" / vid / f"{k:03d}.jpg")
    return src


def shanghaitech_probe() -> FakeProbe:
    return FakeProbe({}, default=MediaInfo(40, 856, 480, 24.0))
