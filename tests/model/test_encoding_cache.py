"""The shared encoding cache: fits and tests with it give exactly what they give without it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_toydata
from safetensors.torch import load_file

from patchvad.config import RunConfig, TrainConfig
from patchvad.features.store import FeatureStore
from patchvad.inference import test as run_test
from patchvad.model.encoding_cache import EncodingCache, encoder_digest
from patchvad.model.normalize import cell_median
from patchvad.training import MODEL_FILE, fit

FAST = RunConfig(train=TrainConfig(steps=4, batch_size=4, eval_every=2, log_every=2, device="cpu", threads=1))


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("cache")
    load_toydata().make_toy_dataset(base / "data", base / "feats", n_train=12, n_test=4, seed=7, snippets=(5, 8))
    return base / "data", base / "feats"


@pytest.mark.parametrize("t", [1, 2, 5, 8])
def test_cell_median_equals_numpy_median(t: int) -> None:
    x = np.random.default_rng(t).standard_normal((t, 5, 3, 7)).astype(np.float16)
    want = np.median(x.astype(np.float32), axis=0)
    assert np.array_equal(cell_median(x, rows_per_chunk=2), want)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / MODEL_FILE))


def test_fits_and_tests_through_the_cache_equal_plain_ones(toy, tmp_path: Path) -> None:
    data, feats = toy
    cache = tmp_path / "cache"
    plain = fit(data, feats, tmp_path / "plain", "proximity", seed=1, config=FAST, log=None)
    first = fit(data, feats, tmp_path / "first", "proximity", seed=1, config=FAST, log=None, encoding_cache=cache)
    logs: list[str] = []
    again = fit(data, feats, tmp_path / "again", "plain_topk", seed=2, config=FAST, log=logs.append,
                encoding_cache=cache)
    a, b = _weights(plain.run_dir), _weights(first.run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Another method and seed of the same split read the normaliser the first fit stored.
    assert any("normaliser from the encoding cache" in line for line in logs)
    enc_plain = {k: v for k, v in _weights(plain.run_dir).items() if k.startswith("encoder.")}
    enc_again = {k: v for k, v in _weights(again.run_dir).items() if k.startswith("encoder.")}
    assert enc_plain and all(torch.equal(enc_plain[k], enc_again[k]) for k in enc_plain)
    # One normaliser and one folder of encoded videos (training + validation + test below).
    assert len(list((cache / "normalisers").glob("*.safetensors"))) == 1
    n_train = len(list((cache / "encoded").rglob("*.npy")))
    assert n_train == 12
    out_plain = run_test(plain.checkpoint, data, feats, tmp_path / "pred_plain")
    out_cached = run_test(first.checkpoint, data, feats, tmp_path / "pred_cached", encoding_cache=cache)
    assert out_plain.videos == out_cached.videos == 4
    assert len(list((cache / "encoded").rglob("*.npy"))) == 16
    for maps in (tmp_path / "pred_plain").rglob("*.npy"):
        other = tmp_path / "pred_cached" / maps.relative_to(tmp_path / "pred_plain")
        assert np.array_equal(np.load(maps), np.load(other)), maps.name


def test_cached_video_is_keyed_by_encoder_and_features(toy, tmp_path: Path) -> None:
    data, feats = toy
    res = fit(data, feats, tmp_path / "run", "motion_floor", seed=0, config=FAST, log=None)
    from patchvad.model.model import load_model

    store = FeatureStore(feats)
    model = load_model(res.checkpoint, store.spec)
    video = store.load(store.finished()[0])
    cache = EncodingCache(tmp_path / "cache")
    direct = model.encoder.encode(video.x)
    assert torch.equal(cache.encode(model.encoder, video), direct)      # computed, then stored
    assert torch.equal(cache.encode(model.encoder, video), direct)      # read back
    digest = encoder_digest(model.encoder)
    # Other statistics: another digest, so the stored video is not read for them.
    model.encoder.prior_scale.add_(1.0)
    assert encoder_digest(model.encoder) != digest
    # Other features under the same stem: another file name (the record's checksum).
    changed = dataclasses.replace(video, record={**video.record, "sha256": "0" * 64})
    assert cache._video_path(digest, changed) != cache._video_path(digest, video)
    # Without a checksum in the record there is no cache entry at all.
    bare = dataclasses.replace(video, record={k: v for k, v in video.record.items() if k != "sha256"})
    assert cache._video_path(digest, bare) is None
