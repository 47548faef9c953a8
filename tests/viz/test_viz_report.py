"""The HTML report: the numbers are exactly the metrics dict's, the page is self-contained."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from patchvad.io.video import VideoReader, write_video
from patchvad.metrics.ratios import RATIO_NOTE, oracle_ratios
from patchvad.metrics.table import table_metrics
from patchvad.viz import GalleryItem, MethodCurves, OverlayVideo, Timeline, summarize_runs, verdict, write_report
from patchvad.viz.report import results_table

from .helpers import square_frames


class Cells(HTMLParser):
    """Collects the ``td`` cells of ``table#<id>`` with their attributes and text."""

    def __init__(self, table_id: str):
        super().__init__()
        self.table_id = table_id
        self.depth = 0
        self.row: dict | None = None
        self.cell: dict | None = None
        self.cells: list[dict] = []
        self.tags: list[tuple[str, dict]] = []
        self.bold = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table" and a.get("id") == self.table_id:
            self.depth = 1
        elif self.depth and tag == "tr":
            self.row = a
        elif self.depth and tag == "td":
            self.cell = {"attrs": a, "text": "", "row": self.row, "bold": False}
        elif self.cell is not None and tag == "strong":
            self.cell["bold"] = True

    def handle_endtag(self, tag):
        if self.depth and tag == "td" and self.cell is not None:
            self.cells.append(self.cell)
            self.cell = None
        elif self.depth and tag == "table":
            self.depth = 0

    def handle_data(self, data):
        if self.cell is not None:
            self.cell["text"] += data


def parse(page: str, table_id: str = "results") -> Cells:
    p = Cells(table_id)
    p.feed(page)
    return p


def results(values: dict[str, dict[str, list[float | None]]]) -> dict:
    """``{method: {metric: [seed values]}}`` -> summary."""
    runs = {}
    for m, by_metric in values.items():
        n = len(next(iter(by_metric.values())))
        runs[m] = {str(s): {k: v[s] for k, v in by_metric.items()} for s in range(n)}
    return summarize_runs(runs)


def test_summarize_runs_mean_std_and_nulls() -> None:
    s = summarize_runs({"a": {0: {"tiou": 0.1, "rbdc": None}, 1: {"tiou": 0.3, "rbdc": 0.5}, 2: {"tiou": 0.2}}})
    a = s["methods"]["a"]
    assert a["mean"]["tiou"] == pytest.approx(0.2) and a["std"]["tiou"] == pytest.approx(0.1)
    assert a["mean"]["rbdc"] == 0.5 and a["std"]["rbdc"] == 0.0 and a["n"]["rbdc"] == 1
    assert a["mean"]["pauc"] is None and a["std"]["pauc"] is None and a["n"]["pauc"] == 0
    assert set(a["seeds"]) == {"0", "1", "2"}
    json.dumps(s, allow_nan=False)


def test_verdict_is_computed_from_the_numbers() -> None:
    m = results({"proximity": {"tiou": [0.30, 0.32, 0.34], "rbdc": [0.20, 0.22, 0.24]},
                 "plain_topk": {"tiou": [0.10, 0.12, 0.14], "rbdc": [0.21, 0.23, 0.25]}})
    v = verdict(m)
    assert v.status == "mixed"
    assert "beats plain top-k on TIoU but not on RBDC" in v.text
    assert "0.320 ± 0.020 vs 0.120 ± 0.020" in v.text and "3 seeds" in v.text
    assert "larger than the seed spread" in v.text and "not conclusive" in v.text
    assert v.details["rbdc"]["diff"] == pytest.approx(-0.01) and not v.details["rbdc"]["clear"]
    # Other numbers, other sentence.
    m2 = results({"proximity": {"tiou": [0.5, 0.6], "rbdc": [0.5, 0.6]},
                  "plain_topk": {"tiou": [0.1, 0.2], "rbdc": [0.1, 0.2]}, "motion": {"tiou": [0.9, 0.9],
                                                                                    "rbdc": [0.1, 0.1]}})
    v2 = verdict(m2)
    assert v2.status == "wins" and "beats plain top-k on TIoU and RBDC" in v2.text and "2 seeds" in v2.text
    assert "motion floor" in v2.text and "not above it on TIoU (0.550 vs 0.900)" in v2.text
    m3 = results({"proximity": {"tiou": [0.1], "rbdc": [0.1]}, "plain_topk": {"tiou": [0.2], "rbdc": [0.1]}})
    assert verdict(m3).status == "loses" and "does not beat" in verdict(m3).text
    assert verdict(results({"proximity": {"tiou": [0.1]}})).status == "missing"


