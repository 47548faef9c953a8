"""Synthetic anomalies in real footage (``patchvad synth --background``): exact boxes on the
drawn sprites, weak supervision on disk, disjoint train/test footage, determinism, bad input.

The footage is a cut of the real pedestrian video shared/data/vtest/vtest.avi (its first
300 frames at half size). Tests that need it are skipped when it is missing, except
under CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, require_shared
from patchvad.cli import main as cli_main
from patchvad.data.folder import DatasetFolder
from patchvad.data.synth import VideoSpec
from patchvad.data.synth.footage import (
    FOOTAGE_TYPES, Footage, _closing, _opening, build_footage_scene, estimate_geometry, footage_config,
    footage_view, generate_from_footage, parse_scale, plan_footage, read_clip, scan_footage,
)
from patchvad.errors import ConfigError, VideoError
from patchvad.io.files import sha256_file
from patchvad.io.video import VideoReader, write_video

VTEST = SHARED_DATA / "vtest" / "vtest.avi"
CUT_FRAMES, CUT_SIZE = 300, (384, 288)
N_TRAIN, N_TEST, SEED, CLIP = 2, 3, 5, 80


def _need_vtest() -> Path:
    return require_shared("vtest", "vtest.avi")


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> Path:
    """The first 300 frames of vtest.avi at 384x288, 10 fps, as an H.264 mp4."""
    source = _need_vtest()
    frames = []
    for k, frame in enumerate(VideoReader(source).frames(size=CUT_SIZE)):
        frames.append(frame)
        if k + 1 == CUT_FRAMES:
            break
    path = tmp_path_factory.mktemp("footage") / "vtest_cut.mp4"
    write_video(path, frames, fps=10)
    return path


@pytest.fixture(scope="module")
def scanned(footage: Path):
    return scan_footage(footage)


@pytest.fixture(scope="module")
def dataset(footage: Path, tmp_path_factory) -> Path:
    return generate_from_footage(footage, tmp_path_factory.mktemp("bg") / "data", N_TRAIN, N_TEST, SEED,
                                 clip_frames=CLIP)


@pytest.fixture(scope="module")
def plan(footage: Path, scanned):
    """The plan :func:`generate_from_footage` makes for ``dataset``."""
    return plan_footage(footage, N_TRAIN, N_TEST, SEED, clip_frames=CLIP, scanned=scanned)


# --- geometry -------------------------------------------------------------------------------


def test_perspective_estimate_matches_hand_measured_pedestrians(plan) -> None:
    geo = plan.geometry
    assert (geo.width, geo.height, plan.footage.frames, plan.footage.fps) == (384, 288, CUT_FRAMES, 10.0)
    # Standing pedestrians measured by hand in frame 400 of vtest.avi (768x576):
    # (feet row, head-to-feet height in px) -> at half size.
    for row, height in ((204, 64), (285, 84), (410, 109)):
        assert geo.height_at(row / 2) == pytest.approx(height / 2, rel=0.15), (row, geo)
    # Most people in vtest walk right to left along the path.
    assert (geo.orient, geo.flow, geo.source) == ("h", -1, "motion")
    assert geo.stats["flow_share"] > 0.5 and geo.stats["tracks"] >= 3
    # The zone holds the path's rows (the hand-measured feet at rows 203 and 285 of 576).
    assert geo.band[0] <= 204 / 2 and geo.band[1] >= 285 / 2


def _bar_walkers(positions, n: int = 120, seed: int = 0) -> np.ndarray:
    """``(n, 240, 320)`` grey frames of bright upright bars over noise, 10 + 0.2 x (feet
    row) px tall (a known perspective); ``positions(t)`` lists each bar's (feet row,
    left column) at frame t."""
    rng = np.random.default_rng(seed)
    frames = np.repeat((rng.random((240, 320)) * 40 + 60).astype(np.uint8)[None], n, axis=0)
    for t in range(n):
        for feet, x in positions(t):
            bar = int(round(10 + 0.2 * feet))
            frames[t, feet - bar:feet, x:x + max(3, bar // 4)] = 230
    return frames


def _walking_boxes(n: int = 120) -> np.ndarray:
    """Bars walking right along x in five rows; the lowest walks left."""
    lanes = [(70, 0.0), (110, 40.0), (150, 90.0), (190, 20.0), (230, 140.0)]
    return _bar_walkers(lambda t: [(feet, int(offset + (2.0 if k != 4 else -1.0) * t) % 300 + 5)
                                   for k, (feet, offset) in enumerate(lanes)], n)


def test_geometry_of_known_walkers_is_recovered() -> None:
    grey = _walking_boxes()
    footage = Footage(path="known.mp4", frames=grey.shape[0], fps=8.0, width=320, height=240)
    geo = estimate_geometry(footage, grey)
    assert geo.height_at(np.array([70, 150, 230])) == pytest.approx([24.0, 40.0, 56.0], abs=1.5)
    assert (geo.orient, geo.flow) == ("h", 1)
    # The same frames at twice the size (footage px differ from analysis px).
    big = Footage(path="known.mp4", frames=grey.shape[0], fps=8.0, width=640, height=480)
    assert estimate_geometry(big, grey).height_at(300) == pytest.approx(2 * (10 + 0.2 * 150), abs=3)
    # Mirrored in time, everyone walks the other way.
    assert estimate_geometry(footage, grey[::-1].copy()).flow == -1


def _approaching_boxes(n: int = 120) -> np.ndarray:
    """Bars walking down the image (towards the camera) in four columns; one walks up."""
    columns = [(120, 0.0), (150, 60.0), (180, 120.0), (210, 30.0)]
    return _bar_walkers(lambda t: [(int(60 + (offset + (1.5 if k != 3 else -1.0) * t) % 170), x)
                                   for k, (x, offset) in enumerate(columns)], n, seed=2)


def test_vertical_flow_gives_a_vertical_zone_and_every_type_is_staged_on_it() -> None:
    grey = _approaching_boxes()
    footage = Footage(path="towards.mp4", frames=grey.shape[0], fps=10.0, width=320, height=240)
    geo = estimate_geometry(footage, grey)
    assert (geo.orient, geo.flow) == ("v", 1)
    assert geo.height_at(np.array([100, 200])) == pytest.approx([30.0, 50.0], abs=2.0)
    # The zone is the columns the bars walk in (120-225), give or take a bin of 7.5 px.
    assert 105 <= geo.band[0] <= 125 and 215 <= geo.band[1] <= 235
    config = footage_config(footage, 320, 240, CLIP)
    view = footage_view(geo)
    frames = np.repeat(np.stack([grey[0]] * 3, axis=-1)[None], CLIP, axis=0)
    for k, kind in enumerate(FOOTAGE_TYPES):
        spec = VideoSpec(stem="probe", split="test", index=0, label=1, kind=kind, frames=CLIP, camera=0,
                         seed=(8, 1, k))
        scene = build_footage_scene(spec, config, view)
        rows = scene.tracks()
        assert np.unique(rows[:, 1]).size >= 12, kind
        # (Amodal boxes: a walker passing in front of the lying bag hides part of it.)
        assert np.mean(_check_boxes_on_sprites(scene, frames, rows)) > 0.9, kind


def test_morphology_equals_scipys_away_from_the_border() -> None:
    from scipy import ndimage

    rng = np.random.default_rng(1)
    for _ in range(5):
        mask = rng.random((60, 80)) < 0.3
        opened = ndimage.binary_opening(mask, np.ones((2, 2), dtype=bool))
        assert np.array_equal(_opening(mask), opened)
        closed = ndimage.binary_closing(opened, np.ones((5, 3), dtype=bool))
        assert np.array_equal(_closing(opened, 2, 1)[3:-3, 3:-3], closed[3:-3, 3:-3])


def test_no_motion_asks_for_scale_and_scale_is_used() -> None:
    still = np.repeat(_walking_boxes(n=1), 60, axis=0)
    footage = Footage(path="/videos/still.mp4", frames=60, fps=10.0, width=320, height=240)
    with pytest.raises(VideoError, match=r"still\.mp4.*--scale"):
        estimate_geometry(footage, still)
    geo = estimate_geometry(footage, still, scale=parse_scale("20,80"))
    assert (geo.top, geo.bottom, geo.source, geo.orient, geo.flow) == (20.0, 80.0, "scale", "h", 1)
    assert geo.height_at(120) == pytest.approx(50.0)
    # Zone without motion: every row where a standing person's head is inside the frame.
    # (20 + 0.25 y px tall: the head is 2 px inside the frame from row 30 on.)
    assert geo.band == (30.0, 237.0)
    assert parse_scale("42") == (42.0, 42.0)
    for bad in ("", "0", "-3,40", "a,b", "1,2,3", "nan"):
        with pytest.raises(ConfigError, match="--scale"):
            parse_scale(bad)


# --- the boxes lie on the drawn sprites ------------------------------------------------------


def _check_boxes_on_sprites(scene, frames: np.ndarray, rows: np.ndarray) -> list[float]:
    """Every changed pixel inside the frame's boxes; returns per-frame IoU of the changed
    pixels' bounding box with the union of the boxes."""
    H, W = frames.shape[1:3]
    assert rows.shape[0] > 0
    assert (rows[:, 2] >= 0).all() and (rows[:, 3] >= 0).all() and (rows[:, 4] < W).all() and (rows[:, 5] < H).all()
    assert (rows[:, 4] >= rows[:, 2]).all() and (rows[:, 5] >= rows[:, 3]).all()
    ious = []
    for t in np.unique(rows[:, 1]):
        t = int(t)
        with_anomaly = scene.draw_agents(frames[t].copy(), t)
        without = scene.draw_agents(frames[t].copy(), t, without_anomaly=True)
        changed = (with_anomaly != without).any(axis=2)
        boxes = rows[rows[:, 1] == t]
        inside = np.zeros_like(changed)
        for _, _, x1, y1, x2, y2 in boxes:
            inside[y1:y2 + 1, x1:x2 + 1] = True
        assert not (changed & ~inside).any(), f"anomaly pixels outside its boxes at frame {t}"
        ys, xs = np.nonzero(changed)
        assert ys.size > 0, f"no drawn pixel under the boxes of frame {t}"
        u = (boxes[:, 2].min(), boxes[:, 3].min(), boxes[:, 4].max(), boxes[:, 5].max())
        d = (xs.min(), ys.min(), xs.max(), ys.max())
        inter = max(0, min(u[2], d[2]) - max(u[0], d[0]) + 1) * max(0, min(u[3], d[3]) - max(u[1], d[1]) + 1)
        union = (u[2] - u[0] + 1) * (u[3] - u[1] + 1) + (d[2] - d[0] + 1) * (d[3] - d[1] + 1) - inter
        ious.append(inter / union)
    return ious


