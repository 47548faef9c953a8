"""The supervised oracle: known-answer loss and targets, and isolation of training ground truth."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from toydata import make_toy_dataset

from patchvad.config import RunConfig, TrainConfig
from patchvad.data.folder import GroundTruth
from patchvad.errors import ConfigError
from patchvad.features.snippets import SnippetMap
from patchvad.model.methods import METHODS
from patchvad.model.methods.oracle import balanced_cell_bce
from patchvad.training import fit
from patchvad.training.targets import pool_targets, snippet_cell_targets


def test_balanced_bce_averages_each_class_separately() -> None:
    s = torch.full((1, 2, 2, 2), 0.5)
    s[0, 0, 0, 0] = 0.8                                     # the one positive cell
    s[0, 1] = 0.9                                           # padding: must not count
    y = torch.zeros_like(s)
    y[0, 0, 0, 0] = 1.0
    mask = torch.tensor([[True, False]])
    loss, terms = balanced_cell_bce(s, y, mask)
    assert terms["pos"] == pytest.approx(-math.log(0.8))
    assert terms["neg"] == pytest.approx(-math.log(0.5))     # the 3 real negatives are all 0.5
    assert float(loss) == pytest.approx(-math.log(0.8) - math.log(0.5))


def test_balanced_bce_without_positives_is_the_negative_term() -> None:
    s = torch.full((2, 3, 2, 2), 0.2)
    loss, terms = balanced_cell_bce(s, torch.zeros_like(s), torch.ones(2, 3, dtype=torch.bool))
    assert terms["pos"] == 0.0
    assert float(loss) == pytest.approx(-math.log(0.8))


def test_snippet_targets_take_any_frame_of_the_snippet() -> None:
    # 10 frames of 40 x 20 (W x H), snippets of 4 frames -> starts 0, 4, 8 (the last has 2 real frames).
    # One box covering the top-left cell of a 2 x 2 grid (20 x 10 px each) in frame 5 only.
    gt = GroundTruth(frame_labels=np.zeros(10, np.uint8), regions=np.array([[0, 5, 0, 0, 19, 9]]), width=40,
                     height=20)
    y = snippet_cell_targets(gt, SnippetMap.build(10, 4), (2, 2))
    assert y.shape == (3, 2, 2)
    expected = np.zeros((3, 2, 2), np.float32)
    expected[1, 0, 0] = 1.0
    np.testing.assert_array_equal(y, expected)


def test_pooled_targets_are_positive_when_any_pooled_snippet_is() -> None:
    y = torch.zeros(6, 1, 1)
    y[4] = 1.0
    pooled = pool_targets(y, 3)                             # segments [0,2) [2,4) [4,6)
    assert pooled.flatten().tolist() == [0.0, 0.0, 1.0]
    assert pool_targets(y, 8) is y                          # shorter sequences are kept


# --- end to end and isolation ---------------------------------------------------------------

SRC = Path(__file__).resolve().parents[2] / "src" / "patchvad"


@pytest.fixture(scope="module")
def toy_with_oracle(tmp_path_factory):
    d = tmp_path_factory.mktemp("oracle")
    make_toy_dataset(d / "data", d / "feats", n_train=24, n_test=4, seed=5, oracle_dir=d / "oracle")
    return d


def _cfg(steps: int) -> RunConfig:
    return RunConfig(train=TrainConfig(steps=steps, batch_size=8, eval_every=10, log_every=10, threads=1))


def test_oracle_learns_the_cells_from_its_labels(toy_with_oracle) -> None:
    d = toy_with_oracle
    res = fit(d / "data", d / "feats", d / "run", method="oracle", config=_cfg(40), log=None,
              oracle_labels=d / "oracle")
    assert res.method == "oracle" and res.checkpoint.is_file()
    train = [json.loads(line) for line in (d / "run" / "train_log.jsonl").read_text().splitlines()
             if json.loads(line).get("kind") == "train"]
    assert {"pos", "neg", "total"} <= set(train[0])
    assert train[-1]["pos"] < train[0]["pos"]              # the positive cells' loss falls


@pytest.mark.parametrize("method", ["proximity", "plain_topk", "video_mil", "sultani", "motion_floor", "random"])
def test_weak_methods_refuse_training_ground_truth(toy_with_oracle, method: str) -> None:
    d = toy_with_oracle
    with pytest.raises(ConfigError, match="never reads training ground truth"):
        fit(d / "data", d / "feats", d / f"refused_{method}", method=method, config=_cfg(1), log=None,
            oracle_labels=d / "oracle")


def test_oracle_without_labels_is_refused(toy_with_oracle) -> None:
    d = toy_with_oracle
    with pytest.raises(ConfigError, match="--oracle-labels"):
        fit(d / "data", d / "feats", d / "no_labels", method="oracle", config=_cfg(1), log=None)


def test_only_cell_target_methods_exist_that_read_ground_truth() -> None:
    assert [name for name, m in METHODS.items() if m.needs_cell_targets] == ["oracle"]


def test_weak_fit_never_opens_the_oracle_folder(toy_with_oracle, monkeypatch) -> None:
    import patchvad.training.targets as targets

    def forbidden(*_args, **_kwargs):
        raise AssertionError("a weak method read training ground truth")

    monkeypatch.setattr(targets, "read_oracle_labels", forbidden)
    monkeypatch.setattr(targets, "oracle_targets", forbidden)
    d = toy_with_oracle
    res = fit(d / "data", d / "feats", d / "weak", method="proximity", config=_cfg(10), log=None)
    assert res.checkpoint.is_file()


def test_training_ground_truth_is_read_in_one_place() -> None:
    """Only training/targets.py may call read_oracle_labels (data/folder.py defines it and calls it nowhere)."""
    users = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        if "read_oracle_labels" in names:
            users.append(path.relative_to(SRC).as_posix())
    assert sorted(users) == ["training/targets.py"]
