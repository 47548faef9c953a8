"""End to end on a small synthetic feature set: fit, checkpoint, resume, test, evaluate."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from patchvad.config import ModelConfig, RunConfig, TrainConfig
from patchvad.errors import CheckpointError, ConfigError, FeatureError
from patchvad.features.store import FeatureStore
from patchvad.geometry import box_iou, chain_snippet_boxes
from patchvad.inference import BoxConfig, box_from_map, predict_video, test
from patchvad.metrics.evaluate import evaluate_folder
from patchvad.model.model import load_model, read_metadata
from patchvad.training import fit, pool_snippets, split_train_val

from toydata import make_toy_dataset

SMALL = RunConfig(model=ModelConfig(width=16, appearance_dims=8, change_dims=4),
                  train=TrainConfig(steps=120, batch_size=8, eval_every=40, log_every=40, lr=2e-3))


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("toy")
    make_toy_dataset(base / "data", base / "feats", n_train=60, n_test=20, seed=3)
    return base / "data", base / "feats"


def _evaluate(data: Path, pred: Path) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate_folder(data, pred)


@pytest.mark.slow
def test_proximity_model_localizes_well_above_random(toy, tmp_path):
    data, feats = toy
    torch.set_num_threads(1)
    res = fit(data, feats, tmp_path / "run", method="proximity", seed=0, config=SMALL, log=None)
    assert res.val_auc is not None and res.val_auc > 0.8
    test(res.checkpoint, data, feats, tmp_path / "pred")
    ev = _evaluate(data, tmp_path / "pred")
    rnd = fit(data, feats, tmp_path / "rnd", method="random", seed=0, config=SMALL, log=None)
    test(rnd.checkpoint, data, feats, tmp_path / "pred_rnd")
    ev_rnd = _evaluate(data, tmp_path / "pred_rnd")
    assert ev_rnd["frame_auc_micro"] < 0.6
    assert ev["frame_auc_micro"] > 0.9
    assert ev["tiou"] > 0.2 > 10 * ev_rnd["tiou"]
    assert ev["rbdc"] > 0.6 > 10 * ev_rnd["rbdc"] + 0.01
    # the predictions folder holds tracks beside the files of docs/data-format.md, "The predictions folder"
    stem = sorted(p.name for p in (tmp_path / "pred").iterdir() if p.is_dir())[0]
    assert (tmp_path / "pred" / stem / "tracks.csv").read_text().startswith("track_id,frame_id,")


def test_checkpoint_contents_and_refusal(toy, tmp_path):
    data, feats = toy
    cfg = RunConfig(model=SMALL.model, train=TrainConfig(steps=4, batch_size=4, eval_every=2, log_every=2))
    res = fit(data, feats, tmp_path / "run", method="proximity", seed=1, config=cfg, log=None)
    run = tmp_path / "run"
    assert (run / "config.yaml").exists() and (run / "train_log.jsonl").exists()
    assert RunConfig.load(run / "config.yaml").method == "proximity"
    logs = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in logs} == {"train", "val"}
    tensors = load_file(str(res.checkpoint))
    assert any(k.startswith("net.") for k in tensors) and "encoder.motion_mean" in tensors
    meta = read_metadata(res.checkpoint)
    for key in ("config", "feature_spec", "normalizer", "threshold", "method", "seed"):
        assert key in meta
    assert json.loads(meta["feature_spec"])["grid"] == [8, 8]
    split = json.loads((run / "split.json").read_text())
    assert set(split["val"]).isdisjoint(split["train"]) and all(s.startswith("train_") for s in split["val"])

    # features of another grid: refused with a clear error
    from toydata import toy_spec
    other = toy_spec((6, 6))
    with pytest.raises(CheckpointError, match="grid"):
        load_model(res.checkpoint, other)
    # not a checkpoint at all
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError):
        load_model(bad)
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "missing.safetensors")


def test_resume_continues_exactly(toy, tmp_path):
    data, feats = toy

    def cfg(steps: int) -> RunConfig:
        # CPU: bit-exact continuation (CUDA kernels may reorder float sums between runs)
        return RunConfig(model=SMALL.model, train=TrainConfig(steps=steps, batch_size=4, eval_every=5, log_every=5,
                                                              device="cpu"))

    fit(data, feats, tmp_path / "straight", seed=2, config=cfg(10), log=None)
    fit(data, feats, tmp_path / "resumed", seed=2, config=cfg(5), log=None)
    fit(data, feats, tmp_path / "resumed", seed=2, config=cfg(10), resume=True, log=None)
    a = load_file(str(tmp_path / "straight" / "train_state.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "train_state.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
    changed = RunConfig(model=ModelConfig(width=8), train=cfg(10).train)
    with pytest.raises(ConfigError, match="resume"):
        fit(data, feats, tmp_path / "resumed", seed=2, config=changed, resume=True, log=None)


def test_missing_features_are_reported(toy, tmp_path):
    data, _ = toy
    from toydata import toy_spec
    FeatureStore(tmp_path / "empty", toy_spec())
    with pytest.raises(FeatureError, match="no features"):
        fit(data, tmp_path / "empty", tmp_path / "run", config=SMALL, log=None)


def test_predict_video_shapes_and_floor(toy, tmp_path):
    data, feats = toy
    res = fit(data, feats, tmp_path / "floor", method="motion_floor", config=SMALL, log=None)
    store = FeatureStore(feats)
    model = load_model(res.checkpoint, store.spec)
    vf = store.load("test_001")
    pred = predict_video(model, vf)
    t = vf.x.shape[0]
    assert pred.maps.shape == (t, 8, 8)
    assert pred.frame_scores.shape == (vf.snippets.frame_count,)
    assert pred.boxes.shape == (vf.snippets.frame_count, 6)
    assert pred.tracks.shape == (vf.snippets.frame_count, 7)
    np.testing.assert_array_equal(pred.frame_scores, vf.snippets.to_frames(pred.snippet_scores))
    # the floor's maps rank cells exactly as the energy residual does
    from patchvad.model.baselines import motion_floor_scores
    resid = motion_floor_scores(vf.x, store.channel_slice("motion"))
    for k in range(t):
        assert np.argmax(pred.maps[k]) == np.argmax(resid[k])


def test_box_from_map_and_tracks():
    m = np.zeros((8, 8), dtype=np.float32)
    m[2, 3] = 0.9
    # whole cells: exactly cell (2, 3) of a 128x128 frame (16-pixel cells)
    assert box_from_map(m, (128, 128), BoxConfig(upsample=0)) == (48, 32, 63, 47)
    # continuous map: centred on the cell, about one cell large
    x1, y1, x2, y2 = box_from_map(m, (128, 128), BoxConfig(upsample=16))
    assert abs((x1 + x2) / 2 - 55.5) <= 1 and abs((y1 + y2) / 2 - 39.5) <= 1
    assert 10 <= x2 - x1 + 1 <= 20
    # a second, separate blob is not part of the peak's component
    m[6, 6] = 0.8
    assert box_from_map(m, (128, 128), BoxConfig(upsample=0)) == (48, 32, 63, 47)
    # a low peak still gets a box (relative threshold only)
    low = np.full((4, 4), 0.01, dtype=np.float32)
    low[1, 1] = 0.2
    assert box_from_map(low, (40, 40), BoxConfig(upsample=0)) == (10, 10, 19, 19)
    assert box_iou([(0, 0, 9, 9)], [(5, 0, 14, 9)])[0, 0] == pytest.approx(50 / 150)
    assert chain_snippet_boxes([(0, 0, 9, 9), (1, 0, 10, 9), (50, 50, 60, 60)], 0.3) == [0, 0, 1]


def test_split_and_pooling():
    from patchvad.data.folder import VideoEntry
    entries = [VideoEntry(video=f"{i}.mp4", path=Path(f"{i}.mp4"), split="train", label=i % 2, stem=str(i))
               for i in range(20)]
    tr, va = split_train_val(entries, 0.2, 0)
    assert len(va) == 4 and sum(e.label for e in va) == 2
    assert {e.stem for e in tr} | {e.stem for e in va} == {str(i) for i in range(20)}
    x = torch.arange(10, dtype=torch.float32).view(10, 1)
    assert pool_snippets(x, 5).flatten().tolist() == [0.5, 2.5, 4.5, 6.5, 8.5]
    assert pool_snippets(x, 20).shape[0] == 10
    assert pool_snippets(x[:4], 8, upsample_short=True).flatten().tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_smoothed_selection_prefers_a_good_stretch_over_one_lucky_evaluation():
    from patchvad.training import smoothed_best
    aucs = [0.6, 0.9, 0.5, 0.8, 0.8, 0.79]
    h = [{"step": 50 * i, "val_auc": a} for i, a in enumerate(aucs)]
    # window means: .75, .667, .733, .70, .797, .795 -> step 200 (the single best is step 50)
    assert smoothed_best(h, 3) == 200
    assert smoothed_best(h, 1) == 50
    assert smoothed_best([{"step": 0, "val_auc": None}, {"step": 5, "val_auc": None}], 3) == 5


def test_validation_auc_and_bag_threshold_known_answers():
    from patchvad.training import bag_threshold, video_auc
    # pairs (anomalous > normal): 0.8>0.1, 0.8>0.4, 0.35>0.1 yes; 0.35>0.4 no -> 3/4
    assert video_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert video_auc(np.array([0.1, 0.2]), np.array([1, 1])) is None
    # J = 1 only between 0.1 (normal) and 0.3 (anomalous): the midpoint 0.2
    assert bag_threshold(np.array([0.1, 0.3, 0.8]), np.array([0, 1, 1])) == 0.5 * (0.1 + 0.3)
    # one class: J is undefined, the median score; no score at all: 0.5
    assert bag_threshold(np.array([0.2, 0.9, 0.4], dtype=np.float32), np.array([1, 1, 1])) == float(np.float32(0.4))
    assert bag_threshold(np.array([]), np.array([])) == 0.5


def test_diverged_training_is_a_clear_error(toy, tmp_path, monkeypatch):
    from patchvad.model.methods.proximity import Proximity
    real = Proximity.loss

    def diverged(self, model, x, mask, lengths, labels, net=None):
        loss, terms, bags = real(self, model, x, mask, lengths, labels, net)
        return loss, terms, bags * float("nan")

    monkeypatch.setattr(Proximity, "loss", diverged)
    data, feats = toy
    cfg = RunConfig(model=SMALL.model, train=TrainConfig(steps=2, batch_size=4, eval_every=2, log_every=2))
    with pytest.raises(ConfigError, match="bag scores hold NaN or inf: the training diverged; lower train.lr"):
        fit(data, feats, tmp_path / "run", method="proximity", config=cfg, log=None)


def test_disk_cache_gives_the_same_training(toy, tmp_path):
    data, feats = toy

    def cfg(cache: str) -> RunConfig:
        return RunConfig(model=SMALL.model, train=TrainConfig(steps=6, batch_size=4, eval_every=3, log_every=3,
                                                              cache=cache, device="cpu"))

    a = fit(data, feats, tmp_path / "mem", seed=4, config=cfg("memory"), log=None)
    b = fit(data, feats, tmp_path / "disk", seed=4, config=cfg("disk"), log=None)
    assert a.val_auc == b.val_auc and a.best_step == b.best_step
    assert not list((tmp_path / "disk").glob("*.cache"))          # removed after training
    ta, tb = load_file(str(a.checkpoint)), load_file(str(b.checkpoint))
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