def test_report_table_holds_exactly_the_metrics_values(built_report: dict) -> None:
    page = built_report["page"].read_text()
    metrics = built_report["metrics"]
    cells = parse(page).cells
    methods = metrics["methods"]
    seen = set()
    for c in cells:
        a = c["attrs"]
        if "data-mean" not in a:
            continue
        m, k = c["row"]["data-method"], a["data-metric"]
        mean, std = methods[m]["mean"][k], methods[m]["std"][k]
        assert float(a["data-mean"]) == mean and a["data-mean"] == repr(mean)
        assert float(a["data-std"]) == std
        assert c["text"].strip() == f"{mean:.3f} ± {std:.3f}"
        seen.add((m, k))
    expected = {(m, spec.key) for m in methods for spec in table_metrics() if methods[m]["mean"][spec.key] is not None}
    assert seen == expected
    # Best mean of each column is bold, and only it.
    for k in (spec.key for spec in table_metrics()):
        col = [c for c in cells if c["attrs"].get("data-metric") == k and "data-mean" in c["attrs"]]
        if not col:
            continue
        top = max(float(c["attrs"]["data-mean"]) for c in col)
        assert all(c["bold"] == (float(c["attrs"]["data-mean"]) == top) for c in col), k
    # The page carries the metrics dict itself, unchanged.
    blob = re.search(r'<script type="application/json" id="patchvad-metrics">(.*?)</script>', page, re.S).group(1)
    assert json.loads(blob.replace("<\\/", "</")) == json.loads(json.dumps(metrics))
    # Rows in report order, the ceiling row last.
    rows = [t[1].get("data-method") for t in parse(page).tags if t[0] == "tr" and "data-method" in t[1]]
    assert rows[:4] == ["proximity", "plain_topk", "motion", "random"]
    assert 'class="ceiling"' in page
    assert f'id="verdict" class="verdict {verdict(metrics).status}"' in page
    assert verdict(metrics).text.replace("'", "&#x27;") in page


def test_results_table_shows_the_oracle_apart_and_the_ratio_rows() -> None:
    m = results({"proximity": {"tiou": [0.2, 0.4], "rbdc": [0.3, 0.3]},
                 "random": {"tiou": [0.0, 0.0], "rbdc": [0.0, 0.0]},
                 "oracle": {"tiou": [0.5, 0.7], "rbdc": [0.6, 0.6]}})
    m["metrics"] = ["tiou", "rbdc"]
    m["ratios"] = oracle_ratios(m["methods"], ["proximity"])
    assert m["ratios"] == {"proximity/oracle": {"frame_auc_micro": None, "frame_auc_macro": None, "frame_ap": None,
                                                "tiou": pytest.approx(0.5), "rbdc": pytest.approx(0.5),
                                                "tbdc": None, "pauc": None, "pap": None}}
    page = results_table(m)
    cells = parse(page).cells
    # The oracle is the last method row, and not "best" although its means are the highest.
    rows = re.findall(r'<tr data-method="([^"]+)"', page)
    assert rows == ["proximity", "random", "oracle"] and 'data-method="oracle" data-role="upper-bound"' in page
    bold = {(c["row"]["data-method"], c["attrs"]["data-metric"]) for c in cells if c["bold"]}
    assert bold == {("proximity", "tiou"), ("proximity", "rbdc")}
    ratio = re.search(r'<tr class="ratio" data-ratio="proximity/oracle">(.*?)</tr>', page).group(1)
    assert f'data-metric="tiou" data-value="{m["ratios"]["proximity/oracle"]["tiou"]!r}"' in ratio
    assert ">0.500</td>" in ratio and "Proximity-aware top-k (ours) / oracle" in ratio
    assert RATIO_NOTE in page.replace("&#x27;", "'")
    del m["ratios"]
    assert 'class="ratio' not in results_table(m)


