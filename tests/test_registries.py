"""The three registries from outside the package: a toy method, selection rule and metric.

Registered through ``register_method`` / ``register_selection`` / ``register_metric``
only (no other file knows them), they go through fit -> test -> evaluate -> report and
come out as their definitions say.
"""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_toydata

from patchvad.config import RunConfig
from patchvad.data.folder import DatasetFolder
from patchvad.demo import format_table as demo_table
from patchvad.features.store import FeatureStore
from patchvad.inference import test
from patchvad.metrics import METRICS, MetricSpec, UndefinedMetricError, metric_keys, register_metric
from patchvad.metrics.evaluate import evaluate_folder, format_table
from patchvad.model.methods import METHODS, Method, register_method
from patchvad.model.model import load_model
from patchvad.model.selections import SELECTIONS, Selection, SelectionConfig, SelectionRule, register_selection
from patchvad.model.selections.base import cells_of
from patchvad.predictions import read_prediction
from patchvad.training import fit
from patchvad.viz import build_report, summarize_runs


class WholeMapMean(SelectionRule):
    """Toy rule: the mean of every cell (no peak, no k)."""

    name = "toy_whole_mean"
    needs_peak = False

    def select(self, m: torch.Tensor, cfg: SelectionConfig, peak: tuple[int, int] | None = None) -> Selection:
        gh, gw = m.shape
        every = torch.arange(gh * gw)
        return Selection(score=m.mean(), cells=cells_of(every, gw), weights=torch.ones(gh * gw), peak=None)

    def snippet_scores(self, s: torch.Tensor, cfg: SelectionConfig) -> torch.Tensor:
        return s.mean(dim=(1, 2))


class SquashedFirstChannel(Method):
    """Toy method: patch score = sigmoid of the first encoded channel; nothing trained."""

    name = "toy_first_channel"
    description = "toy: sigmoid of the first encoded channel"
    seeded = False

    def configure(self, cfg: RunConfig) -> RunConfig:
        return dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, window="none", selection=WholeMapMean.name))

    def scores(self, model, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        s = torch.sigmoid(x[..., 0])
        return s if mask is None else s * mask.to(s.dtype).view(*mask.shape, 1, 1)


def score_gap(scope) -> float:
    """Toy metric: mean frame score of anomalous frames minus that of normal frames."""
    labels, scores = scope.frames.concatenated()
    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        raise UndefinedMetricError("needs anomalous and normal frames")
    return float(scores[labels].mean() - scores[~labels].mean())


TOY_METRIC = MetricSpec("toy_score_gap", "score gap", "Mean frame score of anomalous minus normal frames.", True,
                        score_gap)


@pytest.fixture()
def toys():
    """The three toys registered for one test, and removed afterwards."""
    method, rule = SquashedFirstChannel(), WholeMapMean()
    try:
        yield register_method(method), register_selection(rule), register_metric(TOY_METRIC)
    finally:
        METHODS.pop(method.name, None)
        SELECTIONS.pop(rule.name, None)
        METRICS.pop(TOY_METRIC.key, None)


def test_registries_refuse_to_replace() -> None:
    with pytest.raises(ValueError, match="registered already"):
        register_metric(dataclasses.replace(METRICS["tiou"], label="other"))
    with pytest.raises(ValueError, match="registered already"):
        register_selection(type("Other", (WholeMapMean,), {"name": "gauss"})())


def test_toy_method_selection_and_metric_end_to_end(toys, tmp_path: Path) -> None:
    data, feats = tmp_path / "data", tmp_path / "feats"
    load_toydata().make_toy_dataset(data, feats, n_train=12, n_test=6, seed=2, snippets=(6, 8))
    res = fit(data, feats, tmp_path / "run", method=SquashedFirstChannel.name, seed=0, log=None)
    model = load_model(res.checkpoint)
    assert model.config.loss.selection == WholeMapMean.name
    test(res.checkpoint, data, feats, tmp_path / "pred")
    assert json.loads((tmp_path / "pred" / "inference.json").read_text())["selection"]["selection"] == WholeMapMean.name

    store = FeatureStore(feats)
    test_set = DatasetFolder(data, check_files=False).test_set()
    anomalous, normal = [], []
    for entry in test_set:
        pred = read_prediction(tmp_path / "pred", entry.stem)
        with torch.no_grad():
            expected = torch.sigmoid(model.encoder.encode(store.load(entry.stem).x)[..., 0]).numpy()
        # The method's definition: sigmoid of the first encoded channel, every snippet and cell (maps.npy
        # stores float16).
        np.testing.assert_array_equal(pred.maps, expected.astype(np.float16))
        # The rule's definition: a snippet's score is the mean of its whole map; frames take their snippet's.
        snippet_means = expected.mean(axis=(1, 2))
        np.testing.assert_allclose(pred.frame_scores, snippet_means[pred.frame_to_snippet], rtol=0, atol=1e-6)
        labels = test_set.ground_truth(entry).frame_labels.astype(bool)
        anomalous.append(pred.frame_scores[labels])
        normal.append(pred.frame_scores[~labels])
    gap = float(np.concatenate(anomalous).mean() - np.concatenate(normal).mean())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = evaluate_folder(data, tmp_path / "pred")
    assert list(ev)[:len(metric_keys())] == list(metric_keys()) and metric_keys()[-1] == TOY_METRIC.key
    assert ev[TOY_METRIC.key] == pytest.approx(gap, abs=1e-6)
    assert ev["per_class"]["toy"][TOY_METRIC.key] == ev[TOY_METRIC.key]      # one class holds every video
    text = format_table(ev)
    assert "score-gap" in text.splitlines()[1] and f"{ev[TOY_METRIC.key]:.4f}" in text.splitlines()[3]

    metrics = summarize_runs({SquashedFirstChannel.name: {0: ev}})
    assert metrics["methods"][SquashedFirstChannel.name]["mean"][TOY_METRIC.key] == ev[TOY_METRIC.key]
    assert TOY_METRIC.key in demo_table(metrics, methods=(SquashedFirstChannel.name,)).splitlines()[0]
    page = build_report(tmp_path / "report", data, {SquashedFirstChannel.name: tmp_path / "pred"}, metrics,
                        n_timelines=1, n_gallery=0, n_overlays=0).read_text()
    cell = re.search(rf'<td [^>]*data-metric="{TOY_METRIC.key}" data-mean="([^"]+)"', page)
    assert cell is not None and cell.group(1) == repr(ev[TOY_METRIC.key])
    assert f"<dt>{TOY_METRIC.label}</dt><dd>{TOY_METRIC.description}</dd>" in page
