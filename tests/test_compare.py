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
from patchvad.compare import Run, check_methods, execute, format_above_floor, plan, seeds_above_floor
from patchvad.config import RunConfig, TrainConfig
from patchvad.errors import ConfigError
from patchvad.metrics.ceiling import grid_ceiling
from patchvad.metrics.evaluate import evaluate_folder
from patchvad.metrics.ratios import RATIO_NOTE, metric_ratio, oracle_ratios
from patchvad.metrics.table import METRICS, MetricSpec, table_metrics

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


def test_execute_resumes_a_fit_killed_after_a_checkpoint_instead_of_reusing_it(toy, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import patchvad.training.loop as loop
    from patchvad.model.model import read_metadata

    data, feats = toy
    cfg = RunConfig(train=TrainConfig(steps=4, batch_size=4, eval_every=2, log_every=2, device="cpu", threads=1))
    run = Run("p", "proximity", 0, cfg, tmp_path / "m", tmp_path / "p")
    ckpt = tmp_path / "m" / "model.safetensors"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt        # the process dies after its last checkpoint, before the fit's end

    monkeypatch.setattr(loop, "_finish", killed)
    with pytest.raises(KeyboardInterrupt):
        execute([run], data, feats)
    assert read_metadata(ckpt)["fit_complete"] == "false"     # best-so-far weights, not a finished fit
    monkeypatch.undo()
    import patchvad.compare as compare

    calls: list[bool] = []

    def spy(*args, **kwargs):
        calls.append(kwargs["resume"])
        return loop.fit(*args, **kwargs)

    monkeypatch.setattr(compare, "fit", spy)
    resumed = execute([run], data, feats)["p"]
    assert calls == [True]                                     # from its saved state, not from scratch
    assert resumed.fit_seconds is not None and read_metadata(ckpt)["fit_complete"] == "true"
    assert execute([run], data, feats)["p"].fit_seconds is None   # finished: reused


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
    assert results["above_floor"] == {}             # only untrained methods ran: nothing to count
    printed = capsys.readouterr().out
    assert "random_s1: frame_auc_micro=" in printed and table in printed
    # A second call keeps the recorded runs: nothing is fitted, tested or logged again.
    stamp = (out / "random_s0" / "model.safetensors").stat().st_mtime_ns
    assert main(args) == 0
    assert "random_s1: " not in capsys.readouterr().out
    assert (out / "random_s0" / "model.safetensors").stat().st_mtime_ns == stamp
    assert json.loads((out / "results.json").read_text())["runs"] == results["runs"]


# --- the supervised oracle: its labels reach its fits only; weak / oracle ratios ---------------


@pytest.fixture(scope="module")
def toy_oracle(tmp_path_factory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("compare_oracle")
    load_toydata().make_toy_dataset(base / "data", base / "feats", n_train=12, n_test=6, seed=4, snippets=(6, 8),
                                    oracle_dir=base / "gt")
    return base / "data", base / "feats", base / "gt"


def test_compare_with_the_oracle_gives_its_row_and_weak_over_oracle_ratios(toy_oracle, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import patchvad.compare as compare
    import patchvad.training.targets as targets

    data, feats, gt = toy_oracle
    fits: list[tuple[str, Path | None]] = []
    reads: list[str] = []
    real_fit, real_read = compare.fit, targets.read_oracle_labels

    def spy_fit(*args, **kwargs):
        fits.append((kwargs["method"], kwargs["oracle_labels"]))
        return real_fit(*args, **kwargs)

    def spy_read(*args, **kwargs):
        reads.append(fits[-1][0])                      # the method whose fit is running (jobs=1: this process)
        return real_read(*args, **kwargs)

    monkeypatch.setattr(compare, "fit", spy_fit)
    monkeypatch.setattr(targets, "read_oracle_labels", spy_read)
    out = tmp_path / "cmp"
    config = tmp_path / "fast.yaml"
    config.write_text(FAST.to_yaml())
    assert main(["compare", "--data", str(data), "--features", str(feats), "--out", str(out), "--methods",
                 "proximity", "random", "oracle", "--seeds", "0", "1", "--config", str(config),
                 "--oracle-labels", str(gt)]) == 0
    # The labels folder went to the oracle's two fits and to no other; only they read it.
    assert sorted(fits) == sorted([("proximity", None)] * 2 + [("random", None)] * 2 + [("oracle", gt)] * 2)
    assert reads and set(reads) == {"oracle"}
    results = json.loads((out / "results.json").read_text())
    assert set(results["summary"]) == {"proximity", "random", "oracle"}
    # One ratio row per weak TRAINED method (random is not trained): weak mean / oracle mean.
    assert set(results["ratios"]) == {"proximity/oracle"}
    ratio = results["ratios"]["proximity/oracle"]
    assert set(ratio) == {spec.key for spec in table_metrics()}
    weak, oracle = results["summary"]["proximity"]["mean"], results["summary"]["oracle"]["mean"]
    for key in ratio:
        a = [results["runs"][f"proximity_s{s}"][key] for s in (0, 1)]
        b = [results["runs"][f"oracle_s{s}"][key] for s in (0, 1)]
        assert weak[key] == pytest.approx((a[0] + a[1]) / 2, abs=1e-15)
        assert ratio[key] == pytest.approx((a[0] + a[1]) / (b[0] + b[1]), rel=1e-12), key
        assert ratio[key] == pytest.approx(weak[key] / oracle[key], rel=1e-12)
    assert results["command"].endswith(f"--oracle-labels {gt}")
    table = (out / "results.md").read_text()
    mean, std = oracle["frame_auc_micro"], results["summary"]["oracle"]["std"]["frame_auc_micro"]
    assert f"| oracle | 2 | {mean:.4f} ± {std:.4f} |" in table
    assert f"| proximity / oracle | | {ratio['frame_auc_micro']:.3f} |" in table
    assert "random / oracle" not in table
    assert RATIO_NOTE in table


def test_metric_ratio_direction_and_undefined_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    assert metric_ratio(0.6, 0.8, "tiou") == pytest.approx(0.75)
    assert metric_ratio(None, 0.8, "tiou") is None and metric_ratio(0.6, 0.0, "tiou") is None
    monkeypatch.setitem(METRICS, "seconds_late",
                        MetricSpec("seconds_late", "late", "lower is better", False, lambda scope: None))
    # Lower is better: oracle / weak, so 1 is still the oracle's level and the weak method scores below.
    assert metric_ratio(4.0, 1.0, "seconds_late") == pytest.approx(0.25)
    summary = {"a": {"mean": {"tiou": 0.2}}, "oracle": {"mean": {"tiou": 0.4}}}
    assert oracle_ratios(summary, ["a"], keys=["tiou"]) == {"a/oracle": {"tiou": 0.5}}
    assert oracle_ratios({"a": summary["a"]}, ["a"]) == {}


def test_compare_refuses_the_oracle_without_labels_and_labels_without_the_oracle(toy_oracle, tmp_path: Path,
                                                                                  capsys) -> None:
    data, feats, gt = toy_oracle
    base = ["compare", "--data", str(data), "--features", str(feats), "--out", str(tmp_path / "o")]
    assert main(base + ["--methods", "proximity", "oracle"]) == 2
    assert "give --oracle-labels DIR" in capsys.readouterr().err
    assert main(base + ["--methods", "proximity", "--oracle-labels", str(gt)]) == 2
    assert "add oracle to --methods" in capsys.readouterr().err
    assert main(base + ["--methods", "oracle", "--oracle-labels", str(tmp_path / "nope")]) == 2
    assert "oracle label folder not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()                 # refused before anything was written
    # The default method list holds the oracle only when its labels are given.
    assert "oracle" not in check_methods(None, None) and "oracle" in check_methods(None, gt)


def test_seeds_above_the_motion_floor_are_counted_per_score() -> None:
    """Hand-made runs: a seed counts only when strictly above the floor's score; no floor, no count."""
    floor = {"frame_auc_micro": 0.6, "tiou": 0.05, "rbdc": 0.1}
    results = {"runs": {
        "motion_floor_s0": floor,
        "proximity_s0": {"frame_auc_micro": 0.7, "tiou": 0.05, "rbdc": 0.3},     # TIoU equal: not above
        "proximity_s1": {"frame_auc_micro": 0.5, "tiou": 0.08, "rbdc": 0.2},
        "plain_topk_s0": {"frame_auc_micro": 0.61, "tiou": None, "rbdc": 0.0},
        "random_s0": {"frame_auc_micro": 0.9, "tiou": 0.9, "rbdc": 0.9},         # untrained: not counted
    }}
    above = seeds_above_floor(results, ["proximity", "plain_topk", "random", "motion_floor"])
    assert above == {"proximity": {"frame_auc_micro": [1, 2], "tiou": [1, 2], "rbdc": [2, 2]},
                     "plain_topk": {"frame_auc_micro": [1, 1], "tiou": [0, 1], "rbdc": [0, 1]}}
    line = format_above_floor(above)
    assert "proximity 1/2, 1/2, 2/2; plain_topk 1/1, 0/1, 0/1." in line
    del results["runs"]["motion_floor_s0"]
    assert seeds_above_floor(results, ["proximity"]) == {} and format_above_floor({}) == ""
