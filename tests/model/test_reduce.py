"""Feature-dimension reduction (features/reduce.py): dims, train-only fit, error vs dim, fit/test/predict."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from patchvad.config import ModelConfig, RunConfig, TrainConfig
from patchvad.errors import CheckpointError, ConfigError
from patchvad.features.reduce import PROJECTION_FILE, Projection, fit_projection, reduce_store, split_dims
from patchvad.features.store import FeatureStore
from patchvad.inference import test
from patchvad.metrics.evaluate import evaluate_folder
from patchvad.model.model import load_model
from patchvad.training import fit

from toydata import APP, CHG, MOT, make_toy_dataset

TRAIN_STEMS = [f"train_{k:03d}" for k in range(24)]


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("reduce")
    make_toy_dataset(base / "data", base / "feats", n_train=24, n_test=8, grid=(6, 6), seed=11, snippets=(8, 12))
    return base / "data", base / "feats"


def test_reduced_store_has_the_stated_dim_and_keeps_motion(toy, tmp_path) -> None:
    data, feats = toy
    report = reduce_store(feats, data, tmp_path / "r20", dim=20, samples=5000)
    raw, red = FeatureStore(feats), FeatureStore(tmp_path / "r20")
    assert red.spec.dim == 20
    assert red.spec.channels == {"appearance": [0, 8], "appearance_change": [8, 12], "motion": [12, 20]}
    assert red.spec.grid == raw.spec.grid and red.spec.snippet_len == raw.spec.snippet_len
    assert red.spec.weights_hash.startswith("none+pca20-")
    assert red.finished() == raw.finished() and len(report.done) == 32
    for stem in red.finished():
        a, b = raw.load(stem), red.load(stem)
        assert b.x.shape == (*a.x.shape[:3], 20) and b.x.dtype == np.float16 and isinstance(b.x, np.memmap)
        np.testing.assert_array_equal(b.x[..., 12:], a.x[..., APP + CHG:])           # motion copied exactly
        assert b.snippets.to_dict() == a.snippets.to_dict() and b.record["width"] == a.record["width"]
    manifest = json.loads((tmp_path / "r20" / "manifest.json").read_text())
    rec = manifest["reduction"]
    assert rec["file"] == PROJECTION_FILE and rec["components"] == {"appearance": 8, "appearance_change": 4}
    assert rec["fitted_on"]["split"] == "train" and rec["fitted_on"]["videos"] == 24       # the 24 training videos
    assert rec["fitted_on"]["tokens"] <= 5000 + 24 and sorted(manifest["videos"]) == red.finished()
    proj = Projection.load(tmp_path / "r20" / PROJECTION_FILE)
    for g, c in proj.components.items():                                     # orthonormal columns
        np.testing.assert_allclose(c.T @ c, np.eye(c.shape[1]), atol=1e-5)
    # A rerun reuses the projection and skips finished videos.
    again = reduce_store(feats, data, tmp_path / "r20", dim=20, samples=5000)
    assert again.done == [] and len(again.skipped) == 32
    assert again.projection.record["digest"] == proj.record["digest"]


def test_projection_is_fitted_on_training_videos_only(toy, tmp_path) -> None:
    data, feats = toy
    base = reduce_store(feats, data, tmp_path / "a", dim=16, samples=4000).projection
    # Test videos changed beyond recognition: the projection does not move.
    changed = tmp_path / "feats_changed"
    src = FeatureStore(feats)
    dst = FeatureStore(changed, src.spec)
    rng = np.random.default_rng(0)
    for stem in src.finished():
        vf = src.load(stem)
        x = np.asarray(vf.x, dtype=np.float32)
        if stem.startswith("test_"):
            x = x + rng.normal(0, 50, x.shape).astype(np.float32)
        info = {k: v for k, v in vf.record.items() if k not in ("stem", "shape", "dtype", "bytes", "sha256",
                                                                   "snippets")}
        dst.write(stem, x, vf.snippets, info)
    dst.write_index()
    other = reduce_store(changed, data, tmp_path / "b", dim=16, samples=4000).projection
    assert other.record["digest"] == base.record["digest"]
    # ...while including the test videos would change it.
    everything = fit_projection(dst, dst.finished(), 16, samples=4000)
    assert everything.record["digest"] != base.record["digest"]


def test_reconstruction_error_decreases_with_dim(toy) -> None:
    _, feats = toy
    store = FeatureStore(feats)
    x = np.concatenate([np.asarray(store.load(s).x, dtype=np.float32).reshape(-1, store.spec.dim)
                        for s in TRAIN_STEMS])
    errors = []
    for dim in (MOT + 2, MOT + 6, MOT + 12, MOT + 20):
        proj = fit_projection(store, TRAIN_STEMS, dim, samples=20_000)
        z = proj.apply(x[:, None, None, :])
        errors.append(float(np.mean((proj.reconstruct(z)[:, 0, 0] - x) ** 2) / np.mean((x - x.mean(0)) ** 2)))
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.25 * errors[0], errors


def test_dims_split_and_range() -> None:
    from toydata import toy_spec
    spec = toy_spec()
    assert split_dims(spec, 20) == {"appearance": 8, "appearance_change": 4}
    assert sum(split_dims(spec, 11).values()) == 3 and min(split_dims(spec, 10).values()) == 1
    from patchvad.features.backbones import FeatureSpec
    big = FeatureSpec(backbone="effnet-lite0", weights_hash="x", input_size=(224, 224), grid=(14, 14), snippet_len=16,
                      stride=16, passes=2, motion=True,
                      channels={"appearance": [0, 432], "appearance_change": [432, 544], "motion": [544, 552]})
    assert split_dims(big, 64) == {"appearance": 44, "appearance_change": 12}
    for bad in (9, 32, 40):
        with pytest.raises(ConfigError, match="--dim"):
            split_dims(spec, bad)


@pytest.mark.slow
def test_fit_and_test_on_reduced_features(toy, tmp_path) -> None:
    data, feats = toy
    reduce_store(feats, data, tmp_path / "r", dim=20, samples=5000)
    torch.set_num_threads(1)
    cfg = RunConfig(model=ModelConfig(width=16, appearance_dims=6, change_dims=3),
                    train=TrainConfig(steps=40, batch_size=8, eval_every=20, log_every=20, device="cpu"))
    res = fit(data, tmp_path / "r", tmp_path / "run", config=cfg, log=None)
    model = load_model(res.checkpoint, FeatureStore(tmp_path / "r").spec)
    assert model.reduction is not None and model.reduction.dim == 20
    assert model.reduction.record["digest"] == json.loads((tmp_path / "r" / "manifest.json").read_text())[
        "reduction"]["digest"]
    test(res.checkpoint, data, tmp_path / "r", tmp_path / "pred")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = evaluate_folder(data, tmp_path / "pred")
    assert ev["frame_auc_micro"] > 0.7
    with pytest.raises(CheckpointError, match="another extraction"):          # raw features are refused
        load_model(res.checkpoint, FeatureStore(feats).spec)
    with pytest.raises(ConfigError, match="already reduced"):
        reduce_store(tmp_path / "r", data, tmp_path / "rr", dim=16)


@pytest.mark.slow
def test_predict_on_raw_video_applies_the_checkpoint_projection(tmp_path, tiny_dataset) -> None:
    from patchvad.features.backbones import PatchFeatureExtractor
    from patchvad.features.extract import extract_dataset
    from patchvad.predict import Detector
    extractor = PatchFeatureExtractor(grid=4, input_size=64, snippet_len=8, passes=2)
    extract_dataset(tiny_dataset, tmp_path / "f", extractor=extractor, progress=False)
    reduce_store(tmp_path / "f", tiny_dataset, tmp_path / "r", dim=40, samples=2000)
    cfg = RunConfig(model=ModelConfig(width=8, appearance_dims=4, change_dims=2, scene_dims=2, pca_samples=100),
                    train=TrainConfig(steps=2, batch_size=2, eval_every=2, log_every=2, device="cpu"))
    res = fit(tiny_dataset, tmp_path / "r", tmp_path / "run", config=cfg, log=None)
    test(res.checkpoint, tiny_dataset, tmp_path / "r", tmp_path / "pred")
    det = Detector(res.checkpoint)
    assert det.extractor.spec.dim == 552 and det.spec.dim == 40
    got = det.predict(tiny_dataset / "videos" / "test_01.mp4")
    want = np.load(tmp_path / "pred" / "test_01" / "scores.npy")
    np.testing.assert_allclose(got.frame_scores, want, rtol=1e-5, atol=1e-6)


def test_reduce_command_line(toy, tmp_path, capsys) -> None:
    from patchvad.cli import main
    data, feats = toy
    assert main(["reduce", str(feats), "--data", str(data), "--out", str(tmp_path / "r"), "--dim", "16",
                 "--samples", "3000"]) == 0
    out = capsys.readouterr().out
    assert "16 channels" in out and "projected 32 videos" in out
    assert FeatureStore(tmp_path / "r").spec.dim == 16
    assert main(["reduce", str(feats), "--data", str(data), "--out", str(tmp_path / "bad"), "--dim", "4"]) == 2
    assert "--dim 4 out of range" in capsys.readouterr().err
