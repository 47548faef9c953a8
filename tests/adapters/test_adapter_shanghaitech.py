"""ShanghaiTech weak-split adapter on the real SH lists, frame masks and AED tracks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from patchvad.data.adapters import MediaInfo, prepare_dataset
from patchvad.data.adapters.shanghaitech import read_aed_tracks
from patchvad.data.folder import DatasetFolder
from patchvad.errors import DatasetError

from .helpers import FakeProbe, touch


@pytest.fixture(scope="module")
def sh_source(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Official layout with stand-in videos.

    Frame folders hold one empty placeholder image; the stand-in probe returns each
    video's real frame count (the length of its frame mask) instead of counting the
    ~40k images the real folders hold. The one folder the pixel-mask test links gets
    all its frames, so the hard-link writer can check the count.
    """
    sh = shared_data / "shanghaitech"
    top = tmp_path_factory.mktemp("sh")
    src = top / "shanghaitech"
    shutil.copytree(sh / "test_frame_mask", src / "testing" / "test_frame_mask")
    shutil.copytree(sh / "tracks", src / "AED" / "annotations" / "ShanghaiTech")
    (src / "lists").mkdir(parents=True)
    shutil.copy2(sh / "SH_Train.txt", src / "lists")
    shutil.copy2(sh / "SH_Test.txt", src / "lists")
    for mask in (sh / "test_frame_mask").glob("*.npy"):
        folder = src / "testing" / "frames" / mask.stem
        folder.mkdir(parents=True)
        for k in range(len(np.load(mask)) if mask.stem == "01_0015" else 1):
            (folder / f"{k:03d}.jpg").touch()
    for vid in (sh / "SH_Train.txt").read_text().split() + (sh / "SH_Test.txt").read_text().split():
        if len(vid.split("_")[1]) == 3:
            touch(src / "training" / "videos" / f"{vid}.avi")
    return src


def _probe(shared_data: Path) -> FakeProbe:
    lengths = {p.stem: len(np.load(p)) for p in (shared_data / "shanghaitech" / "test_frame_mask").glob("*.npy")}

    def info(path: Path) -> MediaInfo:
        if path.is_dir():
            return MediaInfo(lengths[path.name], 856, 480, None)   # frame folders carry no rate
        return MediaInfo(400, 856, 480, 24.0)
    return FakeProbe(info)


def test_weak_split_counts_in_place(sh_source: Path, shared_data: Path) -> None:
    root = sh_source.parent                      # --out above --source: videos referenced in place
    report = prepare_dataset("shanghaitech", sh_source, root, probe=_probe(shared_data))
    assert report.ok, report.summary()
    found = {c.what: c.found for c in report.checks}
    assert (found["train videos"], found["anomalous train videos"]) == (238, 63)
    assert (found["test videos"], found["anomalous test videos"]) == (199, 44)
    assert found["frame-mask files (original test videos)"] == 107
    assert found["frames in the frame masks"] == 40791
    assert found["anomalous frames in the frame masks"] == 17326
    assert (found["AED track files"], found["AED tracks"], found["AED track boxes"]) == (107, 158, 18937)
    # 40,791 frames carry masks (all 107 original test videos); of them the weak split
    # puts the 44 anomalous test videos' frames in test and the 63 others in train.
    masks = {p.stem: np.load(p) for p in (shared_data / "shanghaitech" / "test_frame_mask").glob("*.npy")}
    test_ids = (shared_data / "shanghaitech" / "SH_Test.txt").read_text().split()
    expected_test_masked = sum(len(masks[i]) for i in test_ids if i in masks)
    assert report.counts["test frames with frame masks"] == expected_test_masked == 17472
    assert report.counts["train frames with frame masks"] == 40791 - 17472 == 23319
    assert report.mode == {"in place": 437}
    # The 12 videos whose mask-positive frames partly lack boxes are reported, not fatal.
    note = next(n for n in report.notes if n.startswith("videos with mask-positive frames that have no box"))
    test_with_gaps = [v for v in ("01_0027", "01_0028", "01_0133", "01_0134", "01_0177", "03_0033", "03_0039",
                                  "04_0001", "04_0011", "07_0007", "08_0077", "12_0143") if v in test_ids]
    assert all(v in note for v in test_with_gaps)

    ds = DatasetFolder(root)
    test = ds.test_set()
    entry = ds.entry("03_0059")                           # its upstream track file is out of order
    assert entry.video == "shanghaitech/testing/frames/03_0059"
    assert (entry.frames, entry.width, entry.height, entry.fps) == (len(masks["03_0059"]), 856, 480, 24.0)
    gt = test.ground_truth(entry)
    assert np.array_equal(gt.frame_labels, masks["03_0059"])
    aed = read_aed_tracks(shared_data / "shanghaitech" / "tracks" / "03_0059.txt")
    assert len(gt.regions) == len(aed)
    assert np.all(np.diff(gt.regions[:, 1]) >= 0)         # the unsorted upstream file comes out sorted
    total_regions = 0
    for e in test:
        g = test.ground_truth(e)
        total_regions += len(g.regions)
        assert e.label == int(g.frame_labels.any())
    test_boxes = sum(len(read_aed_tracks(shared_data / "shanghaitech" / "tracks" / f"{i}.txt"))
                     for i in test_ids if i in masks)
    assert total_regions == test_boxes
    # Training videos get no ground-truth files, even the 63 anomalous ones with masks.
    train_stems = {e.stem for e in ds.train_set()}
    assert not {p.stem for p in (root / "frame_labels").glob("*.npy")} & train_stems
    assert not {p.stem for p in (root / "tracks").glob("*.csv")} & train_stems


