"""Folder-level evaluation: dataset folder + predictions folder -> metrics dict / JSON / table.

``evaluate_folder`` reads every test video of the manifest (manifest order), checks
that its predictions cover exactly its frames, and computes every metric of
docs/metrics.md, plus a per-class breakdown when the manifest names classes.
``evaluate_command`` is the body of ``patchvad evaluate``: it also writes the JSON
atomically and prints a table.

A metric that is undefined on the data (e.g. frame ROC-AUC on a test set without
anomalous frames, RBDC without boxes) is ``null`` in the result, with a line in
``warnings`` saying why; the JSON never holds NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from patchvad.data.folder import MANIFEST, DatasetFolder, GroundTruth, VideoEntry
from patchvad.errors import DatasetError, PredictionError
from patchvad.io.files import atomic_write_json
from patchvad.metrics.frame import FrameAccumulator, UndefinedMetricError
from patchvad.metrics.patch import COVERAGE, PatchAccumulator
from patchvad.metrics.spatial import ALPHA, BETA, SpatialAccumulator
from patchvad.predictions import MAPS, VideoPrediction, read_prediction

METRIC_KEYS = ("frame_auc_micro", "frame_auc_macro", "frame_ap", "tiou", "tiou_threshold", "rbdc", "tbdc",
               "pauc", "pap")
NO_CLASS = "(no class)"


class MetricWarning(UserWarning):
    """A metric could not be computed (it is reported as null) or rests on an assumption."""


@dataclass(frozen=True)
class _Video:
    entry: VideoEntry
    gt: GroundTruth
    pred: VideoPrediction


def _load_videos(dataset_root: Path, predictions_dir: Path, grid: tuple[int, int] | None) -> list[_Video]:
    folder = DatasetFolder(dataset_root)
    test = folder.test_set()
    if len(test) == 0:
        raise DatasetError("the manifest lists no test videos", path=Path(dataset_root) / MANIFEST)
    if not Path(predictions_dir).is_dir():
        raise PredictionError("predictions folder not found", path=predictions_dir)
    videos: list[_Video] = []
    seen_grid: tuple[tuple[int, int], str] | None = None
    for entry in test:
        gt = test.ground_truth(entry)
        pred = read_prediction(predictions_dir, entry.stem, frame_count=gt.frame_count)
        if pred.maps is not None:
            g = (int(pred.maps.shape[1]), int(pred.maps.shape[2]))
            if grid is not None and g != tuple(grid):
                raise PredictionError(f"maps have a {g[0]}x{g[1]} grid, expected {grid[0]}x{grid[1]}",
                                      path=pred.path / MAPS)
            if seen_grid is not None and g != seen_grid[0]:
                raise PredictionError(f"maps have a {g[0]}x{g[1]} grid but '{seen_grid[1]}' has "
                                      f"{seen_grid[0][0]}x{seen_grid[0][1]}; PAUC/PAP pool cells of one grid",
                                      path=pred.path / MAPS)
            seen_grid = (g, entry.stem)
        videos.append(_Video(entry, gt, pred))
    return videos


def _attempt(fn: Callable[[], float], name: str, scope: str, notes: list[str]) -> float | None:
    """Run one metric; an undefined metric becomes None and a note."""
    try:
        value = float(fn())
    except UndefinedMetricError as exc:
        notes.append(f"{name}{scope} is null: {exc}")
        return None
    if not math.isfinite(value):  # cannot happen by construction; never let NaN reach the JSON
        notes.append(f"{name}{scope} is null: not a finite number")
        return None
    return value


def _compute(videos: list[_Video], tau: float | None, notes: list[str], scope: str = "") -> dict[str, Any]:
    """Every metric over ``videos``; ``tau`` None means: derive it (Youden-J, micro ROC)."""
    frames = FrameAccumulator()
    spatial = SpatialAccumulator()
    for v in videos:
        frames.add(v.gt.frame_labels, v.pred.frame_scores)
        spatial.add(v.gt.regions, v.pred.boxes, v.gt.frame_count, anomalous=v.entry.label == 1)
    out: dict[str, Any] = {
        "frame_auc_micro": _attempt(frames.auc_micro, "frame_auc_micro", scope, notes),
        "frame_auc_macro": _attempt(frames.auc_macro, "frame_auc_macro", scope, notes),
        "frame_ap": _attempt(frames.ap, "frame_ap", scope, notes),
    }
    if tau is None:
        tau = _attempt(frames.youden, "tiou_threshold", scope, notes)
    _, all_scores = frames.concatenated()
    if tau is None:
        out["tiou"] = None
        notes.append(f"tiou{scope} is null: its threshold (Youden-J of the micro frame ROC) is undefined")
    else:
        out["tiou"] = _attempt(lambda: spatial.tiou(all_scores, tau), "tiou", scope, notes)
    out["tiou_threshold"] = tau
    curves = None
    try:
        curves = spatial.rbdc_tbdc(beta=BETA, alpha=ALPHA)
    except UndefinedMetricError as exc:
        notes.append(f"rbdc and tbdc{scope} are null: {exc}")
    out["rbdc"] = None if curves is None else curves.rbdc
    out["tbdc"] = None if curves is None else curves.tbdc

    with_maps = [v for v in videos if v.pred.maps is not None]
    patch = PatchAccumulator(coverage=COVERAGE)
    if with_maps and len(with_maps) == len(videos):
        for v in videos:
            patch.add(v.pred.maps, v.pred.frame_to_snippet, v.pred.frame_scores, v.gt.regions,
                      (v.gt.height, v.gt.width), frame_labels=v.gt.frame_labels)
        out["pauc"] = _attempt(patch.pauc, "pauc", scope, notes)
        out["pap"] = _attempt(patch.pap, "pap", scope, notes)
    else:
        out["pauc"] = out["pap"] = None
        if with_maps:
            lacking = [v.entry.stem for v in videos if v.pred.maps is None]
            notes.append(f"pauc and pap{scope} are null: {len(lacking)} test video(s) have no {MAPS} "
                         f"(e.g. {', '.join(lacking[:3])})")

    anomalous = [v for v in videos if v.entry.label == 1]
    out.update({
        "n_videos": len(videos),
        "n_anomalous_videos": len(anomalous),
        "n_frames": int(sum(v.gt.frame_count for v in videos)),
        "n_anomalous_frames": int(sum(int(v.gt.frame_labels.sum()) for v in videos)),
        "n_gt_regions": int(sum(v.gt.regions.shape[0] for v in videos)),
        "n_gt_tracks": int(spatial.n_tracks),
        "n_tiou_frames": int(np.unique(spatial.anomalous_regions[:, 1]).size),
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
        A JSON-ready dict: the metric keys ``frame_auc_micro, frame_auc_macro,
        frame_ap, tiou, tiou_threshold, rbdc, tbdc, pauc, pap`` (float or None), the
        counts ``n_videos, n_anomalous_videos, n_frames, n_anomalous_frames,
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
                nulls = [k for k in METRIC_KEYS if k in metrics and metrics[k] is None]
                notes.append(f"class {name} has no anomalous frame: {', '.join(nulls)} are null for it")
                notes.extend(n for n in class_notes if n.startswith("pauc and pap"))
            else:
                notes.extend(class_notes)
            per_class[name] = metrics
        result["per_class"] = per_class
    result["warnings"] = notes
    for note in notes:
        warnings.warn(note, MetricWarning, stacklevel=2)
    ordered = {k: result[k] for k in METRIC_KEYS}
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


_COLUMNS = (("frame_auc_micro", "AUC-micro"), ("frame_auc_macro", "AUC-macro"), ("frame_ap", "AP"),
            ("tiou", "TIoU"), ("rbdc", "RBDC"), ("tbdc", "TBDC"), ("pauc", "PAUC"), ("pap", "PAP"))


def format_table(metrics: dict[str, Any]) -> str:
    """A plain-text table of ``evaluate_folder``'s result: one row for all, one per class."""
    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.4f}"

    rows = [("all", metrics)]
    rows += [(f"  {name}", m) for name, m in metrics.get("per_class", {}).items()]
    name_w = max(len(r[0]) for r in rows)
    head = f"{'':<{name_w}}  {'videos':>6} {'frames':>9} " + " ".join(f"{h:>9}" for _, h in _COLUMNS)
    lines = [
        f"{metrics['n_videos']} test videos ({metrics['n_anomalous_videos']} anomalous), {metrics['n_frames']} "
        f"frames ({metrics['n_anomalous_frames']} anomalous), ground truth: {metrics['n_gt_regions']} regions, "
        f"{metrics['n_gt_tracks']} tracks; {metrics['n_pred_boxes']} predicted boxes",
        head, "-" * len(head),
    ]
    for name, m in rows:
        lines.append(f"{name:<{name_w}}  {m['n_videos']:>6} {m['n_frames']:>9} "
                     + " ".join(f"{fmt(m[k]):>9}" for k, _ in _COLUMNS))
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


__all__ = ["METRIC_KEYS", "MetricWarning", "evaluate_command", "evaluate_folder", "format_table"]
