"""Training curves: validation video AUC and validation loss against the step, per method.

Every fit appends one ``{"kind": "val", "step", "val_auc", "val_loss"}`` record per
validation to ``RUN/train_log.jsonl`` (:mod:`patchvad.training.loop`). This module reads
them back and draws, per method, the mean over its runs (seeds) at each step:

* :func:`val_history`: one run's validation records, one per step;
* :func:`mean_val_curves`: the mean over runs at each step;
* :func:`training_curves_png`: the two-panel figure (validation AUC, validation loss).

``patchvad compare`` writes the figure as ``DIR/training_curves.png`` and ``patchvad
curves`` shows one per training-set size; the demo report can take the same bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from patchvad.viz.plots import _figure, _png, _style, method_color, method_label, method_order

#: the log each fit writes in its RUN folder (patchvad.training.loop.LOG_FILE).
LOG_FILE = "train_log.jsonl"


@dataclass(frozen=True)
class ValCurves:
    """Validation curves of one method, averaged over its runs.

    Attributes:
        steps: ``(S,)`` int, the validated steps (union over runs, ascending).
        val_auc: ``(S,)`` mean validation video AUC at each step over the runs that have
            one there (NaN where none has).
        val_loss: ``(S,)`` mean validation loss, likewise.
        runs: how many runs contributed a log.
    """

    steps: np.ndarray
    val_auc: np.ndarray
    val_loss: np.ndarray
    runs: int


def _finite(v: object) -> float | None:
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def val_history(run_dir: str | Path) -> list[dict]:
    """The validation records of one run: ``[{"step", "val_auc", "val_loss"}]`` by step.

    A step logged twice (a resumed fit) keeps its last record; a run without a log (an
    untrained method) or without validation gives ``[]``. Lines that are not JSON
    objects are skipped (a log cut by a crash).
    """
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        return []
    by_step: dict[int, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("kind") == "val" and isinstance(rec.get("step"), int):
            by_step[rec["step"]] = {"step": rec["step"], "val_auc": _finite(rec.get("val_auc")),
                                    "val_loss": _finite(rec.get("val_loss"))}
    return [by_step[s] for s in sorted(by_step)]


def mean_val_curves(run_dirs: Sequence[str | Path]) -> ValCurves | None:
    """The mean validation AUC and loss over ``run_dirs`` at every logged step; None without any record."""
    histories = [h for h in (val_history(d) for d in run_dirs) if h]
    if not histories:
        return None
    steps = np.array(sorted({r["step"] for h in histories for r in h}), dtype=np.int64)
    index = {int(s): i for i, s in enumerate(steps)}
    means = []
    for key in ("val_auc", "val_loss"):
        total, count = np.zeros(len(steps)), np.zeros(len(steps))
        for h in histories:
            for r in h:
                if r[key] is not None:
                    total[index[r["step"]]] += r[key]
                    count[index[r["step"]]] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            means.append(np.where(count > 0, total / np.maximum(count, 1), np.nan))
    return ValCurves(steps=steps, val_auc=means[0], val_loss=means[1], runs=len(histories))


def training_curves_png(runs: Mapping[str, Sequence[str | Path]], title: str = "",
                        size: tuple[float, float] = (9.0, 3.4)) -> bytes | None:
    """Validation AUC (left) and validation loss (right) against the step, one line per method.

    Args:
        runs: ``{method: [RUN folder of each seed]}``; methods whose runs have no
            validation records (untrained ones) are left out.
        title: a title above the panels ("" for none).
        size: figure ``(width, height)`` in inches.

    Returns:
        PNG bytes, or None when no method has a validation record.
    """
    curves = {m: c for m in method_order(list(runs)) if (c := mean_val_curves(runs[m])) is not None}
    if not curves:
        return None
    fig = _figure(*size)
    axes = fig.subplots(1, 2)
    for ax, key, label in zip(axes, ("val_auc", "val_loss"), ("validation video AUC", "validation loss")):
        _style(ax)
        for i, (method, c) in enumerate(curves.items()):
            y = getattr(c, key)
            ok = np.isfinite(y)
            ax.plot(c.steps[ok], y[ok], color=method_color(method, i), linewidth=1.6, marker="o", markersize=2.5,
                    label=f"{method_label(method)} (mean of {c.runs})")
        ax.set_xlabel("step", fontsize=9.5, color="#343a40")
        ax.set_ylabel(label, fontsize=9.5, color="#343a40")
    if title:
        fig.suptitle(title, fontsize=10.5, color="#212529")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7.5, frameon=False, loc="outside lower center", ncols=2)
    return _png(fig)


__all__ = ["ValCurves", "mean_val_curves", "training_curves_png", "val_history"]
