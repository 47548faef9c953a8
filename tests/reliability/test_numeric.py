"""Area 5: NaN and inf, constant scores, one-class test sets: clear errors or defined values.

Conventions checked here (docs/metrics.md, "Undefined metrics"):

* NaN or inf in a feature file is a FeatureError naming the file, at load time: it
  never reaches training (where it silently made a NaN model with threshold NaN).
* A metric without a value on the data (ROC-AUC with one class of frames) is ``null``
  in metrics.json with a warning saying why; every other metric has a defined value.
  metrics.json never holds NaN or infinity: it is strict JSON.
* Scores that cannot be stored (NaN, inf, beyond float32) are refused when written.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from patchvad.config import ModelConfig, RunConfig, TrainConfig
from patchvad.errors import ConfigError, FeatureError, PredictionError
from patchvad.features.store import FeatureStore
from patchvad.io.files import sha256_file
from patchvad.metrics.evaluate import evaluate_command
from patchvad.predictions import read_prediction, write_prediction

TESTS = Path(__file__).resolve().parents[1]
CFG = RunConfig(model=ModelConfig(width=16, appearance_dims=8, change_dims=4),
                train=TrainConfig(steps=6, batch_size=4, eval_every=3, log_every=3, device="cpu", threads=1))


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def toy(tmp_path: Path) -> tuple[Path, Path]:
    _module(TESTS / "model" / "toydata.py", "toydata").make_toy_dataset(
        tmp_path / "data", tmp_path / "feats", n_train=8, n_test=4, seed=2, grid=(4, 4), snippets=(6, 9))
    return tmp_path / "data", tmp_path / "feats"


def _poison(feats: Path, stem: str, value: float) -> None:
    """Put ``value`` into a stored feature array and make its record agree (a foreign or damaged file)."""
    path = feats / f"{stem}.npy"
    x = np.load(path)
    x[2, 1, 1, 3] = value
    np.save(path, x)
    record = json.loads((feats / f"{stem}.json").read_text())
    record.update(bytes=path.stat().st_size, sha256=sha256_file(path))
    (feats / f"{stem}.json").write_text(json.dumps(record))


def _metrics_json(path: Path) -> dict:
    """metrics.json parsed as strict JSON: NaN / Infinity tokens are an error."""
    def no_constants(token: str):
        raise AssertionError(f"metrics.json holds {token}")
    return json.loads(path.read_text(), parse_constant=no_constants)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_features_are_refused_before_training(toy, tmp_path: Path, value: float) -> None:
    from patchvad.inference import test
    from patchvad.training import fit

    data, feats = toy
    result = fit(data, feats, tmp_path / "ok", method="motion_floor", config=CFG, log=None)
    _poison(feats, "train_001", value)
    _poison(feats, "test_002", value)
    with pytest.raises(FeatureError, match="train_001.npy: features contain NaN or inf \\(first in snippet 2\\)"):
        FeatureStore(feats).load("train_001")
    with pytest.raises(FeatureError, match="train_001.npy"):
        fit(data, feats, tmp_path / "run", method="proximity", config=CFG, log=None)
    assert not (tmp_path / "run" / "model.safetensors").exists()
    with pytest.raises(FeatureError, match="test_002.npy"):
        test(result.checkpoint, data, feats, tmp_path / "pred")


def test_extraction_producing_non_finite_features_fails_that_video_only(tmp_path: Path, monkeypatch) -> None:
    from patchvad.data.folder import write_manifest
    from patchvad.features import extract as extract_module
    from patchvad.features.backbones import PatchFeatureExtractor
    from patchvad.io.video import write_video

    from .helpers import SMALL_SPEC, smooth_frames

    rows = []
    for stem in ("a", "b", "c"):
        write_video(tmp_path / "d" / f"{stem}.mp4", smooth_frames(10, 64, 48), fps=25)
        rows.append({"video": f"{stem}.mp4", "split": "train", "label": 0})
    write_manifest(tmp_path / "d", rows)
    real = extract_module.extract_video

    def overflowing(source, *args, **kwargs):
        feats, snippets, facts = real(source, *args, **kwargs)
        if Path(source).stem == "b":
            feats[0, 0, 0, 0] = 1e6            # beyond float16: inf once stored
        return feats, snippets, facts

    monkeypatch.setattr(extract_module, "extract_video", overflowing)
    report = extract_module.extract_dataset(tmp_path / "d", tmp_path / "f",
                                            extractor=PatchFeatureExtractor(**SMALL_SPEC), progress=False)
    assert report.done == ["a", "c"] and list(report.failed) == ["b"]
    assert "b.npy: features contain NaN or inf" in report.failed["b"]
    assert not (tmp_path / "f" / "b.npy").exists() and not (tmp_path / "f" / "b.json").exists()


def test_constant_score_model_gets_defined_metrics(toy, tmp_path: Path) -> None:
    """Constant features -> the motion floor scores every frame alike: AUC 0.5, AP = the anomalous share."""
    from patchvad.inference import test
    from patchvad.training import fit

    data, feats = toy
    store = FeatureStore(feats)
    for stem in store.finished():
        vf = store.load(stem, mmap=False)
        store.write(stem, np.full(vf.x.shape, 0.25, np.float32), vf.snippets,
                    {k: vf.record[k] for k in ("frame_count", "fps", "width", "height")})
    result = fit(data, feats, tmp_path / "run", method="motion_floor", config=CFG, log=None)
    test(result.checkpoint, data, feats, tmp_path / "pred")
    scores = np.concatenate([read_prediction(tmp_path / "pred", s).frame_scores for s in ("test_000", "test_001",
                                                                                     "test_002", "test_003")])
    assert np.ptp(scores) == 0                                   # the model is constant
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate_command(data, tmp_path / "pred", tmp_path / "metrics.json")
    m = _metrics_json(tmp_path / "metrics.json")
    assert m["frame_auc_micro"] == 0.5 and m["pauc"] == 0.5
    assert m["frame_ap"] == pytest.approx(m["n_anomalous_frames"] / m["n_frames"], abs=1e-12)
    assert m["tiou_threshold"] == pytest.approx(float(scores[0]), rel=1e-6)
    assert all(m[k] is not None for k in ("frame_auc_macro", "tiou", "rbdc", "tbdc", "pap"))


def _dataset(root: Path, videos: list[dict]) -> Path:
    return _module(TESTS / "metrics" / "helpers.py", "metrics_helpers").build_dataset(root, videos)


def test_all_normal_test_set(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d", [{"stem": "n1", "split": "test", "label": 0},
                                     {"stem": "n2", "split": "test", "label": 0, "frame_labels": np.zeros(10)}])
    rng = np.random.default_rng(0)
    for stem in ("n1", "n2"):
        s = rng.random(10)
        write_prediction(tmp_path / "p", stem, s, np.column_stack([np.arange(10), np.full((10, 4), 3), s]),
                         rng.random((2, 4, 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate_command(root, tmp_path / "p", tmp_path / "metrics.json")
    m = _metrics_json(tmp_path / "metrics.json")
    for key in ("frame_auc_micro", "frame_ap", "tiou", "tiou_threshold", "rbdc", "tbdc", "pauc", "pap"):
        assert m[key] is None, key
    assert m["frame_auc_macro"] == 1.0                       # padded per video (UBnormal): defined
    assert any("frame_auc_micro is null" in w for w in m["warnings"])
    assert any("rbdc and tbdc" in w for w in m["warnings"])


def test_all_anomalous_test_set(tmp_path: Path) -> None:
    boxes = [[0, f, 0, 0, 39, 39] for f in range(10)]
    root = _dataset(tmp_path / "d", [
        {"stem": "a1", "split": "test", "label": 1, "frame_labels": np.ones(10), "regions": boxes},
        {"stem": "a2", "split": "test", "label": 1, "frame_labels": np.ones(10), "regions": boxes}])
    s = np.linspace(0.1, 0.9, 10)
    for stem in ("a1", "a2"):
        write_prediction(tmp_path / "p", stem, s, np.column_stack([np.arange(10), np.zeros((10, 2)),
                                                                   np.full((10, 2), 39), s]), np.ones((2, 4, 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate_command(root, tmp_path / "p", tmp_path / "metrics.json")
    m = _metrics_json(tmp_path / "metrics.json")
    assert m["frame_auc_micro"] is None and m["tiou"] is None and m["pauc"] is None
    assert m["frame_ap"] == 1.0 and m["pap"] == 1.0          # every frame (and cell) is a positive
    assert m["rbdc"] == 1.0 and m["tbdc"] == 1.0             # every region found, no false positive


def test_one_class_training_sets_are_clear_errors(toy, tmp_path: Path) -> None:
    from patchvad.data.folder import write_manifest
    from patchvad.training import fit

    data, feats = toy
    lines = (data / "manifest.csv").read_text().splitlines()
    header, rows = lines[0].split(","), [dict(zip(lines[0].split(","), r.split(","))) for r in lines[1:]]
    for label, match in ((0, "no anomalous video"), (1, "no normal video")):
        keep = [r for r in rows if r["split"] == "test" or int(r["label"]) == label]
        write_manifest(data, keep)
        with pytest.raises(ConfigError, match=match):
            fit(data, feats, tmp_path / f"run{label}", method="proximity", config=CFG, log=None)
    assert header[0] == "video"


@pytest.mark.parametrize("scores,problem", [
    (np.array([0.1, np.nan, 0.3]), "finite"),
    (np.array([0.1, np.inf, 0.3]), "finite"),
    (np.array([0.1, 1e300, 0.3]), "float32 range"),
])
def test_scores_that_cannot_be_stored_are_refused(tmp_path: Path, scores: np.ndarray, problem: str) -> None:
    with pytest.raises(PredictionError, match=problem) as err:
        write_prediction(tmp_path / "p", "v", scores)
    assert str(err.value).startswith(str(tmp_path / "p" / "v" / "scores.npy"))
    assert not (tmp_path / "p" / "v" / "scores.npy").exists()


def test_non_finite_scores_on_disk_are_refused(tmp_path: Path) -> None:
    write_prediction(tmp_path / "p", "v", np.array([0.1, 0.2, 0.3]))
    np.save(tmp_path / "p" / "v" / "scores.npy", np.array([0.1, np.nan, 0.3], dtype=np.float32))
    with pytest.raises(PredictionError, match="scores.npy: 1 score\\(s\\) are NaN or inf \\(first at frame 1"):
        read_prediction(tmp_path / "p", "v")
