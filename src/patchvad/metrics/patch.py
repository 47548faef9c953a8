"""Patch-level metrics: cell labels from boxes, PAUC and PAP.

A frame of ``H x W`` pixels is tiled by a ``Gh x Gw`` grid; cell ``(i, j)`` covers
``[j W/Gw, (j+1) W/Gw) x [i H/Gh, (i+1) H/Gh)`` in continuous pixel coordinates, and
an inclusive pixel box ``x1..x2`` covers ``[x1, x2 + 1)``. A cell is positive when at
least ``coverage`` (25%) of its area lies inside one ground-truth box (boxes are not
merged: two boxes covering 15% each do not make a positive cell).

PAUC / PAP are ROC-AUC / step-wise AP over all cells of all evaluated frames, with
cell score = patch score (the map of the frame's snippet) x frame score.
"""

from __future__ import annotations

import numpy as np

from patchvad.metrics.frame import (
    UndefinedMetricError,
    ap_from_counts,
    auc_from_counts,
    frame_ap_stepwise,
    frame_auc,
    threshold_counts,
)

COVERAGE = 0.25
# Relative slack on the coverage test so that a box covering exactly 25% of a cell
# whose size is not an integer (240 / 7 px) is not lost to float rounding.
_COVERAGE_RTOL = 1e-9


