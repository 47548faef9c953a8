"""``patchvad adapt``: a checkpoint refitted to one camera from unlabelled normal footage.

Known answers come from how the data are made: toy features seen through a "new
camera" (appearance rotated, scaled and shifted; motion 2.5x larger, as at a lower
frame rate) keep the anomaly's relative signature, so a model adapted on that
camera's normal footage must find the anomalies again, which the unadapted model
cannot; the encoder's statistics after adapting are checked against their
definition; the threshold against its quantile rule; the recorded digests against
hashes of the files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require_shared
from model.toydata import APP, CHG, make_toy_dataset, toy_spec, toy_video

from patchvad.adapt import (
    adapt_command,
    adapt_model,
    encoded_moments,
    false_alarm_threshold,
    footage_digest,
    footage_sources,
    part_slices,
    restandardise,
)
from patchvad.cli import main
from patchvad.config import ModelConfig, RunConfig, TrainConfig
from patchvad.data.folder import write_manifest
from patchvad.errors import ConfigError, VideoError
from patchvad.events import events_from_scores
from patchvad.features.extract import extract_dataset
from patchvad.features.snippets import SnippetMap
from patchvad.features.store import VideoFeatures
from patchvad.inference import predict_video, test
from patchvad.io.video import VideoReader, write_video
from patchvad.metrics.frame import frame_auc
from patchvad.model.model import load_model, read_metadata
from patchvad.model.normalize import FeatureEncoder
from patchvad.predict import Detector
from patchvad.predictions import read_prediction
from patchvad.training import fit

SMALL = RunConfig(model=ModelConfig(width=16, appearance_dims=8, change_dims=4),
                  train=TrainConfig(steps=120, batch_size=8, eval_every=40, log_every=40, lr=2e-3))


# -- toy features: a model and a new camera ---------------------------------------------
class Camera:
    """Another camera in feature space: appearance rotated, scaled and shifted, motion 2.5x."""

    def __init__(self, seed: int = 11):
        rng = np.random.default_rng(seed)
        self.gain = rng.uniform(0.5, 1.5, APP)
        self.offset = rng.normal(0, 1.0, APP)
        self.rotation = np.linalg.qr(rng.normal(size=(APP, APP)))[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x.astype(np.float32).copy()
        y[..., :APP] = (y[..., :APP] @ self.rotation) * self.gain + self.offset
        y[..., APP:APP + CHG] *= 1.8
        m = APP + CHG
        y[..., m:m + 7] *= 2.5            # frame differences, flow and speed; not the moving fraction
        return y.astype(np.float16)


def camera_videos(camera: Camera, n: int, seed: int, anomalous: bool) -> list[tuple[VideoFeatures, np.ndarray]]:
    """``n`` toy videos through ``camera`` (every other one anomalous if asked) and their snippet labels."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        x, event = toy_video(rng, (8, 8), int(rng.integers(12, 21)), anomalous and k % 2 == 1)
        labels = np.zeros(x.shape[0], dtype=int)
        if event is not None:
            labels[event[0]:event[1]] = 1
        vf = VideoFeatures(f"cam_{k}", camera(x), SnippetMap.build(16 * x.shape[0], 16), {"width": 128, "height": 128})
        out.append((vf, labels))
    return out


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("toy_adapt")
    make_toy_dataset(base / "data", base / "feats", n_train=60, n_test=2, seed=3)
    torch.set_num_threads(1)
    return fit(base / "data", base / "feats", base / "run", method="proximity", seed=0, config=SMALL,
               log=None).checkpoint


def _snippet_scores(model, videos) -> np.ndarray:
    return np.concatenate([predict_video(model, vf).snippet_scores for vf, _ in videos])


