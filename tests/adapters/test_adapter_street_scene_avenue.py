"""Street Scene and Avenue adapters on small hand-made trees in their official formats.

shared/data has no file of either dataset, so the ground-truth files are written here
in the documented formats: Street Scene ``TestNNN_gt.txt`` rows
``<frame file> <track_id> <x_center> <y_center> <width> <height>`` (frames from 1), and
Avenue ``k_label.mat`` with a ``volLabel`` cell of per-frame masks. Frames are real tiny
JPEGs and videos are real H.264 files from ``patchvad.io.video.write_video``, read by
the default probe.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from patchvad.data.adapters import prepare_dataset
from patchvad.data.folder import DatasetFolder
from patchvad.errors import DatasetError
from patchvad.io.video import write_video


def _frames(folder: Path, n: int, size: tuple[int, int] = (40, 30)) -> None:
    folder.mkdir(parents=True)
    for k in range(1, n + 1):
        Image.fromarray(np.full((size[1], size[0], 3), 10 * k, dtype=np.uint8)).save(folder / f"{k:03d}.jpg")


def test_street_scene(tmp_path: Path) -> None:
    src = tmp_path / "StreetScene"
    for name, n in (("Train/Train001", 5), ("Train/Train002", 4), ("Test/Test001", 6), ("Test/Test002", 3)):
        _frames(src / name, n)
    # Track 0 on frames 2..3 (file numbers from 1), centre/size boxes (11.5 - 3 = 8.5 rounds
    # up to 9); track 1 reaches past the right edge (clipped) on frame 6.
    (src / "Test" / "Test001" / "Test001_gt.txt").write_text(
        "Test001/002.jpg 0 10 8 6 4\nTest001/003.jpg 0 11.5 8 6 4\nTest001/006.jpg 1 38 20 8 10\n")
    (src / "Test" / "Test002" / "Test002_gt.txt").write_text("")

    with pytest.raises(DatasetError) as err:
        prepare_dataset("street_scene", src, tmp_path / "strict")
    text = str(err.value)
    assert "train videos: expected 46 (Ramachandra & Jones 2020), found 2" in text
    assert "test frames: expected 146,410" in text and "found 9" in text
    # Nothing of the dataset is written; only the full report of the refusal.
    assert [p.name for p in (tmp_path / "strict").iterdir()] == ["prepare_failed.json"]

    report = prepare_dataset("street_scene", src, tmp_path / "out", strict=False)
    assert report.counts["anomalous tracks"] == 2
    assert any(n.startswith("sequences whose boxes were clipped") and "Test001" in n for n in report.notes)
    ds = DatasetFolder(tmp_path / "out")
    entry = ds.entry("Test001")
    assert entry.video == "videos/Test/Test001" and (entry.frames, entry.fps, entry.width, entry.height) == \
        (6, 15.0, 40, 30)
    gt = ds.test_set().ground_truth(entry)
    assert np.flatnonzero(gt.frame_labels).tolist() == [1, 2, 5]
    assert gt.regions.tolist() == [[0, 1, 7, 6, 12, 9], [0, 2, 9, 6, 14, 9], [1, 5, 34, 15, 39, 24]]
    assert ds.entry("Test002").label == 0 and not ds.test_set().ground_truth(ds.entry("Test002")).frame_labels.any()
    assert (tmp_path / "out" / "videos" / "Test" / "Test001" / "001.jpg").stat().st_nlink == 2


def _cell(masks: list[np.ndarray]) -> np.ndarray:
    cell = np.empty((1, len(masks)), dtype=object)
    for k, m in enumerate(masks):
        cell[0, k] = m.astype(np.float64)      # the official files hold doubles
    return cell


def test_avenue(tmp_path: Path) -> None:
    src = tmp_path / "Avenue Dataset"
    frame = np.zeros((24, 32, 3), dtype=np.uint8)
    for folder, k, n in (("training_videos", 1, 5), ("training_videos", 2, 4), ("testing_videos", 1, 6),
                         ("testing_videos", 2, 5)):
        (src / folder).mkdir(parents=True, exist_ok=True)
        write_video(src / folder / f"{k:02d}.mp4", [frame + 20 * i for i in range(n)], fps=25)
    gt_dir = src / "ground_truth_demo" / "testing_label_mask"
    gt_dir.mkdir(parents=True)
    masks = [np.zeros((24, 32)) for _ in range(6)]
    for f in (2, 3):
        masks[f][4:8, 3 + f:9 + f] = 1          # one object moving right
        masks[f][15:20, 20:24] = 1              # and a second, still one
    savemat(gt_dir / "1_label.mat", {"volLabel": _cell(masks)})
    savemat(gt_dir / "2_label.mat", {"volLabel": _cell([np.zeros((24, 32)) for _ in range(4)])})  # 4 != 5 frames

    report = prepare_dataset("avenue", src, tmp_path / "out", strict=False, copy_videos=True)
    assert {c.what for c in report.mismatches} == {"train videos", "test videos", "train frames", "test frames"}
    assert any("2_label.mat: 4 masks" in p and "5 frames" in p for p in report.problems)
    missing = [f"train_{k:02d} (training_videos/{k:02d}.avi or training/frames/{k:02d}/)" for k in range(3, 17)] + \
              [f"test_{k:02d} (testing_videos/{k:02d}.avi or testing/frames/{k:02d}/)" for k in range(3, 22)]
    assert f"videos of the official release not found under the source (33): {', '.join(missing)}" in report.problems
    assert report.mode == {"copied": 3}
    ds = DatasetFolder(tmp_path / "out")
    assert [e.stem for e in ds.entries] == ["test_01", "train_01", "train_02"]   # stems no longer collide
    entry = ds.entry("test_01")
    assert entry.video == "videos/test/test_01.mp4"
    assert (entry.frames, entry.width, entry.height, entry.fps) == (6, 32, 24, 25.0)
    assert (tmp_path / "out" / entry.video).stat().st_nlink == 1          # a copy
    gt = ds.test_set().ground_truth(entry)
    assert np.flatnonzero(gt.frame_labels).tolist() == [2, 3]
    assert gt.regions.tolist() == [[0, 2, 5, 4, 10, 7], [1, 2, 20, 15, 23, 19],
                                   [0, 3, 6, 4, 11, 7], [1, 3, 20, 15, 23, 19]]