def test_report_is_self_contained(built_report: dict) -> None:
    page = built_report["page"].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script src" not in page and 'rel="stylesheet"' not in page and "@import" not in page
    assert not re.search(r"url\((?!data:)", page)
    srcs = re.findall(r'<img[^>]* src="([^"]+)"', page)
    assert srcs and all(s.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for s in srcs)
    videos = re.findall(r'<video[^>]* src="([^"]+)"', page)
    assert videos == ["overlays/test_00.mp4"]
    out = built_report["out"]
    reader = VideoReader(out / videos[0])
    assert reader.read_all().shape[0] == 32
    for section in ("results", "curves", "timelines", "gallery", "overlays", "ablation-section", "help"):
        assert f'id="{section}"' in page, section
    assert 'href="metrics.json"' in page
    assert len(re.findall(r"<figure>", page)) == 3 + 3 + 3 + 1  # curves, timelines, gallery, video


def test_ablation_table_marks_default_and_best(built_report: dict) -> None:
    page = built_report["page"].read_text()
    p = parse(page, "ablation")
    rows = [(t[1]["data-factor"], t[1]["data-setting"]) for t in p.tags if t[0] == "tr" and "data-factor" in t[1]]
    assert rows == [("selection", "gauss"), ("selection", "plain"), ("k", "2"), ("k", "4")]
    assert page.count('<span class="tag">default</span>') == 2
    abl = built_report["ablation"]["factors"]
    for c in p.cells:
        a = c["attrs"]
        if "data-mean" in a:
            setting = c["row"]["data-setting"]
            mean = abl[c["row"]["data-factor"]][setting]["mean"][a["data-metric"]]
            assert a["data-mean"] == repr(mean)


def test_write_report_from_explicit_inputs(tmp_path: Path) -> None:
    metrics = results({"proximity": {"tiou": [0.3, 0.4], "frame_auc_micro": [0.7, 0.8]},
                       "plain_topk": {"tiou": [0.2, 0.2], "frame_auc_micro": [0.9, 0.8]}})
    metrics["metrics"] = ["frame_auc_micro", "tiou"]
    frames, boxes = square_frames(12)
    video = tmp_path / "elsewhere" / "clip.mp4"
    write_video(video, frames, fps=10)
    curves = {"proximity": MethodCurves(roc_fpr=np.array([0, 0.5, 1]), roc_tpr=np.array([0, 0.8, 1]), seed="0"),
              "plain_topk": MethodCurves(roc_fpr=np.array([0, 1]), roc_tpr=np.array([0, 1]))}
    timelines = [Timeline("clip", np.r_[np.zeros(6), np.ones(6)], {"proximity": np.linspace(0, 1, 12)},
                          {"proximity": 0.5}, fps=10)]
    gallery = [GalleryItem("clip", 7, frames[7], np.eye(4) * 0.9, np.array([[*boxes[7], 0.8]]), boxes[7:8], 0.8,
                           0.5, 1)]
    page = write_report(tmp_path / "site", metrics, curves, timelines, gallery,
                        [OverlayVideo(video, "clip", "a test clip"), video], title="Explicit <inputs>")
    html = page.read_text()
    assert (tmp_path / "site" / "overlays" / "clip.mp4").is_file()
    assert html.count('src="overlays/clip.mp4"') == 2
    assert "<title>Explicit &lt;inputs&gt;</title>" in html
    headers = re.findall(r'<th scope="col" class="num" title="[^"]*">([^<]+)</th>', html)
    assert headers[:2] == ["AUC micro", "TIoU"]
    assert "Ablation" not in html.split("<main")[1].split("How to read")[0]
    with pytest.raises(ValueError, match="methods"):
        write_report(tmp_path / "bad", {"proximity": {}})
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "bad", metrics, overlays=[tmp_path / "missing.mp4"])