def test_pixel_masks_give_regions_when_tracks_are_absent(sh_source: Path, tmp_path: Path) -> None:
    """regions=pixel: connected components of testing/test_pixel_mask/<id>.npy, linked into tracks.

    Only one video of the split is present, so the run is lenient and the other 436 are
    reported missing.
    """
    src = tmp_path / "sh"
    shutil.copytree(sh_source / "lists", src / "lists")
    shutil.copytree(sh_source / "testing" / "test_frame_mask", src / "testing" / "test_frame_mask")
    shutil.copytree(sh_source / "testing" / "frames" / "01_0015", src / "testing" / "frames" / "01_0015")
    mask = np.load(src / "testing" / "test_frame_mask" / "01_0015.npy")
    pixels = np.zeros((len(mask), 48, 86), dtype=np.uint8)      # small stand-in frame size
    for f in np.flatnonzero(mask):
        pixels[f, 10:20, 5 + f % 40:15 + f % 40] = 1              # one object drifting right
    (src / "testing" / "test_pixel_mask").mkdir()
    np.save(src / "testing" / "test_pixel_mask" / "01_0015.npy", pixels)

    def info(path: Path) -> MediaInfo:
        if path.is_dir():
            return MediaInfo(len(mask), 86, 48, None)
        return MediaInfo(400, 86, 48, 24.0)

    report = prepare_dataset("shanghaitech", src, tmp_path / "out", probe=FakeProbe(info), strict=False,
                             options={"regions": "pixel"})
    ds = DatasetFolder(tmp_path / "out")
    gt = ds.test_set().ground_truth(ds.entry("01_0015"))
    assert set(gt.regions[:, 1].tolist()) == set(np.flatnonzero(mask).tolist())
    assert gt.regions[0, 2:].tolist() == [5 + gt.regions[0, 1] % 40, 10, 14 + gt.regions[0, 1] % 40, 19]
    assert report.mode == {"hard-linked": 1}
    assert any(p.startswith("listed videos not found under the source (436)") for p in report.problems)
    linked = sorted((tmp_path / "out" / "videos" / "testing" / "frames" / "01_0015").iterdir())
    assert len(linked) == len(mask) and linked[0].stat().st_nlink == 2       # hard links, not copies


def test_every_missing_video_is_named(sh_source: Path, shared_data: Path, tmp_path: Path) -> None:
    """The lists and masks without the videos: the refusal abbreviates the 437 missing
    videos and points to prepare_failed.json, which names every one."""
    src = tmp_path / "shanghaitech"
    shutil.copytree(sh_source / "lists", src / "lists")
    shutil.copytree(sh_source / "testing" / "test_frame_mask", src / "testing" / "test_frame_mask")
    ids = [v for name in ("SH_Train.txt", "SH_Test.txt") for v in (src / "lists" / name).read_text().split()]
    with pytest.raises(DatasetError) as err:
        prepare_dataset("shanghaitech", src, tmp_path / "out", probe=_probe(shared_data))
    failed = tmp_path / "out" / "prepare_failed.json"
    what = "listed videos not found under the source (437)"
    line = next(line for line in str(err.value).splitlines() if what in line)
    assert line.endswith(f"... and 429 more (all 437 in {failed})")
    problems = json.loads(failed.read_text())["problems"]
    assert f"{what}: " + ", ".join(f"{v} (no video file or frame folder)" for v in ids) in problems