def test_adapting_finds_the_anomalies_of_a_new_camera_again(toy_model) -> None:
    camera = Camera()
    footage = camera_videos(camera, 8, seed=100, anomalous=False)
    held_out = camera_videos(camera, 20, seed=200, anomalous=True)
    labels = np.concatenate([lab for _, lab in held_out])
    normal_held_out = [(vf, lab) for vf, lab in held_out if lab.sum() == 0]

    model = load_model(toy_model)
    before_footage = np.concatenate([predict_video(model, vf).frame_scores for vf, _ in footage])
    before = _snippet_scores(model, held_out)
    # Unadapted, every normal snippet of the new camera passes the checkpoint's threshold
    # (measured: all of them) and the scores no longer rank the anomalies (AUC 0.54).
    assert (_snippet_scores(model, normal_held_out) >= model.threshold).mean() > 0.5
    assert frame_auc(labels, before, exact=True) < 0.7

    result = adapt_model(model, [vf for vf, _ in footage], false_alarms=0.01, min_snippets=16)
    after_footage = np.concatenate([predict_video(model, vf).frame_scores for vf, _ in footage])
    assert after_footage.mean() < before_footage.mean()
    assert np.median(after_footage) < np.median(before_footage)
    assert result.above_before > 0.5 and result.above_after <= 0.01
    assert result.frames == after_footage.size and result.snippets == sum(vf.x.shape[0] for vf, _ in footage)
    # Held-out footage of the same camera: few false alarms, the anomalies found again
    # (measured: 0.7% of normal snippets, AUC 0.99, every anomalous snippet caught).
    after = _snippet_scores(model, held_out)
    assert (_snippet_scores(model, normal_held_out) >= model.threshold).mean() <= 0.05
    assert frame_auc(labels, after, exact=True) > 0.9
    assert (after[labels == 1] >= model.threshold).mean() > 0.8


# -- the statistics -----------------------------------------------------------------------
def _fitted_encoder(videos: list[np.ndarray]) -> FeatureEncoder:
    enc = FeatureEncoder(toy_spec().channels, ModelConfig(appearance_dims=8, change_dims=4))
    return enc.fit(videos, max_videos_hint=len(videos))


