"""The experiment harness (``patchvad compare``, the demo's runs) and the grid ceiling."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import load_toydata

from patchvad.cli import main
from patchvad.compare import Run, execute, plan
from patchvad.config import RunConfig, TrainConfig
from patchvad.errors import ConfigError
from patchvad.metrics.ceiling import grid_ceiling
from patchvad.metrics.evaluate import evaluate_folder
from patchvad.metrics.table import table_metrics

FAST = RunConfig(train=TrainConfig(steps=2, batch_size=4, eval_every=2, log_every=2, device="cpu", threads=1))


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("compare")
    load_toydata().make_toy_dataset(base / "data", base / "feats", n_train=12, n_test=6, seed=4, snippets=(6, 8))
    return base / "data", base / "feats"


def test_grid_ceiling_of_known_boxes(toy) -> None:
    data, _ = toy
    # toydata's boxes are the middle half of an 8x8 cell of a 128 px frame: pixels 16j+4 .. 16j+11.
    # On the 8x8 grid the smallest cell box is the whole 16x16 cell: IoU 8*8 / (16*16) = 0.25.
    # On a 32x32 grid (4 px cells) the box is exactly cells 4j+1 .. 4j+2: IoU 1.
    frames = 0
    for tracks in (data / "tracks").glob("*.csv"):
        rows = np.loadtxt(tracks, delimiter=",", skiprows=1, ndmin=2)
        frames += np.unique(rows[:, 1]).size
    assert frames > 0
    ceiling = grid_ceiling(data, grids=((8, 8), (32, 32)))
    assert ceiling == {"8x8": {"tiou_ceiling": 0.25, "frac_iou_ge_0.1": 1.0, "frames": frames},
                       "32x32": {"tiou_ceiling": 1.0, "frac_iou_ge_0.1": 1.0, "frames": frames}}


def test_plan_runs_a_seedless_method_once(tmp_path: Path) -> None:
    runs = plan(["proximity", "motion_floor", "random"], [0, 1], tmp_path, FAST)
    assert [r.key for r in runs] == ["proximity_s0", "proximity_s1", "motion_floor_s0", "random_s0", "random_s1"]
    assert runs[1] == Run("proximity_s1", "proximity", 1, FAST, tmp_path / "proximity_s1",
                          tmp_path / "pred_proximity_s1")
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        plan(["nope"], [0], tmp_path)


def test_execute_keeps_run_order_and_reuses_finished_work(toy, tmp_path: Path) -> None:
    data, feats = toy
    runs = [Run(("random", s), "random", s, FAST, tmp_path / f"m{s}", tmp_path / f"p{s}") for s in (1, 0)]
    runs.append(Run(("floor", 0), "motion_floor", 0, FAST, tmp_path / "mf", tmp_path / "pf"))
    first = execute(runs, data, feats, jobs=1)
    assert list(first) == [("random", 1), ("random", 0), ("floor", 0)]
    for res in first.values():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert res.metrics == evaluate_folder(data, res.run.pred_dir)
        assert res.fit_seconds is not None and res.snippets_per_second > 0
        assert res.best_step == 0                              # untrained methods: the step-0 checkpoint
    # Another seed draws other random scores.
    assert first[("random", 1)].metrics["frame_auc_micro"] != first[("random", 0)].metrics["frame_auc_micro"]
    ckpt = tmp_path / "m1" / "model.safetensors"
    stamp = ckpt.stat().st_mtime_ns
    again = execute(runs, data, feats, jobs=1)
    assert all(r.fit_seconds is None for r in again.values()) and ckpt.stat().st_mtime_ns == stamp
    assert {k: r.metrics for k, r in again.items()} == {k: r.metrics for k, r in first.items()}
    fresh = execute(runs[:1], data, feats, jobs=1, fresh=True)
    assert fresh[("random", 1)].fit_seconds is not None and ckpt.stat().st_mtime_ns != stamp
    with pytest.raises(ValueError, match="distinct keys"):
        execute(runs + runs[:1], data, feats)


def test_compare_command_writes_results_and_table(toy, tmp_path: Path, capsys) -> None:
    data, feats = toy
    out = tmp_path / "cmp"
    config = tmp_path / "fast.yaml"
    config.write_text(FAST.to_yaml())
    args = ["compare", "--data", str(data), "--features", str(feats), "--out", str(out),
            "--methods", "motion_floor", "random", "--seeds", "0", "1", "--config", str(config)]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["runs"]) == {"motion_floor_s0", "random_s0", "random_s1"}
    a, b = (results["runs"][f"random_s{s}"]["frame_auc_micro"] for s in (0, 1))
    summary = results["summary"]["random"]
    assert summary["n"]["frame_auc_micro"] == 2
    assert summary["mean"]["frame_auc_micro"] == pytest.approx((a + b) / 2, abs=1e-15)
    assert summary["std"]["frame_auc_micro"] == pytest.approx(abs(a - b) / math.sqrt(2), abs=1e-15)
    assert results["summary"]["motion_floor"]["n"]["frame_auc_micro"] == 1
    assert results["summary"]["motion_floor"]["std"]["frame_auc_micro"] == 0.0
    assert results["grid_ceiling"]["14x14"]["frames"] > 0
    assert results["command"].startswith(f"patchvad compare --data {data} --features {feats} --out {out} "
                                         "--methods motion_floor random --seeds 0 1 --config ")
    table = (out / "results.md").read_text()
    header = table.splitlines()[0]
    assert all(f" {spec.label} |" in header for spec in table_metrics())
    mean, std = summary["mean"]["frame_auc_micro"], summary["std"]["frame_auc_micro"]
    assert f"| random | 2 | {mean:.4f} ± {std:.4f} |" in table
    assert "motion_floor: one run" in table
    printed = capsys.readouterr().out
    assert "random_s1: frame_auc_micro=" in printed and table in printed
    # A second call keeps the recorded runs: nothing is fitted, tested or logged again.
    stamp = (out / "random_s0" / "model.safetensors").stat().st_mtime_ns
    assert main(args) == 0
    assert "random_s1: " not in capsys.readouterr().out
    assert (out / "random_s0" / "model.safetensors").stat().st_mtime_ns == stamp
    assert json.loads((out / "results.json").read_text())["runs"] == results["runs"]
