"""The synthetic benchmark: a valid folder, exact boxes, weak supervision on disk, determinism,
a new camera per video (newcam presets), oracle labels outside the dataset root."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from patchvad.cli import main as cli_main
from patchvad.data.folder import DatasetFolder, read_oracle_labels
from patchvad.data.synth import (
    ANOMALY_TYPES, PRESETS, SynthConfig, VideoSpec, build_scene, generate_benchmark, plan_benchmark,
    synth_command,
)
from patchvad.data.synth.config import CameraDraw
from patchvad.data.synth.generate import ORACLE_RECORD, write_oracle_labels
from patchvad.data.synth.render import VideoScene
from patchvad.data.synth.stats import measure
from patchvad.errors import ConfigError, DatasetError
from patchvad.io.files import sha256_file
from patchvad.io.video import VideoReader, probe, rgb_to_yuv420p

N_TRAIN, N_TEST, SEED = 8, 6, 1


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    return generate_benchmark(tmp_path_factory.mktemp("synth") / "bench", n_train=N_TRAIN, n_test=N_TEST, seed=SEED)


def _entries(root: Path, split: str):
    return [e for e in DatasetFolder(root).entries if e.split == split]


def _type_scene(kind: str, camera: int, frames: int = 170, variant: int = 0, config: SynthConfig | None = None):
    spec = VideoSpec(stem="probe", split="test", index=0, label=1, kind=kind, frames=frames, camera=camera,
                     seed=(77, variant, ANOMALY_TYPES.index(kind)))
    return build_scene(spec, PRESETS["default"] if config is None else config)


def _newcam(vertical: float) -> SynthConfig:
    """The newcam preset with its layouts forced horizontal (0) or vertical (1); all else drawn."""
    base = PRESETS["newcam"]
    return dataclasses.replace(base, camera_draw=dataclasses.replace(base.camera_draw, vertical=vertical))


# --- the folder ------------------------------------------------------------------------


def test_folder_is_valid_and_videos_decode_to_the_stated_frame_counts(bench: Path) -> None:
    folder = DatasetFolder(bench)
    train, test = folder.train_set(), folder.test_set()
    assert (len(train), len(test)) == (N_TRAIN, N_TEST)
    assert int(train.labels.sum()) == N_TRAIN // 2
    assert sum(e.label for e in test) == N_TEST // 2
    lo, hi = PRESETS["default"].frames
    for entry in folder.entries:
        info = probe(entry.path, exact=True)
        assert info.frame_count == entry.frames, entry.video
        assert lo <= entry.frames <= hi
        assert (info.width, info.height, info.codec) == (320, 240, "h264")
        assert info.fps == pytest.approx(25.0)


def test_training_ground_truth_is_not_on_disk(bench: Path) -> None:
    train = _entries(bench, "train")
    test = _entries(bench, "test")
    train_stems = {e.stem for e in train}
    assert {e.cls for e in train} <= {"normal", "anomalous"}          # no anomaly type for training videos
    assert {p.stem for p in (bench / "tracks").iterdir()} == {e.stem for e in test if e.label == 1}
    assert {p.stem for p in (bench / "frame_labels").iterdir()} == {e.stem for e in test}
    # Nothing but the manifest and the videos themselves may name a training video.
    for path in bench.rglob("*"):
        if path.is_file() and path.suffix != ".mp4" and path.name != "manifest.csv":
            text = path.read_bytes()
            assert not any(stem.encode() in text for stem in train_stems), path
    record = json.loads((bench / "synth.json").read_text())
    assert [r["video"] for r in record["test_videos"]] == sorted(e.video for e in test)
    assert record["seed"] == SEED and record["preset"] == "default"


def test_labels_are_consistent_with_tracks(bench: Path) -> None:
    folder = DatasetFolder(bench)
    test = folder.test_set()
    record = {r["video"]: r for r in json.loads((bench / "synth.json").read_text())["test_videos"]}
    for entry in test:
        gt = test.ground_truth(entry)
        with_rows = np.zeros(gt.frame_count, dtype=np.uint8)
        with_rows[np.unique(gt.regions[:, 1])] = 1
        assert np.array_equal(gt.frame_labels, with_rows)            # 1 exactly on frames with a row
        rec = record[entry.video]
        if entry.label:
            assert gt.regions.shape[0] > 0 and entry.cls in ANOMALY_TYPES and rec["class"] == entry.cls
            assert (rec["event_start"], rec["event_end"]) == (gt.regions[:, 1].min(), gt.regions[:, 1].max())
            ids = set(gt.regions[:, 0].tolist())
            assert ids == ({1, 2} if entry.cls == "fighting" else {1})
        else:
            assert gt.regions.shape[0] == 0 and not gt.frame_labels.any() and entry.cls == "normal"


def test_anomalies_are_a_minority_of_time_and_space(bench: Path) -> None:
    test = DatasetFolder(bench).test_set()
    for entry in test:
        if not entry.label:
            continue
        gt = test.ground_truth(entry)
        time_share = gt.frame_labels.mean()
        assert 0.1 <= time_share <= 0.5, (entry.video, time_share)
        for t in np.unique(gt.regions[:, 1]):
            boxes = gt.boxes_of_frame(int(t))
            area = (boxes[:, 2].max() - boxes[:, 0].min() + 1) * (boxes[:, 3].max() - boxes[:, 1].min() + 1)
            assert area / (320 * 240) < 0.06, (entry.video, t, area)


def _yuv_frames(path: Path):
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray()


def test_same_seed_gives_identical_files_whatever_the_worker_count(bench: Path, tmp_path: Path) -> None:
    again = generate_benchmark(tmp_path / "again", n_train=N_TRAIN, n_test=N_TEST, seed=SEED, workers=2)
    files = sorted(p.relative_to(bench) for p in bench.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".mp4"]) == N_TRAIN + N_TEST
    for rel in files:
        if rel.suffix == ".mp4":
            # Decoded planes first (native yuv420p, no colour conversion), so that a
            # failure says whether the pictures or only the bitstreams differ.
            for k, (x, y) in enumerate(zip(_yuv_frames(bench / rel), _yuv_frames(again / rel))):
                assert np.array_equal(x, y), f"{rel}: decoded frame {k} differs in {(x != y).sum()} samples"
        assert sha256_file(bench / rel) == sha256_file(again / rel), rel


def test_another_seed_gives_other_videos() -> None:
    a, b = (plan_benchmark(2, 2, seed) for seed in (1, 2))
    scene_a, scene_b = build_scene(a[0], PRESETS["default"]), build_scene(b[0], PRESETS["default"])
    assert not np.array_equal(next(scene_a.frames()), next(scene_b.frames()))


# --- the ground truth lies on the drawn object ---------------------------------------------


def _assert_boxes_tight(scene: VideoScene, kind: str) -> None:
    rows = scene.tracks()
    labelled = np.unique(rows[:, 1])
    assert labelled.size >= 20
    ious = []
    for t in labelled[::4]:
        # Same scene without the anomalous agents: everything else (noise too) is identical.
        changed = (scene.clean_frame(int(t)) != scene.clean_frame(int(t), without_anomaly=True)).any(axis=2)
        inside = np.zeros_like(changed)
        frame_rows = rows[rows[:, 1] == t]
        for _, _, x1, y1, x2, y2 in frame_rows:
            inside[y1:y2 + 1, x1:x2 + 1] = True
        assert not (changed & ~inside).any(), f"{kind}: pixels of the anomaly outside its box at frame {t}"
        ys, xs = np.nonzero(changed)
        assert ys.size > 0
        u = (frame_rows[:, 2].min(), frame_rows[:, 3].min(), frame_rows[:, 4].max(), frame_rows[:, 5].max())
        d = (xs.min(), ys.min(), xs.max(), ys.max())
        inter = max(0, min(u[2], d[2]) - max(u[0], d[0]) + 1) * max(0, min(u[3], d[3]) - max(u[1], d[1]) + 1)
        union = (u[2] - u[0] + 1) * (u[3] - u[1] + 1) + (d[2] - d[0] + 1) * (d[3] - d[1] + 1) - inter
        ious.append(inter / union)
    # Boxes are amodal, so a passer-by in front can hide part of the object now and then.
    assert np.mean(ious) > 0.9, (kind, ious)


@pytest.mark.parametrize("kind", ANOMALY_TYPES)
@pytest.mark.parametrize("camera", [0, 2])           # a horizontal and a vertical layout
def test_boxes_are_tight_around_the_drawn_anomaly(kind: str, camera: int) -> None:
    _assert_boxes_tight(_type_scene(kind, camera), kind)


@pytest.mark.parametrize("kind", ANOMALY_TYPES)
@pytest.mark.parametrize("vertical", [0.0, 1.0])
def test_boxes_are_tight_on_a_video_with_its_own_camera(kind: str, vertical: float) -> None:
    scene = _type_scene(kind, -1, variant=3, config=_newcam(vertical))
    assert scene.camera.index == -1 and scene.view.orient == ("v" if vertical else "h")
    _assert_boxes_tight(scene, kind)


@pytest.mark.parametrize("kind", ANOMALY_TYPES)
def test_anomalous_videos_hold_normal_people_during_the_event(kind: str) -> None:
    scene = _type_scene(kind, camera=1, variant=1)
    labelled = np.unique(scene.tracks()[:, 1])
    company = np.array([scene.persons_in_view(int(t)) for t in labelled])
    assert company.min() >= 1 and (company >= 2).mean() >= 0.9, (kind, company)


def _assert_decoded_differs_inside_boxes(root: Path, specs: list[VideoSpec], config: SynthConfig,
                                         every: int = 1) -> int:
    """In each anomalous test video, the decoded mp4 differs from the rendering without
    the anomaly far more inside the boxes than outside; returns the videos checked."""
    by_stem = {s.stem: s for s in specs}
    test = DatasetFolder(root).test_set()
    checked = 0
    for entry in test:
        if not entry.label:
            continue
        gt = test.ground_truth(entry)
        clean = build_scene(by_stem[entry.stem], config).frames(without_anomaly=True)
        inside_err, outside_err = [], []
        for t, (decoded, without) in enumerate(zip(VideoReader(entry.path).frames(), clean)):
            boxes = gt.boxes_of_frame(t)
            if boxes.shape[0] == 0 or t % every:
                continue
            err = np.abs(decoded.astype(np.int16) - without.astype(np.int16)).mean(axis=2)
            mask = np.zeros(err.shape, dtype=bool)
            for x1, y1, x2, y2 in boxes:
                mask[y1:y2 + 1, x1:x2 + 1] = True
            inside_err.append(err[mask].mean())
            outside_err.append(err[~mask].mean())
        assert np.mean(inside_err) > 5 * np.mean(outside_err), (entry.cls, np.mean(inside_err), np.mean(outside_err))
        checked += 1
    return checked


def test_decoded_video_differs_from_the_scene_without_anomaly_inside_the_boxes(bench: Path) -> None:
    checked = _assert_decoded_differs_inside_boxes(bench, plan_benchmark(N_TRAIN, N_TEST, SEED), PRESETS["default"],
                                                   every=3)
    assert checked == N_TEST // 2


# --- planning, presets, safety ------------------------------------------------------------


def test_every_anomaly_type_appears() -> None:
    specs = plan_benchmark(N_TRAIN, N_TEST, SEED)
    kinds = {s.kind for s in specs if s.label}
    assert kinds == set(ANOMALY_TYPES) and len(ANOMALY_TYPES) >= 6
    # A test split with as many anomalous videos as types holds each type once.
    test_kinds = [s.kind for s in plan_benchmark(0, 2 * len(ANOMALY_TYPES), 3) if s.label]
    assert sorted(test_kinds) == sorted(ANOMALY_TYPES)


def test_plan_is_deterministic_and_balanced() -> None:
    assert plan_benchmark(40, 10, 5) == plan_benchmark(40, 10, 5)
    specs = plan_benchmark(40, 10, 5)
    assert sum(s.label for s in specs if s.split == "train") == 20
    assert len({s.stem for s in specs}) == 50


def test_presets_are_valid_and_bad_values_are_refused() -> None:
    for config in PRESETS.values():
        assert config.validate() is config
    assert PRESETS["large"].frames[0] > PRESETS["default"].frames[1]
    with pytest.raises(ConfigError, match="event_fraction"):
        SynthConfig(event_fraction=(0.3, 0.8)).validate()
    with pytest.raises(ConfigError, match="anomaly_types"):
        SynthConfig(anomaly_types=("running", "teleporting")).validate()
    with pytest.raises(ConfigError, match="unknown synthetic preset"):
        plan_benchmark(2, 2, 0, "huge")
    with pytest.raises(ConfigError):
        plan_benchmark(0, 0, 0)


def test_output_folder_safety(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        generate_benchmark(foreign, 1, 1, 0, preset="tiny")
    assert (foreign / "notes.txt").read_text() == "mine"
    root = generate_benchmark(tmp_path / "s", 1, 2, 0, preset="tiny")
    with pytest.raises(DatasetError, match="overwrite"):
        generate_benchmark(root, 1, 1, 0, preset="tiny")
    (root / "keep.txt").write_text("kept")
    generate_benchmark(root, 2, 1, 0, preset="tiny", overwrite=True)
    assert len(DatasetFolder(root).entries) == 3 and not (root / "tracks" / "test_0001.csv").exists()
    assert (root / "keep.txt").read_text() == "kept"


def test_synth_command_writes_and_reports(tmp_path: Path, capsys) -> None:
    assert synth_command(tmp_path / "cli", train=2, test=2, seed=4, preset="tiny", workers=1) == 0
    out = capsys.readouterr().out
    assert "2 training and 2 test videos" in out and "frames/s" in out
    assert len(DatasetFolder(tmp_path / "cli").entries) == 4


def test_measured_distributions_are_sane() -> None:
    result = measure("tiny", videos=14, seed=2)["summaries"]
    assert result["area_pct/all"]["max"] < 6.0
    assert 10.0 <= result["duration_pct/all"]["median"] <= 45.0
    assert 25 <= result["normal_person_h"]["median"] <= 45


# --- fixed cameras are as they were -------------------------------------------------------


def test_fixed_camera_presets_render_as_before() -> None:
    """Digests of the fixed presets' output taken before per-video cameras existed: the
    demo's numbers depend on these videos staying the same (same numpy; the mp4 bytes
    were compared too, see docs/synthetic.md)."""
    config = PRESETS["default"]
    from patchvad.data.synth.scene import make_camera
    canvases = hashlib.sha256()
    for index in range(config.n_cameras):
        canvases.update(make_camera(config, index).canvas.tobytes())
    assert canvases.hexdigest() == "c1bb15788c2d91531ec9defeebb52f9cfc88d88092249ff343f07a52d158ae94"
    specs = {s.stem: s for s in plan_benchmark(2, 4, 7)}
    expected = {   # stem: (camera, sha256 of the background, sha256 of the track rows)
        "test_0002": (3, "461f0c01c11696b9c26b2d5927a0fce9bfbf0b0b02a56fa7e6a27c26080a763f",
                      "78098ac323cd8ecc2046ebb7742c4948f82debc8c2f5f5363c4de4b71f238614"),
        "test_0003": (5, "b1b06d128c689917abe6c21d2c33d44399f40ee353765e529766bb503937a975",
                      "a40ecfdb658715f5a2ee1761dcc92df5016ce87e51b69735f7f8867aa300ad62"),
        "train_0001": (2, "a2cd89f696c7185cbf23ceb2d7de39f1dc47ad409f7377809b36fe20d7dc84ff",
                       "17f1a7b1df45778aeefd608d886bab96bd4e4a9bd1f68c1a20d7980b3febebcd"),
    }
    for stem, (camera, background, tracks) in expected.items():
        scene = build_scene(specs[stem], config)
        assert specs[stem].camera == camera
        assert hashlib.sha256(scene.background.tobytes()).hexdigest() == background, stem
        assert hashlib.sha256(scene.tracks().tobytes()).hexdigest() == tracks, stem
    assert "camera_draw" not in config.to_dict()        # synth.json of a fixed preset keeps its keys


def test_rendered_frames_are_as_before() -> None:
    """Digests of whole videos' RGB frames (with and without the anomaly) and of their
    yuv420p, taken before the renderer was sped up: faster drawing must not change a pixel."""
    specs = {s.stem: s for s in plan_benchmark(2, 4, 7)}
    expected = {   # stem: (frames, sha256 of RGB frames, of yuv420p frames, of RGB frames without the anomaly)
        "test_0002": (199, "94c0434674a9bbb8ade1aed9032c9c8f6a29e9963a9ef3142daa6d27f81f3701",
                      "cadab3aeb999f5e9f2474710c2c1e72b017a71a0a2f435147b17aeb004d9a538",
                      "744ddc9bd19733c12fa15b38576ec9c3cf3b84f6a28c489c3ec4deb2bad783ea"),
        "train_0001": (204, "e2e8b4cb19488e1f54716f1aac7518bf69892b48878391cd0c83711963c3e5a7",
                       "90bd4f949e77903bcf30605f4d69d440cd6d8ac49a9db927748ad704f5c44b0a",
                       "32ade758efd437085ad5e47d5b69641a0ebfa3aa34627cdcd37603eb6419935d"),
    }
    for stem, (n, rgb, yuv, without) in expected.items():
        scene = build_scene(specs[stem], PRESETS["default"])
        digests = [hashlib.sha256() for _ in range(3)]
        count = 0
        for frame, planes in zip(scene.frames(), scene.yuv_frames(), strict=True):
            assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8 and frame.flags["C_CONTIGUOUS"]
            # The encoder's input is the conversion of the RGB frame, bit for bit.
            assert np.array_equal(planes, rgb_to_yuv420p(frame))
            digests[0].update(frame.tobytes())
            digests[1].update(planes.tobytes())
            count += 1
        for frame in scene.frames(without_anomaly=True):
            digests[2].update(frame.tobytes())
        assert count == n
        assert [d.hexdigest() for d in digests] == [rgb, yuv, without], stem


def _paint_one_at_a_time(prims: list[tuple], angle_deg: float) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The rasteriser as first written: each primitive tested in its own box, painted in turn."""
    th = math.radians(angle_deg)
    c, s = math.cos(th), math.sin(th)
    rot = lambda x, y: (c * x - s * y, s * x + c * y)   # noqa: E731
    placed = []
    for p in prims:
        if p[0] in ("circle", "ring"):
            cx, cy = rot(p[1], p[2])
            placed.append((p[0], (cx - p[3], cy - p[3], cx + p[3], cy + p[3]), (cx, cy) + tuple(p[3:-1]), p[-1]))
        elif p[0] == "capsule":
            (x0, y0), (x1, y1), r = rot(p[1], p[2]), rot(p[3], p[4]), p[5]
            box = (min(x0, x1) - r, min(y0, y1) - r, max(x0, x1) + r, max(y0, y1) + r)
            placed.append(("capsule", box, (x0, y0, x1, y1, r), p[-1]))
        else:
            (cx, cy), hx, hy = rot(p[1], p[2]), p[3], p[4]
            ex, ey = abs(c) * hx + abs(s) * hy, abs(s) * hx + abs(c) * hy
            placed.append(("rrect", (cx - ex, cy - ey, cx + ex, cy + ey), (cx, cy, hx, hy, p[5]), p[-1]))
    x_lo = math.floor(min(b[1][0] for b in placed)) - 1
    y_lo = math.floor(min(b[1][1] for b in placed)) - 1
    w = math.ceil(max(b[1][2] for b in placed)) + 1 - x_lo + 1
    h = math.ceil(max(b[1][3] for b in placed)) + 1 - y_lo + 1
    rgb, mask = np.zeros((h, w, 3), np.uint8), np.zeros((h, w), bool)
    for kind, box, geo, colour in placed:
        c0, r0 = max(math.floor(box[0]) - x_lo, 0), max(math.floor(box[1]) - y_lo, 0)
        c1, r1 = min(math.ceil(box[2]) - x_lo + 1, w), min(math.ceil(box[3]) - y_lo + 1, h)
        X = np.arange(c0 + x_lo, c1 + x_lo, dtype=np.float32)[None, :]
        Y = np.arange(r0 + y_lo, r1 + y_lo, dtype=np.float32)[:, None]
        if kind == "circle":
            m = (X - geo[0]) ** 2 + (Y - geo[1]) ** 2 <= geo[2] * geo[2]
        elif kind == "ring":
            d2 = (X - geo[0]) ** 2 + (Y - geo[1]) ** 2
            m = (d2 <= geo[2] * geo[2]) & (d2 >= geo[3] * geo[3])
        elif kind == "capsule":
            x0, y0, x1, y1, r = geo
            dx, dy = x1 - x0, y1 - y0
            ll = dx * dx + dy * dy
            if ll < 1e-9:
                m = (X - x0) ** 2 + (Y - y0) ** 2 <= r * r
            else:
                t = np.clip(((X - x0) * dx + (Y - y0) * dy) / ll, 0.0, 1.0)
                m = (X - x0 - t * dx) ** 2 + (Y - y0 - t * dy) ** 2 <= r * r
        else:
            cx, cy, hx, hy, r = geo
            u = np.abs(c * (X - cx) + s * (Y - cy)) - (hx - r)
            v = np.abs(-s * (X - cx) + c * (Y - cy)) - (hy - r)
            m = np.hypot(np.maximum(u, 0), np.maximum(v, 0)) + np.minimum(np.maximum(u, v), 0) <= r
        mask[r0:r1, c0:c1] |= m
        rgb[r0:r1, c0:c1][m] = colour
    inner = mask.copy()     # the rim (painted, with an unpainted 4-neighbour) darkened by 0.72
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    rim = mask & ~inner
    rgb[rim] = (rgb[rim].astype(np.float32) * 0.72).astype(np.uint8)
    return rgb, mask, x_lo, y_lo


