"""``patchvad predict``: offline and streaming detection on real video files.

The checkpoint is a ``motion_floor`` model (no training, so the test is quick and its
answer known): on a static scene where one object moves only during a known span,
the anomaly is that object, then. What is tested is the predict path itself: raw
video -> features -> scores -> events, boxes, overlays, files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import require_shared, write_vfr_video
from patchvad.data.folder import write_manifest
from patchvad.errors import CheckpointError, VideoError
from patchvad.features.extract import extract_dataset
from patchvad.geometry import box_iou
from patchvad.io.video import VideoReader, probe, write_video
from patchvad.predict import Detector, predict_command, resolve_sources, stream_to_folder, write_detection
from patchvad.predictions import read_prediction

W, H, N = 320, 240, 160
SPAN = (48, 111)              # frames in which the object moves (inclusive)
GRID = dict(grid=7, input_size=112, snippet_len=16, passes=2)


def scene_video(path: Path, seed: int, anomalous: bool) -> list[tuple[int, int, int, int]]:
    """A textured static scene with sensor noise; an object moves during SPAN if anomalous.

    Returns the object's inclusive box per frame of SPAN (empty for normal videos).
    """
    rng = np.random.default_rng(seed)
    bg = (rng.random((H // 8, W // 8, 3)) * 120 + 50).repeat(8, 0).repeat(8, 1).astype(np.float32)
    frames, boxes = [], []
    for t in range(N):
        f = bg + rng.normal(0, 2.0, bg.shape)
        if anomalous and SPAN[0] <= t <= SPAN[1]:
            x = 40 + 3 * (t - SPAN[0])
            y = 100
            f[y:y + 40, x:x + 24] = (230, 40, 40)
            boxes.append((x, y, x + 23, y + 39))
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    write_video(path, frames, fps=25)
    return boxes


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    from patchvad.training import fit

    base = tmp_path_factory.mktemp("predict")
    rows = []
    for i in range(6):
        scene_video(base / "data" / "videos" / f"train_{i}.mp4", seed=i, anomalous=bool(i % 2))
        rows.append({"video": f"videos/train_{i}.mp4", "split": "train", "label": i % 2})
    write_manifest(base / "data", rows)
    extract_dataset(base / "data", base / "feats", progress=False, **GRID)
    res = fit(base / "data", base / "feats", base / "run", method="motion_floor", seed=0, log=None)
    test_video = base / "test.mp4"
    gt_boxes = scene_video(test_video, seed=100, anomalous=True)
    return {"base": base, "ckpt": res.checkpoint, "video": test_video, "gt": gt_boxes}


def test_offline_finds_when_and_where(setup, tmp_path) -> None:
    det = Detector(setup["ckpt"], threshold=0.5)
    result = det.predict(setup["video"])
    assert result.frame_count == N and result.frame_scores.shape == (N,)
    inside = result.frame_scores[SPAN[0] + 16:SPAN[1] - 16].mean()
    outside = np.r_[result.frame_scores[:SPAN[0] - 16], result.frame_scores[SPAN[1] + 16:]].mean()
    assert inside > outside + 0.2
    # the event overlaps the ground-truth span
    assert result.events, "no event found"
    best = max(result.events, key=lambda e: e.peak_score)
    assert best.start_frame <= SPAN[1] and best.end_frame >= SPAN[0]
    # Boxes of the anomalous frames lie on the moving object. A snippet's box covers
    # where the object moved during the snippet (48 px here), so compare it with the
    # union of the snippet's ground-truth boxes, and require that every frame's box
    # overlaps that frame's object.
    gt = setup["gt"]
    for t in range(SPAN[0] // 16 + 1, SPAN[1] // 16):
        first = t * 16
        union = [min(gt[f - SPAN[0]][0] for f in range(first, first + 16)), gt[first - SPAN[0]][1],
                 max(gt[f - SPAN[0]][2] for f in range(first, first + 16)), gt[first - SPAN[0]][3]]
        box = result.boxes[first, 1:5]
        # 7x7 grid here (46x34-px cells): a box of whole-cell resolution around a
        # 69x40 motion region; IoU ~0.15-0.3 is what this grid allows.
        assert box_iou([box], [union])[0, 0] > 0.12, (t, box, union)
        cx, cy = (union[0] + union[2]) / 2, (union[1] + union[3]) / 2
        assert box[0] <= cx <= box[2] and box[1] <= cy <= box[3]
        assert all(box_iou([result.boxes[f, 1:5]], [gt[f - SPAN[0]]])[0, 0] > 0 for f in range(first, first + 16))

    folder = write_detection(result, tmp_path)
    for name in ("events.json", "scores.csv", "overlay.mp4", "scores.npy", "boxes.csv", "maps.npy"):
        assert (folder / name).is_file(), name
    events = json.loads((folder / "events.json").read_text())
    assert events["status"] == "complete" and events["frame_count"] == N
    assert events["events"] and all((folder / e["thumbnail"]).is_file() for e in events["events"])
    assert probe(folder / "overlay.mp4").frame_count == N
    assert (folder / "scores.csv").read_text().splitlines()[0] == "frame,time,score"
    pred = read_prediction(tmp_path, result.stem, frame_count=N)     # the evaluate layout
    np.testing.assert_allclose(pred.frame_scores, result.frame_scores, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def offline(setup):
    """The offline detection of the test video (what the streamed scores are compared with)."""
    return Detector(setup["ckpt"], threshold=0.5).predict(setup["video"])


# docs/predict.md, "Modes": streamed against offline frame scores on this test video, per
# (delay, history): correlation, mean |difference|, max |difference|. Measured 0.9945 /
# 0.0170 / 0.0824, 0.9820 / 0.0269 / 0.1582 and 0.9788 / 0.0347 / 0.1582 (1 and 2 torch
# threads alike). Tolerances sit just outside: with --delay 1 ignored the first row would
# read 0.982 / 0.027 / 0.158. (Five other videos made the same way, seeds 101-105, gave
# 0.989-0.999 / 0.010-0.022 / 0.035-0.117 for the first row: these are properties of this
# video, not bounds for every video.)
AGREEMENT = {(1, 64): (0.994, 0.017, 0.082), (0, 64): (0.982, 0.027, 0.158), (0, 4): (0.979, 0.035, 0.158)}


@pytest.mark.parametrize("delay,history", list(AGREEMENT), ids=[f"delay{d}-history{h}" for d, h in AGREEMENT])
def test_stream_agrees_with_offline_as_documented(setup, offline, tmp_path, delay: int, history: int) -> None:
    det = Detector(setup["ckpt"], threshold=0.5)
    streamed = stream_to_folder(det, str(setup["video"]), tmp_path, delay=delay, history=history,
                                overlay=(delay, history) == (1, 64), echo=lambda m: None)
    assert streamed.frame_count == N and streamed.status == "complete"
    diff = np.abs(streamed.frame_scores - offline.frame_scores)
    corr = float(np.corrcoef(streamed.frame_scores, offline.frame_scores)[0, 1])
    want_corr, want_mean, want_max = AGREEMENT[(delay, history)]
    measured = f"corr {corr:.4f}, mean {diff.mean():.4f}, max {diff.max():.4f}"
    assert corr >= want_corr - 0.0015, measured
    assert diff.mean() <= want_mean + 0.0015, measured
    assert diff.max() <= want_max + 0.01, measured
    # "The streamed event matched the ground-truth span exactly (frames 48-111)."
    best = max(streamed.events, key=lambda e: e.peak_score)
    assert (best.start_frame, best.end_frame) == SPAN
    folder = tmp_path / streamed.stem
    ev = json.loads((folder / "events.json").read_text())
    assert ev["mode"] == "stream" and ev["status"] == "complete"
    if (delay, history) == (1, 64):
        assert probe(folder / "overlay.mp4").frame_count == N


def test_dropped_stream_ends_with_valid_events(setup, tmp_path, monkeypatch) -> None:
    det = Detector(setup["ckpt"], threshold=0.5)
    original = VideoReader.frame_pairs

    def dropping(self, size, times=None):
        for i, pair in enumerate(original(self, size, times=times)):
            if i == 90:                                   # mid-anomaly: the connection drops
                raise VideoError("connection reset by peer", path=self.source)
            yield pair

    monkeypatch.setattr(VideoReader, "frame_pairs", dropping)
    result = stream_to_folder(det, str(setup["video"]), tmp_path, overlay=True, echo=lambda m: None)
    folder = tmp_path / result.stem
    ev = json.loads((folder / "events.json").read_text())
    assert ev["status"] == "stream_lost" and "connection reset" in ev["error"]
    assert ev["frame_count"] == 80            # 5 whole snippets arrived before the drop
    assert ev["events"] and ev["events"][-1]["closed_by"] == "stream_lost"
    assert probe(folder / "overlay.mp4").frame_count == 80
    assert len(np.load(folder / "scores.npy")) == 80


def test_truncated_file_streams_what_it_can(setup, tmp_path) -> None:
    data = setup["video"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])      # faststart: the index is up front
    det = Detector(setup["ckpt"], threshold=0.5)
    result = stream_to_folder(det, str(cut), tmp_path / "out", overlay=False, echo=lambda m: None)
    ev = json.loads((tmp_path / "out" / "cut" / "events.json").read_text())
    assert 0 < ev["frame_count"] < N and ev["status"] in ("complete", "stream_lost")
    assert result.frame_count == ev["frame_count"]


def test_batch_goes_on_past_a_bad_file(setup, tmp_path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_good.mp4").write_bytes(setup["video"].read_bytes())
    (folder / "b_broken.mp4").write_bytes(b"\x00" * 100)
    (folder / "c_empty.mp4").write_bytes(b"")
    lines: list[str] = []
    report = predict_command(str(folder), setup["ckpt"], tmp_path / "out", echo=lines.append, overlay=False)
    assert [d.stem for d in report.done] == ["a_good"]
    assert sorted(Path(p).name for p in report.failed) == ["b_broken.mp4", "c_empty.mp4"]
    assert any("b_broken.mp4" in line and "FAILED" in line for line in lines)
    assert (tmp_path / "out" / "a_good" / "events.json").is_file()
    summary = json.loads((tmp_path / "out" / "predict.json").read_text())
    assert summary["videos"] == ["a_good"] and len(summary["failed"]) == 2


@pytest.fixture()
def http_server(tmp_path):
    """A local HTTP server (127.0.0.1, a free port, in a thread) serving ``tmp_path/www``; shut down after."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_predict_on_a_url_writes_every_documented_output(setup, tmp_path, http_server, monkeypatch) -> None:
    """``patchvad predict http://...`` (README, docs/predict.md): events, scores, the
    predictions layout, thumbnails AND overlay.mp4, from a source read only once.

    The clip is frames 32-95 of the test video (the object moves from its frame 16 on):
    drawing overlays is the costly part, so it is kept short.
    """
    import gc
    import tempfile

    from patchvad import cli
    from patchvad.predict import _stem_of

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))     # where the frames' temporary copy goes
    root, base = http_server
    n, moving_from = 64, SPAN[0] - 32
    write_video(root / "clip.mp4", list(VideoReader(setup["video"]).frames())[32:32 + n], fps=25)
    url = f"{base}/clip.mp4"
    out = tmp_path / "out"
    assert cli.main(["predict", url, "--ckpt", str(setup["ckpt"]), "--out", str(out), "--threshold", "0.5"]) == 0
    folder = out / _stem_of(url)
    for name in ("events.json", "scores.csv", "overlay.mp4", "scores.npy", "boxes.csv", "maps.npy",
                 "frame_to_snippet.npy"):
        assert (folder / name).is_file(), name
    ev = json.loads((folder / "events.json").read_text())
    assert (ev["source"], ev["mode"], ev["status"], ev["frame_count"]) == (url, "offline", "complete", n)
    assert ev["events"] and all((folder / e["thumbnail"]).is_file() for e in ev["events"])
    assert json.loads((out / "predict.json").read_text())["videos"] == [folder.name]
    gc.collect()
    assert not list(scratch.iterdir())            # the temporary copy of the frames is gone
    # A URL that cannot be read fails that source with one line; no copy is left behind.
    missing = f"{base}/missing.mp4"
    report = predict_command(missing, setup["ckpt"], tmp_path / "missing", echo=lambda m: None)
    assert list(report.failed) == [missing] and "cannot open as a video" in report.failed[missing]
    assert not list(scratch.iterdir())

    # The same frames as the file: identical scores, and an overlay of the same frames.
    from_file = Detector(setup["ckpt"], threshold=0.5).predict(root / "clip.mp4")
    np.testing.assert_array_equal(np.load(folder / "scores.npy"), from_file.frame_scores)
    assert [e["start_frame"] for e in ev["events"]] == [e.start_frame for e in from_file.events]
    local = write_detection(from_file, tmp_path / "local", thumbnails=False)
    info = probe(folder / "overlay.mp4", exact=True)
    assert (info.frame_count, info.width) == (n, W)
    via_url = VideoReader(folder / "overlay.mp4").read_all().astype(np.float32)
    via_file = VideoReader(local / "overlay.mp4").read_all().astype(np.float32)
    assert via_url.shape == via_file.shape

    def diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.abs(a - b).mean(axis=(1, 2, 3))

    # The URL's overlay went through one more H.264 encoding (the copy of its frames):
    # measured at most 2.6 grey levels per frame from the file's (a black frame: 97).
    assert diff(via_url, via_file).max() < 4.0
    # In order: while the object moves, each frame is closer to the file's same frame
    # than to its neighbours (measured margin >= 0.25 on the whole video).
    t = np.arange(moving_from + 1, n - 1)
    same = diff(via_url[t], via_file[t])
    assert (same < np.minimum(diff(via_url[t], via_file[t - 1]), diff(via_url[t], via_file[t + 1]))).all()


