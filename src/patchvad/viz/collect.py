"""From a dataset folder and predictions folders to the report's inputs, in one call.

:func:`build_report` is what ``patchvad demo`` needs: given the test split, one
predictions folder per method (one seed each, for the pictures) and the metrics
summary (all seeds, for the numbers), it computes the curves with the metrics
module's own functions, picks videos and frames deterministically (manifest order;
no cherry-picking across videos), writes the overlay videos and the page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from patchvad.data.folder import DatasetFolder, GroundTruth, VideoEntry
from patchvad.io.video import VideoReader
from patchvad.metrics.frame import FrameAccumulator, UndefinedMetricError, roc_curve
from patchvad.metrics.spatial import SpatialAccumulator
from patchvad.predictions import VideoPrediction, read_prediction
from patchvad.viz.overlay import map_range, write_overlay_video
from patchvad.viz.plots import method_label, method_order
from patchvad.viz.report import GalleryItem, MethodCurves, OverlayVideo, Timeline, write_report
from patchvad.viz.training import training_curves_png


@dataclass
class TestVideos:
    """The test split with each method's predictions, loaded once.

    Attributes:
        entries: test videos in manifest order.
        gts: ``{stem: GroundTruth}``.
        preds: ``{method: {stem: VideoPrediction}}``.
    """

    entries: list[VideoEntry]
    gts: dict[str, GroundTruth]
    preds: dict[str, dict[str, VideoPrediction]]

    @classmethod
    def load(cls, dataset_root: str | Path, pred_dirs: Mapping[str, str | Path]) -> "TestVideos":
        """Read the test split of ``dataset_root`` and each method's predictions folder."""
        test = DatasetFolder(dataset_root).test_set()
        entries = list(test)
        gts = {e.stem: test.ground_truth(e) for e in entries}
        preds = {m: {e.stem: read_prediction(d, e.stem, frame_count=gts[e.stem].frame_count) for e in entries}
                 for m, d in pred_dirs.items()}
        return cls(entries, gts, preds)

    def anomalous(self) -> list[VideoEntry]:
        """The anomalous test videos, in manifest order."""
        return [e for e in self.entries if e.label == 1]

    def normal(self) -> list[VideoEntry]:
        """The normal test videos, in manifest order."""
        return [e for e in self.entries if e.label != 1]


def method_curves(videos: TestVideos, method: str, seed: str | int | None = None) -> MethodCurves:
    """ROC, RBDR/TBDR curves and the Youden-J threshold of one method, as ``evaluate_folder`` computes them."""
    frames, spatial = FrameAccumulator(), SpatialAccumulator()
    for e in videos.entries:
        gt, pred = videos.gts[e.stem], videos.preds[method][e.stem]
        frames.add(gt.frame_labels, pred.frame_scores)
        spatial.add(gt.regions, pred.boxes, gt.frame_count, anomalous=e.label == 1)
    roc = tau = detection = None
    try:
        roc = roc_curve(*frames.concatenated())
        tau = frames.youden()
    except UndefinedMetricError:
        pass
    try:
        detection = spatial.rbdc_tbdc()
    except UndefinedMetricError:
        pass
    return MethodCurves.from_results(roc, detection, seed=seed, tau=tau)


def _pick_videos(videos: TestVideos, n: int, anomalous_share: float = 0.75) -> list[VideoEntry]:
    """The first anomalous videos and the first normal ones (manifest order), anomalous first."""
    if n <= 0:
        return []
    anom, norm = videos.anomalous(), videos.normal()
    n_anom = min(len(anom), max(1, math.ceil(n * anomalous_share)) if anom else 0)
    n_norm = min(len(norm), n - n_anom)
    n_anom = min(len(anom), n - n_norm)
    return anom[:n_anom] + norm[:n_norm]


def _frame_boxes(rows: np.ndarray, frame: int, frame_col: int, cols: slice) -> np.ndarray:
    return rows[rows[:, frame_col] == frame][:, cols] if rows.size else np.zeros((0, cols.stop - cols.start))


def gallery_items(video_path: str | Path, prediction: VideoPrediction, gt: GroundTruth | None,
                  frame_ids: Sequence[int], method: str = "proximity", threshold: float | None = None,
                  stem: str | None = None) -> list[GalleryItem]:
    """Decode ``frame_ids`` of a video and pair each with the method's map, boxes and the ground truth.

    Predicted boxes scoring below ``threshold`` are left out (as in the overlay videos).
    """
    wanted = sorted(set(int(f) for f in frame_ids))
    if not wanted:
        return []
    maps = prediction.maps
    lo_hi = map_range(maps) if maps is not None else None
    boxes = np.asarray(prediction.boxes, dtype=np.float64).reshape(-1, 6)
    if threshold is not None:
        boxes = boxes[boxes[:, 5] >= threshold]
    regions = np.zeros((0, 6)) if gt is None else np.asarray(gt.regions, dtype=np.float64).reshape(-1, 6)
    images: dict[int, np.ndarray] = {}
    for i, frame in enumerate(VideoReader(video_path).frames()):
        if i in wanted:
            images[i] = frame
        if i >= wanted[-1]:
            break
    items = []
    for f in wanted:
        if f not in images:
            continue
        heat = None
        if maps is not None and lo_hi is not None and prediction.frame_to_snippet is not None:
            lo, hi = lo_hi
            heat = (maps[int(prediction.frame_to_snippet[f])] - lo) / (hi - lo)
        items.append(GalleryItem(
            stem=stem or prediction.stem, frame_id=f, image=images[f], heatmap=heat,
            pred_boxes=_frame_boxes(boxes, f, 0, slice(1, 6)), gt_boxes=_frame_boxes(regions, f, 1, slice(2, 6)),
            score=float(prediction.frame_scores[f]), threshold=threshold,
            label=None if gt is None else int(gt.frame_labels[f]), method=method))
    return items