@pytest.mark.parametrize("kind", FOOTAGE_TYPES)
def test_boxes_are_tight_around_the_sprite_drawn_on_the_footage(kind: str, plan) -> None:
    frames = read_clip(plan, "test_0000")
    spec = VideoSpec(stem="probe", split="test", index=0, label=1, kind=kind, frames=CLIP, camera=0,
                     seed=(31, 1, FOOTAGE_TYPES.index(kind)))
    scene = build_footage_scene(spec, plan.config, plan.view)
    rows = scene.tracks()
    assert np.unique(rows[:, 1]).size >= 12, kind
    assert set(rows[:, 0].tolist()) == ({1, 2} if kind == "fighting" else {1})
    ious = _check_boxes_on_sprites(scene, frames, rows)
    if kind == "wrong_way":
        # The walker enters across the frame's edge: its first boxes are clipped there, and tight.
        W = plan.config.width
        edge = rows[(rows[:, 2] == 0) | (rows[:, 4] == W - 1)]
        assert edge.shape[0] >= 2 and rows[0, 1] in edge[:, 1]
    # Exact where nothing is in front; a synthetic passer-by can hide part of the (amodal) box.
    assert np.mean(ious) > 0.95 and np.mean(np.isclose(ious, 1.0)) >= 0.8, (kind, ious)


