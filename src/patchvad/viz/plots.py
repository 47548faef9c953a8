"""Figures for the report, as PNG / JPEG bytes.

Matplotlib through its object API only (``Figure`` + Agg canvas): no pyplot state,
no display, safe to call from any thread. Every function takes plain arrays and
returns encoded image bytes; :mod:`patchvad.viz.report` embeds them as data URIs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# One colour and one label per method, the same on every figure and in the table.
METHOD_STYLE: dict[str, tuple[str, str]] = {
    "proximity": ("#364fc7", "Proximity-aware top-k (ours)"),
    "plain_topk": ("#e8590c", "Plain top-k"),
    "video_mil": ("#862e9c", "Video-level MIL"),
    "motion": ("#0b7285", "Motion floor (no training)"),
    "motion_floor": ("#0b7285", "Motion floor (no training)"),
    "normal_memory": ("#c2255c", "Normal memory (no training)"),
    "random": ("#868e96", "Random"),
    "oracle": ("#2f9e44", "Supervised oracle (upper bound)"),
}
_EXTRA_COLORS = ("#2b8a3e", "#c2255c", "#5f3dc4", "#a61e4d", "#e67700", "#1864ab")
GT_SHADE = "#ff6b6b"
EVENT_SHADE = "#f59f00"   # events found on footage (no ground truth there)


def method_color(name: str, index: int = 0) -> str:
    """The colour of a method (known ones fixed, others from a small palette)."""
    if name in METHOD_STYLE:
        return METHOD_STYLE[name][0]
    return _EXTRA_COLORS[index % len(_EXTRA_COLORS)]


def method_label(name: str) -> str:
    """The human name of a method (``proximity`` -> "Proximity-aware top-k (ours)")."""
    return METHOD_STYLE[name][1] if name in METHOD_STYLE else name


def method_order(names: Sequence[str]) -> list[str]:
    """Known methods first in a fixed order (ours first), then the rest as given, random, the oracle last."""
    known = [m for m in ("proximity", "plain_topk", "video_mil", "motion", "motion_floor") if m in names]
    last = [m for m in ("random", "oracle") if m in names]
    return known + [m for m in names if m not in known and m not in last] + last


@dataclass(frozen=True)
class Series:
    """One line of a figure.

    Attributes:
        label: the legend entry.
        x, y: ``(N,)`` the points.
        color: a matplotlib colour.
        width: line width in points.
        dash: a matplotlib line style: a name such as ``"-"`` or ``(offset, (on, off))``.
        step: draw steps (``where="post"``) instead of straight segments.
    """

    label: str
    x: np.ndarray
    y: np.ndarray
    color: str = "#364fc7"
    width: float = 1.6
    dash: str | tuple[int, tuple[int, int]] = "-"
    step: bool = False


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig


def _style(ax) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(True, color="#e9ecef", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=8.5, colors="#495057")
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#adb5bd")


def _png(fig, dpi: int = 150) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def curve_png(series: Sequence[Series], xlabel: str, ylabel: str, title: str = "",
              xlim: tuple[float, float] = (0.0, 1.0), ylim: tuple[float, float] = (0.0, 1.02),
              diagonal: bool = False, size: tuple[float, float] = (4.6, 3.6)) -> bytes:
    """A line chart (ROC, RBDR or TBDR against FPR) as PNG bytes.

    Args:
        series: the curves; a series with fewer than 2 points is listed but not drawn.
        xlabel: x axis label.
        ylabel: y axis label.
        title: chart title ("" for none).
        xlim: x axis range.
        ylim: y axis range.
        diagonal: draw the chance diagonal (ROC).
        size: figure ``(width, height)`` in inches.
    """
    fig = _figure(*size)
    ax = fig.add_subplot()
    _style(ax)
    if diagonal:
        ax.plot([0, 1], [0, 1], color="#ced4da", linewidth=1, linestyle=":", label="chance")
    for s in series:
        x, y = np.asarray(s.x, dtype=float), np.asarray(s.y, dtype=float)
        if x.size < 1:
            ax.plot([], [], color=s.color, label=f"{s.label} (no curve)")
            continue
        if s.step:
            ax.step(x, y, where="post", color=s.color, linewidth=s.width, linestyle=s.dash, label=s.label)
        else:
            ax.plot(x, y, color=s.color, linewidth=s.width, linestyle=s.dash, label=s.label)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel, fontsize=9.5, color="#343a40")
    ax.set_ylabel(ylabel, fontsize=9.5, color="#343a40")
    if title:
        ax.set_title(title, fontsize=10.5, color="#212529", loc="left")
    if series:
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=7.5, frameon=False, loc="outside lower center", ncols=1)
    return _png(fig)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` index runs where ``mask`` is true."""
    m = np.asarray(mask).astype(bool).astype(np.int8)
    edges = np.diff(np.r_[0, m, 0])
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def timeline_png(series: Sequence[Series], gt_labels: np.ndarray | None, thresholds: Sequence[tuple[float, str]] = (),
                 title: str = "", fps: float | None = None, size: tuple[float, float] = (6.4, 2.0),
                 legend: bool = False, *, spans: Sequence[tuple[float, float]] = (), span_color: str = EVENT_SHADE,
                 x_end: float | None = None) -> bytes:
    """Per-frame scores of one video with its ground-truth anomalous frames shaded.

    Args:
        series: score curves; ``x`` are frame indices.
        gt_labels: ``(F,)`` 0/1, shaded red where 1; None for none.
        thresholds: ``(value, colour)`` dashed horizontal lines.
        title: chart title ("" for none).
        fps: when given, the x axis reads in seconds (``x / fps``; 1.0 for ``x`` already in
            seconds).
        size: figure ``(width, height)`` in inches.
        legend: draw a legend in the plot (the report draws one for all timelines instead).
        spans: ``(start, end)`` ranges in the axis' own units (seconds with ``fps``): the
            events of a prediction on footage.
        span_color: the colour ``spans`` are shaded in.
        x_end: the right end of the x axis in its own units (default: the frame count,
            divided by ``fps`` when given).
    """
    fig = _figure(*size)
    ax = fig.add_subplot()
    _style(ax)
    div = float(fps) if fps else 1.0
    n = 0
    if gt_labels is not None:
        n = len(gt_labels)
        for i, (a, b) in enumerate(_runs(gt_labels)):
            ax.axvspan(a / div, b / div, color=GT_SHADE, alpha=0.22, linewidth=0,
                       label="ground truth" if i == 0 else None)
    for i, (start, stop) in enumerate(spans):
        ax.axvspan(start, stop, color=span_color, alpha=0.25, linewidth=0, label="event" if i == 0 else None)
    lo, hi = 0.0, 1.0
    for s in series:
        y = np.asarray(s.y, dtype=float)
        x = np.asarray(s.x, dtype=float) / div
        n = max(n, y.size)
        if y.size:
            lo, hi = min(lo, float(y.min())), max(hi, float(y.max()))
        ax.plot(x, y, color=s.color, linewidth=s.width, linestyle=s.dash, label=s.label)
    for value, color in thresholds:
        ax.axhline(value, color=color, linewidth=0.9, linestyle=(0, (4, 3)), alpha=0.8)
    pad = 0.04 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlim(0, max(n, 1) / div if x_end is None else float(x_end))
    ax.set_xlabel("seconds" if fps else "frame", fontsize=8.5, color="#495057")
    ax.set_ylabel("score", fontsize=8.5, color="#495057")
    if title:
        ax.set_title(title, fontsize=9.5, color="#212529", loc="left")
    if legend:
        ax.legend(fontsize=7, frameon=False, loc="upper left", ncols=4)
    return _png(fig, dpi=130)


def encode_image(img: np.ndarray, fmt: str = "jpeg", quality: int = 86) -> bytes:
    """An ``(H, W, 3)`` uint8 RGB image as JPEG or PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    pil = Image.fromarray(np.ascontiguousarray(img))
    if fmt.lower() in ("jpg", "jpeg"):
        pil.save(buf, format="JPEG", quality=quality, optimize=True)
    else:
        pil.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


__all__ = ["METHOD_STYLE", "Series", "curve_png", "encode_image", "method_color", "method_label", "method_order",
           "timeline_png"]