def test_rasterize_paints_as_one_primitive_at_a_time() -> None:
    """Circles and capsules are tested all at once on the sprite's grid; every pixel must
    come out as when each primitive was tested in its own box and painted over the last,
    and the rim darkened with a neighbour test per direction."""
    from patchvad.data.synth.agents import rasterize
    rng = np.random.default_rng(5)
    for trial in range(150):
        prims: list[tuple] = []
        for _ in range(int(rng.integers(1, 9))):
            kind = ["circle", "capsule", "capsule", "rrect", "ring"][int(rng.integers(5))]
            x, y, colour = rng.uniform(-12, 12), rng.uniform(-40, 0), tuple(int(v) for v in rng.integers(1, 256, 3))
            if kind == "circle":
                prims.append(("circle", x, y, rng.uniform(0.3, 6), colour))
            elif kind == "ring":
                r = rng.uniform(2, 8)
                prims.append(("ring", x, y, r, r * rng.uniform(0.3, 0.9), colour))
            elif kind == "capsule":   # every fifth a point (a capsule of zero length)
                x1, y1 = (x, y) if trial % 5 == 0 else (x + rng.uniform(-10, 10), y + rng.uniform(-15, 15))
                prims.append(("capsule", x, y, x1, y1, rng.uniform(0.5, 3.5), colour))
            else:
                hx, hy = rng.uniform(1, 8), rng.uniform(1, 12)
                prims.append(("rrect", x, y, hx, hy, rng.uniform(0.3, min(hx, hy)), colour))
        angle = 0.0 if trial % 2 else float(rng.uniform(-90, 90))
        sprite = rasterize(prims, angle)
        rgb, mask, x_lo, y_lo = _paint_one_at_a_time(prims, angle)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if rows.size == 0:
            continue
        crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        assert (sprite.ox, sprite.oy) == (int(cols[0] + x_lo), int(rows[0] + y_lo))
        assert np.array_equal(sprite.mask, mask[crop]) and np.array_equal(sprite.rgb, rgb[crop]), trial


