"""Shared adapter machinery: masks to boxes, track linking, output-root rules, writing."""

from __future__ import annotations

import json
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


def _street_scene(src: Path, frames: int = 4) -> Path:
    for name in ("Train/Train001", "Test/Test001"):
        (src / name).mkdir(parents=True)
        for k in range(1, frames + 1):
            Image.fromarray(np.full((24, 32, 3), 30 * k, dtype=np.uint8)).save(src / name / f"{k:03d}.jpg")
    (src / "Test" / "Test001" / "Test001_gt.txt").write_text("001.jpg 0 10 10 4 4\n")
    return src


def test_output_root_rules(tmp_path: Path) -> None:
    src = _street_scene(tmp_path / "data" / "StreetScene")
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
    src = _street_scene(tmp_path / "StreetScene")
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
    src = _street_scene(tmp_path / "StreetScene", frames=5)
    report = prepare_dataset("street_scene", src, tmp_path / "out", strict=False, frames_as="mp4")
    assert report.mode == {"transcoded": 2}
    entry = DatasetFolder(tmp_path / "out").entry("Test001")
    assert entry.video == "videos/Test/Test001.mp4" and entry.frames == 5 and entry.fps == 15.0
    frames = VideoReader(tmp_path / "out" / entry.video).read_all()
    assert frames.shape == (5, 24, 32, 3)
    assert abs(int(frames[4].mean()) - 150) <= 3         # the 5th frame's grey level survives encoding


def test_prepare_command_prints_the_report(tmp_path: Path) -> None:
    src = _street_scene(tmp_path / "StreetScene")
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

    src = _street_scene(tmp_path / "StreetScene")
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
    src = _street_scene(tmp_path / "StreetScene")
    (tmp_path / "tracks").mkdir()
    (tmp_path / "tracks" / "mine.csv").write_text("someone else's\n")
    with pytest.raises(DatasetError, match="tracks that prepare did not write"):
        prepare_dataset("street_scene", src, tmp_path, strict=False)
    assert (tmp_path / "tracks" / "mine.csv").read_text() == "someone else's\n"
