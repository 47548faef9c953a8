"""The generic dataset folder: reading, validation errors, and train/test separation."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from patchvad.data import folder
from patchvad.data.folder import (DatasetFolder, TrainSet, read_manifest, write_frame_labels, write_manifest,
                                  write_tracks)
from patchvad.errors import DatasetError, UnsafeFileError


def _touch_videos(root: Path, names: list[str]) -> None:
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_bytes(b"x")


def _rows(**override) -> list[dict]:
    base = [
        {"video": "v/a.mp4", "split": "train", "label": 0, "class": "normal", "frames": 50, "width": 64, "height": 48},
        {"video": "v/b.mp4", "split": "train", "label": 1, "class": "fight", "frames": 50, "width": 64, "height": 48},
        {"video": "v/c.mp4", "split": "test", "label": 1, "class": "fight", "frames": 50, "width": 64, "height": 48},
        {"video": "v/d.mp4", "split": "test", "label": 0, "class": "normal", "frames": 50, "width": 64, "height": 48},
    ]
    for i, change in override.items():
        base[int(i[1:])].update(change)
    return base


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    r = tmp_path / "ds"
    _touch_videos(r, ["v/a.mp4", "v/b.mp4", "v/c.mp4", "v/d.mp4"])
    write_manifest(r, _rows())
    write_tracks(r, "c", [(0, 10, 1, 2, 20, 30), (0, 11, 2, 2, 21, 30), (1, 11, 40, 5, 50, 20)])
    return r


def test_reads_and_splits(root: Path) -> None:
    ds = DatasetFolder(root)
    train, test = ds.train_set(), ds.test_set()
    assert [e.stem for e in train] == ["a", "b"]
    assert train.labels.tolist() == [0, 1]
    gt = test.ground_truth(ds.entry("c"))
    assert gt.frame_count == 50
    assert gt.frame_labels.sum() == 2 and gt.frame_labels[10] == 1 and gt.frame_labels[11] == 1
    assert gt.regions.shape == (3, 6)
    assert gt.boxes_of_frame(11).tolist() == [[2, 2, 21, 30], [40, 5, 50, 20]]
    assert test.ground_truth(ds.entry("d")).frame_labels.sum() == 0


def test_frame_labels_take_precedence(root: Path) -> None:
    labels = np.zeros(50, np.uint8)
    labels[5:15] = 1
    write_frame_labels(root, "c", labels)
    gt = DatasetFolder(root).test_set().ground_truth(DatasetFolder(root).entry("c"))
    assert gt.frame_labels.sum() == 10


def test_training_path_cannot_reach_ground_truth(root: Path) -> None:
    ds = DatasetFolder(root)
    train = ds.train_set()
    # Structural: a TrainSet holds entries only: no root, no ground-truth accessor.
    assert not hasattr(train, "root") and not hasattr(train, "ground_truth")
    assert {f for f in TrainSet.__dataclass_fields__} == {"entries"}
    with pytest.raises(DatasetError, match="only available for test videos"):
        ds.test_set().ground_truth(ds.entry("a"))
    with pytest.raises(DatasetError, match="non-training"):
        TrainSet(tuple(ds.test_set().entries))


@pytest.mark.parametrize("header,match", [
    ("video,split,label,class,extra", r"unknown column\(s\) \['extra'\]"),
    ("video,label", r"missing column\(s\) \['split'\]"),
])
def test_bad_header(root: Path, header: str, match: str) -> None:
    (root / "manifest.csv").write_text(header + "\n")
    with pytest.raises(DatasetError, match=match):
        read_manifest(root)


@pytest.mark.parametrize("row,match", [
    ("v/a.mp4,train,2,x", r"manifest.csv:2: label must be 0 or 1, found '2'"),
    ("v/a.mp4,val,0,x", r"manifest.csv:2: split must be 'train' or 'test'"),
    ("v/zzz.mp4,train,0,x", r"manifest.csv:2: video 'v/zzz.mp4' not found"),
    ("v/a.mp4,train,0", r"manifest.csv:2: expected 4 fields, found 3"),
])
def test_bad_rows(root: Path, row: str, match: str) -> None:
    (root / "manifest.csv").write_text("video,split,label,class\n" + row + "\n")
    with pytest.raises(DatasetError, match=match):
        read_manifest(root)


def test_paths_escaping_root_refused(root: Path) -> None:
    for bad in ("../../etc/passwd", "/etc/passwd"):
        (root / "manifest.csv").write_text(f"video,split,label,class\n{bad},train,0,x\n")
        with pytest.raises(UnsafeFileError, match="manifest.csv:2"):
            read_manifest(root)


def test_duplicate_stems(root: Path) -> None:
    _touch_videos(root, ["w/a.mp4"])
    (root / "manifest.csv").write_text("video,split,label,class\nv/a.mp4,train,0,x\nw/a.mp4,test,0,x\n")
    with pytest.raises(DatasetError, match="stem 'a' also on line 2"):
        read_manifest(root)


def test_anomalous_test_video_without_ground_truth(root: Path) -> None:
    (root / "tracks" / "c.csv").unlink()
    ds = DatasetFolder(root)
    with pytest.raises(DatasetError, match="labelled anomalous but has neither"):
        ds.test_set().ground_truth(ds.entry("c"))


@pytest.mark.parametrize("line,match", [
    ("0,50,1,1,5,5", r"c.csv:2: frame_id 50 outside the video's 50 frames"),
    ("0,3,1,1,64,5", r"c.csv:2: box \(1,1,64,5\) lies outside the 64x48 frame"),
    ("0,3,-1,1,5,5", r"c.csv:2: box .* lies outside"),
    ("0,3,9,1,5,5", r"c.csv:2: box .* x_max < x_min"),
    ("0,3,a,1,5,5", r"c.csv:2: x_min 'a' is not an integer"),
])
def test_bad_tracks(root: Path, line: str, match: str) -> None:
    (root / "tracks" / "c.csv").write_text("track_id,frame_id,x_min,y_min,x_max,y_max\n" + line + "\n")
    ds = DatasetFolder(root)
    with pytest.raises(DatasetError, match=match):
        ds.test_set().ground_truth(ds.entry("c"))


def test_bad_frame_labels(root: Path) -> None:
    (root / "frame_labels").mkdir()
    np.save(root / "frame_labels" / "c.npy", np.full(50, 2, np.uint8))
    ds = DatasetFolder(root)
    with pytest.raises(DatasetError, match=r"c.npy: frame labels must be 0 or 1, found \[2\]"):
        ds.test_set().ground_truth(ds.entry("c"))
    np.save(root / "frame_labels" / "c.npy", np.ones(49, np.uint8))
    ds = DatasetFolder(root)
    with pytest.raises(DatasetError, match=r"c.npy: 49 frame labels for a video of 50 frames"):
        ds.test_set().ground_truth(ds.entry("c"))


def test_real_video_is_probed(tiny_dataset: Path) -> None:
    ds = DatasetFolder(tiny_dataset)
    entry = ds.entry("test_01")
    assert entry.frames is None
    gt = ds.test_set().ground_truth(entry)
    assert gt.frame_count == 40 and (gt.width, gt.height) == (96, 64)
    assert int(gt.frame_labels.sum()) == 20


def test_training_module_surface() -> None:
    # The only public ground-truth readers are the TestSet method and the loader it uses.
    src = inspect.getsource(TrainSet)
    assert "tracks" not in src.split('"""')[-1] and "frame_labels" not in src.split('"""')[-1]
    assert hasattr(folder, "load_ground_truth")