def _direct_moments(enc: FeatureEncoder, videos: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Channel mean and population std over every token; the static scene part once per cell and video."""
    full = np.concatenate([enc.encode(x).reshape(-1, enc.out_dim).double().numpy() for x in videos])
    mean, std = full.mean(0), full.std(0)
    scene = part_slices(enc)["scene"]
    cells = np.concatenate([enc.encode(x)[0, ..., scene].reshape(-1, scene.stop - scene.start).double().numpy()
                            for x in videos])
    mean[scene], std[scene] = cells.mean(0), cells.std(0)
    return mean, std


def test_restandardise_gives_every_channel_unit_moments_and_keeps_the_pca_directions() -> None:
    rng = np.random.default_rng(0)
    train = [toy_video(rng, (8, 8), 14, False)[0] for _ in range(6)]
    enc = _fitted_encoder(train)
    old_pcs = {p: getattr(enc, f"{p}_pcs").clone() for p in ("appearance", "change", "scene")}
    camera = Camera()
    footage = [camera(toy_video(rng, (8, 8), 14, False)[0]) for _ in range(4)]
    mean0, std0 = _direct_moments(enc, footage)
    assert np.abs(mean0).max() > 1.0 or np.abs(std0 - 1).max() > 1.0      # the camera did move them

    measured = restandardise(enc, footage)
    assert list(measured) == list(enc.parts)
    np.testing.assert_allclose(measured["residual"]["std"], std0[part_slices(enc)["residual"]], rtol=1e-5)
    mean, std = _direct_moments(enc, footage)
    live = std0 >= 1e-4                        # (almost) constant channels are only re-centred
    np.testing.assert_allclose(mean, 0.0, atol=1e-4)
    np.testing.assert_allclose(std[live], 1.0, rtol=1e-4)
    np.testing.assert_allclose(std[~live], std0[~live], atol=1e-6)
    np.testing.assert_allclose(mean, encoded_moments(enc, footage)[0].numpy(), atol=1e-9)
    # Every PCA column points where it pointed (cosine 1, same sign): the scorer's channels keep their meaning.
    for part, pcs in old_pcs.items():
        new = getattr(enc, f"{part}_pcs")
        cos = (new * pcs).sum(0) / (new.norm(dim=0) * pcs.norm(dim=0))
        np.testing.assert_allclose(cos.numpy(), 1.0, atol=1e-5)


def test_restandardise_on_the_training_videos_changes_nothing() -> None:
    """The encoder was standardised on these very tokens: their moments are already 0 / 1."""
    rng = np.random.default_rng(1)
    train = [toy_video(rng, (8, 8), 14, False)[0] for _ in range(5)]
    enc = _fitted_encoder(train)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    restandardise(enc, train)
    for key, value in enc.state_dict().items():
        # The PCA columns were scaled on fit's token sample with the n-1 std; all tokens here.
        np.testing.assert_allclose(value.numpy(), before[key].numpy(), rtol=2e-3, atol=1e-5, err_msg=key)


def test_false_alarm_threshold_by_hand() -> None:
    scores = (np.arange(200) / 200).astype(np.float32)           # 0.000, 0.005, ..., 0.995
    thr = false_alarm_threshold(scores, 0.01)                    # k = 2: just above 0.985
    assert np.float32(0.985) < thr < np.float32(0.99)
    assert int((scores >= thr).sum()) == 2
    assert int((scores.astype(np.float64) >= thr).sum()) == 2   # float32 or float64 comparison alike
    assert false_alarm_threshold(scores, 0.0) > scores.max()
    # 0.29 * 100 is 28.999999999999996 in floating point: still 29 frames allowed.
    hundred = (np.arange(100) / 100).astype(np.float32)
    assert int((hundred >= false_alarm_threshold(hundred, 0.29)).sum()) == 29
    # Frames of one snippet share its score: the top snippet (16 frames) cannot fit in 8.
    snippets = np.repeat(np.linspace(0.1, 1.0, 10), 16).astype(np.float32)
    thr = false_alarm_threshold(snippets, 0.05)
    assert int((snippets >= thr).sum()) == 0
    assert events_from_scores(snippets, thr, fps=10.0) == []
    thr = false_alarm_threshold(snippets, 0.1)                   # k = 16: exactly the top snippet
    assert int((snippets >= thr).sum()) == 16
    for bad in (-0.1, 1.0, 2.0):
        with pytest.raises(ConfigError, match="false-alarms"):
            false_alarm_threshold(scores, bad)
    with pytest.raises(ConfigError, match="no frame scores"):
        false_alarm_threshold(np.zeros(0, np.float32), 0.01)


# -- real video: the command, the record, predict == test ---------------------------------
W, H = 320, 240
GRID = dict(grid=7, input_size=112, snippet_len=16, passes=2)


def street(path: Path, seed: int, size: tuple[int, int], fps: float, n: int, anomalous: bool = False) -> Path:
    """A textured static scene with sensor noise and two slow walkers; a fast red block crosses if anomalous."""
    rng = np.random.default_rng(seed)
    w, h = size
    bg = (rng.random((h // 8 + 1, w // 8 + 1, 3)) * 120 + 50).repeat(8, 0).repeat(8, 1)[:h, :w].astype(np.float32)
    frames = []
    for t in range(n):
        f = bg + rng.normal(0, 2.0, bg.shape)
        for k, y in enumerate((h // 4, h // 2)):
            x = int((w // 5 + (k + 1) * 1.5 * t * 25 / fps) % (w - w // 16))
            f[y:y + h // 6, x:x + w // 16] = (40, 40, 60)
        if anomalous and n // 3 <= t < 2 * n // 3:
            x = int(6 * (t - n // 3) * 25 / fps) % (w - w // 10)
            f[2 * h // 3:2 * h // 3 + h // 6, x:x + w // 10] = (230, 40, 40)
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    write_video(path, frames, fps=fps)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """A proximity model trained briefly on 320x240 25-fps videos, and a dataset with its stored features."""
    base = tmp_path_factory.mktemp("adapt")
    rows = []
    for split, count in (("train", 4), ("test", 2)):
        for i in range(count):
            stem = f"{split}_{i}"
            street(base / "data" / "videos" / f"{stem}.mp4", seed=10 * i + len(split), size=(W, H), fps=25, n=64,
                   anomalous=bool(i % 2))
            rows.append({"video": f"videos/{stem}.mp4", "split": split, "label": i % 2})
    write_manifest(base / "data", rows)
    extract_dataset(base / "data", base / "feats", progress=False, **GRID)
    cfg = RunConfig(model=ModelConfig(width=16, appearance_dims=8, change_dims=4),
                    train=TrainConfig(steps=6, batch_size=4, eval_every=3, log_every=3))
    res = fit(base / "data", base / "feats", base / "run", method="proximity", seed=0, config=cfg, log=None)
    # Footage of "your camera": another size and frame rate, nothing anomalous.
    cam = base / "camera"
    cam.mkdir()
    for i in range(2):
        street(cam / f"day_{i}.mp4", seed=50 + i, size=(200, 150), fps=10, n=48)
    return {"base": base, "ckpt": res.checkpoint, "camera": cam}


def test_adapt_command_writes_an_ordinary_checkpoint_that_records_its_footage(setup, tmp_path) -> None:
    out = tmp_path / "adapted.safetensors"
    lines: list[str] = []
    result = adapt_command(setup["ckpt"], [str(setup["camera"] / "*.mp4")], out, false_alarms=0.01, min_snippets=4,
                           echo=lines.append)
    assert out.is_file() and any("wrote" in line for line in lines)
    files = sorted(setup["camera"].glob("*.mp4"))
    record = json.loads(read_metadata(out)["adaptation"])
    digests = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    assert [Path(r["file"]).name for r in record["footage"]] == [f.name for f in files]
    assert [r["sha256"] for r in record["footage"]] == digests
    assert record["footage_sha256"] == hashlib.sha256("".join(d + "\n" for d in digests).encode()).hexdigest()
    assert [(r["width"], r["height"], r["fps"], r["frames"], r["snippets"]) for r in record["footage"]] == \
        [(200, 150, 10.0, 48, 3)] * 2
    assert record["frames"] == 96 and record["snippets"] == 6 == result.snippets
    assert record["false_alarms"] == 0.01
    assert record["source_checkpoint"]["sha256"] == hashlib.sha256(setup["ckpt"].read_bytes()).hexdigest()
    assert record["source_checkpoint"]["threshold"] == load_model(setup["ckpt"]).threshold

    # The Detector reads it like any checkpoint; on the footage itself at most 1% of the
    # frames (floor(0.96) = 0 here) reach the threshold: adapt and predict see the same features.
    det = Detector(out)
    assert det.threshold == record["threshold"] == result.threshold
    for f in files:
        assert int((det.predict(f).frame_scores >= det.threshold).sum()) == 0
    original = load_model(setup["ckpt"])
    adapted = load_model(out)
    assert not torch.equal(original.encoder.residual_std, adapted.encoder.residual_std)
    for key, value in original.net.state_dict().items():          # the scorer is kept
        assert torch.equal(value, adapted.net.state_dict()[key]), key

    # Adapting the adapted checkpoint keeps the first record.
    again = tmp_path / "again.safetensors"
    adapt_command(out, [str(files[0]), str(files[1])], again, false_alarms=0.05, min_snippets=4, echo=lines.append)
    second = json.loads(read_metadata(again)["adaptation"])
    assert second["false_alarms"] == 0.05 and second["previous"] == record


def test_predict_with_an_adapted_checkpoint_reproduces_test(setup, tmp_path) -> None:
    base = setup["base"]
    out = tmp_path / "adapted.safetensors"
    adapt_command(setup["ckpt"], [str(setup["camera"])], out, min_snippets=4, echo=lambda m: None)
    test(out, base / "data", base / "feats", tmp_path / "pred")
    test(setup["ckpt"], base / "data", base / "feats", tmp_path / "pred_original")
    det = Detector(out)
    for stem in ("test_0", "test_1"):
        live = det.predict(base / "data" / "videos" / f"{stem}.mp4")
        stored = read_prediction(tmp_path / "pred", stem, frame_count=live.frame_count)
        np.testing.assert_allclose(live.frame_scores, stored.frame_scores, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(live.maps.astype(np.float16), stored.maps)      # stored as float16
        unadapted = read_prediction(tmp_path / "pred_original", stem, frame_count=live.frame_count)
        assert np.abs(unadapted.frame_scores - stored.frame_scores).max() > 1e-3    # adapting changed the scores


# -- bad input ---------------------------------------------------------------------------
def _no_output(folder: Path, name: str = "adapted.safetensors") -> bool:
    return not (folder / name).exists() and not list(folder.glob(".*tmp*"))


def test_footage_digest_of_a_file_and_of_a_frame_folder(tmp_path) -> None:
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("f10.png", "f2.png", "f1.png"):              # frame order is natural order: f1, f2, f10
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not a frame")
    frames = [folder / n for n in ("f1.png", "f2.png", "f10.png")]
    lines = "".join(hashlib.sha256(f.read_bytes()).hexdigest() + "\n" for f in frames)
    assert footage_digest(folder) == (hashlib.sha256(lines.encode()).hexdigest(),
                                      sum(f.stat().st_size for f in frames))
    video = tmp_path / "v.mp4"
    video.write_bytes(b"some bytes")
    assert footage_digest(video) == (hashlib.sha256(b"some bytes").hexdigest(), 10)
    with pytest.raises(VideoError, match="gone.mp4"):
        footage_digest(tmp_path / "gone.mp4")


def test_footage_sources_count_a_file_once(setup, monkeypatch) -> None:
    cam = setup["camera"]
    monkeypatch.chdir(cam)
    both = [str(cam / "day_0.mp4"), str(cam / "day_1.mp4")]
    assert footage_sources([str(cam), "day_0.mp4", str(cam / "*.mp4")]) == both


def test_bad_footage_is_refused_by_name_and_nothing_is_written(setup, tmp_path) -> None:
    ckpt, out = setup["ckpt"], tmp_path / "adapted.safetensors"
    quiet = {"echo": lambda m: None, "min_snippets": 4}
    with pytest.raises(ConfigError, match="no normal footage"):
        adapt_command(ckpt, [], out, **quiet)
    with pytest.raises(VideoError, match="missing.mp4.*no such file"):
        adapt_command(ckpt, [str(tmp_path / "missing.mp4")], out, **quiet)
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    with pytest.raises(VideoError, match="empty_folder.*no video files"):
        adapt_command(ckpt, [str(empty)], out, **quiet)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    good = str(setup["camera"] / "day_0.mp4")
    with pytest.raises(VideoError, match="broken.mp4"):
        adapt_command(ckpt, [good, str(broken)], out, **quiet)
    zero = tmp_path / "zero.mp4"
    zero.write_bytes(b"")
    with pytest.raises(VideoError, match="zero.mp4"):
        adapt_command(ckpt, [str(zero)], out, **quiet)
    with pytest.raises(VideoError, match="live stream"):
        adapt_command(ckpt, ["rtsp://camera.local/stream"], out, **quiet)
    assert _no_output(tmp_path)


def test_short_footage_says_how_much_is_needed(setup, tmp_path) -> None:
    out = tmp_path / "adapted.safetensors"
    out.write_bytes(b"an earlier file")
    clip = street(tmp_path / "short.mp4", seed=7, size=(200, 150), fps=10, n=40)
    with pytest.raises(VideoError, match=r"at least 16 snippets \(256 frames, 26 s at 10 fps\), got 3 snippets "
                                          r"\(40 frames\) from short"):
        adapt_command(setup["ckpt"], [str(clip)], out, echo=lambda m: None)
    assert out.read_bytes() == b"an earlier file"          # an earlier output is left as it was
    assert not list(tmp_path.glob(".*tmp*"))


def test_bad_arguments_and_the_cli(setup, tmp_path, capsys) -> None:
    ckpt = setup["ckpt"]
    footage = str(setup["camera"])
    with pytest.raises(ConfigError, match="false-alarms"):
        adapt_command(ckpt, [footage], tmp_path / "a.safetensors", false_alarms=1.5, echo=lambda m: None)
    with pytest.raises(ConfigError, match="checkpoint being adapted"):
        adapt_command(ckpt, [footage], ckpt, echo=lambda m: None)
    with pytest.raises(ConfigError, match="is a folder"):
        adapt_command(ckpt, [footage], tmp_path, echo=lambda m: None)
    bad_ckpt = tmp_path / "bad.safetensors"
    bad_ckpt.write_bytes(b"not a checkpoint")
    code = main(["adapt", "--ckpt", str(bad_ckpt), "--normal", footage, "--out", str(tmp_path / "b.safetensors")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("patchvad adapt: error: ") and "bad.safetensors" in err[0]
    code = main(["adapt", "--ckpt", str(ckpt), "--normal", footage, "--out", str(tmp_path / "c.safetensors")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "at least 16 snippets" in err[0]
    assert not (tmp_path / "b.safetensors").exists() and not (tmp_path / "c.safetensors").exists()


# -- the real camera -----------------------------------------------------------------------
def test_footage_of_a_real_camera_of_another_size(setup, tmp_path) -> None:
    """A clip of vtest.avi (768x576, 10 fps) adapts a model trained on 320x240 at 25 fps: same grid, 7x7."""
    video = require_shared("vtest", "vtest.avi")
    clip = tmp_path / "vtest_clip.mp4"
    reader = VideoReader(video)
    frames = []
    for frame in reader.frames():
        frames.append(frame)
        if len(frames) == 80:
            break
    write_video(clip, frames, fps=reader.fps)
    out = tmp_path / "vtest_adapted.safetensors"
    result = adapt_command(setup["ckpt"], [str(clip)], out, min_snippets=4, echo=lambda m: None)
    record = json.loads(read_metadata(out)["adaptation"])
    assert [(r["width"], r["height"], r["fps"], r["frames"]) for r in record["footage"]] == [(768, 576, 10.0, 80)]
    det = Detector(out)
    pred = det.predict(clip)
    assert pred.maps.shape == (5, 7, 7)
    assert int((pred.frame_scores >= det.threshold).sum()) == 0 == round(result.above_after * 80)