def test_generation_workers_do_not_import_torch(tmp_path: Path) -> None:
    """Workers are spawned, and a spawned process first re-imports the parent's main script:
    for the installed ``patchvad`` script that is ``patchvad.cli``, which must not pull in
    torch (seconds per worker, unused by generation)."""
    script = tmp_path / "patchvad_script.py"
    script.write_text(
        "import sys\n"
        "from patchvad.cli import main  # noqa: F401  (what the installed script imports)\n"
        "from patchvad.data.synth.generate import run_jobs\n\n"
        "def probe(job):\n"
        "    return {'torch': 'torch' in sys.modules}\n\n"
        "if __name__ == '__main__':\n"
        "    print([r['torch'] for r in run_jobs(range(2), 2, 2, None, produce=probe)], 'torch' in sys.modules)\n",
        encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[False,", "False]", "False"]


# --- a new camera in every video (newcam presets) -----------------------------------------


def _camera_facts(scene: VideoScene) -> tuple:
    """Layout, flow, perspective and palette statistics of a video's camera."""
    cam = scene.camera
    a, b = int(cam.walk[0]), int(cam.walk[1])
    walkway = cam.canvas[a:b] if cam.orient == "h" else cam.canvas[:, a:b]
    return (cam.orient, cam.flow, round(cam.walk[0], 3), round(cam.road[0], 3), round(cam.perspective[0], 4),
            round(cam.perspective[1], 4), tuple(np.round(walkway.reshape(-1, 3).mean(axis=0), 2)),
            tuple(np.round(cam.canvas.reshape(-1, 3).mean(axis=0), 2)))


def test_every_newcam_video_has_its_own_camera_and_fixed_presets_share_theirs() -> None:
    n = 12
    own = [build_scene(s, PRESETS["newcam-tiny"]) for s in plan_benchmark(0, n, 4, "newcam-tiny")]
    assert all(sc.spec.camera == -1 and sc.camera.index == -1 for sc in own)
    facts = [_camera_facts(sc) for sc in own]
    for field in range(2, len(facts[0])):              # orientation and flow have two values each
        assert len({f[field] for f in facts}) == n, f"camera fact {field} repeats among newcam videos"
    assert {f[0] for f in facts} == {"h", "v"} and {f[1] for f in facts} == {-1, 1}
    assert np.std([f[4] for f in facts]) > 0.05         # the perspective's scale gradient varies
    for i in range(n):
        for j in range(i + 1, n):
            assert own[i].camera.canvas.shape != own[j].camera.canvas.shape or \
                not np.array_equal(own[i].camera.canvas, own[j].camera.canvas)
    # Fixed cameras: videos that film one camera share its layout, palette and perspective.
    fixed = [build_scene(s, PRESETS["tiny"]) for s in plan_benchmark(0, n, 4, "tiny")]
    by_camera: dict[int, set] = {}
    for sc in fixed:
        by_camera.setdefault(sc.spec.camera, set()).add(_camera_facts(sc))
    assert all(len(v) == 1 for v in by_camera.values()) and len(by_camera) <= PRESETS["tiny"].n_cameras
    assert max(len([sc for sc in fixed if sc.spec.camera == c]) for c in by_camera) >= 2


def test_newcam_video_is_a_function_of_its_seed() -> None:
    config = PRESETS["newcam-tiny"]
    spec = plan_benchmark(0, 2, 9, config)[1]
    a, b = build_scene(spec, config), build_scene(spec, config)
    assert _camera_facts(a) == _camera_facts(b) and np.array_equal(a.background, b.background)
    assert all(np.array_equal(x, y) for x, y in zip(a.frames(), b.frames()))
    other = build_scene(dataclasses.replace(spec, seed=(10,) + spec.seed[1:]), config)
    assert _camera_facts(other) != _camera_facts(a)


N_NEWCAM_TRAIN, N_NEWCAM_TEST, NEWCAM_SEED = 6, 4, 2


@pytest.fixture(scope="module")
def newcam(tmp_path_factory) -> tuple[Path, Path]:
    """A newcam-tiny benchmark and, outside it, its training videos' oracle labels."""
    base = tmp_path_factory.mktemp("newcam")
    root = generate_benchmark(base / "root", N_NEWCAM_TRAIN, N_NEWCAM_TEST, NEWCAM_SEED, preset="newcam-tiny",
                              oracle_labels=base / "oracle")
    return root, base / "oracle"


def test_newcam_is_deterministic_and_oracle_labels_change_nothing_in_root(newcam, tmp_path: Path) -> None:
    root, _ = newcam
    # Again with another worker count and without oracle labels: the same bytes.
    again = generate_benchmark(tmp_path / "again", N_NEWCAM_TRAIN, N_NEWCAM_TEST, NEWCAM_SEED,
                               preset="newcam-tiny", workers=2)
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".mp4"]) == N_NEWCAM_TRAIN + N_NEWCAM_TEST
    for rel in files:
        assert sha256_file(root / rel) == sha256_file(again / rel), rel
    record = json.loads((root / "synth.json").read_text())
    assert record["preset"] == "newcam-tiny" and record["parameters"]["camera_draw"]["vertical"] == 0.35
    assert {r["camera"] for r in record["test_videos"]} == {-1}


