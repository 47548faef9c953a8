"""Folder-level evaluation: dataset folder + predictions folder -> metrics dict / JSON / table.

``evaluate_folder`` reads every test video of the manifest (manifest order), checks
that its predictions cover exactly its frames, and computes every metric of the metric
table (:mod:`patchvad.metrics.table`; the metrics of docs/metrics.md and any registered
one), plus a per-class breakdown when the manifest names classes.
``evaluate_command`` is the body of ``patchvad evaluate``: it also writes the JSON
atomically and prints a table.

A metric that is undefined on the data (e.g. frame ROC-AUC on a test set without
anomalous frames, RBDC without boxes) is ``null`` in the result, with a line in
``warnings`` saying why; the JSON never holds NaN.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from patchvad.data.folder import MANIFEST, DatasetFolder
from patchvad.errors import DatasetError, PredictionError
from patchvad.io.files import atomic_write_json
from patchvad.metrics.patch import COVERAGE
from patchvad.metrics.scope import EvalScope, EvalVideo
from patchvad.metrics.spatial import ALPHA, BETA
from patchvad.metrics.table import metric_keys, table_metrics
from patchvad.predictions import MAPS, read_prediction

NO_CLASS = "(no class)"


class MetricWarning(UserWarning):
    """A metric could not be computed (it is reported as null) or rests on an assumption."""


def _load_videos(dataset_root: Path, predictions_dir: Path, grid: tuple[int, int] | None) -> list[EvalVideo]:
    folder = DatasetFolder(dataset_root)
    test = folder.test_set()
    if len(test) == 0:
        raise DatasetError("the manifest lists no test videos", path=Path(dataset_root) / MANIFEST)
    if not Path(predictions_dir).is_dir():
        raise PredictionError("predictions folder not found", path=predictions_dir)
    videos: list[EvalVideo] = []
    seen_grid: tuple[tuple[int, int], str] | None = None
    for entry in test:
        gt = test.ground_truth(entry)
        pred = read_prediction(predictions_dir, entry.stem, frame_count=gt.frame_count)
        if pred.maps is not None:
            assert pred.path is not None                # read_prediction sets it
            g = (int(pred.maps.shape[1]), int(pred.maps.shape[2]))
            if grid is not None and g != tuple(grid):
                raise PredictionError(f"maps have a {g[0]}x{g[1]} grid, expected {grid[0]}x{grid[1]}",
                                      path=pred.path / MAPS)
            if seen_grid is not None and g != seen_grid[0]:
                raise PredictionError(f"maps have a {g[0]}x{g[1]} grid but '{seen_grid[1]}' has "
                                      f"{seen_grid[0][0]}x{seen_grid[0][1]}; PAUC/PAP pool cells of one grid",
                                      path=pred.path / MAPS)
            seen_grid = (g, entry.stem)
        videos.append(EvalVideo(entry, gt, pred))
    return videos


def _compute(videos: list[EvalVideo], tau: float | None, notes: list[str], scope: str = "") -> dict[str, Any]:
    """Every metric of the table over ``videos``, then the counts; ``tau`` None means: derive it."""
    s = EvalScope(videos, tau=tau, suffix=scope)
    out: dict[str, Any] = {key: s.value(key) for key in metric_keys()}
    notes.extend(s.notes())
    patch = s.patch
    anomalous = [v for v in videos if v.entry.label == 1]
    out.update({
        "n_videos": len(videos),
        "n_anomalous_videos": len(anomalous),
        "n_frames": int(sum(v.gt.frame_count for v in videos)),
        "n_anomalous_frames": int(sum(int(v.gt.frame_labels.sum()) for v in videos)),
        "n_gt_regions": int(sum(v.gt.regions.shape[0] for v in videos)),
        "n_gt_tracks": int(s.spatial.n_tracks),
        "n_tiou_frames": int(np.unique(s.spatial.anomalous_regions[:, 1]).size),
        "n_pred_boxes": int(sum(v.pred.boxes.shape[0] for v in videos)),
        "grid": list(patch.grid) if patch.grid is not None else None,
        "n_patch_frames": patch.n_frames if patch.grid is not None else 0,
        "n_patch_frames_excluded": patch.n_excluded_frames,
    })
    return out


def evaluate_folder(dataset_root: str | Path, predictions_dir: str | Path,
                    grid: tuple[int, int] | None = None) -> dict[str, Any]:
    """Evaluate a predictions folder against a dataset folder's test split.

    Args:
        dataset_root: dataset folder (manifest.csv, tracks/, frame_labels/).
        predictions_dir: predictions folder, one ``<stem>/`` per test video.
        grid: ``(Gh, Gw)`` the maps must have, or None to take it from the maps.

    Returns:
        A JSON-ready dict: one key per row of the metric table, table order
        (:func:`~patchvad.metrics.table.metric_keys`: ``frame_auc_micro,
        frame_auc_macro, frame_ap, tiou, tiou_threshold, rbdc, tbdc, pauc, pap`` and
        any registered metric; float or None), the counts ``n_videos, n_anomalous_videos, n_frames, n_anomalous_frames,
        n_gt_regions, n_gt_tracks, n_tiou_frames, n_pred_boxes, grid, n_patch_frames,
        n_patch_frames_excluded``, the ``conventions`` used, ``per_class`` (one dict
        of the same metrics and counts per class, manifest order; present only when
        the manifest names classes) and ``warnings`` (why a metric is null, which
        assumption was made). Each warning is also issued as a :class:`MetricWarning`.

    Raises:
        DatasetError: malformed dataset folder, no test videos.
        PredictionError: a test video without a prediction folder, scores of the
            wrong length (naming the video and both lengths), malformed files, maps of
            different grids.
    """
    videos = _load_videos(Path(dataset_root), Path(predictions_dir), grid)
    notes: list[str] = []
    assumed = [v.entry.stem for v in videos if v.pred.frame_to_snippet_assumed]
    if assumed:
        notes.append(f"{len(assumed)} video(s) have maps without frame_to_snippet.npy; equal-length snippets "
                     f"(ceil(F/T) frames) were assumed (e.g. {', '.join(assumed[:3])})")
    outside = [v.entry.stem for v in videos if v.pred.frame_scores.min() < 0.0 or v.pred.frame_scores.max() > 1.0]
    if outside:
        notes.append(f"frame_auc_macro pads each video with scores 0 and 1 (UBnormal), which assumes scores "
                     f"in [0, 1]; {len(outside)} video(s) have scores outside (e.g. {', '.join(outside[:3])})")
    result = _compute(videos, tau=None, notes=notes)
    result["conventions"] = {
        "frame_ap": "step-wise average precision: sum_k (R_k - R_{k-1}) P_k over distinct thresholds",
        "frame_auc_macro": "mean per-video ROC-AUC, each video padded with (label 0, score 0) and "
                           "(label 1, score 1)",
        "ties": "tied scores form one threshold step",
        "rbdc_beta": BETA,
        "tbdc_alpha": ALPHA,
        "fpr": "false positives per test frame, area over [0, 1]",
        "iou": "+1-pixel inclusive boxes",
        "tiou_threshold": "Youden-J optimal threshold of the micro frame ROC (score >= tau)",
        "patch_coverage": COVERAGE,
    }
    classes = list(dict.fromkeys(v.entry.cls for v in videos))
    if any(c for c in classes):
        per_class: dict[str, dict[str, Any]] = {}
        for cls in classes:
            subset = [v for v in videos if v.entry.cls == cls]
            name = cls or NO_CLASS
            # The global tau: the operating point belongs to the model on the whole test
            # set, so per-class TIoUs stay comparable with each other and with the total.
            class_notes: list[str] = []
            metrics = _compute(subset, tau=result["tiou_threshold"], notes=class_notes, scope=f" (class {name})")
            metrics.pop("tiou_threshold")
            if metrics["n_anomalous_frames"] == 0 and metrics["n_gt_regions"] == 0:
                # A class of normal videos (UCF-Crime's "Normal"): one line, not one per metric.
                nulls = [k for k in metric_keys() if k in metrics and metrics[k] is None]
                notes.append(f"class {name} has no anomalous frame: {', '.join(nulls)} are null for it")
                notes.extend(n for n in class_notes if n.startswith("pauc and pap"))
            else:
                notes.extend(class_notes)
            per_class[name] = metrics
        result["per_class"] = per_class
    result["warnings"] = notes
    for note in notes:
        warnings.warn(note, MetricWarning, stacklevel=2)
    ordered = {k: result[k] for k in metric_keys()}
    ordered.update({k: v for k, v in result.items() if k not in ordered})
    return _json_ready(ordered)


def _json_ready(obj: Any) -> Any:
    """Plain Python types only; NaN / inf become None (they never should occur)."""
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def format_table(metrics: dict[str, Any]) -> str:
    """A plain-text table of ``evaluate_folder``'s result: one row for all, one per class."""
    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.4f}"

    # One token per header: the table is read by splitting on whitespace.
    columns = [(spec.key, spec.label.replace(" ", "-")) for spec in table_metrics()]
    rows = [("all", metrics)]
    rows += [(f"  {name}", m) for name, m in metrics.get("per_class", {}).items()]
    name_w = max(len(r[0]) for r in rows)
    head = f"{'':<{name_w}}  {'videos':>6} {'frames':>9} " + " ".join(f"{h:>9}" for _, h in columns)
    lines = [
        f"{metrics['n_videos']} test videos ({metrics['n_anomalous_videos']} anomalous), {metrics['n_frames']} "
        f"frames ({metrics['n_anomalous_frames']} anomalous), ground truth: {metrics['n_gt_regions']} regions, "
        f"{metrics['n_gt_tracks']} tracks; {metrics['n_pred_boxes']} predicted boxes",
        head, "-" * len(head),
    ]
    for name, m in rows:
        lines.append(f"{name:<{name_w}}  {m['n_videos']:>6} {m['n_frames']:>9} "
                     + " ".join(f"{fmt(m[k]):>9}" for k, _ in columns))
    tau = metrics.get("tiou_threshold")
    lines.append(f"TIoU threshold (Youden-J of the micro frame ROC): {fmt(tau) if tau is None else f'{tau:.6g}'}; "
                 f"AP = step-wise average precision; RBDC/TBDC: beta {BETA}, alpha {ALPHA}, FPR in [0, 1]")
    if metrics.get("grid"):
        lines.append(f"PAUC/PAP over a {metrics['grid'][0]}x{metrics['grid'][1]} grid, "
                     f"{metrics['n_patch_frames']} frames ({metrics['n_patch_frames_excluded']} anomalous "
                     f"frames without boxes left out)")
    for note in metrics.get("warnings", []):
        lines.append(f"warning: {note}")
    return "\n".join(lines)


def evaluate_command(dataset: Path, predictions: Path, out: Path | None = None,
                     grid: tuple[int, int] | None = None) -> dict[str, Any]:
    """``patchvad evaluate``: compute, write ``out`` (JSON, atomically) if given, print a table.

    Returns the metrics dict of :func:`evaluate_folder`. Warnings are part of the
    printed table and of the JSON, so they are not issued a second time here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        metrics = evaluate_folder(dataset, predictions, grid=grid)
    if out is not None:
        atomic_write_json(out, metrics)
    print(format_table(metrics))
    if out is not None:
        print(f"metrics written to {out}")
    return metrics


__all__ = ["MetricWarning", "evaluate_command", "evaluate_folder", "format_table"]
