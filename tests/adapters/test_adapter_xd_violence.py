"""XD-Violence adapter on the real annotations.txt and rgb_test.list."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from patchvad.data.adapters import MediaInfo, prepare_dataset
from patchvad.data.adapters.xd_violence import is_normal, label_codes, read_annotations, read_test_list
from patchvad.data.folder import DatasetFolder
from patchvad.errors import DatasetError

from .helpers import FakeProbe, touch

SHORT = "v=S-7rRLrxnVQ__#1_label_B4-0-0"          # annotated 0 1517 1970 3038


@pytest.fixture(scope="module")
def xd(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """Official files plus placeholder videos: the 800 test videos and 3,954 training ones.

    The training names are made up (shared/data has no training list) but follow the
    naming rule: 1,905 violent and 2,049 label_A.
    """
    top = tmp_path_factory.mktemp("xd")
    src = top / "XD-Violence"
    (src / "list").mkdir(parents=True)
    shutil.copy2(shared_data / "xd_violence" / "annotations.txt", src)
    shutil.copy2(shared_data / "xd_violence" / "rgb_test.list", src / "list")
    test_names = read_test_list(src / "list" / "rgb_test.list")
    for name in test_names:
        touch(src / "videos" / "test" / f"{name}.mp4")
    for k in range(3954):
        label = "A" if k < 2049 else "B1-0-0"
        touch(src / "videos" / f"train_part_{k // 1000 + 1}" / f"Film.{k:04d}__#00-00-00_00-00-10_label_{label}.mp4")
    annotations = read_annotations(src / "annotations.txt")
    table = {}
    for name in test_names:
        last = max((e for _, e in annotations[name][0]), default=600) if name in annotations else 600
        table[name] = MediaInfo(last + 7, 64, 48, 24.0)
    table[SHORT] = MediaInfo(3000, 64, 48, 24.0)     # the last segment runs to 3038: clamped
    return top, src, annotations, test_names, FakeProbe(table, default=MediaInfo(240, 64, 48, 24.0))


def test_naming_rule() -> None:
    assert is_normal("A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_A")
    assert label_codes("Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6") == ["G", "B2", "B6"]
    assert label_codes("v=FW_qbiPH7UA__#1_label_B1-0-0") == ["B1"]
    assert not is_normal("v=FW_qbiPH7UA__#1_label_B1-0-0")


def test_official_counts_and_frame_labels(xd) -> None:
    top, src, annotations, test_names, probe = xd
    report = prepare_dataset("xd_violence", src, top, probe=probe)     # --out above --source: in place
    assert report.ok, report.summary()
    found = {c.what: c.found for c in report.checks}
    assert (found["test videos"], found["anomalous test videos"]) == (800, 500)
    assert found["train videos"] == 3954
    assert (found["annotated (violent) test videos"], found["annotated segments"]) == (500, 1238)
    assert found["lines of rgb_test.list"] == 4000
    assert any(SHORT in n for n in report.notes if n.startswith("segments clamped"))

    ds = DatasetFolder(top)
    test = ds.test_set()
    # Manifest order of the test split is the authors' official order (first 500 violent).
    assert [e.stem for e in test] == test_names
    assert all(e.label == 1 for e in list(test)[:500]) and all(e.label == 0 for e in list(test)[500:])
    # [s, e) 0-based half-open, as the authors' make_gt.py.
    gt = test.ground_truth(ds.entry(SHORT))
    assert np.flatnonzero(np.diff(np.r_[0, gt.frame_labels, 0])).tolist() == [0, 1517, 1970, 3000]
    # A name annotated with a '.mp4' suffix still gets its labels.
    suffixed = "v=FW_qbiPH7UA__#1_label_B1-0-0"
    assert suffixed in annotations
    entry = ds.entry(suffixed)
    assert entry.cls == "fighting" and test.ground_truth(entry).frame_labels.any()
    total = sum(int(test.ground_truth(e).frame_labels.sum()) for e in test)
    expected = 0
    for name, (segments, _) in annotations.items():
        frames = probe.table[name].frames
        expected += sum(min(e, frames) - s for s, e in segments if s < frames)
    assert total == expected
    assert ds.entry("Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6").cls == "explosion+shooting+car accident"
    assert not (top / "tracks").exists()            # frame level only: no boxes, no track files


def test_without_the_test_list_test_folders_decide(xd, tmp_path: Path) -> None:
    _, src, _, test_names, probe = xd
    small = tmp_path / "xd"
    small.mkdir()
    shutil.copy2(src / "annotations.txt", small / "annotations.txt")
    for name in test_names[:3] + test_names[-2:]:
        touch(small / "Test" / f"{name}.mp4")
    touch(small / "Train" / "Film.0001__#00-00-00_00-00-10_label_A.mp4")
    report = prepare_dataset("xd_violence", small, tmp_path / "out", probe=probe, strict=False)
    assert any("folder whose name contains 'test'" in n for n in report.notes)
    # 497 annotated videos have no video here: listed as one problem.
    assert any(p.startswith("annotated videos that are not test videos (497)") for p in report.problems)
    ds = DatasetFolder(tmp_path / "out")
    assert sorted(e.stem for e in ds.test_set()) == sorted(test_names[:3] + test_names[-2:])
    assert [e.stem for e in ds.train_set()] == ["Film.0001__#00-00-00_00-00-10_label_A"]


def test_a_missing_test_list_says_what_it_is_and_what_to_do(xd, tmp_path: Path) -> None:
    """The download without the authors' rgb_test.list, and test videos in a folder whose
    name does not say 'test': the refusal explains the file, where it comes from and
    where to put it (the counts alone do not)."""
    _, src, _, test_names, probe = xd
    small = tmp_path / "XD-Violence"
    small.mkdir()
    shutil.copy2(src / "annotations.txt", small / "annotations.txt")
    for name in test_names[:3]:
        touch(small / "videos" / f"{name}.mp4")
    with pytest.raises(DatasetError) as err:
        prepare_dataset("xd_violence", small, tmp_path / "out", probe=probe)
    text = str(err.value)
    assert "test videos: expected 800" in text
    assert (f"rgb_test.list not found under the source, and the videos under a folder whose name contains 'test' "
            f"(used instead) are 0, not the official 800. rgb_test.list is the authors' list of the 800 official "
            f"test videos (4,000 lines, 5 crops each), published with their features in github.com/Roc-Ng/XDVioDet "
            f"as list/rgb_test.list. Put it anywhere under the source (e.g. {small / 'list' / 'rgb_test.list'}; a "
            f"symlink works) and run prepare again") in text
