"""UCSD Ped2 adapter on the real UCSDped2.m and pixel masks; Ped1 .m syntax; BMP mask folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from patchvad.data.adapters import MediaInfo, prepare_dataset
from patchvad.data.adapters.ucsd_ped import read_m_file
from patchvad.data.folder import DatasetFolder

from .helpers import FakeProbe

TEST_LENGTHS = [180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180]   # shared/data README
TRAIN_LENGTHS = [160] * 15 + [150]     # stand-ins summing to the official 2,550 training frames


@pytest.fixture(scope="module")
def ped2(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """Official v1p2 layout with one placeholder .tif per clip folder (frame counts from
    the stand-in probe), the real .m file, and the real masks as their npz repack.

    A UCSDped1 sibling with its own Test001 checks that the Ped2 clips are the ones used.
    """
    top = tmp_path_factory.mktemp("ucsd")
    base = top / "UCSD_Anomaly_Dataset.v1p2"
    ped2 = base / "UCSDped2"
    for split, lengths in (("Train", TRAIN_LENGTHS), ("Test", TEST_LENGTHS)):
        for k in range(1, len(lengths) + 1):
            (ped2 / split / f"{split}{k:03d}").mkdir(parents=True)
            (ped2 / split / f"{split}{k:03d}" / "001.tif").touch()
    (base / "UCSDped1" / "Test" / "Test001").mkdir(parents=True)
    (base / "UCSDped1" / "Test" / "Test001" / "001.tif").touch()
    shutil.copy2(shared_data / "ucsd_ped2" / "UCSDped2.m", ped2 / "Test")
    shutil.copy2(shared_data / "ucsd_ped2" / "test_gt_masks.npz", ped2 / "Test")
    table = {f"Test{k + 1:03d}": MediaInfo(n, 360, 240, None) for k, n in enumerate(TEST_LENGTHS)}
    table.update({f"Train{k + 1:03d}": MediaInfo(n, 360, 240, None) for k, n in enumerate(TRAIN_LENGTHS)})
    return top, base, FakeProbe(table)


def test_ped2_counts_masks_and_regions(ped2, shared_data: Path) -> None:
    top, base, probe = ped2
    report = prepare_dataset("ucsd_ped2", base, top, probe=probe)
    assert report.ok, report.summary()
    found = {c.what: c.found for c in report.checks}
    assert (found["test videos"], found["anomalous test videos"], found["train videos"]) == (12, 12, 16)
    assert found["test frames"] == 2010 and found["anomalous test frames"] == 1648
    assert found["gt_frame entries in UCSDped2.m"] == 12
    # Every frame's mask agrees with the .m frame labels.
    assert report.counts["frames where masks and .m disagree"] == 0
    assert not any("disagree" in n for n in report.notes)

    ds = DatasetFolder(top)
    test = ds.test_set()
    assert [e.stem for e in test] == [f"Test{k:03d}" for k in range(1, 13)]
    assert all("UCSDped2" in e.video for e in ds.entries)
    data = np.load(shared_data / "ucsd_ped2" / "test_gt_masks.npz")
    regions = 0
    for entry, (first, last) in zip(test, [(61, 180), (95, 180), (1, 146), (31, 180), (1, 129), (1, 159),
                                           (46, 180), (1, 180), (1, 120), (1, 150), (1, 180), (88, 180)]):
        gt = test.ground_truth(entry)
        assert entry.fps == 10.0 and (entry.width, entry.height) == (360, 240)
        assert np.flatnonzero(gt.frame_labels).tolist() == list(range(first - 1, last))
        masks = np.unpackbits(data[entry.stem], axis=2).astype(bool)
        # Each region is the box of one mask component; every mask pixel lies in a box.
        for f in np.flatnonzero(masks.any(axis=(1, 2)))[::25]:
            covered = np.zeros(masks.shape[1:], dtype=bool)
            for x1, y1, x2, y2 in gt.boxes_of_frame(f):
                covered[y1:y2 + 1, x1:x2 + 1] = True
            assert not (masks[f] & ~covered).any()
        regions += len(gt.regions)
    # 901 frames with one component, 731 with two, 16 with three (8-connected).
    assert regions == 901 + 2 * 731 + 3 * 16


def test_m_file_with_several_ranges(tmp_path: Path) -> None:
    m = tmp_path / "UCSDped1.m"
    m.write_text("TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [60:152];\n"
                 "TestVideoFile{end+1}.gt_frame = [5:90, 140:200];\n")
    assert read_m_file(m) == [[(60, 152)], [(5, 90), (140, 200)]]


def _tif(path: Path, value: int = 0) -> None:
    Image.fromarray(np.full((24, 32), value, dtype=np.uint8)).save(path)


def test_bmp_mask_folders_and_junk_files(tmp_path: Path) -> None:
    """The official BMP masks, with Test002's 'frame001.bmp' naming, Thumbs.db and a
    macOS '._001.tif' in the frame folder (neither counts as a frame). Counts differ from
    the official ones, so this runs lenient and checks the report lists them."""
    ped2 = tmp_path / "UCSDped2"
    for split, clips in (("Train", 1), ("Test", 2)):
        for k in range(1, clips + 1):
            folder = ped2 / split / f"{split}{k:03d}"
            folder.mkdir(parents=True)
            for f in range(1, 7):
                _tif(folder / f"{f:03d}.tif", value=f)
    (ped2 / "Test" / "Test001" / "Thumbs.db").write_bytes(b"junk")
    (ped2 / "Test" / "Test001" / "._001.tif").write_bytes(b"junk")
    (ped2 / "Test" / "UCSDped2.m").write_text("TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [2:4];\n"
                                              "TestVideoFile{end+1}.gt_frame = [5:6];\n")
    for clip, names, frames in (("Test001", "{:03d}.bmp", (2, 3, 4)), ("Test002", "frame{:03d}.bmp", (5,))):
        gt_dir = ped2 / "Test" / f"{clip}_gt"
        gt_dir.mkdir()
        for f in range(1, 7):
            m = np.zeros((24, 32), dtype=np.uint8)
            if f in frames:
                m[5:9, 2 + f:6 + f] = 255
            Image.fromarray(m).convert("P").save(gt_dir / names.format(f))
    report = prepare_dataset("ucsd_ped2", tmp_path, tmp_path / "out", strict=False)
    assert {c.what for c in report.mismatches} >= {"test videos", "train videos", "test frames"}
    assert any(n.startswith("clips whose mask frames disagree") and "Test002 (1)" in n for n in report.notes)
    ds = DatasetFolder(tmp_path / "out")
    test = ds.test_set()
    entry = ds.entry("Test001")
    assert (entry.frames, entry.width, entry.height) == (6, 32, 24)     # Thumbs.db and ._001.tif ignored
    gt = test.ground_truth(entry)
    assert np.flatnonzero(gt.frame_labels).tolist() == [1, 2, 3]
    assert gt.regions.tolist() == [[0, f - 1, 2 + f, 5, 5 + f, 8] for f in (2, 3, 4)]   # one linked track
    assert sorted(p.name for p in (tmp_path / "out" / "videos" / "Test" / "Test001").iterdir()) == \
        [f"{f:03d}.tif" for f in range(1, 7)]
    gt2 = test.ground_truth(ds.entry("Test002"))
    assert np.flatnonzero(gt2.frame_labels).tolist() == [4, 5]       # from the .m file
    assert gt2.regions[:, 1].tolist() == [4]                          # from the masks