def _cell_coverage(boxes: np.ndarray, frame_size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """``(N, 4)`` boxes -> ``(N, Gh, Gw)`` fraction of each cell's area inside each box."""
    height, width = (float(v) for v in frame_size)
    gh, gw = (int(v) for v in grid)
    if height <= 0 or width <= 0 or gh < 1 or gw < 1:
        raise ValueError(f"need a positive frame size and grid, got {frame_size} and {grid}")
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    xe = np.arange(gw + 1) * (width / gw)
    ye = np.arange(gh + 1) * (height / gh)
    ox = np.clip(np.minimum(b[:, 2:3] + 1.0, xe[None, 1:]) - np.maximum(b[:, 0:1], xe[None, :-1]), 0.0, None)
    oy = np.clip(np.minimum(b[:, 3:4] + 1.0, ye[None, 1:]) - np.maximum(b[:, 1:2], ye[None, :-1]), 0.0, None)
    return (oy[:, :, None] * ox[:, None, :]) / ((width / gw) * (height / gh))


def cell_labels_from_boxes(boxes: np.ndarray, frame_size: tuple[int, int], grid: tuple[int, int],
                           coverage: float = COVERAGE) -> np.ndarray:
    """Positive cells of one frame.

    Args:
        boxes: ``(N, 4)`` inclusive xyxy pixel boxes of the frame (N may be 0).
        frame_size: ``(H, W)`` in pixels, the resolution the boxes refer to.
        grid: ``(Gh, Gw)``.
        coverage: fraction of a cell's area that must lie inside one box.

    Returns:
        ``(Gh, Gw)`` bool.
    """
    cov = _cell_coverage(boxes, frame_size, grid)
    if cov.shape[0] == 0:
        return np.zeros(tuple(int(g) for g in grid), dtype=bool)
    return np.asarray((cov >= coverage * (1.0 - _COVERAGE_RTOL)).any(axis=0))


def cell_labels_per_frame(regions: np.ndarray, n_frames: int, frame_size: tuple[int, int],
                          grid: tuple[int, int], coverage: float = COVERAGE) -> np.ndarray:
    """Cell labels of every frame of one video.

    Args:
        regions: ``(R, 6)`` rows ``track_id, frame_id, x_min, y_min, x_max, y_max``.
        n_frames: ``F``.
        frame_size: ``(H, W)`` in pixels, the resolution the regions refer to.
        grid: ``(Gh, Gw)``.
        coverage: fraction of a cell's area that must lie inside one region.

    Returns:
        ``(F, Gh, Gw)`` bool; frames without regions are all negative.
    """
    r = np.asarray(regions).reshape(-1, 6)
    labels = np.zeros((int(n_frames), int(grid[0]), int(grid[1])), dtype=bool)
    if r.shape[0] == 0:
        return labels
    frame = r[:, 1].astype(np.int64)
    if frame.min() < 0 or frame.max() >= n_frames:
        raise ValueError(f"region frame ids must lie in [0, {n_frames})")
    order = np.argsort(frame, kind="stable")
    positive = _cell_coverage(r[order, 2:6], frame_size, grid) >= coverage * (1.0 - _COVERAGE_RTOL)
    frames, starts = np.unique(frame[order], return_index=True)
    # OR over the regions of each frame (regions sorted by frame, so contiguous runs).
    labels[frames] = np.logical_or.reduceat(positive, starts, axis=0)
    return labels


def patch_cell_scores(maps: np.ndarray, frame_to_snippet: np.ndarray, frame_scores: np.ndarray) -> np.ndarray:
    """Per-frame cell scores: ``maps[frame_to_snippet[f]] * frame_scores[f]``.

    Args:
        maps: ``(T, Gh, Gw)`` patch scores per snippet.
        frame_to_snippet: ``(F,)`` int, the snippet each frame takes its map from.
        frame_scores: ``(F,)`` frame scores.

    Returns:
        ``(F, Gh, Gw)`` float64.
    """
    m = np.asarray(maps, dtype=np.float64)
    f2s = np.asarray(frame_to_snippet)
    s = np.asarray(frame_scores, dtype=np.float64)
    if m.ndim != 3:
        raise ValueError(f"maps must have shape (T, Gh, Gw), got {m.shape}")
    if f2s.shape != s.shape or s.ndim != 1:
        raise ValueError(f"frame_to_snippet {f2s.shape} and frame_scores {s.shape} must be (F,)")
    if f2s.size and (f2s.min() < 0 or f2s.max() >= m.shape[0]):
        raise ValueError(f"frame_to_snippet values must lie in [0, {m.shape[0]})")
    return m[f2s] * s[:, None, None]


def pauc(cell_labels: np.ndarray, cell_scores: np.ndarray) -> float:
    """ROC-AUC over all cells: ``cell_labels`` and ``cell_scores`` of any equal shape."""
    return frame_auc(np.asarray(cell_labels).reshape(-1), np.asarray(cell_scores).reshape(-1))


def pap(cell_labels: np.ndarray, cell_scores: np.ndarray) -> float:
    """Step-wise AP over all cells (see :func:`~patchvad.metrics.frame.frame_ap_stepwise`)."""
    return frame_ap_stepwise(np.asarray(cell_labels).reshape(-1), np.asarray(cell_scores).reshape(-1))


class PatchAccumulator:
    """Collects cell labels and cell scores video by video; computes PAUC and PAP.

    Frames labelled anomalous that carry no box are left out (their cell labels are
    unknown: datasets such as UCF-Crime box only every 16th frame); frames labelled
    normal contribute all-negative cells. :attr:`n_excluded_frames` counts the frames
    left out. All videos must share one grid.
    """

    def __init__(self, coverage: float = COVERAGE) -> None:
        self.coverage = coverage
        self.grid: tuple[int, int] | None = None
        self._labels: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self.n_frames = 0
        self.n_excluded_frames = 0
        self._sorted: tuple[int, np.ndarray, np.ndarray] | None = None     # (videos counted, tps, fps)

    def add(self, maps: np.ndarray, frame_to_snippet: np.ndarray, frame_scores: np.ndarray,
            regions: np.ndarray, frame_size: tuple[int, int], frame_labels: np.ndarray | None = None) -> None:
        """Add one video.

        Args:
            maps: ``(T, Gh, Gw)`` patch scores.
            frame_to_snippet: ``(F,)`` int.
            frame_scores: ``(F,)``.
            regions: ``(R, 6)`` the video's ground-truth regions.
            frame_size: ``(H, W)`` the boxes refer to.
            frame_labels: ``(F,)`` 0/1, or None to keep every frame.
        """
        grid = (int(np.shape(maps)[1]), int(np.shape(maps)[2])) if np.ndim(maps) == 3 else None
        if grid is None:
            raise ValueError(f"maps must have shape (T, Gh, Gw), got {np.shape(maps)}")
        if self.grid is not None and grid != self.grid:
            raise ValueError(f"grid {grid} differs from the grid {self.grid} of earlier videos")
        self.grid = grid
        scores = patch_cell_scores(maps, frame_to_snippet, frame_scores)
        n = scores.shape[0]
        labels = cell_labels_per_frame(regions, n, frame_size, grid, self.coverage)
        keep = np.ones(n, dtype=bool)
        if frame_labels is not None:
            fl = np.asarray(frame_labels).reshape(-1)
            if fl.size != n:
                raise ValueError(f"{fl.size} frame labels for {n} frames")
            boxed = np.zeros(n, dtype=bool)
            r = np.asarray(regions).reshape(-1, 6)
            boxed[r[:, 1].astype(np.int64)] = True
            keep = ~((fl == 1) & ~boxed)
        self._labels.append(labels[keep].reshape(-1))
        self._scores.append(scores[keep].reshape(-1))
        self.n_frames += int(keep.sum())
        self.n_excluded_frames += int(n - keep.sum())

    def _counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative counts over every cell added, sorted once for PAUC and PAP (millions of cells)."""
        if not self._labels:
            raise UndefinedMetricError("no frames for PAUC / PAP")
        if self._sorted is None or self._sorted[0] != len(self._labels):
            tps, fps, _ = threshold_counts(np.concatenate(self._labels), np.concatenate(self._scores))
            self._sorted = (len(self._labels), tps, fps)
        return self._sorted[1], self._sorted[2]

    def pauc(self) -> float:
        """ROC-AUC over every cell added (:func:`pauc`)."""
        return auc_from_counts(*self._counts())

    def pap(self) -> float:
        """Step-wise AP over every cell added (:func:`pap`)."""
        return ap_from_counts(*self._counts())


__all__ = ["COVERAGE", "PatchAccumulator", "cell_labels_from_boxes", "cell_labels_per_frame", "pap", "pauc",
           "patch_cell_scores"]