def test_written_tracks_are_the_sprites_boxes_and_videos_are_the_composites(dataset: Path, plan) -> None:
    specs = {s.stem: s for s in plan.specs}
    test = DatasetFolder(dataset).test_set()
    assert sum(e.label for e in test) >= 1
    for entry in test:
        gt = test.ground_truth(entry)
        scene = build_footage_scene(specs[entry.stem], plan.config, plan.view)
        frames = read_clip(plan, entry.stem)
        assert np.array_equal(gt.regions, scene.tracks())
        if entry.label:
            _check_boxes_on_sprites(scene, frames, gt.regions)
        # The mp4 is the footage range with the agents drawn on it (up to H.264 losses) ...
        decoded = np.stack(list(VideoReader(entry.path).frames()))
        composite = np.stack([scene.draw_agents(frames[t].copy(), t) for t in range(CLIP)])
        err = np.abs(decoded.astype(np.int16) - composite).mean()
        assert err < 4.0, (entry.stem, err)
        # ... and not another range of the same footage.
        shifted = read_clip(plan, "test_0001" if entry.stem == "test_0000" else "test_0000")
        assert np.abs(decoded.astype(np.int16) - shifted).mean() > 2 * err


# --- the folder -------------------------------------------------------------------------------


def test_folder_is_valid_with_weak_labels_only_for_training(dataset: Path) -> None:
    folder = DatasetFolder(dataset)
    train, test = folder.train_set(), folder.test_set()
    assert (len(train), len(test)) == (N_TRAIN, N_TEST)
    assert int(train.labels.sum()) == 1 and sum(e.label for e in test) in (1, 2)
    for entry in folder.entries:
        assert (entry.frames, entry.fps, entry.width, entry.height) == (CLIP, 10.0, 384, 288)
    assert {e.cls for e in train} <= {"normal", "anomalous"}
    assert {e.cls for e in test} <= set(FOOTAGE_TYPES) | {"normal"}
    # No ground truth of a training clip anywhere: no tracks, no frame labels, no mention.
    assert {p.stem for p in (dataset / "tracks").iterdir()} == {e.stem for e in test if e.label}
    assert {p.stem for p in (dataset / "frame_labels").iterdir()} == {e.stem for e in test}
    train_stems = {e.stem for e in train}
    for path in dataset.rglob("*"):
        if path.is_file() and path.suffix != ".mp4" and path.name != "manifest.csv":
            assert not any(stem.encode() in path.read_bytes() for stem in train_stems), path


