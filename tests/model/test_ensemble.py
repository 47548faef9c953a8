"""``patchvad ensemble``: the mean of several seeds' maps, scored and boxed like ``patchvad test``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from toydata import make_toy_dataset

from patchvad.config import RunConfig, TrainConfig
from patchvad.data.folder import DatasetFolder
from patchvad.ensemble import ensemble
from patchvad.errors import PredictionError
from patchvad.inference import BoxConfig, prediction_from_maps, test
from patchvad.model.model import load_model
from patchvad.predictions import read_prediction
from patchvad.training import fit


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("ens")
    make_toy_dataset(base / "data", base / "feats", n_train=24, n_test=6, grid=(6, 6), seed=5, snippets=(8, 12))
    cfg = RunConfig(train=TrainConfig(steps=20, batch_size=8, eval_every=10, log_every=10))
    out = {"base": base, "data": base / "data"}
    for name, method, seed in (("a", "proximity", 0), ("b", "proximity", 1), ("floor", "motion_floor", 0),
                               ("vmil", "video_mil", 0)):
        res = fit(base / "data", base / "feats", base / f"run_{name}", config=cfg, method=method, seed=seed, log=None)
        test(res.checkpoint, base / "data", base / "feats", base / f"pred_{name}")
        out[name] = base / f"pred_{name}"
        out[f"ckpt_{name}"] = res.checkpoint
    return out


def test_mean_of_maps_scored_like_test(runs, tmp_path) -> None:
    res = ensemble([runs["a"], runs["b"]], runs["data"], tmp_path / "ens")
    assert res.videos == 6 and res.method == "proximity"
    selection = load_model(runs["ckpt_a"]).selection
    for entry in DatasetFolder(runs["data"], check_files=False).test_set():
        a, b = read_prediction(runs["a"], entry.stem), read_prediction(runs["b"], entry.stem)
        got = read_prediction(tmp_path / "ens", entry.stem, frame_count=entry.frames)
        mean = ((a.maps.astype(np.float64) + b.maps.astype(np.float64)) / 2).astype(np.float32)
        np.testing.assert_array_equal(got.maps, mean.astype(np.float16).astype(np.float32))    # stored float16
        assert not np.array_equal(a.maps, b.maps)           # two seeds: different maps
        ref = prediction_from_maps(mean, a.frame_to_snippet, (entry.width, entry.height), selection, BoxConfig())
        np.testing.assert_array_equal(got.frame_scores, ref.frame_scores.astype(np.float64))
        np.testing.assert_array_equal(got.boxes, ref.boxes)
        assert (tmp_path / "ens" / entry.stem / "tracks.csv").is_file()
    info = json.loads((tmp_path / "ens" / "inference.json").read_text())
    assert info["method"] == "proximity" and len(info["ensemble_of"]) == 2
    assert info["selection"] == {"selection": selection.rule, "k": selection.k, "sigma": selection.sigma,
                                 "radius": selection.radius}       # so an ensemble can itself be a member


def test_a_member_ensembled_with_its_copy_is_itself(runs, tmp_path) -> None:
    """Averaging identical maps changes nothing: the ensemble equals what `patchvad test` wrote,
    up to the float16 rounding of the stored maps it starts from (`test` scored float32 maps)."""
    copy = tmp_path / "copy"
    shutil.copytree(runs["a"], copy)
    ensemble([runs["a"], copy], runs["data"], tmp_path / "ens")
    for entry in DatasetFolder(runs["data"], check_files=False).test_set():
        a = read_prediction(runs["a"], entry.stem)
        got = read_prediction(tmp_path / "ens", entry.stem)
        np.testing.assert_array_equal(got.maps, a.maps)
        np.testing.assert_allclose(got.frame_scores, a.frame_scores, rtol=0, atol=2e-3)
        # (boxes may move where the rounding crosses the box threshold of a cell)


def test_refusals_name_the_folder(runs, tmp_path) -> None:
    with pytest.raises(PredictionError, match="at least two"):
        ensemble([runs["a"]], runs["data"], tmp_path / "x")
    with pytest.raises(PredictionError, match="named twice"):
        ensemble([runs["a"], runs["a"]], runs["data"], tmp_path / "x")
    with pytest.raises(PredictionError, match="members must be seeds of one method"):
        ensemble([runs["a"], runs["floor"]], runs["data"], tmp_path / "x")
    with pytest.raises(PredictionError, match="predicts whole frames"):
        copy = tmp_path / "vmil2"
        shutil.copytree(runs["vmil"], copy)
        ensemble([runs["vmil"], copy], runs["data"], tmp_path / "x")
    with pytest.raises(PredictionError, match="output folder is one of the members"):
        ensemble([runs["a"], runs["b"]], runs["data"], runs["b"])
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(PredictionError, match="no inference.json") as info:
        ensemble([runs["a"], bare], runs["data"], tmp_path / "x")
    assert str(bare) in str(info.value)
    # a member whose maps come from another grid
    other = tmp_path / "other"
    shutil.copytree(runs["b"], other)
    stem = next(iter(DatasetFolder(runs["data"], check_files=False).test_set())).stem
    maps = np.load(other / stem / "maps.npy")
    np.save(other / stem / "maps.npy", np.zeros((maps.shape[0], 3, 3), np.float32))
    with pytest.raises(PredictionError, match="differ") as info:
        ensemble([runs["a"], other], runs["data"], tmp_path / "x")
    assert str(other) in str(info.value)


def test_older_folders_find_their_checkpoint_above_them(runs, tmp_path) -> None:
    """A folder whose inference.json has no selection settings (written before `test` recorded
    them) names its checkpoint relative to where `test` ran; it is looked up from the folder upwards."""
    project = tmp_path / "project"
    shutil.copytree(runs["a"], project / "runs" / "pred_a")
    shutil.copytree(runs["b"], project / "runs" / "pred_b")
    (project / "models").mkdir()
    for name in ("a", "b"):
        shutil.copy(runs[f"ckpt_{name}"], project / "models" / f"{name}.safetensors")
        record = project / "runs" / f"pred_{name}" / "inference.json"
        info = json.loads(record.read_text())
        del info["selection"]
        info["checkpoint"] = f"models/{name}.safetensors"
        record.write_text(json.dumps(info))
    res = ensemble([project / "runs" / "pred_a", project / "runs" / "pred_b"], runs["data"], tmp_path / "ens")
    assert res.videos == 6
    (project / "models" / "b.safetensors").unlink()
    with pytest.raises(PredictionError, match="records no selection settings and its checkpoint"):
        ensemble([project / "runs" / "pred_a", project / "runs" / "pred_b"], runs["data"], tmp_path / "ens2")