def test_nothing_under_root_holds_training_boxes(newcam) -> None:
    root, oracle = newcam
    train = _entries(root, "train")
    stems = {e.stem for e in train}
    assert {e.cls for e in train} <= {"normal", "anomalous"}
    assert {p.stem for p in (root / "tracks").iterdir()} <= {e.stem for e in _entries(root, "test")}
    oracle_names = (str(oracle), str(oracle.resolve()), oracle.name)
    for path in root.rglob("*"):
        if path.is_file() and path.suffix != ".mp4":
            text = path.read_bytes()
            if path.name != "manifest.csv":
                assert not any(stem.encode() in text for stem in stems), path
            assert not any(name.encode() in text for name in oracle_names), path


def test_oracle_labels_round_trip_and_match_the_generators_boxes(newcam) -> None:
    root, oracle = newcam
    train = DatasetFolder(root).train_set()
    got = read_oracle_labels(oracle, train)
    specs = {s.stem: s for s in plan_benchmark(N_NEWCAM_TRAIN, N_NEWCAM_TEST, NEWCAM_SEED, "newcam-tiny")}
    assert list(got) == [e.stem for e in train] and int(train.labels.sum()) == N_NEWCAM_TRAIN // 2
    for entry in train:
        gt = got[entry.stem]
        scene = build_scene(specs[entry.stem], PRESETS["newcam-tiny"])
        assert gt.frame_count == entry.frames == scene.n_frames
        if entry.label:
            expected = scene.tracks()
            assert expected.shape[0] > 0 and np.array_equal(gt.regions, expected), entry.stem
            assert np.array_equal(gt.frame_labels, scene.frame_labels(expected))
        else:
            assert gt.regions.shape[0] == 0 and not gt.frame_labels.any()
    assert {p.stem for p in (oracle / "tracks").iterdir()} == {e.stem for e in train if e.label}
    record = json.loads((oracle / ORACLE_RECORD).read_text())
    assert record["counts"] == {"train": N_NEWCAM_TRAIN, "train_anomalous": N_NEWCAM_TRAIN // 2}
    with pytest.raises(DatasetError, match="no oracle labels for video"):
        read_oracle_labels(oracle, DatasetFolder(root).test_set())
    with pytest.raises(DatasetError, match="oracle label folder not found"):
        read_oracle_labels(oracle / "missing", train)


def test_oracle_labels_written_later_are_the_bytes_generation_wrote(newcam, tmp_path: Path) -> None:
    """write_oracle_labels (the demo's repair of a folder made without labels) renders nothing."""
    root, oracle = newcam
    later = write_oracle_labels(root, tmp_path / "later", workers=2)
    files = sorted(p.relative_to(oracle) for p in oracle.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(later) for p in later.rglob("*") if p.is_file())
    assert len(files) == N_NEWCAM_TRAIN + N_NEWCAM_TRAIN // 2 + 1          # labels, tracks, record
    for rel in files:
        assert sha256_file(oracle / rel) == sha256_file(later / rel), rel
    with pytest.raises(DatasetError, match="already holds"):
        write_oracle_labels(root, later)
    with pytest.raises(ConfigError, match="lies inside the dataset root"):
        write_oracle_labels(root, root / "labels")


def test_decoded_newcam_video_differs_from_the_scene_without_anomaly_inside_the_boxes(newcam) -> None:
    root, _ = newcam
    specs = plan_benchmark(N_NEWCAM_TRAIN, N_NEWCAM_TEST, NEWCAM_SEED, "newcam-tiny")
    assert _assert_decoded_differs_inside_boxes(root, specs, PRESETS["newcam-tiny"]) == N_NEWCAM_TEST // 2


def test_without_the_flag_no_training_boxes_are_computed(tmp_path: Path, monkeypatch) -> None:
    asked: list[str] = []
    original = VideoScene.tracks

    def spy(self: VideoScene) -> np.ndarray:
        asked.append(self.spec.split)
        return original(self)

    monkeypatch.setattr(VideoScene, "tracks", spy)
    root = generate_benchmark(tmp_path / "s", 4, 2, 0, preset="newcam-tiny", workers=1)
    assert asked == ["test"] and sum(e.label for e in _entries(root, "test")) == 1
    assert not (tmp_path / "s" / ORACLE_RECORD).exists() and sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_oracle_folder_inside_root_is_refused(tmp_path: Path, capsys) -> None:
    root = tmp_path / "root"
    for oracle in (root, root / "oracle", root / "videos" / "x"):
        with pytest.raises(ConfigError, match="lies inside the dataset root"):
            generate_benchmark(root, 2, 2, 0, preset="newcam-tiny", oracle_labels=oracle)
    with pytest.raises(ConfigError, match="lies inside the oracle label folder"):
        generate_benchmark(tmp_path / "o" / "root", 2, 2, 0, preset="newcam-tiny", oracle_labels=tmp_path / "o")
    # A link outside that points into the root is followed before comparing.
    root.mkdir()
    os.symlink(root, tmp_path / "link")
    with pytest.raises(ConfigError, match="lies inside the dataset root"):
        generate_benchmark(root, 2, 2, 0, preset="newcam-tiny", oracle_labels=tmp_path / "link" / "oracle")
    assert list(root.iterdir()) == [] and not (tmp_path / "o").exists()     # refused before writing anything
    assert cli_main(["synth", str(root), "--train", "2", "--test", "2", "--preset", "newcam-tiny",
                     "--oracle-labels", str(root / "oracle")]) == 2
    assert "lies inside the dataset root" in capsys.readouterr().err and list(root.iterdir()) == []


def test_oracle_folder_safety(newcam, tmp_path: Path) -> None:
    _, oracle = newcam
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="no earlier set of oracle labels"):
        generate_benchmark(tmp_path / "r", 1, 1, 0, preset="newcam-tiny", oracle_labels=foreign)
    assert (foreign / "notes.txt").read_text() == "mine"
    with pytest.raises(DatasetError, match="already holds a set of oracle labels"):
        generate_benchmark(tmp_path / "r2", 1, 1, 0, preset="newcam-tiny", oracle_labels=oracle)


