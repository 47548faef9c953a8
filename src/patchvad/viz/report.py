"""The self-contained HTML report (docs/report.md).

One page, ``report.html``: every image is embedded as a base64 data URI, the CSS is
inline, there is no script and no network access; overlay videos are mp4 files in
``overlays/`` beside the page. The results table shows exactly the numbers of the
metrics dict it is given (rounded for display; the full values are in each cell's
``title``/``data-*`` attributes and in the JSON embedded at the end of the page).

Inputs (all documented in docs/report.md):

* ``metrics``: the summary written as ``metrics.json`` (see :func:`summarize_runs`)::

      {"methods": {"<method>": {"seeds": {"<seed>": {<evaluate_folder result>}, ...},
                                "mean": {"<metric>": float | None, ...},
                                "std":  {"<metric>": float | None, ...},
                                "n":    {"<metric>": int, ...}}, ...},
       "spread": "sample standard deviation over seeds (ddof=1)",   # optional
       "ceiling": {"<metric>": float, ...},                          # optional
       "ratios": {"<weak>/oracle": {"<metric>": float | None}},      # optional (metrics/ratios.py)
       "title": str, "dataset": {str: scalar}}                       # optional

* ``curves``: ``{method: MethodCurves}``; ``timelines``: ``[Timeline]``;
  ``gallery``: ``[GalleryItem]``; ``overlays``: ``[OverlayVideo | Path]``;
  ``ablation``: ``{"factors": {factor: {setting: summary}}, "default": {...},
  "metrics": [...]}`` where a summary has ``mean``/``std`` like a method.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from patchvad.io.files import atomic_write_text
from patchvad.metrics.ratios import ORACLE, RATIO_NOTE
from patchvad.metrics.table import METRICS, headline_metrics, metric_label, summary_keys, table_metrics
from patchvad.viz.overlay import auto_scale, draw_overlay, scale_boxes
from patchvad.viz.plots import Series, curve_png, encode_image, method_color, method_label, method_order, timeline_png

DEFAULT_SPREAD = "sample standard deviation over seeds (ddof=1)"
ABLATION_LABELS = {"window": "Temporal window", "selection": "Selection", "k": "k (patches kept)",
                   "sigma": "σ (proximity)", "ln_weight": "L_N weight", "l_n_weight": "L_N weight",
                   "grid": "Grid"}
MOTION_NAMES = ("motion", "motion_floor")


# --- inputs --------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodCurves:
    """The curves of one run (one method, one seed), as the metrics module computes them.

    Attributes:
        roc_fpr, roc_tpr: frame ROC (micro), from :func:`patchvad.metrics.roc_curve`.
        det_fpr, rbdr, tbdr: false positives per frame and region / track detection
            rates, from :class:`patchvad.metrics.DetectionCurves`.
        seed: the seed of this run (a key of ``metrics["methods"][m]["seeds"]``); the
            legend then quotes that run's AUC / RBDC / TBDC from the metrics dict.
        tau: the run's frame-score threshold (Youden-J), if known.
    """

    roc_fpr: np.ndarray | None = None
    roc_tpr: np.ndarray | None = None
    det_fpr: np.ndarray | None = None
    rbdr: np.ndarray | None = None
    tbdr: np.ndarray | None = None
    seed: str | None = None
    tau: float | None = None

    @classmethod
    def from_results(cls, roc: tuple | None = None, detection: Any = None, seed: str | int | None = None,
                     tau: float | None = None) -> "MethodCurves":
        """From ``roc_curve(...)``'s ``(fpr, tpr, thresholds)`` and a ``DetectionCurves``."""
        fpr = tpr = None
        if roc is not None:
            fpr, tpr = np.asarray(roc[0], dtype=float), np.asarray(roc[1], dtype=float)
        d_fpr = rbdr = tbdr = None
        if detection is not None:
            d_fpr, rbdr, tbdr = (np.asarray(getattr(detection, k), dtype=float) for k in ("fpr", "rbdr", "tbdr"))
        return cls(fpr, tpr, d_fpr, rbdr, tbdr, None if seed is None else str(seed), tau)


@dataclass(frozen=True)
class Timeline:
    """Frame scores of one test video, one curve per method.

    Attributes:
        stem: the video's stem.
        frame_labels: ``(F,)`` 0/1 ground truth (shaded).
        scores: ``{method: (F,) frame scores}``.
        thresholds: ``{method: tau}`` drawn dashed (optional).
        fps: frames per second (x axis in seconds when given).
        caption: free text under the figure.
    """

    stem: str
    frame_labels: np.ndarray
    scores: Mapping[str, np.ndarray]
    thresholds: Mapping[str, float] = field(default_factory=dict)
    fps: float | None = None
    caption: str = ""


@dataclass(frozen=True)
class GalleryItem:
    """One test frame with what a method predicted on it.

    Attributes:
        stem, frame_id: which frame (0-based).
        image: ``(H, W, 3)`` uint8 RGB, the frame at its own resolution.
        heatmap: ``(Gh, Gw)`` patch scores in ``[0, 1]`` (the frame's snippet map), or None.
        pred_boxes: ``(N, 4|5)`` rows ``x1, y1, x2, y2[, score]`` in frame pixels (green).
        gt_boxes: ``(M, 4)`` ground-truth boxes in frame pixels (red).
        score: the frame score; threshold: the method's tau; label: 0/1 ground truth.
        method: which method's prediction this is.
    """

    stem: str
    frame_id: int
    image: np.ndarray
    heatmap: np.ndarray | None = None
    pred_boxes: np.ndarray | None = None
    gt_boxes: np.ndarray | None = None
    score: float | None = None
    threshold: float | None = None
    label: int | None = None
    method: str = "proximity"


@dataclass(frozen=True)
class OverlayVideo:
    """An overlay mp4 for the page; copied into ``overlays/`` unless already beside the page."""

    path: Path
    title: str = ""
    caption: str = ""


# --- numbers -------------------------------------------------------------------------


