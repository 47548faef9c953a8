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
from patchvad.errors import DatasetError

from .helpers import FakeProbe, PED1_MASKED, UCSD_BOX, UCSD_FRAMES, ucsd_probe, ucsd_v1p2_tree

TEST_LENGTHS = [180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180]   # shared/data README
TRAIN_LENGTHS = [160] * 15 + [150]     # stand-ins summing to the official 2,550 training frames


@pytest.fixture(scope="module")
def ped2(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """Official v1p2 layout with one placeholder .tif per clip folder (frame counts from
    the stand-in probe), the real .m file, and the real masks as their npz repack.

    A complete UCSDped1 sibling (34 training and 36 test clips, as v1p2 unpacks) checks
    that only the Ped2 clips are used: the two subsets share the names Train001-016 and
    Test001-012, and Ped1 alone has Train017-034.
    """
    top = tmp_path_factory.mktemp("ucsd")
    base = top / "UCSD_Anomaly_Dataset.v1p2"
    ped2 = base / "UCSDped2"
    for split, lengths in (("Train", TRAIN_LENGTHS), ("Test", TEST_LENGTHS)):
        for k in range(1, len(lengths) + 1):
            (ped2 / split / f"{split}{k:03d}").mkdir(parents=True)
            (ped2 / split / f"{split}{k:03d}" / "001.tif").touch()
    for split, n in (("Train", 34), ("Test", 36)):
        for k in range(1, n + 1):
            (base / "UCSDped1" / split / f"{split}{k:03d}").mkdir(parents=True)
            (base / "UCSDped1" / split / f"{split}{k:03d}" / "001.tif").touch()
    shutil.copy2(shared_data / "ucsd_ped2" / "UCSDped2.m", ped2 / "Test")
    shutil.copy2(shared_data / "ucsd_ped2" / "test_gt_masks.npz", ped2 / "Test")

    def probe(path: Path) -> MediaInfo:
        if "UCSDped1" in path.parts:
            return MediaInfo(200, 238, 158, None)
        lengths = TEST_LENGTHS if path.name.startswith("Test") else TRAIN_LENGTHS
        return MediaInfo(lengths[int(path.name[-3:]) - 1], 360, 240, None)
    return top, base, FakeProbe(probe)


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


@pytest.fixture(scope="module")
def v1p2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ucsd_v1p2_tree(tmp_path_factory.mktemp("v1p2") / "UCSD_Anomaly_Dataset.v1p2")


def _subset_checks(root: Path, folder: str, train: int, test: int, masked: tuple[str, ...]) -> None:
    """Every clip comes from ``folder``; regions exactly on the masked clips, with that subset's box."""
    ds = DatasetFolder(root)
    assert len(ds.train_set()) == train and len(ds.test_set()) == test
    test_set = ds.test_set()
    for entry in test_set:
        gt = test_set.ground_truth(entry)
        assert gt.frame_labels.tolist() == [1] * UCSD_FRAMES
        boxes = [list(r[2:]) for r in gt.regions.tolist()]
        assert boxes == ([list(UCSD_BOX[folder])] * UCSD_FRAMES if entry.stem in masked else []), entry.stem


@pytest.mark.parametrize("subset", ["ucsd_ped1", "ucsd_ped2"])
def test_each_subset_from_the_v1p2_folder_and_from_its_own(v1p2: Path, tmp_path: Path, subset: str) -> None:
    """v1p2 holds both subsets; their clips share names (Train001, Test003_gt, ...). Each
    subset reads only its own folder, from the v1p2 root as from the subset folder.

    The stand-in clips have 2 frames, so the frame totals differ from the official ones
    (lenient); the clip counts must not.
    """
    folder, train, test = {"ucsd_ped1": ("UCSDped1", 34, 36), "ucsd_ped2": ("UCSDped2", 16, 12)}[subset]
    masked = PED1_MASKED if subset == "ucsd_ped1" else tuple(f"Test{k:03d}" for k in range(1, 13))
    for source, out in ((v1p2, tmp_path / "from_root"), (v1p2 / folder, tmp_path / "from_subset")):
        report = prepare_dataset(subset, source, out, probe=ucsd_probe(), strict=False)
        assert {c.what for c in report.mismatches} == {"train frames", "test frames"} | \
            ({"anomalous test frames"} if subset == "ucsd_ped2" else set())
        # Ped2's test clips have known lengths (shared/data README); Ped1's are not checked one by one.
        assert [p.split(" (")[0] for p in report.problems] == \
            (["clips whose frame count is not the official one"] if subset == "ucsd_ped2" else [])
        _subset_checks(out, folder, train, test, masked)
        unmasked = [f"Test{k:03d}" for k in range(1, test + 1) if f"Test{k:03d}" not in masked]
        assert [n for n in report.notes if n.startswith("test clips without pixel masks")] == \
            ([f"test clips without pixel masks (frame labels only) ({len(unmasked)}): {', '.join(unmasked)}"]
             if unmasked else [])


def test_the_other_subsets_folder_is_refused(v1p2: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"'prepare ucsd_ped2' reads UCSD Ped2: pass its UCSDped2/ folder, or the "
                                           r"UCSD_Anomaly_Dataset.v1p2 folder that holds both, or run "
                                           r"'prepare ucsd_ped1'"):
        prepare_dataset("ucsd_ped2", v1p2 / "UCSDped1", tmp_path / "out", probe=ucsd_probe(), strict=False)


def test_missing_clips_are_named(v1p2: Path, tmp_path: Path) -> None:
    src = tmp_path / "UCSD_Anomaly_Dataset.v1p2"
    shutil.copytree(v1p2 / "UCSDped2", src / "UCSDped2")
    for clip in ("Train/Train007", "Test/Test012"):
        shutil.rmtree(src / "UCSDped2" / clip)
    report = prepare_dataset("ucsd_ped2", src, tmp_path / "out", probe=ucsd_probe(), strict=False)
    assert f"clips of the official UCSD Ped2 release not found under {src / 'UCSDped2'} (expected " \
           f"UCSDped2/Train/TrainNNN/ and UCSDped2/Test/TestNNN/ frame folders) (2): Train007, Test012" \
        in report.problems
    assert any(p.startswith("clips whose frame count is not the official one (found, official) (11): "
                            "Test001 (2, 180), Test002 (2, 180), Test003 (2, 150)") for p in report.problems)
