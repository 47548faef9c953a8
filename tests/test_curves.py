"""Learning curves: the nested training subset, the training-curve figure and ``patchvad curves`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import load_toydata

from patchvad.cli import main
from patchvad.config import RunConfig, TrainConfig
from patchvad.curves import PANELS
from patchvad.data.folder import VideoEntry
from patchvad.errors import ConfigError
from patchvad.training.data import SUBSET_STREAM, subset_train
from patchvad.viz.training import mean_val_curves, training_curves_png, val_history


def _entries(labels: list[int]) -> list[VideoEntry]:
    return [VideoEntry(video=f"videos/train/v{i:02d}.mp4", path=Path(f"v{i:02d}.mp4"), split="train", label=lab,
                       stem=f"v{i:02d}") for i, lab in enumerate(labels)]


# --- train.train_videos: a nested, label-stratified subset ---------------------------------------


def test_subset_is_nested_stratified_and_seeded() -> None:
    entries = _entries([0, 0, 1] * 5)                       # 10 normal, 5 anomalous, interleaved
    stems = [e.stem for e in entries]
    normal = [e.stem for e in entries if e.label == 0]
    anomalous = [e.stem for e in entries if e.label == 1]
    # Known answer: the first round(n * 10/15) of the seeded permutation of the normal videos,
    # the first n - that of the anomalous ones' (drawn second), in dataset order.
    rng = np.random.default_rng([SUBSET_STREAM, 7])
    p0, p1 = rng.permutation(10), rng.permutation(5)
    previous: set[str] = set()
    for n in range(1, 16):
        got = subset_train(entries, n, seed=7)
        n0 = round(n * 10 / 15)
        want = {normal[i] for i in p0[:n0]} | {anomalous[i] for i in p1[:n - n0]}
        assert {e.stem for e in got} == want and len(got) == n
        assert [e.stem for e in got] == [s for s in stems if s in want]      # dataset order kept
        assert previous <= want                                             # nested: n is inside n + 1
        previous = want
    six = subset_train(entries, 6, seed=7)
    assert sum(e.label == 0 for e in six) == 4 and sum(e.label == 1 for e in six) == 2   # 2:1 as in the data
    assert subset_train(entries, 6, seed=7) == six                          # deterministic
    assert any(subset_train(entries, 6, seed=s) != six for s in range(8))   # the seed matters
    assert subset_train(entries, 0, seed=7) == entries                      # 0: every video
    assert subset_train(entries, 15, seed=7) == entries
    with pytest.raises(ConfigError, match=r"train.train_videos = 16 but the dataset holds 15 training videos"):
        subset_train(entries, 16, seed=7)


def test_train_videos_is_configuration() -> None:
    cfg = RunConfig.from_yaml("train:\n  train_videos: 40\n")
    assert cfg.train.train_videos == 40 and RunConfig.from_yaml(cfg.to_yaml()) == cfg
    assert RunConfig().train.train_videos == 0
    with pytest.raises(ConfigError, match=r"train.train_videos = -1 is out of range"):
        RunConfig(train=TrainConfig(train_videos=-1)).validate()


# --- training curves from train_log.jsonl ------------------------------------------------------------


def _log(run: Path, records: list[dict], garbage: bool = False) -> None:
    run.mkdir(parents=True)
    lines = [json.dumps(r) for r in records] + (["{cut"] if garbage else [])
    (run / "train_log.jsonl").write_text("\n".join(lines) + "\n")


def test_val_history_and_mean_curves_known_answer(tmp_path: Path) -> None:
    _log(tmp_path / "a", [{"kind": "val", "step": 0, "val_auc": 0.5, "val_loss": 2.0},
                          {"kind": "train", "step": 2, "total": 9.0},
                          {"kind": "val", "step": 2, "val_auc": 0.9, "val_loss": 1.0},
                          {"kind": "val", "step": 2, "val_auc": 0.7, "val_loss": 1.5}], garbage=True)
    _log(tmp_path / "b", [{"kind": "val", "step": 0, "val_auc": 0.6, "val_loss": 3.0},
                          {"kind": "val", "step": 4, "val_auc": None, "val_loss": 0.5}])
    # a step logged twice (a resumed fit) keeps its last record; a cut line is skipped
    assert val_history(tmp_path / "a") == [{"step": 0, "val_auc": 0.5, "val_loss": 2.0},
                                           {"step": 2, "val_auc": 0.7, "val_loss": 1.5}]
    assert val_history(tmp_path / "none") == []
    c = mean_val_curves([tmp_path / "a", tmp_path / "b", tmp_path / "none"])
    assert c is not None and c.runs == 2
    assert c.steps.tolist() == [0, 2, 4]
    np.testing.assert_allclose(c.val_auc, [0.55, 0.7, np.nan])
    np.testing.assert_allclose(c.val_loss, [2.5, 1.5, 0.5])
    assert mean_val_curves([tmp_path / "none"]) is None
    png = training_curves_png({"proximity": [tmp_path / "a", tmp_path / "b"], "motion_floor": [tmp_path / "none"]})
    assert png is not None and png.startswith(b"\x89PNG")
    assert training_curves_png({"motion_floor": [tmp_path / "none"]}) is None


# --- patchvad curves end to end ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("curves")
    load_toydata().make_toy_dataset(base / "data", base / "feats", n_train=20, n_test=6, seed=5, snippets=(6, 8),
                                    oracle_dir=base / "gt")
    return base / "data", base / "feats", base / "gt"


def test_curves_command_end_to_end(toy, tmp_path: Path) -> None:
    data, feats, gt = toy
    fast = RunConfig(train=TrainConfig(steps=4, batch_size=4, eval_every=2, log_every=2, device="cpu", threads=1,
                                       select="last"))
    config = tmp_path / "fast.yaml"
    config.write_text(fast.to_yaml())
    out = tmp_path / "curves"
    methods = ["proximity", "plain_topk", "oracle", "motion_floor"]
    args = ["curves", "--data", str(data), "--features", str(feats), "--out", str(out), "--sizes", "16", "8",
            "--methods", *methods, "--seeds", "0", "1", "--config", str(config), "--oracle-labels", str(gt)]
    assert main(args) == 0
    curves = json.loads((out / "curves.json").read_text())
    assert curves["sizes"] == [8, 16] and curves["methods"] == methods and curves["seeds"] == [0, 1]
    assert set(curves["by_size"]) == {"8", "16"}
    assert "frame_auc_micro" in curves["metrics"] and "val_auc" in curves["metrics"]
    splits = {}
    for n in (8, 16):
        sub = out / f"n{n}"
        assert RunConfig.load(sub / "config.yaml").train.train_videos == n
        results = json.loads((sub / "results.json").read_text())
        assert results["command"] == (f"patchvad compare --data {data} --features {feats} --out {sub} --methods "
                                      f"{' '.join(methods)} --seeds 0 1 --config {sub / 'config.yaml'} "
                                      f"--oracle-labels {gt}")
        entry = curves["by_size"][str(n)]
        assert set(entry["summary"]) == set(methods)
        assert set(entry["ratios"]) == {"proximity/oracle", "plain_topk/oracle"}
        for key in results["runs"]:
            split = json.loads((sub / key / "split.json").read_text())
            # each run was fitted on exactly n training videos (train + validation part)
            assert len(split["train"]) + len(split["val"]) == n == split["train_videos"]
            assert entry["fitted_videos"][key] == n
            splits[(n, key)] = set(split["train"]) | set(split["val"])
        # known answer: curves.json's mean is the mean of the per-run results
        for method in methods:
            runs = [r for k, r in results["runs"].items() if k.rsplit("_s", 1)[0] == method]
            assert len(runs) == (1 if method == "motion_floor" else 2)
            for key in ("frame_auc_micro", "tiou", "rbdc", "pauc"):
                values = [r[key] for r in runs if r[key] is not None]
                want = float(np.mean(values)) if values else None
                got = entry["summary"][method]["mean"][key]
                assert got == pytest.approx(want, abs=1e-12) if want is not None else got is None
        assert (sub / "training_curves.png").read_bytes().startswith(b"\x89PNG")
        assert "![training curves](training_curves.png)" in (sub / "results.md").read_text()
    # the subset does not depend on the training seed, and 8 videos lie inside the 16
    assert splits[(8, "proximity_s0")] == splits[(8, "proximity_s1")] == splits[(8, "oracle_s1")]
    assert splits[(8, "proximity_s0")] < splits[(16, "proximity_s0")]
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG")
    html = (out / "curves.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count("data:image/png;base64,") == 3    # figure + 2 sizes
    md = (out / "curves.md").read_text()
    mean = curves["by_size"]["8"]["summary"]["proximity"]["mean"]["frame_auc_micro"]
    std = curves["by_size"]["8"]["summary"]["proximity"]["std"]["frame_auc_micro"]
    assert "| method | 8 | 16 |" in md and f"| proximity | {mean:.4f} ± {std:.4f} |" in md
    assert "| proximity / oracle |" in md
    assert set(PANELS) <= set(curves["metrics"])
    # A second call reuses every run (nothing fitted again).
    stamp = (out / "n8" / "proximity_s0" / "model.safetensors").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "n8" / "proximity_s0" / "model.safetensors").stat().st_mtime_ns == stamp
    assert json.loads((out / "curves.json").read_text())["by_size"] == curves["by_size"]


def test_curves_refuses_bad_sizes(toy, tmp_path: Path, capsys) -> None:
    data, feats, _ = toy
    base = ["curves", "--data", str(data), "--features", str(feats), "--out", str(tmp_path / "o"),
            "--methods", "motion_floor", "--seeds", "0"]
    assert main(base + ["--sizes", "8", "21"]) == 2
    assert "--sizes 21: the dataset holds 20 training videos" in capsys.readouterr().err
    assert main(base + ["--sizes", "8", "8"]) == 2
    assert "holds a size twice" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