def _finite(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def summarize_runs(runs: Mapping[str, Mapping[Any, Mapping[str, Any]]],
                   keys: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-seed results -> the summary the report (and ``metrics.json``) holds.

    Args:
        runs: ``{method: {seed: result}}`` with ``result`` the dict of
            :func:`patchvad.metrics.evaluate_folder` (or any dict of metric -> number).
        keys: the metrics to summarise (default: the metric table's
            :func:`~patchvad.metrics.table.summary_keys`, scores first).

    Returns:
        ``{"methods": {method: {"seeds": {str(seed): result}, "mean": {k: float|None},
        "std": {k: float|None}, "n": {k: int}}}, "spread": DEFAULT_SPREAD}``. Mean and
        std are over the seeds where the metric is not null; std is the sample standard
        deviation (ddof=1), 0.0 for a single seed; both None when no seed has a value.
    """
    keys = summary_keys() if keys is None else keys
    methods: dict[str, Any] = {}
    for method, seeds in runs.items():
        seed_results = {str(s): dict(r) for s, r in seeds.items()}
        mean: dict[str, float | None] = {}
        std: dict[str, float | None] = {}
        count: dict[str, int] = {}
        for k in keys:
            values = [v for v in (_finite(r.get(k)) for r in seed_results.values()) if v is not None]
            count[k] = len(values)
            if not values:
                mean[k] = std[k] = None
                continue
            arr = np.asarray(values, dtype=np.float64)
            mean[k] = float(arr.mean())
            std[k] = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
        methods[str(method)] = {"seeds": seed_results, "mean": mean, "std": std, "n": count}
    return {"methods": methods, "spread": DEFAULT_SPREAD}


def _methods(metrics: Mapping[str, Any]) -> dict[str, Any]:
    if "methods" not in metrics or not isinstance(metrics["methods"], Mapping):
        raise ValueError("metrics must hold a 'methods' dict ({method: {'mean': {...}, 'std': {...}}}); "
                         "build it with patchvad.viz.summarize_runs")
    return dict(metrics["methods"])


def _stat(summary: Mapping[str, Any] | None, what: str, key: str) -> float | None:
    if not summary:
        return None
    return _finite((summary.get(what) or {}).get(key))


def _n_seeds(summary: Mapping[str, Any]) -> int:
    seeds = summary.get("seeds")
    return len(seeds) if isinstance(seeds, Mapping) else 0


def _fmt(v: float | None, digits: int) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _fmt_ms(mean: float | None, std: float | None, digits: int) -> str:
    if mean is None:
        return "—"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _signed(d: float, digits: int) -> str:
    if d != 0 and abs(d) < 0.5 * 10 ** (-digits):
        return f"{d:+.1e}"
    return f"{d:+.{digits}f}".replace("-", "−")


@dataclass(frozen=True)
class Verdict:
    """The computed comparison of the proximity-aware model with plain top-k.

    Attributes:
        text: the sentence(s) shown on the page (plain text).
        status: ``"wins"`` (beats on every metric), ``"mixed"``, ``"loses"`` or ``"missing"``.
        details: ``{metric: {"ours": (mean, std), "baseline": (mean, std), "diff": d,
            "beats": bool, "clear": bool}}``.
    """

    text: str
    status: str
    details: dict[str, dict[str, Any]]


def verdict(metrics: Mapping[str, Any], ours: str = "proximity", baseline: str = "plain_topk",
            keys: Sequence[str] = ("tiou", "rbdc"), digits: int = 3) -> Verdict:
    """Whether ``ours`` beats ``baseline`` on ``keys`` (mean over seeds), with the spread.

    "Beats" means a higher mean. The difference is called clear when it is larger than
    the sum of the two standard deviations, otherwise it is within the seed-to-seed
    spread. Every number comes from ``metrics``; nothing is assumed.
    """
    methods = _methods(metrics)
    a_sum, b_sum = methods.get(ours), methods.get(baseline)
    names = " and ".join(metric_label(k) for k in keys)
    if a_sum is None or b_sum is None:
        missing = [m for m, s in ((ours, a_sum), (baseline, b_sum)) if s is None]
        return Verdict(f"No verdict on {names}: the results hold no '{', '.join(missing)}' method.", "missing", {})
    n_a, n_b = _n_seeds(a_sum), _n_seeds(b_sum)
    details: dict[str, dict[str, Any]] = {}
    clauses, beats, undefined = [], [], []
    for k in keys:
        label = metric_label(k)
        ma, sa = _stat(a_sum, "mean", k), _stat(a_sum, "std", k)
        mb, sb = _stat(b_sum, "mean", k), _stat(b_sum, "std", k)
        if ma is None or mb is None:
            undefined.append(label)
            continue
        d = ma - mb
        clear = abs(d) > (sa or 0.0) + (sb or 0.0)
        win = d > 0
        details[k] = {"ours": (ma, sa), "baseline": (mb, sb), "diff": d, "beats": win, "clear": clear}
        beats.append((label, win, d == 0))
        how = ("larger than the seed spread" if clear
               else "within the seed-to-seed spread, so not conclusive")
        clauses.append(f"{label} {_fmt_ms(ma, sa, digits)} vs {_fmt_ms(mb, sb, digits)} "
                       f"(difference {_signed(d, digits)}, {how})")
    won = [lab for lab, w, _ in beats if w]
    lost = [lab for lab, w, tie in beats if not w and not tie]
    tied = [lab for lab, _, tie in beats if tie]
    ours_name, base_name = method_label(ours).replace(" (ours)", ""), method_label(baseline)
    if not beats:
        return Verdict(f"No verdict: {names} are not available for both methods.", "missing", details)
    if len(won) == len(beats):
        head = f"The {ours_name.lower()} model beats {base_name.lower()} on {' and '.join(won)}"
        status = "wins"
    elif not won:
        what = " or ".join(lost + tied)
        head = f"The {ours_name.lower()} model does not beat {base_name.lower()} on {what}"
        status = "loses"
    else:
        head = (f"The {ours_name.lower()} model beats {base_name.lower()} on {' and '.join(won)} but not on "
                f"{' and '.join(lost + tied)}")
        status = "mixed"
    seeds = f"{n_a} seeds" if n_a == n_b else f"{n_a} and {n_b} seeds"
    text = f"{head} (mean ± std over {seeds}): " + "; ".join(clauses) + "."
    if undefined:
        text += f" {' and '.join(undefined)}: not available for both methods."
        status = "mixed" if status == "wins" else status
    motion = next((m for m in MOTION_NAMES if m in methods), None)
    if motion is not None:
        higher: list[str] = []
        lower: list[str] = []
        for k in (*keys, "frame_auc_micro"):
            ma, mm = _stat(a_sum, "mean", k), _stat(methods[motion], "mean", k)
            if ma is not None and mm is not None:
                (higher if ma > mm else lower).append(f"{metric_label(k)} ({_fmt(ma, digits)} vs "
                                                       f"{_fmt(mm, digits)})")
        if higher or lower:
            parts = []
            if higher:
                parts.append(f"above it on {', '.join(higher)}")
            if lower:
                parts.append(f"not above it on {', '.join(lower)}")
            text += (f" Against the no-training motion floor, the {ours_name.lower()} model is "
                     f"{' and '.join(parts)}.")
    return Verdict(text, status, details)


# --- HTML pieces ---------------------------------------------------------------------


def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _img(data: bytes, mime: str, alt: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<img{c} src="{_data_uri(data, mime)}" alt="{_e(alt)}">'


def _attr_num(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def _value_cell(summary: Mapping[str, Any] | None, key: str, digits: int, best: bool, bar: bool = True) -> str:
    mean, std = _stat(summary, "mean", key), _stat(summary, "std", key)
    if mean is None:
        return f'<td class="num na" data-metric="{key}">—</td>'
    title = f"mean {mean!r}" + ("" if std is None else f", std {std!r}")
    n = (summary.get("n") or {}).get(key) if summary else None
    if n is not None:
        title += f", {n} seed(s)"
    style = f' style="--p:{max(0.0, min(1.0, mean)) * 100:.1f}%"' if bar else ""
    shown = _e(_fmt(mean, digits)) + ("" if std is None else f'<span class="sd"> ± {_e(_fmt(std, digits))}</span>')
    if best:
        shown = f"<strong>{_e(_fmt(mean, digits))}</strong>" + shown[len(_e(_fmt(mean, digits))):]
    body = shown
    return (f'<td class="num{" bar" if bar else ""}{" best" if best else ""}" data-metric="{key}" '
            f'data-mean="{_attr_num(mean)}" data-std="{_attr_num(std)}" title="{_e(title)}"{style}>{body}</td>')


def _best(summaries: Mapping[str, Mapping[str, Any]], key: str) -> set[str]:
    """The best mean's rows: the highest, or the lowest for a metric where lower is better."""
    values = {m: v for m, s in summaries.items() if (v := _stat(s, "mean", key)) is not None}
    if not values:
        return set()
    spec = METRICS.get(key)
    top = min(values.values()) if spec is not None and spec.higher_is_better is False else max(values.values())
    return {m for m, v in values.items() if v == top}


def _columns(metrics: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(key, header, description)`` of the results columns: ``metrics["metrics"]`` or the table's scores."""
    wanted = metrics.get("metrics") or [spec.key for spec in table_metrics()]
    return [(k, s.label, s.description) if (s := METRICS.get(k)) is not None else (k, k, k) for k in wanted]


def _method_cell(method: str, index: int, n_seeds: int | None = None) -> str:
    seeds = "" if not n_seeds else f' · {n_seeds} seed{"s" if n_seeds != 1 else ""}'
    return (f'<th scope="row" class="method"><span class="dot" style="background:{method_color(method, index)}">'
            f'</span>{_e(method_label(method))}<span class="seeds"><code>{_e(method)}</code>{seeds}</span></th>')


def _ratio_rows(ratios: Mapping[str, Any], cols: list[tuple[str, str, str]], digits: int) -> list[str]:
    """One ``<weak> / oracle`` row per entry of ``metrics["ratios"]``, its numbers as given."""
    rows = []
    for name, row in ratios.items():
        row = row if isinstance(row, Mapping) else {}
        weak, _, ref = str(name).partition("/")
        values = [(k, _finite(row.get(k))) for k, _, _ in cols]
        cells = "".join(f'<td class="num" data-metric="{k}" data-value="{_attr_num(v)}" title="{_attr_num(v)}">'
                        f'{_fmt(v, digits)}</td>' for k, v in values)
        rows.append(f'<tr class="ratio" data-ratio="{_e(name)}"><th scope="row" class="method">'
                    f'{_e(method_label(weak))} / {_e(ref or ORACLE)}<span class="seeds">ratio of means</span></th>'
                    f'{cells}</tr>')
    return rows


def results_table(metrics: Mapping[str, Any], digits: int = 3) -> str:
    """The results table: one row per method, mean ± std per metric, best mean bold.

    The supervised oracle (an upper bound, not a contender) is left out of "best" (its
    row has ``data-role="upper-bound"``); ``metrics["ratios"]`` adds one ``<weak> / oracle`` row each and a footnote.
    """
    methods = _methods(metrics)
    order = method_order(list(methods))
    cols = _columns(metrics)
    head = "".join(f'<th scope="col" class="num" title="{_e(desc)}">{_e(short)}</th>' for _, short, desc in cols)
    rows = []
    contenders = {m: s for m, s in methods.items() if m != ORACLE} or methods
    best = {k: _best(contenders, k) for k, _, _ in cols}
    for i, m in enumerate(order):
        s = methods[m]
        cells = "".join(_value_cell(s, k, digits, m in best[k]) for k, _, _ in cols)
        tag = ' data-role="upper-bound"' if m == ORACLE else ""
        rows.append(f'<tr data-method="{_e(m)}"{tag}>{_method_cell(m, i, _n_seeds(s))}{cells}</tr>')
    ratios = metrics.get("ratios")
    ratios = ratios if isinstance(ratios, Mapping) else {}
    rows += _ratio_rows(ratios, cols, digits)
    ceiling = metrics.get("ceiling")
    if isinstance(ceiling, Mapping) and ceiling:
        cells = "".join(
            f'<td class="num" data-metric="{k}" data-value="{_attr_num(_finite(ceiling.get(k)))}">'
            f'{_fmt(_finite(ceiling.get(k)), digits)}</td>' for k, _, _ in cols)
        rows.append(f'<tr class="ceiling"><th scope="row" class="method">Grid ceiling '
                    f'<span class="seeds">perfect scores on this grid</span></th>{cells}</tr>')
    note = f'<p class="ratio-note">{_e(RATIO_NOTE)}</p>' if ratios else ""
    return (f'<div class="table-wrap"><table id="results" class="results"><thead><tr><th scope="col">Method</th>'
            f'{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>{note}')


def per_seed_table(metrics: Mapping[str, Any], digits: int = 4) -> str:
    """Every seed's numbers (and its TIoU threshold), for the record."""
    methods = _methods(metrics)
    cols = _columns(metrics)
    head = "".join(f'<th scope="col" class="num">{_e(short)}</th>' for _, short, _ in cols)
    rows = []
    for i, m in enumerate(method_order(list(methods))):
        seeds = methods[m].get("seeds") or {}
        for seed, result in seeds.items():
            cells = []
            for k, _, _ in cols:
                v = _finite(result.get(k))
                cells.append(f'<td class="num" data-metric="{k}" data-value="{_attr_num(v)}">{_fmt(v, digits)}</td>')
            tau = _finite(result.get("tiou_threshold"))
            rows.append(f'<tr data-method="{_e(m)}" data-seed="{_e(seed)}">{_method_cell(m, i)}<td>{_e(seed)}</td>'
                        f'{"".join(cells)}<td class="num">{"—" if tau is None else f"{tau:.4g}"}</td></tr>')
    if not rows:
        return ""
    return (f'<details class="seeds-table"><summary>Every seed\'s numbers</summary><div class="table-wrap">'
            f'<table class="results small"><thead><tr><th>Method</th><th>Seed</th>{head}'
            f'<th class="num" title="Youden-J frame-score threshold used by TIoU">τ</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div></details>')


def ablation_table(ablation: Mapping[str, Any], digits: int = 3) -> str:
    """Rows grouped by factor, the default setting marked, the best mean per factor bold."""
    factors = ablation.get("factors")
    if not isinstance(factors, Mapping) or not factors:
        raise ValueError("ablation must hold a 'factors' dict ({factor: {setting: {'mean': ..., 'std': ...}}})")
    keys = list(ablation.get("metrics") or [spec.key for spec in headline_metrics()])
    default = ablation.get("default") or {}
    head = "".join(f'<th scope="col" class="num">{_e(metric_label(k))}</th>' for k in keys)
    body = []
    for factor, settings in factors.items():
        if not isinstance(settings, Mapping) or not settings:
            continue
        best = {k: _best(settings, k) for k in keys}
        for j, (setting, summary) in enumerate(settings.items()):
            is_default = factor in default and str(default[factor]) == str(setting)
            first = (f'<th scope="rowgroup" rowspan="{len(settings)}" class="factor">'
                     f'{_e(ABLATION_LABELS.get(factor, factor))}</th>') if j == 0 else ""
            mark = ' <span class="tag">default</span>' if is_default else ""
            cells = "".join(_value_cell(summary, k, digits, setting in best[k], bar=True) for k in keys)
            cls = ' class="group-start"' if j == 0 else ""
            body.append(f'<tr{cls} data-factor="{_e(factor)}" data-setting="{_e(setting)}">{first}'
                        f'<td class="setting">{_e(setting)}{mark}</td>{cells}</tr>')
    return (f'<div class="table-wrap"><table id="ablation" class="results"><thead><tr><th>Factor</th>'
            f'<th>Setting</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def _legend_value(metrics: Mapping[str, Any], method: str, seed: str | None, key: str) -> str:
    if seed is None:
        return ""
    result = ((_methods(metrics).get(method) or {}).get("seeds") or {}).get(str(seed))
    v = _finite((result or {}).get(key))
    return "" if v is None else f" — {metric_label(key)} {v:.3f}"


def curve_figures(metrics: Mapping[str, Any], curves: Mapping[str, MethodCurves]) -> list[tuple[str, str, bytes]]:
    """``(title, caption, png)`` for the ROC, RBDR and TBDR figures."""
    order = method_order(list(curves))
    roc, rb, tb = [], [], []
    seeds = set()
    for i, m in enumerate(order):
        c = curves[m]
        color = method_color(m, i)
        width = 2.4 if m == "proximity" else 1.5
        dash = (0, (3, 2)) if m == "random" else "-"
        if c.seed is not None:
            seeds.add(c.seed)
        if c.roc_fpr is not None and c.roc_tpr is not None:
            roc.append(Series(method_label(m) + _legend_value(metrics, m, c.seed, "frame_auc_micro"),
                              c.roc_fpr, c.roc_tpr, color, width, dash))
        if c.det_fpr is not None:
            if c.rbdr is not None:
                rb.append(Series(method_label(m) + _legend_value(metrics, m, c.seed, "rbdc"), c.det_fpr, c.rbdr,
                                 color, width, dash, step=True))
            if c.tbdr is not None:
                tb.append(Series(method_label(m) + _legend_value(metrics, m, c.seed, "tbdc"), c.det_fpr, c.tbdr,
                                 color, width, dash, step=True))
    run = f"seed {', '.join(sorted(seeds))}" if seeds else "one run per method"
    figs = []
    if roc:
        figs.append(("Frame ROC (micro)", f"True vs false positive rate over all test frames; {run}.",
                     curve_png(roc, "false positive rate", "true positive rate", diagonal=True)))
    if rb:
        figs.append(("RBDC curve", f"Region detection rate vs false positives per frame (area = RBDC); {run}.",
                     curve_png(rb, "false positives per frame", "region detection rate")))
    if tb:
        figs.append(("TBDC curve", f"Track detection rate vs false positives per frame (area = TBDC); {run}.",
                     curve_png(tb, "false positives per frame", "track detection rate")))
    return figs


def _timeline_legend(timelines: Sequence[Timeline]) -> str:
    names = method_order(list(dict.fromkeys(m for t in timelines for m in t.scores)))
    keys = [f'<span><span class="line" style="background:{method_color(m, i)}"></span>{_e(method_label(m))}</span>'
            for i, m in enumerate(names)]
    keys.append('<span><span class="key" style="background:rgba(255,107,107,.3)"></span>ground truth</span>')
    return f'<div class="legend">{"".join(keys)}</div>'


def timeline_figure(t: Timeline) -> bytes:
    order = method_order(list(t.scores))
    series, thr = [], []
    for i, m in enumerate(order):
        y = np.asarray(t.scores[m], dtype=float)
        color = method_color(m, i)
        series.append(Series(method_label(m), np.arange(y.size), y, color, 1.8 if m == "proximity" else 1.1,
                             (0, (3, 2)) if m == "random" else "-"))
        tau = _finite(t.thresholds.get(m)) if t.thresholds else None
        if tau is not None:
            thr.append((tau, color))
    return timeline_png(series, np.asarray(t.frame_labels), thr, title=t.stem, fps=t.fps)


def gallery_tile(item: GalleryItem) -> bytes:
    """The frame at >= 480 px wide with heatmap, green predicted and red ground-truth boxes, as JPEG."""
    img = np.asarray(item.image, dtype=np.uint8)
    h, w = img.shape[:2]
    s = auto_scale(w)
    if s > 1:
        k = int(s)
        img = np.repeat(np.repeat(img, k, axis=0), k, axis=1)
        sx = sy = float(k)
    else:
        sx = sy = 1.0
    pred = None if item.pred_boxes is None else scale_boxes(np.asarray(item.pred_boxes)[..., :4], sx, sy)
    gt = None if item.gt_boxes is None else scale_boxes(np.asarray(item.gt_boxes)[..., :4], sx, sy)
    heat = None if item.heatmap is None else np.clip(np.asarray(item.heatmap, dtype=np.float32), 0, 1)
    return encode_image(draw_overlay(img, heat, pred, gt), "jpeg")


def _count(boxes: Any) -> int:
    if boxes is None:
        return 0
    b = np.asarray(boxes)
    return 0 if b.size == 0 else int(b.reshape(-1, b.shape[-1]).shape[0])


def _gallery_caption(item: GalleryItem) -> str:
    head = f"<b>{_e(item.stem)}</b> · frame {item.frame_id}"
    if item.label is not None:
        head += (' <span class="tag gt">anomalous frame</span>' if item.label else
                 ' <span class="tag">normal frame</span>')
    parts = []
    score = _finite(item.score)
    tau = _finite(item.threshold)
    if score is not None:
        rel = "" if tau is None else (" ≥ τ " if score >= tau else " < τ ") + f"{tau:.3f}"
        parts.append(f"score {score:.3f}{rel}")
    n_pred, n_gt = _count(item.pred_boxes), _count(item.gt_boxes)
    parts.append(f"{n_pred} predicted, {n_gt} ground-truth box{'es' if n_gt != 1 else ''}")
    return f'{head}<br><span class="sub" title="{_e(method_label(item.method))}">{" · ".join(parts)}</span>'


def _place_overlay(out_dir: Path, video: OverlayVideo) -> str:
    """Return the overlay's path relative to the page, copying it into overlays/ when needed."""
    src = Path(video.path).resolve()
    if not src.is_file():
        raise FileNotFoundError(f"{video.path}: overlay video not found")
    out = out_dir.resolve()
    try:
        rel = src.relative_to(out)
    except ValueError:
        dst = out / "overlays" / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        rel = dst.relative_to(out)
    return "/".join(quote(p) for p in rel.parts)


# --- the page ------------------------------------------------------------------------

CSS = """
:root{--ink:#1f2430;--muted:#5c6370;--line:#e3e6eb;--bg:#f4f5f7;--card:#fff;--accent:#364fc7;--bar:rgba(54,79,199,.11);
--good:#2b8a3e;--warn:#e67700;--bad:#c92a2a}
*{box-sizing:border-box}html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
header.top{background:linear-gradient(120deg,#1b2240,#2f3c7e 60%,#364fc7);color:#fff;padding:34px 0 26px}
.wrap{max-width:1180px;margin:0 auto;padding:0 22px}
header.top h1{margin:0 0 6px;font-size:28px;font-weight:650;letter-spacing:-.01em}
header.top p{margin:0;color:#d0d6f5}
.chips{display:flex;flex-wrap:wrap;gap:8px;margin-top:14px}
.chip{background:rgba(255,255,255,.13);border:1px solid rgba(255,255,255,.2);border-radius:999px;padding:2px 11px;
font-size:13px;color:#eef1ff}
nav.toc{position:sticky;top:0;z-index:5;background:rgba(244,245,247,.93);backdrop-filter:blur(6px);
border-bottom:1px solid var(--line)}
nav.toc .wrap{display:flex;gap:18px;overflow-x:auto;padding-top:9px;padding-bottom:9px;font-size:14px}
nav.toc a{color:var(--muted);text-decoration:none;white-space:nowrap}nav.toc a:hover{color:var(--accent)}
section{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:22px 24px;margin:22px 0;
box-shadow:0 1px 2px rgba(16,24,40,.04)}
h2{margin:0 0 4px;font-size:20px;font-weight:640}
.lead{margin:0 0 16px;color:var(--muted);font-size:14px}
.table-wrap{overflow-x:auto}
table.results{border-collapse:separate;border-spacing:0;width:100%;font-size:14px}
table.results th,table.results td{padding:8px 9px;border-bottom:1px solid var(--line);text-align:left;
vertical-align:middle}
table.results thead th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);
font-weight:600;border-bottom:2px solid var(--line);cursor:help}
table.results .num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.results td.bar{background-image:linear-gradient(90deg,#748ffc var(--p),#edf0f5 var(--p));
background-repeat:no-repeat;background-size:calc(100% - 18px) 3px;background-position:9px calc(100% - 5px)}
table.results .sd{display:block;font-size:11.5px;color:#868e96;font-weight:400;margin-top:-2px}
table.results td.bar{padding-bottom:11px}
table.results td.best strong{color:#111;font-weight:700}
table.results tbody tr:hover td,table.results tbody tr:hover th{background-color:#f8f9fb}
table.results.small{font-size:13px}
th.method{font-weight:560;white-space:nowrap}
th.method code{font-size:11.5px;color:#8a919c;font-weight:400}
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:8px;vertical-align:1px}
.seeds{display:block;font-size:11.5px;color:#8a919c;font-weight:400;margin-left:18px}
tr.ceiling th,tr.ceiling td{color:#8a919c;font-style:italic;background:#fafbfc}
tr.ratio th,tr.ratio td{color:#495057;font-style:italic;background:#f8f9fb}
p.ratio-note{font-size:12.5px;color:var(--muted);margin:6px 0 0}
td.na{color:#adb5bd}
th.factor{font-weight:600;background:#fafbfc}
tr.group-start th,tr.group-start td{border-top:2px solid var(--line)}
.tag{display:inline-block;font-size:11px;border-radius:6px;padding:0 6px;background:#e9ecef;color:#495057;
font-style:normal;vertical-align:1px}
.tag.gt{background:#ffe3e3;color:#c92a2a}
.verdict{border-left:5px solid var(--muted);background:#f8f9fa;padding:14px 18px;border-radius:10px;
font-size:15.5px;margin:0}
.verdict.wins{border-color:var(--good);background:#ebfbee}.verdict.mixed{border-color:var(--warn);
background:#fff4e6}.verdict.loses{border-color:var(--bad);background:#fff5f5}
.grid{display:grid;gap:18px}
.grid.curves{grid-template-columns:repeat(auto-fit,minmax(320px,1fr))}
.grid.timelines{grid-template-columns:repeat(auto-fit,minmax(470px,1fr))}
.grid.gallery{grid-template-columns:repeat(auto-fill,minmax(270px,1fr))}
.grid.videos{grid-template-columns:repeat(auto-fit,minmax(420px,1fr))}
figure{margin:0}figure img,figure video{width:100%;height:auto;display:block;border-radius:8px;
border:1px solid var(--line);background:#fff}
figure video{background:#000}
figcaption{font-size:13px;color:var(--muted);margin-top:6px}
figcaption b{color:var(--ink)}figcaption .sub{color:#868e96}
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;font-size:13px;color:#495057;margin:-6px 0 14px}
.legend .line{display:inline-block;width:20px;height:3px;border-radius:2px;vertical-align:3px;margin-right:6px}
.legend .key{margin-right:6px}
details{margin-top:14px}summary{cursor:pointer;color:var(--accent);font-size:14px}
dl.help{display:grid;grid-template-columns:max-content 1fr;gap:6px 18px;margin:0}
dl.help dt{font-weight:600}dl.help dd{margin:0;color:#343a40}
.key{display:inline-block;width:22px;height:12px;border-radius:2px;vertical-align:-1px;margin-right:6px}
.warnings{font-size:13px;color:#8d5b00}
footer{color:#8a919c;font-size:12.5px;padding:8px 0 40px}
@media (max-width:560px){.grid.timelines,.grid.videos{grid-template-columns:1fr}section{padding:16px}}
"""


def _chips(metrics: Mapping[str, Any]) -> list[str]:
    chips = []
    dataset = metrics.get("dataset")
    if isinstance(dataset, Mapping):
        chips += [f"{k}: {v}" for k, v in dataset.items() if isinstance(v, str | int | float)]
    first = None
    for s in _methods(metrics).values():
        for result in (s.get("seeds") or {}).values():
            first = result
            break
        if first:
            break
    if first:
        if first.get("n_videos") is not None:
            chips.append(f"{first['n_videos']} test videos ({first.get('n_anomalous_videos', '?')} anomalous)")
        if first.get("n_frames") is not None:
            chips.append(f"{first['n_frames']} test frames")
        if first.get("grid"):
            g = first["grid"]
            chips.append(f"grid {g[0]}×{g[1]}")
    seeds = {_n_seeds(s) for s in _methods(metrics).values()} - {0}
    if seeds:
        chips.append(f"{'/'.join(str(n) for n in sorted(seeds))} seeds per method")
    return chips


def _warnings(metrics: Mapping[str, Any]) -> list[str]:
    """Evaluation warnings, each once, with the runs it came from."""
    runs: list[tuple[str, str]] = []
    seen: dict[str, list[tuple[str, str]]] = {}
    for m, s in _methods(metrics).items():
        for seed, result in (s.get("seeds") or {}).items():
            runs.append((m, str(seed)))
            for w in result.get("warnings") or ():
                if (m, str(seed)) not in seen.setdefault(str(w), []):
                    seen[str(w)].append((m, str(seed)))
    out = []
    for w, where in seen.items():
        if len(where) == len(runs):
            out.append(f"{w} (every run)")
            continue
        by_method: dict[str, list[str]] = {}
        for m, seed in where:
            by_method.setdefault(m, []).append(seed)
        listed = "; ".join(f"{m} seed {', '.join(seeds)}" for m, seeds in by_method.items())
        out.append(f"{w} ({listed})")
    return out


def _help_section(spread: str) -> str:
    metric_rows = "".join(f"<dt>{_e(spec.label)}</dt><dd>{_e(spec.description)}</dd>" for spec in table_metrics())
    lower = [spec.label for spec in table_metrics() if spec.higher_is_better is False]
    direction = ("All numbers are higher-is-better." if not lower
                 else f"All numbers are higher-is-better except {', '.join(lower)} (lower is better).")
    return f"""<section id="help"><h2>How to read this page</h2>
<p class="lead">Every learned model but the supervised oracle is trained from video-level labels only (which
videos contain an anomaly); where and when it happens is never shown to it. {_e(direction)}</p>
<dl class="help">
<dt>a ± b</dt><dd>mean ± {_e(spread.split(' over ')[0])} over seeds; the bar behind a number is its mean on a
0–1 scale; bold is the best mean of its column among the weakly supervised methods (or of its factor in the
ablation).</dd>
<dt>weak / oracle</dt><dd>{_e(RATIO_NOTE.split(": ", 1)[1])}</dd>
{metric_rows}
<dt>Methods</dt><dd><b>Proximity-aware top-k</b> (ours): finds the anomalous time window, then keeps the top-k
patches around the peak weighted by their proximity. <b>Plain top-k</b>: the same patch model keeping the top-k
patches anywhere. <b>Video-level MIL</b>: snippet features without patches; its box is the whole frame.
<b>Motion floor</b>: no training, per-cell frame-difference energy — a learned model that does not beat it has
not learned where. <b>Random</b>: the floor of every metric. <b>Supervised oracle</b> (upper bound): the
proximity model's patch scorer trained on the training videos' ground-truth boxes, which no other method
sees.</dd>
<dt>Pictures</dt><dd><span class="key" style="background:#28e650"></span>predicted box
<span class="key" style="background:#ff2828;margin-left:14px"></span>ground-truth box
<span class="key" style="background:linear-gradient(90deg,#000004,#bc3754,#fcffa4);margin-left:14px"></span>
patch score heatmap (shown only where it is notable). In timelines the red band is the ground-truth anomalous
span and dashed lines are each method's threshold τ (Youden-J of the frame ROC, also used by TIoU).
In overlay videos the strip under the frame is the score so far (yellow), the rest of the video (grey), the
threshold (dashed), the ground-truth span (red band) and the current frame (white line).</dd>
</dl></section>"""


def render_report(metrics: Mapping[str, Any], curves: Mapping[str, MethodCurves] | None = None,
                  timelines: Sequence[Timeline] = (), gallery: Sequence[GalleryItem] = (),
                  overlay_srcs: Sequence[tuple[str, OverlayVideo]] = (), ablation: Mapping[str, Any] | None = None,
                  title: str | None = None, digits: int = 3, metrics_href: str | None = None,
                  training_png: bytes | None = None) -> str:
    """The report page as one HTML string (overlay sources already relative to the page).

    ``training_png``: validation AUC and loss against the step
    (:func:`~patchvad.viz.training.training_curves_png`), shown in a "Training" section.
    """
    _methods(metrics)  # validates
    title = title or str(metrics.get("title") or "patchvad results")
    spread = str(metrics.get("spread") or DEFAULT_SPREAD)
    v = verdict(metrics, digits=digits)
    nav = [("results", "Results")]
    parts: list[str] = []

    source = (f' Numbers are those of <a href="{_e(metrics_href)}">{_e(metrics_href)}</a>.'
              if metrics_href else "")
    parts.append(f"""<section id="results-section"><h2>Results</h2>
<p class="lead">Mean ± {_e(spread)}. Hover a column header for what it measures, a number for its full
precision.{source}</p>{results_table(metrics, digits)}
<p id="verdict" class="verdict {v.status}" data-status="{v.status}">{_e(v.text)}</p>
{per_seed_table(metrics)}</section>""")

    figs = curve_figures(metrics, curves) if curves else []
    if figs:
        nav.append(("curves", "Curves"))
        cards = "".join(f'<figure>{_img(png, "image/png", t)}<figcaption><b>{_e(t)}</b> — {_e(c)}</figcaption>'
                        f'</figure>' for t, c, png in figs)
        parts.append(f'<section id="curves"><h2>Curves</h2><p class="lead">Frame-level ROC and the spatial '
                     f'detection curves whose areas are RBDC and TBDC.</p><div class="grid curves">{cards}</div>'
                     f'</section>')
    if training_png is not None:
        nav.append(("training", "Training"))
        parts.append(f'<section id="training"><h2>Training</h2><p class="lead">Validation video AUC and '
                     f'validation loss against the training step, mean over seeds per trained method (the '
                     f'held-out part of the training videos; the checkpoint is chosen on them).</p>'
                     f'<figure>{_img(training_png, "image/png", "training curves")}</figure></section>')
    if timelines:
        nav.append(("timelines", "Timelines"))
        cards = "".join(f'<figure>{_img(timeline_figure(t), "image/png", f"scores of {t.stem}")}'
                        f'{f"<figcaption>{_e(t.caption)}</figcaption>" if t.caption else ""}</figure>'
                        for t in timelines)
        parts.append(f'<section id="timelines"><h2>When: score timelines</h2><p class="lead">Frame scores per '
                     f'test video; the red band is the ground-truth anomalous span, a dashed line a threshold τ.'
                     f'</p>{_timeline_legend(timelines)}<div class="grid timelines">{cards}</div></section>')
    if gallery:
        nav.append(("gallery", "Gallery"))
        cards = "".join(f'<figure>{_img(gallery_tile(g), "image/jpeg", f"{g.stem} frame {g.frame_id}")}'
                        f'<figcaption>{_gallery_caption(g)}</figcaption></figure>' for g in gallery)
        who = ", ".join(method_label(m) for m in dict.fromkeys(g.method for g in gallery))
        parts.append(f'<section id="gallery"><h2>Where: test frames</h2><p class="lead">{_e(who)}: heatmap of '
                     f'patch scores, predicted boxes in green (drawn when they pass τ), ground truth in red.</p>'
                     f'<div class="grid gallery">{cards}</div></section>')
    if overlay_srcs:
        nav.append(("overlays", "Videos"))
        cards = "".join(video_figure(src, o) for src, o in overlay_srcs)
        parts.append(f'<section id="overlays"><h2>Overlay videos</h2><p class="lead">The test video with the '
                     f'heatmap, boxes and the running score drawn on it.</p><div class="grid videos">{cards}</div>'
                     f'</section>')
    if ablation:
        nav.append(("ablation", "Ablation"))
        parts.append(f'<section id="ablation-section"><h2>Ablation</h2><p class="lead">One factor changed at a '
                     f'time from the default; mean ± {_e(spread.split(" over ")[0])} over seeds.</p>'
                     f'{ablation_table(ablation, digits)}</section>')
    notes = _warnings(metrics)
    if notes:
        items = "".join(f"<li>{_e(n)}</li>" for n in notes)
        parts.append(f'<section id="warnings"><h2>Notes from evaluation</h2><details><summary>{len(notes)} '
                     f'note{"s" if len(notes) != 1 else ""}: metrics that are undefined on part of the data, '
                     f'assumptions made</summary><ul class="warnings">{items}</ul></details></section>')
    nav.append(("help", "How to read"))
    parts.append(_help_section(spread))

    return html_page(title, "Where and when anomalies happen, learned from video-level labels only.",
                     _chips(metrics), nav, parts, "The numbers of this page are embedded below as JSON",
                     "patchvad-metrics", metrics)


def video_figure(src: str, video: OverlayVideo) -> str:
    """One overlay video card: the player, its title and caption, and a link to the file.

    ``src`` is the video's path relative to the page (already URL-quoted).
    """
    caption = " — " + _e(video.caption) if video.caption else ""
    return (f'<figure><video controls muted loop playsinline preload="metadata" src="{_e(src)}"></video>'
            f'<figcaption><b>{_e(video.title or Path(video.path).stem)}</b>{caption}'
            f' · <a href="{_e(src)}">{_e(src)}</a></figcaption></figure>')


def html_page(title: str, subtitle: str, chips: Sequence[str], nav: Sequence[tuple[str, str]],
              parts: Sequence[str], data_note: str, data_id: str, data: Any, css: str = CSS) -> str:
    """The page around the sections: head with inline CSS, header, table of contents, footer.

    Args:
        title: the page's title and heading.
        subtitle: the line under the heading.
        chips: short facts shown in the header.
        nav: ``(anchor, label)`` of the sections, in order.
        parts: the sections' HTML.
        data_note: what the footer says about the embedded data (``data``).
        data_id: the id of the inert ``<script type="application/json">`` holding ``data``.
        data: JSON-ready values (numpy scalars and arrays allowed) embedded at the end.
        css: the page's style sheet.
    """
    chip_html = "".join(f'<span class="chip">{_e(c)}</span>' for c in chips)
    toc = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in nav)
    payload = json.dumps(data, sort_keys=False, allow_nan=False, default=_json_default)
    # Inside <script> only "</" and "<!--" could end or change the element.
    payload = payload.replace("</", "<\\/").replace("<!--", "<\\!--")
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{_e(title)}</title>
<link rel="icon" href="data:,">
<style>{css}</style></head>
<body>
<header class="top"><div class="wrap"><h1>{_e(title)}</h1>
<p>{_e(subtitle)}</p>
<div class="chips">{chip_html}</div></div></header>
<nav class="toc"><div class="wrap">{toc}</div></nav>
<main class="wrap">
{"".join(parts)}
</main>
<footer class="wrap">Generated by patchvad on {stamp}. {_e(data_note)}
(<code>#{_e(data_id)}</code>).</footer>
<script type="application/json" id="{_e(data_id)}">{payload}</script>
</body></html>
"""


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_report(out_dir: str | Path, metrics: Mapping[str, Any], curves: Mapping[str, MethodCurves] | None = None,
                 timelines: Sequence[Timeline] = (), gallery: Sequence[GalleryItem] = (),
                 overlays: Sequence[OverlayVideo | str | Path] = (), ablation: Mapping[str, Any] | None = None,
                 *, title: str | None = None, filename: str = "report.html", digits: int = 3,
                 metrics_file: str | None = "metrics.json", training_png: bytes | None = None) -> Path:
    """Write ``out_dir/report.html`` (atomically) and return its path.

    Args:
        out_dir: the folder of the page; overlay videos outside it are copied to
            ``out_dir/overlays/``.
        metrics: the summary dict (module docstring, :func:`summarize_runs`), i.e. the
            content of ``metrics.json``; its numbers are shown as given.
        curves: ``{method: MethodCurves}`` for the ROC / RBDC / TBDC figures.
        timelines: per-video score timelines.
        gallery: gallery frames.
        overlays: overlay mp4s (paths or :class:`OverlayVideo`).
        ablation: the ablation summary or None.
        title: page title (default ``metrics["title"]`` or "patchvad results").
        filename: the page's file name in ``out_dir``.
        digits: decimals shown (the full values are in the page's attributes and JSON).
        metrics_file: a file name in ``out_dir`` to link as the source of the numbers
            when it exists there.
        training_png: the training curves figure (PNG bytes) or None.

    Raises:
        ValueError: ``metrics`` has no ``methods`` dict; a malformed ablation.
        FileNotFoundError: an overlay video does not exist.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    srcs = []
    for o in overlays:
        video = o if isinstance(o, OverlayVideo) else OverlayVideo(Path(o))
        srcs.append((_place_overlay(out, video), video))
    href = metrics_file if metrics_file and (out / metrics_file).is_file() else None
    page = render_report(metrics, curves, timelines, gallery, srcs, ablation, title=title, digits=digits,
                         metrics_href=href, training_png=training_png)
    target = out / filename
    atomic_write_text(target, page)
    return target


__all__ = ["DEFAULT_SPREAD", "GalleryItem", "MethodCurves", "OverlayVideo", "Timeline", "Verdict",
           "ablation_table", "gallery_tile", "render_report", "results_table", "summarize_runs", "verdict",
           "write_report"]