def test_newcam_presets_and_camera_ranges_are_validated() -> None:
    for name in ("newcam", "newcam-large", "newcam-tiny"):
        config = PRESETS[name]
        assert config.camera_draw is not None and config.validate() is config
        assert "camera_draw" in config.to_dict()
    assert PRESETS["newcam-large"].default_train >= 960
    assert dataclasses.replace(PRESETS["newcam-large"], name="newcam", default_train=240,
                               default_test=60) == PRESETS["newcam"]
    with pytest.raises(ConfigError, match="camera_draw.widths"):
        dataclasses.replace(PRESETS["newcam"], camera_draw=CameraDraw(walk_width=(0.3, 0.5))).validate()
    with pytest.raises(ConfigError, match="camera_draw.perspective"):
        dataclasses.replace(PRESETS["newcam"], camera_draw=CameraDraw(perspective_top=(0.5, 1.2))).validate()
    with pytest.raises(ConfigError, match="camera_draw.vertical"):
        dataclasses.replace(PRESETS["newcam"], camera_draw=CameraDraw(vertical=1.5)).validate()
    result = measure("newcam-tiny", videos=14, seed=2)["summaries"]
    assert result["area_pct/all"]["max"] < 8.0 and 10.0 <= result["duration_pct/all"]["median"] <= 45.0
