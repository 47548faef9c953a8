"""Frame-level metrics: ROC curve and ROC-AUC (micro, macro), step-wise AP, Youden-J.

All functions are pure functions on numpy arrays (our own vectorized code; scikit-learn
is only the reference the tests compare against). Conventions (docs/metrics.md):

* Scores are sorted once, descending; points of the ROC / PR curves exist only at
  *distinct* score values, so tied scores form one threshold step (the trapezoid then
  gives ties half credit, as every standard ROC-AUC does).
* A metric that has no value on its input (ROC-AUC with one class only, AP without
  positives) raises :class:`UndefinedMetricError`; it never returns NaN. Folder-level
  evaluation turns that into ``null`` plus a warning.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class UndefinedMetricError(ValueError):
    """The metric has no value on this input (e.g. ROC-AUC when only one class occurs)."""


def _check_labels_scores(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a ``(n,)`` 0/1 label array and a ``(n,)`` finite score array.

    Returns ``(labels as bool, scores as float64)``.
    """
    y = np.asarray(labels)
    s = np.asarray(scores)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D, got shapes {y.shape} and {s.shape}")
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.shape[0]}) and scores ({s.shape[0]}) differ in length")
    if y.dtype != bool:
        if y.size and not np.isin(y, (0, 1)).all():
            raise ValueError("labels must be 0 or 1")
        y = y.astype(bool)
    if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating):
        raise ValueError(f"scores must be real numbers, got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    return y, s


def threshold_counts(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true / false positives at every distinct threshold, descending.

    Args:
        labels: ``(n,)`` 0/1 (or bool).
        scores: ``(n,)`` finite real scores; higher = more anomalous.

    Returns:
        ``tps (K,)``, ``fps (K,)`` int64 and ``thresholds (K,)`` float64, where entry
        ``k`` counts the items with ``score >= thresholds[k]`` and ``thresholds`` are
        the K distinct scores in descending order.
    """
    y, s = _check_labels_scores(labels, scores)
    if s.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    # The last index of each run of equal scores: one curve point per distinct threshold.
    ends = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
    tps = np.cumsum(y[order], dtype=np.int64)[ends]
    fps = (ends + 1) - tps
    return tps, fps, s_sorted[ends]


def _class_sizes(tps: np.ndarray, fps: np.ndarray) -> tuple[int, int]:
    """Positives and negatives from cumulative counts ``(K,)``; both must occur for a ROC.

    Raises:
        UndefinedMetricError: only one class occurs.
    """
    n_pos = int(tps[-1]) if tps.size else 0
    n_neg = int(fps[-1]) if fps.size else 0
    if n_pos == 0 or n_neg == 0:
        raise UndefinedMetricError(f"ROC needs both classes; got {n_pos} positive and {n_neg} negative items")
    return n_pos, n_neg


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve at every distinct threshold.

    Args:
        labels: ``(n,)`` 0/1, 1 = anomalous.
        scores: ``(n,)`` finite scores.

    Returns:
        ``fpr (K+1,)``, ``tpr (K+1,)``, ``thresholds (K+1,)``; the first point is
        ``(0, 0)`` at threshold ``+inf`` (nothing predicted positive), the last is
        ``(1, 1)`` at the lowest score.

    Raises:
        UndefinedMetricError: only one class occurs in ``labels``.
    """
    tps, fps, thresholds = threshold_counts(labels, scores)
    n_pos, n_neg = _class_sizes(tps, fps)
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    return fpr, tpr, np.r_[np.inf, thresholds]


def frame_auc(labels: np.ndarray, scores: np.ndarray, exact: bool = False) -> float:
    """ROC-AUC (trapezoid over the ROC curve; ties get half credit).

    Args:
        labels: ``(n,)`` 0/1.
        scores: ``(n,)`` finite scores.
        exact: compute the same area as the Mann-Whitney count instead: the
            (positive, negative) pairs ordered correctly, ties counting half, divided
            once by ``n_pos * n_neg``. That is the correctly rounded area; the
            trapezoid adds rounded slices and can differ from it in the last bits.
            Training's validation AUC uses it (its value decides ties between
            checkpoints); the reported metrics keep the trapezoid.

    Raises:
        UndefinedMetricError: only one class occurs.
    """
    tps, fps, _ = threshold_counts(labels, scores)
    return auc_from_counts(tps, fps, exact)


def auc_from_counts(tps: np.ndarray, fps: np.ndarray, exact: bool = False) -> float:
    """:func:`frame_auc` from :func:`threshold_counts`' cumulative counts ``(K,)`` (one sort for several metrics).

    Raises:
        UndefinedMetricError: only one class occurs.
    """
    n_pos, n_neg = _class_sizes(tps, fps)
    if not exact:
        fpr = np.r_[0.0, fps / n_neg]
        tpr = np.r_[0.0, tps / n_pos]
        return float(np.trapezoid(tpr, fpr))
    # Each step of the curve adds its new negatives times the positives above them
    # (twice: all positives above the step plus those above the previous one, i.e.
    # the tied positives count half). Integers throughout, one rounding at the end.
    twice_pairs = int(np.sum(np.diff(fps, prepend=0) * (tps + np.r_[0, tps[:-1]])))
    return twice_pairs / (2 * n_pos * n_neg)


def frame_ap_stepwise(labels: np.ndarray, scores: np.ndarray) -> float:
    """Step-wise average precision: ``sum_k (R_k - R_{k-1}) * P_k``.

    ``P_k`` and ``R_k`` are precision and recall at the k-th distinct threshold
    (descending), ``R_0 = 0``. This is the "average precision" convention of
    scikit-learn's ``average_precision_score`` (no interpolation, no trapezoid), the
    number XD-Violence code reports.

    Raises:
        UndefinedMetricError: no positive label (recall is undefined).
    """
    tps, fps, _ = threshold_counts(labels, scores)
    return ap_from_counts(tps, fps)


def ap_from_counts(tps: np.ndarray, fps: np.ndarray) -> float:
    """:func:`frame_ap_stepwise` from :func:`threshold_counts`' cumulative counts ``(K,)``.

    Raises:
        UndefinedMetricError: no positive label (recall is undefined).
    """
    n_pos = int(tps[-1]) if tps.size else 0
    if n_pos == 0:
        raise UndefinedMetricError("average precision needs at least one positive item")
    precision = tps / (tps + fps)
    recall = tps / n_pos
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def youden_threshold(labels: np.ndarray, scores: np.ndarray, midpoints: bool = False) -> float:
    """The Youden-J optimal threshold: the score ``tau`` maximizing ``TPR - FPR``.

    Only real scores are candidates (the ``+inf`` start point of the ROC is not), so
    ``tau`` is always finite and "predicted anomalous" means ``score >= tau``. Ties in
    J are broken towards the highest threshold (the first in descending order), the
    fewest frames flagged for the same J.

    Args:
        labels: ``(n,)`` 0/1.
        scores: ``(n,)`` finite scores.
        midpoints: candidates are instead the midpoints between neighbouring distinct
            scores, plus ``lowest - 1e-6`` and ``highest + 1e-6``, so ``tau`` keeps a
            margin to every score it was chosen on (a decision threshold for new
            videos: the bag-score threshold that training stores in a checkpoint).
            Ties in J then go to the LOWEST candidate (most items flagged).

    Raises:
        UndefinedMetricError: only one class occurs.
    """
    if not midpoints:
        fpr, tpr, thresholds = roc_curve(labels, scores)
        j = tpr[1:] - fpr[1:]
        return float(thresholds[1:][int(np.argmax(j))])
    y, s = _check_labels_scores(labels, scores)
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    _class_sizes(np.array([pos.size]), np.array([neg.size]))
    cand = np.unique(s)
    mids = np.concatenate([[cand[0] - 1e-6], 0.5 * (cand[1:] + cand[:-1]), [cand[-1] + 1e-6]])
    # Items with score >= each candidate, counted exactly (a midpoint that rounds onto
    # a score still flags what ``score >= tau`` flags); ascending, so argmax = lowest.
    tpr = (pos.size - np.searchsorted(pos, mids, side="left")) / pos.size
    fpr = (neg.size - np.searchsorted(neg, mids, side="left")) / neg.size
    return float(mids[int(np.argmax(tpr - fpr))])


def _concat(labels_per_video: Sequence[np.ndarray], scores_per_video: Sequence[np.ndarray]
            ) -> tuple[np.ndarray, np.ndarray]:
    if len(labels_per_video) != len(scores_per_video):
        raise ValueError(f"{len(labels_per_video)} label arrays but {len(scores_per_video)} score arrays")
    if not labels_per_video:
        raise UndefinedMetricError("no videos")
    for i, (y, s) in enumerate(zip(labels_per_video, scores_per_video)):
        if np.shape(y) != np.shape(s):
            raise ValueError(f"video {i}: {np.shape(y)} labels but {np.shape(s)} scores")
    y = np.concatenate([np.asarray(v).reshape(-1) for v in labels_per_video])
    s = np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in scores_per_video])
    return y, s


