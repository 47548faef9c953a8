"""``patchvad fit --method sultani`` end to end through the command line: fit -> test -> evaluate.

Sultani et al.'s ranking MIL is a video-level method (one score per snippet, the whole
frame as its box); the other methods' paths are covered elsewhere. Tiny toy features
(tests/model/toydata.py) and a few training steps: what is checked is the path, its
files and that every metric comes out finite, not how well it learns.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from patchvad import cli
from patchvad.config import ModelConfig, RunConfig, TrainConfig
from patchvad.data.folder import DatasetFolder
from patchvad.model.model import read_metadata

from toydata import make_toy_dataset

# The metrics every evaluation reports (docs/metrics.md); a video-level method has them too.
METRICS = ("frame_auc_micro", "frame_auc_macro", "frame_ap", "tiou", "rbdc", "tbdc", "pauc", "pap")


def test_fit_sultani_then_test_and_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data, feats = tmp_path / "data", tmp_path / "feats"
    make_toy_dataset(data, feats, n_train=16, n_test=6, seed=7, snippets=(8, 12))
    config = tmp_path / "small.yaml"
    config.write_text(RunConfig(model=ModelConfig(width=16, appearance_dims=8, change_dims=4),
                                train=TrainConfig(steps=12, batch_size=8, eval_every=6, log_every=6)).to_yaml())
    run, pred = tmp_path / "run", tmp_path / "pred"

    assert cli.main(["fit", "--data", str(data), "--features", str(feats), "--out", str(run), "--method", "sultani",
                     "--seed", "3", "--config", str(config), "--quiet"]) == 0
    ckpt = run / "model.safetensors"
    for name in ("model.safetensors", "config.yaml", "train_log.jsonl", "split.json"):
        assert (run / name).is_file(), name
    saved = RunConfig.load(run / "config.yaml")
    assert saved.method == "sultani" and saved.train.steps == 12       # --method over the file's method
    meta = read_metadata(ckpt)
    assert (meta["method"], int(meta["seed"])) == ("sultani", 3)
    assert all(np.isfinite(t.float().numpy()).all() for t in load_file(str(ckpt)).values())
    logs = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs if r["kind"] == "train"] == [6, 12]
    assert f"{ckpt}  (method sultani, seed 3" in capsys.readouterr().out

    assert cli.main(["test", "--ckpt", str(ckpt), "--data", str(data), "--features", str(feats),
                     "--out", str(pred)]) == 0
    test_set = DatasetFolder(data, check_files=False).test_set()
    assert (pred / "inference.json").is_file()
    for entry in test_set:
        scores = np.load(pred / entry.stem / "scores.npy")
        assert scores.shape == (entry.frames,) and np.isfinite(scores).all()
        maps = np.load(pred / entry.stem / "maps.npy")
        # Video-level: one score per snippet, the same in every cell.
        assert maps.shape[1:] == (8, 8) and np.allclose(maps, maps[:, :1, :1])

    out = tmp_path / "metrics.json"
    assert cli.main(["evaluate", "--dataset", str(data), "--predictions", str(pred), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    for key in METRICS:
        value = metrics[key]
        assert isinstance(value, float) and math.isfinite(value), (key, value)
        assert 0.0 <= value <= 1.0, (key, value)
    table = capsys.readouterr().out
    assert f"{metrics['n_videos']} test videos" in table and f"{metrics['frame_auc_micro']:.4f}" in table
    assert metrics["n_videos"] == len(test_set)