def test_sources(tmp_path, setup) -> None:
    assert resolve_sources("rtsp://cam.local/stream") == ["rtsp://cam.local/stream"]
    assert resolve_sources(str(setup["video"])) == [str(setup["video"])]
    with pytest.raises(VideoError, match="no such file"):
        resolve_sources(str(tmp_path / "nothing*.mp4"))


def test_checkpoint_for_another_backbone_is_refused(setup, tmp_path) -> None:
    from patchvad.features.backbones import FeatureSpec
    from patchvad.model.model import load_model

    model = load_model(setup["ckpt"])
    other = FeatureSpec.from_dict({**model.spec.to_dict(), "grid": [14, 14]})
    with pytest.raises(CheckpointError, match="another extraction"):
        load_model(setup["ckpt"], other)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        Detector(bad)


def test_real_footage_smoke(setup, tmp_path) -> None:
    video = require_shared("vtest", "vtest.avi")
    report = predict_command(str(video), setup["ckpt"], tmp_path, echo=lambda m: None)
    assert not report.failed
    folder = tmp_path / "vtest"
    for name in ("events.json", "scores.csv", "overlay.mp4", "scores.npy", "boxes.csv", "maps.npy"):
        assert (folder / name).is_file(), name
    assert len(np.load(folder / "scores.npy")) == 795
    assert probe(folder / "overlay.mp4").frame_count == 795
    ev = json.loads((folder / "events.json").read_text())
    assert (ev["width"], ev["height"], ev["frame_count"]) == (768, 576, 795)


