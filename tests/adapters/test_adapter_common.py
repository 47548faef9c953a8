"""Shared adapter machinery: masks to boxes, track linking, output-root rules, writing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from patchvad.data.adapters import ADAPTERS, MediaInfo, prepare_command, prepare_dataset
from patchvad.data.adapters.common import (
    SourceIndex, clean_regions, default_frame_counter, labels_from_segments, list_frame_files,
    mask_boxes, scale_boxes,
)
from patchvad.data.folder import DatasetFolder
from patchvad.errors import ConfigError, DatasetError
from patchvad.geometry import link_frame_boxes
from patchvad.io.video import VideoReader, write_video

from .helpers import (
    FakeProbe, shanghaitech_probe, shanghaitech_tree, street_scene_tree, touch, ucsd_probe, ucsd_v1p2_tree,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "datasets.md"


def test_registry_names_every_dataset() -> None:
    assert set(ADAPTERS) == {"ucf_crime", "shanghaitech", "ubnormal", "xd_violence", "street_scene", "ucsd_ped2",
                             "ucsd_ped1", "avenue"}
    with pytest.raises(ConfigError, match="unknown dataset 'kinetics'"):
        prepare_dataset("kinetics", ".", "out")


def test_mask_boxes_are_8_connected_inclusive() -> None:
    m = np.zeros((10, 12), dtype=bool)
    m[1, 1] = m[2, 2] = True            # diagonal neighbours: one region
    m[5:8, 6:11] = True
    assert mask_boxes(m).tolist() == [[1, 1, 2, 2], [6, 5, 10, 7]]
    assert mask_boxes(m, min_area=3).tolist() == [[6, 5, 10, 7]]
    assert mask_boxes(np.zeros((4, 4))).shape == (0, 4)


def test_link_frame_boxes_keeps_identities_and_splits_at_gaps() -> None:
    a = lambda x: [x, 0, x + 9, 9]                                  # noqa: E731
    b = lambda x: [x, 20, x + 9, 29]                                # noqa: E731
    per_frame = [(0, np.array([a(0), b(50)])), (1, np.array([b(52), a(2)])), (2, np.array([a(4)])),
                 (4, np.array([a(8)]))]                             # frame 3 missing: a new track
    rows = link_frame_boxes(per_frame)
    tracks = {(f, x1): t for t, f, x1, *_ in rows.tolist()}
    assert tracks[(0, 0)] == tracks[(1, 2)] == tracks[(2, 4)] == 0
    assert tracks[(0, 50)] == tracks[(1, 52)] == 1
    assert tracks[(4, 8)] == 2
    assert np.all(np.diff(rows[:, 1]) >= 0)


def test_segments_scaling_and_cleaning() -> None:
    labels, clamped = labels_from_segments(10, [(2, 4), (8, 15)])
    assert labels.tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 1, 1] and clamped == 1
    # A full-frame box stays full-frame; pixel 0 maps to the scaled pixel interval.
    assert scale_boxes(np.array([[0, 0, 319, 239]]), (320, 240), (640, 480)).tolist() == [[0, 0, 639, 479]]
    assert scale_boxes(np.array([[10, 10, 10, 10]]), (320, 240), (640, 480)).tolist() == [[20, 20, 21, 21]]
    regions = np.array([[0, 1, -3, 2, 50, 9], [0, 1, 0, 0, 1, 1], [0, 12, 0, 0, 1, 1], [1, 0, 5, 5, 6, 6]])
    cleaned, fixes = clean_regions(regions, frames=10, width=40, height=30)
    assert cleaned.tolist() == [[1, 0, 5, 5, 6, 6], [0, 1, 0, 2, 39, 9]]
    assert (fixes.clipped, fixes.past_end, fixes.duplicates) == (1, 1, 1)


def test_frame_folders_are_counted_in_natural_order(tmp_path: Path) -> None:
    folder = tmp_path / "clip"
    folder.mkdir()
    for name in ("10.png", "2.png", "1.png"):
        Image.fromarray(np.zeros((6, 8), dtype=np.uint8)).save(folder / name)
    (folder / "._1.png").write_bytes(b"resource fork")
    (folder / "notes.txt").write_text("x")
    assert [p.name for p in list_frame_files(folder)] == ["1.png", "2.png", "10.png"]
    assert default_frame_counter(folder) == MediaInfo(3, 8, 6, None)
    write_video(tmp_path / "v.mp4", [np.zeros((24, 32, 3), dtype=np.uint8)] * 7, fps=12)
    assert default_frame_counter(tmp_path / "v.mp4") == MediaInfo(7, 32, 24, 12.0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image files"):
        default_frame_counter(tmp_path / "empty")


def test_source_index_refuses_differing_duplicates(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "a" / "list.txt").write_text("x\n")
    (tmp_path / "b" / "list.txt").write_text("x\n")
    (tmp_path / "__MACOSX" / "list.txt").write_text("resource fork")
    index = SourceIndex(tmp_path)
    assert index.find_file(["list.txt"], "the list") == tmp_path / "a" / "list.txt"   # identical copies: fine
    (tmp_path / "b" / "list.txt").write_text("y\n")
    with pytest.raises(DatasetError, match="several different files named 'list.txt'"):
        SourceIndex(tmp_path).find_file(["list.txt"], "the list")
    with pytest.raises(DatasetError, match="the other list not found"):
        index.find_file(["other.txt"], "the other list")


def test_output_root_rules(tmp_path: Path) -> None:
    src = street_scene_tree(tmp_path / "data" / "StreetScene")
    with pytest.raises(DatasetError, match="must not be the source folder"):
        prepare_dataset("street_scene", src, src, strict=False)
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "thesis.tex").write_text("keep me")
    with pytest.raises(DatasetError, match="not written by prepare"):
        prepare_dataset("street_scene", src, stranger, strict=False)
    assert (stranger / "thesis.tex").read_text() == "keep me"
    # --out inside the source: allowed, and its own output is not indexed as source material.
    inner = src / "prepared"
    prepare_dataset("street_scene", src, inner, strict=False)
    report = prepare_dataset("street_scene", src, inner, strict=False)
    assert report.counts["train videos"] == 1 and report.counts["test videos"] == 1
    with pytest.raises(ConfigError, match="has no option"):
        prepare_dataset("street_scene", src, tmp_path / "x", options=["hold=2"])
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        prepare_dataset("ucf_crime", src, tmp_path / "x", options=["hold"])


def test_in_place_and_rerun_removes_stale_ground_truth(tmp_path: Path) -> None:
    src = street_scene_tree(tmp_path / "StreetScene")
    report = prepare_dataset("street_scene", src, tmp_path, strict=False)      # --out above --source
    assert report.mode == {"in place": 2}
    ds = DatasetFolder(tmp_path)
    assert ds.entry("Test001").video == "StreetScene/Test/Test001"
    assert (tmp_path / "tracks" / "Test001.csv").exists()
    # The sequence loses its ground truth upstream; a re-run must not leave the old file.
    (src / "Test" / "Test001" / "Test001_gt.txt").unlink()
    report = prepare_dataset("street_scene", src, tmp_path, strict=False)
    assert any(p.startswith("test sequences without a <name>_gt.txt") for p in report.problems)
    assert not (tmp_path / "tracks" / "Test001.csv").exists()
    assert not (tmp_path / "frame_labels" / "Test001.npy").exists()
    assert [e.stem for e in DatasetFolder(tmp_path).entries] == ["Train001"]
    saved = json.loads((tmp_path / "prepare_report.json").read_text())
    assert saved["ok"] is False and saved["dataset"] == "Street Scene"


def test_frames_as_mp4_transcodes_frame_folders(tmp_path: Path) -> None:
    src = street_scene_tree(tmp_path / "StreetScene", frames=5)
    report = prepare_dataset("street_scene", src, tmp_path / "out", strict=False, frames_as="mp4")
    assert report.mode == {"transcoded": 2}
    entry = DatasetFolder(tmp_path / "out").entry("Test001")
    assert entry.video == "videos/Test/Test001.mp4" and entry.frames == 5 and entry.fps == 15.0
    frames = VideoReader(tmp_path / "out" / entry.video).read_all()
    assert frames.shape == (5, 24, 32, 3)
    assert abs(int(frames[4].mean()) - 150) <= 3         # the 5th frame's grey level survives encoding


def test_prepare_command_prints_the_report(tmp_path: Path) -> None:
    src = street_scene_tree(tmp_path / "StreetScene")
    lines: list[str] = []
    report = prepare_command("street_scene", src, tmp_path / "out", strict=False, print_fn=lines.append)
    assert "[MISMATCH] train videos: expected 46" in lines[0]
    # train and test videos, train and test frames
    assert "written with 4 count mismatch(es)" in lines[1] and not report.ok
    with pytest.raises(DatasetError, match="nothing was written"):
        prepare_command("street_scene", src, tmp_path / "strict", print_fn=lines.append)


def test_refused_hard_link_explains_and_copy_replaces_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    src = street_scene_tree(tmp_path / "StreetScene")
    prepare_dataset("street_scene", src, tmp_path / "out", strict=False)
    linked = tmp_path / "out" / "videos" / "Test" / "Test001" / "001.jpg"
    assert linked.stat().st_nlink == 2
    # Re-run with --copy: the hard links of the first run become real copies.
    prepare_dataset("street_scene", src, tmp_path / "out", strict=False, copy_videos=True)
    assert linked.stat().st_nlink == 1 and linked.read_bytes() == (src / "Test" / "Test001" / "001.jpg").read_bytes()

    def cross_device(a, b, *args, **kwargs):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "link", cross_device)
    with pytest.raises(DatasetError, match="same filesystem.*Use --copy"):
        prepare_dataset("street_scene", src, tmp_path / "other", strict=False)
    assert not (tmp_path / "other" / "manifest.csv").exists()


def test_in_place_refuses_foreign_output_folders(tmp_path: Path) -> None:
    src = street_scene_tree(tmp_path / "StreetScene")
    (tmp_path / "tracks").mkdir()
    (tmp_path / "tracks" / "mine.csv").write_text("someone else's\n")
    with pytest.raises(DatasetError, match="tracks that prepare did not write"):
        prepare_dataset("street_scene", src, tmp_path, strict=False)
    assert (tmp_path / "tracks" / "mine.csv").read_text() == "someone else's\n"


def _github_anchors(markdown: str) -> dict[str, str]:
    """``anchor -> heading`` as GitHub names the headings of a Markdown file: lower case,
    characters other than letters, digits, '_', '-' and spaces dropped, spaces to '-'."""
    anchors = {}
    for line in markdown.splitlines():
        match = re.match(r"#{1,6} (.*)$", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            anchors[slug] = match.group(1)
    return anchors


def test_prepare_help_lists_every_dataset_with_its_docs_section(capsys: pytest.CaptureFixture[str]) -> None:
    from patchvad.cli import main

    with pytest.raises(SystemExit) as done:
        main(["prepare", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    anchors = _github_anchors(DOCS.read_text(encoding="utf-8"))
    lines = out.splitlines()
    for name, adapter in ADAPTERS.items():
        at = next(i for i, line in enumerate(lines) if line.split()[:1] == [name])
        assert adapter.summary and lines[at].split(None, 1)[1] == adapter.summary
        assert lines[at + 1].strip() == adapter.docs
        page, anchor = adapter.docs.split("#")
        assert page == "docs/datasets.md" and anchor in anchors, f"{name}: no heading with anchor #{anchor}"
        assert f"`{name}`" in anchors[anchor]                 # the section of this very dataset


def test_one_out_holds_one_dataset(tmp_path: Path) -> None:
    """Two datasets side by side under /data, both prepared 'in place' into /data (as the
    docs once showed): the second is refused and the first stays intact."""
    data = tmp_path / "data"
    street = street_scene_tree(data / "StreetScene")
    ucsd = ucsd_v1p2_tree(data / "UCSD_Anomaly_Dataset.v1p2")
    prepare_dataset("street_scene", street, data, strict=False)
    manifest, report = (data / "manifest.csv").read_bytes(), (data / "prepare_report.json").read_bytes()
    with pytest.raises(DatasetError, match=r"already holds another prepared dataset, Street Scene \(patchvad "
                                           r"prepare street_scene\)") as err:
        prepare_dataset("ucsd_ped2", ucsd, data, strict=False, probe=ucsd_probe())
    assert str(err.value).startswith(str(data)) and "give UCSD Ped2 its own --out" in str(err.value)
    assert (data / "manifest.csv").read_bytes() == manifest and (data / "prepare_report.json").read_bytes() == report
    # The same dataset again updates its folder, as before.
    assert prepare_dataset("street_scene", street, data, strict=False).mode == {"in place": 2}
    assert json.loads((data / "prepare_report.json").read_text())["name"] == "street_scene"
    # Ped1 and Ped2 are two datasets.
    ped2 = tmp_path / "ped2"
    prepare_dataset("ucsd_ped2", ucsd, ped2, strict=False, probe=ucsd_probe())
    with pytest.raises(DatasetError, match="another prepared dataset, UCSD Ped2"):
        prepare_dataset("ucsd_ped1", ucsd, ped2, strict=False, probe=ucsd_probe())
    # A report written before reports had a name: its title decides.
    saved = json.loads((ped2 / "prepare_report.json").read_text())
    del saved["name"]
    (ped2 / "prepare_report.json").write_text(json.dumps(saved))
    with pytest.raises(DatasetError, match="another prepared dataset, UCSD Ped2"):
        prepare_dataset("ucsd_ped1", ucsd, ped2, strict=False, probe=ucsd_probe())
    assert prepare_dataset("ucsd_ped2", ucsd, ped2, strict=False, probe=ucsd_probe()).counts["test videos"] == 12
    (ped2 / "prepare_report.json").write_text("{not json")
    with pytest.raises(DatasetError, match="cannot read this report of an earlier prepare"):
        prepare_dataset("ucsd_ped2", ucsd, ped2, strict=False, probe=ucsd_probe())


def test_symlinked_folders_are_followed_and_reported(tmp_path: Path) -> None:
    """The RTFM lists sit in another folder, reached through a symlinked folder of the
    download; loops, second names and dangling links are not followed, and each is said."""
    third_party = tmp_path / "downloads" / "RTFM" / "list"
    src = shanghaitech_tree(tmp_path / "shanghaitech", lists=third_party)
    (src / "list").symlink_to(third_party, target_is_directory=True)
    (src / "loop").symlink_to(src, target_is_directory=True)
    (src / "testing" / "up").symlink_to("..", target_is_directory=True)
    (src / "masks_again").symlink_to(src / "testing" / "test_frame_mask", target_is_directory=True)
    (src / "nowhere").symlink_to(tmp_path / "missing", target_is_directory=True)
    report = prepare_dataset("shanghaitech", src, tmp_path / "out", probe=shanghaitech_probe(), strict=False)
    found = {c.what: c.found for c in report.checks}
    assert (found["train videos"], found["test videos"], found["frame-mask files (original test videos)"]) == \
        (2, 2, 2)                                       # each mask once, though reachable twice
    assert report.problems == []
    outside = [n for n in report.notes if n.startswith("symlinks followed to files or folders outside --source")]
    assert outside == [f"symlinks followed to files or folders outside --source (link -> target) (1): "
                       f"{src / 'list'} -> {third_party.resolve()}"]
    skipped = next(n for n in report.notes if n.startswith("symlinks not followed (link -> target: why) (4)"))
    loop = "a loop (the source or a folder above it)"
    for link, target, why in (("loop", src, loop), ("testing/up", src, loop),
                              ("masks_again", src / "testing" / "test_frame_mask", "a folder indexed already"),
                              ("nowhere", tmp_path / "missing", "nothing there")):
        assert f"{src / link} -> {target.resolve()}: {why}" in skipped
    saved = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert outside[0] in saved["notes"]


def test_in_place_layout_links_what_a_symlink_keeps_outside_the_root(tmp_path: Path) -> None:
    src = street_scene_tree(tmp_path / "data" / "StreetScene")
    elsewhere = tmp_path / "disk2" / "Test"
    elsewhere.parent.mkdir()
    (src / "Test").rename(elsewhere)
    (src / "Test").symlink_to(elsewhere, target_is_directory=True)
    # A frame folder of symlinked images: the folder is the source's, its images are not.
    frames = tmp_path / "disk2" / "Train001"
    (src / "Train" / "Train001").rename(frames)
    (src / "Train" / "Train001").mkdir()
    for image in sorted(frames.iterdir()):
        (src / "Train" / "Train001" / image.name).symlink_to(image)
    report = prepare_dataset("street_scene", src, tmp_path / "data", strict=False)    # --out above --source
    assert report.mode == {"in place": 1, "hard-linked": 1}
    assert f"symlinks followed to files or folders outside --source (link -> target) (1): {src / 'Test'} -> " \
           f"{elsewhere.resolve()}" in report.notes
    assert f"folders whose images are symlinks to files outside --source (images) (1): " \
           f"{src / 'Train' / 'Train001'} (4)" in report.notes
    ds = DatasetFolder(tmp_path / "data")
    assert ds.entry("Train001").video == "StreetScene/Train/Train001"
    assert ds.entry("Test001").video == "videos/Test/Test001"      # the reader refuses paths out of ROOT
    assert ds.test_set().ground_truth(ds.entry("Test001")).frame_labels.tolist() == [1, 0, 0, 0]


def test_every_missing_file_is_named_in_the_reports(tmp_path: Path) -> None:
    src = street_scene_tree(tmp_path / "StreetScene")
    missing = [f"Train{k:03d}" for k in range(2, 47)] + [f"Test{k:03d}" for k in range(2, 36)]
    what = "sequences of the official release not found under the source"
    with pytest.raises(DatasetError) as err:
        prepare_dataset("street_scene", src, tmp_path / "strict")
    failed = tmp_path / "strict" / "prepare_failed.json"
    text = str(err.value)
    assert f"nothing was written (use --lenient to write anyway and report); the full report is {failed}" in text
    line = next(line for line in text.splitlines() if what in line)
    assert line.endswith(f"({len(missing)}): {', '.join(missing[:8])} ... and {len(missing) - 8} more "
                         f"(all {len(missing)} in {failed})")
    saved = json.loads(failed.read_text())
    assert saved["ok"] is False and saved["written"] == []
    assert next(p for p in saved["problems"] if what in p).endswith(f"({len(missing)}): {', '.join(missing)}")
    # Lenient: the printed report abbreviates, prepare_report.json names every one.
    lines: list[str] = []
    prepare_command("street_scene", src, tmp_path / "strict", strict=False, print_fn=lines.append)
    report_path = tmp_path / "strict" / "prepare_report.json"
    assert f"... and {len(missing) - 8} more (all {len(missing)} in {report_path})" in lines[0]
    saved = json.loads(report_path.read_text())
    assert next(p for p in saved["problems"] if what in p).endswith(f"({len(missing)}): {', '.join(missing)}")
    assert not failed.exists()                          # a written folder keeps no stale refusal


@pytest.mark.parametrize("dataset, gone, where", [
    ("shanghaitech", "list/SH_Train.txt", "github.com/tianyu0207/RTFM, list/SH_Train.txt"),
    ("ubnormal", "scripts", "github.com/lilygeorgescu/UBnormal, folder scripts/"),
    ("ucf_crime", "Anomaly_Detection_splits/Anomaly_Train.txt", "github.com/WaqasSultani/AnomalyDetectionCVPR2018"),
    ("xd_violence", "annotations.txt", "github.com/Roc-Ng/XDVioDet"),
    ("ucsd_ped2", "UCSDped2/Test/UCSDped2.m", "UCSDped2/Test/ of the UCSD Anomaly Dataset"),
])
def test_not_found_errors_say_where_the_file_comes_from(tmp_path: Path, dataset: str, gone: str, where: str) -> None:
    """Each dataset's download with one required annotation file missing."""
    src = tmp_path / "src"
    if dataset == "shanghaitech":
        shanghaitech_tree(src)
    elif dataset == "ubnormal":
        touch(src / "Scene1" / "abnormal_scene_1_scenario_1.mp4")
        (src / "scripts").mkdir()
    elif dataset == "ucf_crime":
        touch(src / "Anomaly-Videos-Part-1" / "Abuse" / "Abuse001_x264.mp4")
        touch(src / "Anomaly_Detection_splits" / "Anomaly_Train.txt")
    elif dataset == "xd_violence":
        touch(src / "videos" / "A_label_A.mp4")
        touch(src / "annotations.txt")
    else:
        ucsd_v1p2_tree(src)
    target = src / gone
    if target.is_dir():
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(DatasetError) as err:
        prepare_dataset(dataset, src, tmp_path / "out", probe=ucsd_probe())
    text = str(err.value)
    assert " not found: no file named " in text and where in text
    assert "Put it anywhere under the source folder (a symlink to it, or a symlinked folder holding it, works" in text