def frame_auc_micro(labels_per_video: Sequence[np.ndarray], scores_per_video: Sequence[np.ndarray]) -> float:
    """Micro ROC-AUC: all videos' frames concatenated, one ROC-AUC.

    Args:
        labels_per_video: per video ``(F_i,)`` 0/1 frame labels.
        scores_per_video: per video ``(F_i,)`` frame scores.
    """
    return frame_auc(*_concat(labels_per_video, scores_per_video))


def padded_video_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC of one video with UBnormal's padding.

    A leading (label 0, score 0) and a trailing (label 1, score 1) frame are added, so
    a video with one class only still has a defined AUC. The pad scores are the
    literal 0 and 1 of UBnormal's code, which assumes scores in [0, 1].
    """
    y, s = _check_labels_scores(labels, scores)
    return frame_auc(np.r_[False, y, True], np.r_[0.0, s, 1.0])


def frame_auc_macro(labels_per_video: Sequence[np.ndarray], scores_per_video: Sequence[np.ndarray]) -> float:
    """Macro ROC-AUC: mean over videos of :func:`padded_video_auc`."""
    if len(labels_per_video) != len(scores_per_video):
        raise ValueError(f"{len(labels_per_video)} label arrays but {len(scores_per_video)} score arrays")
    if not labels_per_video:
        raise UndefinedMetricError("no videos")
    return float(np.mean([padded_video_auc(y, s) for y, s in zip(labels_per_video, scores_per_video)]))


class FrameAccumulator:
    """Collects per-video frame labels and scores; computes the frame metrics.

    Videos keep the order in which they were added (manifest order).
    """

    def __init__(self) -> None:
        self.labels: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []

    def add(self, labels: np.ndarray, scores: np.ndarray) -> None:
        """Add one video: ``labels (F,)`` 0/1 and ``scores (F,)``."""
        y, s = _check_labels_scores(labels, scores)
        self.labels.append(y)
        self.scores.append(s)

    def concatenated(self) -> tuple[np.ndarray, np.ndarray]:
        """``(sum F,)`` labels and scores in insertion order."""
        return _concat(self.labels, self.scores)

    def auc_micro(self) -> float:
        """Micro ROC-AUC of the videos added (:func:`frame_auc_micro`)."""
        return frame_auc_micro(self.labels, self.scores)

    def auc_macro(self) -> float:
        """Macro ROC-AUC of the videos added (:func:`frame_auc_macro`)."""
        return frame_auc_macro(self.labels, self.scores)

    def ap(self) -> float:
        """Step-wise AP of all frames added (:func:`frame_ap_stepwise`)."""
        return frame_ap_stepwise(*self.concatenated())

    def youden(self) -> float:
        """Youden-J threshold of all frames added (:func:`youden_threshold`)."""
        return youden_threshold(*self.concatenated())


__all__ = [
    "FrameAccumulator", "UndefinedMetricError", "ap_from_counts", "auc_from_counts", "frame_ap_stepwise", "frame_auc",
    "frame_auc_macro",
    "frame_auc_micro", "padded_video_auc", "roc_curve", "threshold_counts", "youden_threshold",
]
