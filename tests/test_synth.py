"""The synthetic benchmark: a valid folder, exact boxes, weak supervision on disk, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from patchvad.data.folder import DatasetFolder
from patchvad.data.synth import (
    ANOMALY_TYPES, PRESETS, SynthConfig, VideoSpec, build_scene, generate_benchmark, plan_benchmark,
    synth_command,
)
from patchvad.data.synth.stats import measure
from patchvad.errors import ConfigError, DatasetError
from patchvad.io.files import sha256_file
from patchvad.io.video import VideoReader, probe

N_TRAIN, N_TEST, SEED = 8, 6, 1


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    return generate_benchmark(tmp_path_factory.mktemp("synth") / "bench", n_train=N_TRAIN, n_test=N_TEST, seed=SEED)


def _entries(root: Path, split: str):
    return [e for e in DatasetFolder(root).entries if e.split == split]


def _type_scene(kind: str, camera: int, frames: int = 170, variant: int = 0):
    spec = VideoSpec(stem="probe", split="test", index=0, label=1, kind=kind, frames=frames, camera=camera,
                     seed=(77, variant, ANOMALY_TYPES.index(kind)))
    return build_scene(spec, PRESETS["default"])


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


@pytest.mark.parametrize("kind", ANOMALY_TYPES)
@pytest.mark.parametrize("camera", [0, 2])           # a horizontal and a vertical layout
def test_boxes_are_tight_around_the_drawn_anomaly(kind: str, camera: int) -> None:
    scene = _type_scene(kind, camera)
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
def test_anomalous_videos_hold_normal_people_during_the_event(kind: str) -> None:
    scene = _type_scene(kind, camera=1, variant=1)
    labelled = np.unique(scene.tracks()[:, 1])
    company = np.array([scene.persons_in_view(int(t)) for t in labelled])
    assert company.min() >= 1 and (company >= 2).mean() >= 0.9, (kind, company)


def test_decoded_video_differs_from_the_scene_without_anomaly_inside_the_boxes(bench: Path) -> None:
    specs = {s.stem: s for s in plan_benchmark(N_TRAIN, N_TEST, SEED)}
    test = DatasetFolder(bench).test_set()
    checked = 0
    for entry in test:
        if not entry.label:
            continue
        gt = test.ground_truth(entry)
        clean = build_scene(specs[entry.stem], PRESETS["default"]).frames(without_anomaly=True)
        inside_err, outside_err = [], []
        for t, (decoded, without) in enumerate(zip(VideoReader(entry.path).frames(), clean)):
            boxes = gt.boxes_of_frame(t)
            if boxes.shape[0] == 0 or t % 3:
                continue
            err = np.abs(decoded.astype(np.int16) - without.astype(np.int16)).mean(axis=2)
            mask = np.zeros(err.shape, dtype=bool)
            for x1, y1, x2, y2 in boxes:
                mask[y1:y2 + 1, x1:x2 + 1] = True
            inside_err.append(err[mask].mean())
            outside_err.append(err[~mask].mean())
        assert np.mean(inside_err) > 5 * np.mean(outside_err), (entry.cls, np.mean(inside_err), np.mean(outside_err))
        checked += 1
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