def test_train_and_test_come_from_disjoint_footage_frames(dataset: Path) -> None:
    record = json.loads((dataset / "synth.json").read_text())
    splits = record["splits"]
    (a0, a1), (b0, b1) = splits["train"]["footage_frames"], splits["test"]["footage_frames"]
    # The first n_train / (n_train + n_test) of the 300 frames for training, the rest for testing.
    assert (a0, a1, b0, b1) == (0, 119, 120, 299)
    for split, (first, last) in (("train", (a0, a1)), ("test", (b0, b1))):
        starts = splits[split]["clip_starts"]
        assert len(starts) == (N_TRAIN if split == "train" else N_TEST)
        assert all(first <= s and s + CLIP - 1 <= last for s in starts), (split, starts)
    assert starts == [120, 170, 220]       # test clips spread evenly over frames 120-299
    for video in record["test_videos"]:
        s, e = video["footage_frames"]
        assert b0 <= s and e <= b1 and e - s + 1 == CLIP
    assert record["footage"]["frames"] == CUT_FRAMES and record["geometry"]["source"] == "motion"


def test_same_seed_gives_identical_files_and_another_seed_differs(dataset: Path, footage: Path,
                                                                  tmp_path: Path) -> None:
    again = generate_from_footage(footage, tmp_path / "again", N_TRAIN, N_TEST, SEED, clip_frames=CLIP, workers=2)
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".mp4"]) == N_TRAIN + N_TEST
    for rel in files:
        assert sha256_file(dataset / rel) == sha256_file(again / rel), rel
    other = generate_from_footage(footage, tmp_path / "other", N_TRAIN, N_TEST, SEED + 1, clip_frames=CLIP)
    differ = [rel for rel in files if rel.suffix == ".mp4"
              and sha256_file(dataset / rel) != sha256_file(other / rel)]
    assert differ, "another seed gave the same clips"


# --- bad input ----------------------------------------------------------------------------------


def test_unreadable_footage_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    out = tmp_path / "out"
    with pytest.raises(VideoError, match=r"notes\.mp4: cannot open as a video"):
        generate_from_footage(bad, out, 2, 1, 0)
    with pytest.raises(VideoError, match=r"missing\.avi: file not found"):
        generate_from_footage(tmp_path / "missing.avi", out, 2, 1, 0)
    assert not out.exists()


def test_footage_shorter_than_a_clip_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    _need_vtest()
    frames = [f for _, f in zip(range(150), VideoReader(VTEST).frames(size=(192, 144)))]
    short = tmp_path / "short.mp4"
    write_video(short, frames, fps=10)
    out = tmp_path / "out"
    # 150 frames: the test part (last third, 50 frames) holds no 80-frame clip.
    with pytest.raises(VideoError, match=r"short\.mp4: too short: 150 frames; the test part \(frames 100-149"):
        generate_from_footage(short, out, 2, 1, 0, clip_frames=80)
    with pytest.raises(VideoError, match=r"short\.mp4: too short"):
        generate_from_footage(short, out, 1, 0, 0, clip_frames=160)
    with pytest.raises(ConfigError, match="at least 80"):
        generate_from_footage(short, out, 1, 0, 0, clip_frames=60)
    assert not out.exists()


def test_cli_background_flags(footage: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    assert cli_main(["synth", "--background", str(footage), "--out", str(out), "--train", "1", "--test", "1",
                     "--clip-frames", "80", "--width", "192", "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "1 training and 1 test clips of 80 frames" in text and "right to left" in text
    assert [(e.width, e.height) for e in DatasetFolder(out).entries] == [(192, 144)] * 2
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"\x00" * 64)
    assert cli_main(["synth", str(tmp_path / "x"), "--background", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.avi" in err and "Traceback" not in err
    assert cli_main(["synth", str(tmp_path / "y"), "--scale", "40"]) == 2
    assert "--background" in capsys.readouterr().err
