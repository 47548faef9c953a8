"""The metric table: every metric patchvad reports, one row each.

Each row (:class:`MetricSpec`) names a metric, says how to show it and how evaluation
computes it; the metric itself is a pure function elsewhere in ``metrics/`` (frame.py,
spatial.py, patch.py), reached through the accumulators of one evaluation scope
(:class:`~patchvad.metrics.scope.EvalScope`). Everything that lists metrics iterates
this table: ``evaluate_folder`` (its result keys, in table order), ``patchvad
evaluate``'s printed table, the report's columns and help, the demo's terminal table
and ``patchvad compare``. A new metric = its pure function + one row in ``METRICS``
(or :func:`register_metric` from outside the package).

Two attributes pick subsets, never a second list of names:

* ``in_table``: a score shown in results tables (False for values evaluation reports
  beside the scores, such as the TIoU threshold);
* ``headline``: one of the few scores of compact tables (the demo's ablation, the
  per-class record of ``patchvad compare``, the report's ablation by default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from patchvad.metrics.frame import UndefinedMetricError
from patchvad.registry import add, lookup

if TYPE_CHECKING:
    from patchvad.metrics.scope import EvalScope


@dataclass(frozen=True)
class MetricSpec:
    """One metric of the table.

    Attributes:
        key: name in results (``evaluate_folder``'s keys, metrics.json, ``data-metric``).
        label: column header (short; plain-text tables join its words with ``-``).
        description: what it measures, one or two sentences (report help, header titles).
        higher_is_better: the direction of "best" (None: not a score, e.g. a threshold).
        compute: ``compute(scope) -> float | None`` on an
            :class:`~patchvad.metrics.scope.EvalScope`: the value over the scope's
            videos; None when the metric does not apply to these predictions (silently
            null); raises :class:`~patchvad.metrics.frame.UndefinedMetricError` with the
            reason when it is undefined on this data (null, and the reason becomes a note).
        in_table: shown as a column of results tables.
        headline: shown in compact tables too.
    """

    key: str
    label: str
    description: str
    higher_is_better: bool | None
    compute: Callable[[EvalScope], float | None]
    in_table: bool = True
    headline: bool = False


def _tiou_threshold(scope: EvalScope) -> float:
    return scope.tau if scope.tau is not None else scope.frames.youden()


def _tiou(scope: EvalScope) -> float:
    tau = scope.value("tiou_threshold")
    if tau is None:
        raise UndefinedMetricError("its threshold (Youden-J of the micro frame ROC) is undefined")
    _, scores = scope.frames.concatenated()
    return scope.spatial.tiou(scores, tau)


def _pauc(scope: EvalScope) -> float | None:
    cells = scope.patch_cells()
    return None if cells is None else cells.pauc()


def _pap(scope: EvalScope) -> float | None:
    cells = scope.patch_cells()
    return None if cells is None else cells.pap()


METRICS: dict[str, MetricSpec] = {spec.key: spec for spec in (
    MetricSpec("frame_auc_micro", "AUC micro",
               "Frame ROC-AUC over all test frames pooled (micro), the number UCF-Crime, ShanghaiTech and UBnormal "
               "papers report.", True, lambda s: s.frames.auc_micro(), headline=True),
    MetricSpec("frame_auc_macro", "AUC macro",
               "Mean per-video frame ROC-AUC, each video padded with a 0 and a 1 (UBnormal's convention).",
               True, lambda s: s.frames.auc_macro()),
    MetricSpec("frame_ap", "AP", "Frame average precision (step-wise), XD-Violence's number.",
               True, lambda s: s.frames.ap()),
    MetricSpec("tiou", "TIoU",
               "Localisation accuracy (Liu & Ma): mean IoU of the best predicted box with the ground-truth box over "
               "annotated frames, counted only where the frame score passes the Youden-J threshold.",
               True, _tiou, headline=True),
    MetricSpec("tiou_threshold", "TIoU threshold",
               "The frame-score threshold of TIoU: Youden-J optimal threshold of the micro frame ROC "
               "(score >= tau).", None, _tiou_threshold, in_table=False),
    MetricSpec("rbdc", "RBDC",
               "Region-based detection criterion (Ramachandra & Jones): area under region detection rate vs false "
               "positives per frame, for FPR in [0, 1].", True, lambda s: s.detection().rbdc, headline=True),
    MetricSpec("tbdc", "TBDC",
               "Track-based detection criterion: area under track detection rate vs false positives per frame, for "
               "FPR in [0, 1].", True, lambda s: s.detection().tbdc, headline=True),
    MetricSpec("pauc", "PAUC",
               "Patch ROC-AUC over every grid cell of every test frame (cell score = patch score x frame score; a "
               "cell is positive when >= 25% of it lies in a ground-truth box).", True, _pauc),
    MetricSpec("pap", "PAP", "Patch average precision over the same cells.", True, _pap),
)}


def get_metric(key: str) -> MetricSpec:
    """The registered metric called ``key`` (ConfigError naming the choices otherwise)."""
    return lookup(METRICS, key, f"unknown metric '{key}'; choose one of {list(METRICS)}")


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add ``spec`` to the table (last row) under ``spec.key`` (refuses to replace another metric)."""
    return add(METRICS, spec.key, spec, "metric", key="key")


def metric_keys() -> tuple[str, ...]:
    """Every key ``evaluate_folder`` reports, table order."""
    return tuple(METRICS)


def table_metrics() -> tuple[MetricSpec, ...]:
    """The scores of results tables (``in_table``), table order."""
    return tuple(spec for spec in METRICS.values() if spec.in_table)


def headline_metrics() -> tuple[MetricSpec, ...]:
    """The scores of compact tables (``in_table`` and ``headline``), table order."""
    return tuple(spec for spec in table_metrics() if spec.headline)


def summary_keys() -> tuple[str, ...]:
    """The keys summarised over seeds: the table's scores first, then the other values."""
    scores = tuple(spec.key for spec in table_metrics())
    return scores + tuple(k for k in METRICS if k not in scores)


def metric_label(key: str) -> str:
    """The column header of ``key`` (the key itself when no metric of the table has it)."""
    spec = METRICS.get(key)
    return key if spec is None else spec.label


__all__ = ["METRICS", "MetricSpec", "get_metric", "headline_metrics", "metric_keys", "metric_label",
           "register_metric", "summary_keys", "table_metrics"]