def test_optional_third_party_files_say_where_they_come_from(tmp_path: Path) -> None:
    src = shanghaitech_tree(tmp_path / "shanghaitech")
    report = prepare_dataset("shanghaitech", src, tmp_path / "sh", probe=shanghaitech_probe(), strict=False,
                             options={"regions": "tracks"})
    assert any(p.startswith("option regions=tracks but no AED <id>.txt track files were found. AED track files "
                            "<id>.txt come from Georgescu et al. (TPAMI 2021): github.com/lilygeorgescu/AED")
               for p in report.problems)
    (src / "testing" / "test_frame_mask" / "01_0014.npy").unlink()
    (src / "testing" / "test_frame_mask" / "01_0016.npy").unlink()
    (src / "testing" / "test_frame_mask").rmdir()
    report = prepare_dataset("shanghaitech", src, tmp_path / "sh", probe=shanghaitech_probe(), strict=False,
                             options={"regions": "none"})
    assert any(p.startswith("no test_frame_mask/ folder") and "ShanghaiTech Campus download in "
               "testing/test_frame_mask/" in p for p in report.problems)
    ucf = tmp_path / "UCF_Crimes"
    touch(ucf / "Anomaly_Detection_splits" / "Anomaly_Train.txt").write_text("Abuse/Abuse001_x264.mp4\n")
    touch(ucf / "Anomaly_Detection_splits" / "Anomaly_Test.txt").write_text("Abuse/Abuse028_x264.mp4\n")
    touch(ucf / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt").write_text(
        "Abuse028_x264.mp4  Abuse  165  240  -1  -1\n")
    for video in ("Abuse001_x264.mp4", "Abuse028_x264.mp4"):
        touch(ucf / "Anomaly-Videos-Part-1" / "Abuse" / video)
    report = prepare_dataset("ucf_crime", ucf, tmp_path / "ucf", strict=False,
                             probe=FakeProbe({}, default=MediaInfo(600, 320, 240, 30.0)))
    assert "no Test_annotation.pkl: test videos get frame labels only, no regions. Liu & Ma boxes (ACM MM 2019): " \
           "Test_annotation.pkl and Train_annotation.pkl from github.com/xuzero/UCFCrime_BoundingBox_Annotation; put " \
           "them anywhere under the source" in report.notes
