"""Evaluation metrics (definitions and conventions: docs/metrics.md).

Pure functions on arrays, plus thin accumulators that stream over videos:

* frame level: :func:`frame_auc_micro`, :func:`frame_auc_macro` (UBnormal padding),
  :func:`frame_ap_stepwise`, :func:`youden_threshold`, :func:`roc_curve`;
* spatial: :func:`box_iou` (+1 pixel), :func:`rbdc_tbdc` (with its curves),
  :func:`tiou`;
* patch level: :func:`cell_labels_from_boxes`, :func:`pauc`, :func:`pap`;
* the metric table (table.py): :data:`METRICS` (one :class:`MetricSpec` per metric:
  key, label, description, direction, how evaluation computes it), :func:`get_metric`,
  :func:`register_metric`; evaluation scopes (scope.py): :class:`EvalScope`;
* folder level: :func:`evaluate_folder`, :func:`evaluate_command`;
* ``weak / oracle`` ratios of results tables (ratios.py): :func:`~patchvad.metrics.ratios.oracle_ratios`.
"""

from patchvad.metrics.evaluate import MetricWarning, evaluate_command, evaluate_folder, format_table
from patchvad.metrics.frame import (
    FrameAccumulator,
    UndefinedMetricError,
    frame_ap_stepwise,
    frame_auc,
    frame_auc_macro,
    frame_auc_micro,
    padded_video_auc,
    roc_curve,
    youden_threshold,
)
from patchvad.metrics.patch import (
    PatchAccumulator,
    cell_labels_from_boxes,
    cell_labels_per_frame,
    pap,
    patch_cell_scores,
    pauc,
)
from patchvad.metrics.scope import EvalScope, EvalVideo
from patchvad.metrics.spatial import (
    DetectionCurves,
    SpatialAccumulator,
    area_up_to,
    box_iou,
    paired_iou,
    rbdc_tbdc,
    tiou,
)
from patchvad.metrics.table import (
    METRICS,
    MetricSpec,
    get_metric,
    headline_metrics,
    metric_keys,
    metric_label,
    register_metric,
    summary_keys,
    table_metrics,
)

__all__ = [
    "METRICS", "DetectionCurves", "EvalScope", "EvalVideo", "FrameAccumulator", "MetricSpec", "MetricWarning",
    "PatchAccumulator", "SpatialAccumulator", "UndefinedMetricError", "area_up_to", "box_iou", "cell_labels_from_boxes",
    "cell_labels_per_frame", "evaluate_command", "evaluate_folder", "format_table", "frame_ap_stepwise",
    "frame_auc", "frame_auc_macro", "frame_auc_micro", "get_metric", "headline_metrics", "metric_keys",
    "metric_label", "padded_video_auc", "paired_iou", "pap", "patch_cell_scores", "pauc", "rbdc_tbdc",
    "register_metric", "roc_curve", "summary_keys", "table_metrics", "tiou", "youden_threshold",
]