def pick_frame(prediction: VideoPrediction, gt: GroundTruth) -> int:
    """The frame to show: the best-scoring frame with ground-truth boxes.

    Without boxes, the best-scoring frame labelled anomalous; for a normal video its
    best-scoring frame (its likeliest false alarm).
    """
    if gt.regions.size:
        frames = np.unique(gt.regions[:, 1])
    else:
        frames = np.flatnonzero(gt.frame_labels)
    if frames.size == 0:
        frames = np.arange(prediction.frame_count)
    return int(frames[int(np.argmax(prediction.frame_scores[frames]))])


def build_report(out_dir: str | Path, dataset_root: str | Path, pred_dirs: Mapping[str, str | Path],
                 metrics: Mapping[str, Any], *, ablation: Mapping[str, Any] | None = None,
                 seed: str | int | None = None, focus: str = "proximity", n_timelines: int = 8,
                 n_gallery: int = 8, n_overlays: int = 2, overlay_stems: Sequence[str] | None = None,
                 overlay_max_frames: int | None = None, title: str | None = None,
                 training_runs: Mapping[str, Sequence[str | Path]] | None = None) -> Path:
    """Everything of the report from folders: curves, timelines, gallery, overlays, the page.

    Args:
        out_dir: where ``report.html`` and ``overlays/`` go (``metrics.json`` is linked
            when it is there).
        dataset_root: the dataset folder (its test split).
        pred_dirs: ``{method: predictions folder}`` of one run per method (the
            pictures; the table comes from ``metrics``).
        metrics: the summary over seeds (:func:`patchvad.viz.summarize_runs`).
        ablation: the ablation summary, or None.
        seed: the seed of the runs in ``pred_dirs`` (legends then quote its numbers).
        focus: the method shown in the gallery and overlay videos (default the
            proximity model; the first method in report order if absent).
        n_timelines: how many videos the score timelines show (anomalous videos first,
            then normal ones, in manifest order).
        n_gallery: how many videos the gallery shows a frame of (chosen the same way).
        n_overlays: how many overlay videos to render (the first anomalous videos).
        overlay_stems: the videos to render as overlays instead of the first anomalous ones.
        overlay_max_frames: cut each overlay video after this many frames.
        title: page title (default ``metrics["title"]`` or "patchvad results").
        training_runs: ``{method: [RUN folder of each seed]}``: their validation curves
            (AUC and loss against the step) become the page's "Training" section.

    Returns:
        The path of ``report.html``.
    """
    out = Path(out_dir)
    videos = TestVideos.load(dataset_root, pred_dirs)
    methods = method_order(list(pred_dirs))
    if not methods:
        raise ValueError("pred_dirs is empty: give at least one method's predictions folder")
    focus = focus if focus in pred_dirs else methods[0]
    curves = {m: method_curves(videos, m, seed) for m in methods}
    taus = {m: c.tau for m, c in curves.items() if c.tau is not None}
    # Random scores add noise to every timeline and say nothing about a video.
    timeline_methods = [m for m in methods if m != "random"] or methods

    timelines = []
    focus_tau = {focus: taus[focus]} if focus in taus else {}
    for e in _pick_videos(videos, n_timelines):
        gt = videos.gts[e.stem]
        kind = e.cls or ("anomalous" if e.label else "normal")
        timelines.append(Timeline(e.stem, gt.frame_labels,
                                  {m: videos.preds[m][e.stem].frame_scores for m in timeline_methods},
                                  focus_tau, caption=f"{kind} · {gt.frame_count} frames"))

    gallery: list[GalleryItem] = []
    for e in _pick_videos(videos, n_gallery):
        pred = videos.preds[focus][e.stem]
        gallery += gallery_items(e.path, pred, videos.gts[e.stem], [pick_frame(pred, videos.gts[e.stem])],
                                 method=focus, threshold=taus.get(focus), stem=e.stem)

    overlays = []
    if overlay_stems is not None:
        by_stem = {e.stem: e for e in videos.entries}
        unknown = [s for s in overlay_stems if s not in by_stem]
        if unknown:
            raise ValueError(f"overlay_stems not in the test split: {', '.join(unknown)}")
        chosen = [by_stem[s] for s in overlay_stems]
    else:
        chosen = (videos.anomalous() or videos.entries)[:n_overlays]
    for e in chosen:
        path = out / "overlays" / f"{e.stem}.mp4"
        write_overlay_video(e.path, videos.preds[focus][e.stem], videos.gts[e.stem], path,
                            threshold=taus.get(focus), max_frames=overlay_max_frames, title=e.stem)
        overlays.append(OverlayVideo(path, title=e.stem,
                                     caption=f"{method_label(focus)}; {'anomalous' if e.label else 'normal'} video"))
    training_png = None if training_runs is None else training_curves_png(training_runs)
    return write_report(out, metrics, curves, timelines, gallery, overlays, ablation, title=title,
                        training_png=training_png)


__all__ = ["TestVideos", "build_report", "gallery_items", "method_curves", "pick_frame"]
