"""The normal memory: k-means known answers, the encoder's memory channel against a direct computation,
the ``normal_memory`` method end to end (seedless, fitted on normal training videos only)."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from patchvad.config import ModelConfig, RunConfig, TrainConfig
from patchvad.errors import ConfigError
from patchvad.features.store import FeatureStore
from patchvad.inference import test
from patchvad.metrics.evaluate import evaluate_folder
from patchvad.model.model import load_model
from patchvad.model.normalize import MEMORY_SOURCES, FeatureEncoder, kmeans, nearest_distance
from patchvad.training import fit

from toydata import make_toy_dataset

CHANNELS = {"appearance": [0, 6], "appearance_change": [6, 9], "motion": [9, 17]}
CFG = ModelConfig(width=8, appearance_dims=3, change_dims=2, scene_dims=2, memory=4, memory_parts=MEMORY_SOURCES)


def test_kmeans_finds_separated_clusters_and_nearest_distance_is_brute_force():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    z = torch.from_numpy(np.concatenate([c + rng.normal(0, 0.1, (50, 2)) for c in centres]))
    found = kmeans(z, 3, seed=1)
    # each found centroid is the mean of one cluster (starting from 3 distinct rows of 3 far clusters
    # can put two starts in one cluster; seed 1 does not, and the answer is then exact)
    means = torch.stack([z[i * 50:(i + 1) * 50].mean(0) for i in range(3)])
    order = torch.cdist(means, found).argmin(1)
    assert sorted(order.tolist()) == [0, 1, 2]
    assert torch.allclose(found[order], means, atol=1e-12)
    q = torch.from_numpy(rng.normal(0, 5, (37, 2)))
    brute = torch.tensor([min(float(torch.linalg.norm(r - c)) for c in found) for r in q], dtype=q.dtype)
    assert torch.allclose(nearest_distance(q, found, rows=8), brute, atol=1e-9)
    # fewer rows than centroids: every row is a centroid, the rest repeat the first
    few = kmeans(z[:2], 5, seed=0)
    assert few.shape == (5, 2) and set(map(tuple, few.tolist())) == set(map(tuple, z[:2].tolist()))


def test_encoder_memory_channel_is_the_standardised_nearest_centroid_distance():
    rng = np.random.default_rng(1)
    videos = [rng.normal(3.0, 2.0, (10, 4, 4, 17)).astype(np.float16) for _ in range(5)]
    plain = FeatureEncoder(CHANNELS, dataclasses.replace(CFG, memory=0)).fit(videos, max_videos_hint=5)
    enc = FeatureEncoder(CHANNELS, CFG).fit(videos, max_videos_hint=5)
    e, e0 = enc.encode(videos[0]), plain.encode(videos[0])
    assert e.shape[-1] == e0.shape[-1] + 1 and enc.memory_centroids.shape == (4, 8 + 8 + 3 + 2)
    assert torch.equal(e[..., :-1], e0)                # the other channels do not change
    # direct: the standardised source parts, brute-force nearest centroid, the part's own standardisation
    off = enc.part_offsets()
    assert enc.memory_sources == MEMORY_SOURCES
    src = torch.cat([e[..., off[p]:off[p] + enc._width(p)] for p in MEMORY_SOURCES], -1).reshape(-1, 21)
    d = torch.stack([torch.linalg.norm(src[:, None] - enc.memory_centroids[None], dim=-1).min(1).values])[0]
    want = (d - enc.memory_mean) / enc.memory_std
    assert torch.allclose(e[..., -1].reshape(-1), want, atol=1e-4)
    # the memory as the prior: channel 0 is the memory channel
    mem_prior = FeatureEncoder(CHANNELS, dataclasses.replace(CFG, prior_channel="memory")).fit(videos,
                                                                                              max_videos_hint=5)
    m = mem_prior.encode(videos[1])
    assert torch.equal(m[..., 0], m[..., -1])
    # the default memory reads motion and its residual only
    default = FeatureEncoder(CHANNELS, dataclasses.replace(CFG, memory_parts=ModelConfig().memory_parts))
    assert default.memory_sources == ("motion", "residual") and default.memory_centroids.shape == (4, 16)


def test_memory_prior_needs_a_memory():
    with pytest.raises(ConfigError, match="model.prior_channel"):
        ModelConfig(prior_channel="memory").validate()
    with pytest.raises(ConfigError, match="model.memory"):
        ModelConfig(memory=-1).validate()
    with pytest.raises(ConfigError, match="model.memory_parts"):
        ModelConfig(memory=4, memory_parts=("scene",)).validate()
    with pytest.raises(ConfigError, match="none of them is in this encoding"):
        FeatureEncoder(CHANNELS, dataclasses.replace(CFG, appearance_dims=0, change_dims=0, memory_parts=("change",)))


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("memory")
    make_toy_dataset(base / "data", base / "feats", n_train=24, n_test=8, seed=5)
    return base / "data", base / "feats"


def test_normal_memory_method_end_to_end(toy, tmp_path):
    """Fitted on the normal training videos, no steps; the checkpoint carries the memory; seedless."""
    data, feats = toy
    small = RunConfig(model=ModelConfig(width=8, appearance_dims=4, change_dims=2, memory=16),
                      train=TrainConfig(steps=0, batch_size=4))
    runs = [fit(data, feats, tmp_path / f"nm{s}", method="normal_memory", seed=s, config=small, log=None)
            for s in (0, 1)]
    assert runs[0].best_step == 0
    model = load_model(runs[0].checkpoint, FeatureStore(feats).spec)
    assert model.config.model.prior_channel == "memory" and model.config.model.memory == 16
    assert float(model.encoder.memory_centroids.abs().sum()) > 0
    for i, run in enumerate(runs):
        test(run.checkpoint, data, feats, tmp_path / f"pred{i}")
    a, b = (np.load(tmp_path / f"pred{i}" / "test_000" / "maps.npy") for i in (0, 1))
    assert np.array_equal(a, b)                         # the training seed changes nothing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = evaluate_folder(data, tmp_path / "pred0")
    assert ev["pauc"] > 0.6                             # the toy anomaly is unlike every normal token


def test_motion_floor_stays_the_motion_floor_under_a_memory_prior(toy, tmp_path):
    """compare runs every method with one config: the floor must not turn into the memory."""
    data, feats = toy
    base = ModelConfig(width=8, appearance_dims=4, change_dims=2)
    configs = {"plain": base, "mem": dataclasses.replace(base, memory=16, prior_channel="memory")}
    for name, model_cfg in configs.items():
        run = fit(data, feats, tmp_path / name, method="motion_floor", seed=0,
                  config=RunConfig(model=model_cfg, train=TrainConfig(steps=0, batch_size=4)), log=None)
        assert load_model(run.checkpoint, FeatureStore(feats).spec).config.model.prior_channel == "energy_mean"
        test(run.checkpoint, data, feats, tmp_path / f"pred_{name}")
    a, b = (np.load(tmp_path / f"pred_{name}" / "test_000" / "maps.npy") for name in configs)
    assert np.array_equal(a, b)


def test_adapting_a_memory_model_keeps_the_memory_space_and_restandardises_its_channel(toy, tmp_path):
    """Own-camera adaptation: the parts the memory reads keep their buffers; the memory channel gets mean 0 / std 1."""
    from patchvad.adapt import adapt_model
    data, feats = toy
    small = RunConfig(model=ModelConfig(width=8, appearance_dims=4, change_dims=2, memory=16),
                      train=TrainConfig(steps=0, batch_size=4))
    run = fit(data, feats, tmp_path / "nm", method="normal_memory", seed=0, config=small, log=None)
    store = FeatureStore(feats)
    model = load_model(run.checkpoint, store.spec)
    kept = {k: v.clone() for k, v in model.encoder.state_dict().items()
            if k.split("_")[0] in model.encoder.memory_sources or k == "memory_centroids"}
    footage = [store.load(stem) for stem in sorted(store.finished()) if stem.startswith("test")]
    adapt_model(model, footage, min_snippets=1)
    for k, v in kept.items():
        assert torch.equal(model.encoder.state_dict()[k], v), k
    channel = torch.cat([model.encoder.encode(np.asarray(vf.x))[..., -1].reshape(-1) for vf in footage]).double()
    assert abs(float(channel.mean())) < 1e-4 and abs(float(channel.std(correction=0)) - 1.0) < 1e-3
