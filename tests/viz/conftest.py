"""Fixtures of the viz tests: one small report built end to end, shared by the module tests."""

from __future__ import annotations

import json
import warnings

import pytest

from patchvad.metrics import evaluate_folder
from patchvad.viz import build_report, summarize_runs

from .helpers import tiny_dataset_with_predictions

METHODS = {"proximity": 0.9, "plain_topk": 0.6, "motion": 0.4, "random": 0.0}


@pytest.fixture(scope="session")
def built_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A dataset of 3 test videos, 4 methods x 2 "seeds", metrics.json and report.html."""
    root = tmp_path_factory.mktemp("viz_report")
    data, pred_dirs = tiny_dataset_with_predictions(root, METHODS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = {m: evaluate_folder(data, d) for m, d in pred_dirs.items()}
    # Two "seeds": the evaluated run and a copy with shifted numbers, so std > 0.
    runs = {}
    for m, r in one.items():
        shifted = {k: (v * 0.9 if isinstance(v, float) else v) for k, v in r.items()}
        runs[m] = {"0": r, "1": shifted}
    metrics = summarize_runs(runs)
    metrics["ceiling"] = {"tiou": 0.5, "rbdc": 0.75}
    metrics["title"] = "viz test report"
    ablation = {"default": {"selection": "gauss", "k": 4},
                "factors": {"selection": {"gauss": metrics["methods"]["proximity"],
                                          "plain": metrics["methods"]["plain_topk"]},
                            "k": {"2": metrics["methods"]["motion"], "4": metrics["methods"]["proximity"]}}}
    out = root / "out"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps(metrics))
    page = build_report(out, data, pred_dirs, metrics, ablation=ablation, seed="0", n_timelines=3, n_gallery=3,
                        n_overlays=1)
    return {"page": page, "out": out, "metrics": metrics, "data": data, "pred_dirs": pred_dirs,
            "ablation": ablation}