def test_variable_frame_rate_times_are_the_real_clock(setup, tmp_path) -> None:
    """A camera that stalls 2 s before the object starts to move: events and scores.csv give
    the times the frames were shown, offline and streaming alike."""
    frames = [f for f in VideoReader(setup["video"]).frames()]
    pts = [40 * t + (2000 if t >= SPAN[0] else 0) for t in range(N)]
    path = tmp_path / "vfr.mp4"
    write_vfr_video(path, frames, pts)
    det = Detector(setup["ckpt"], threshold=0.5)
    offline = det.predict(path)
    assert offline.variable_rate
    np.testing.assert_allclose(offline.frame_times, np.array(pts) / 1000, atol=1e-9)
    best = max(offline.events, key=lambda e: e.peak_score)
    assert best.start_frame <= SPAN[1] and best.end_frame >= SPAN[0]
    assert best.start_time == pytest.approx(pts[best.start_frame] / 1000)
    assert best.end_time == pytest.approx(pts[best.end_frame] / 1000 + 1 / offline.fps)
    folder = write_detection(offline, tmp_path / "offline", overlay=False, thumbnails=False)
    rows = [line.split(",") for line in (folder / "scores.csv").read_text().splitlines()[1:]]
    np.testing.assert_allclose([float(r[1]) for r in rows], np.array(pts) / 1000, atol=1e-4)
    assert json.loads((folder / "events.json").read_text())["variable_frame_rate"] is True

    streamed = stream_to_folder(det, str(path), tmp_path / "stream", overlay=False, echo=lambda m: None)
    assert streamed.variable_rate
    np.testing.assert_allclose(streamed.frame_times, np.array(pts) / 1000, atol=1e-9)
    for ev in streamed.events:
        assert ev.start_time == pytest.approx(pts[ev.start_frame] / 1000)

    # The same frames at a constant rate: nominal times, flagged constant.
    constant = det.predict(setup["video"])
    assert not constant.variable_rate
    assert constant.frame_times.tolist() == (np.arange(N) / constant.fps).tolist()
