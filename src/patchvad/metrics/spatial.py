"""Spatial metrics: box IoU, RBDC / TBDC (Ramachandra & Jones, WACV 2020), TIoU (Liu & Ma).

Arrays use *global* frame ids: when several videos are evaluated together, each
video's frame ids are offset by the frame count of the videos before it (see
:class:`SpatialAccumulator`), and track ids are made unique across videos.

Row layouts (the dataset folder's and the predictions folder's):

* ground-truth regions ``(R, 6)``: ``track_id, frame_id, x_min, y_min, x_max, y_max``
* predicted boxes ``(N, 6)``: ``frame_id, x_min, y_min, x_max, y_max, score``

Boxes are inclusive pixel boxes; IoU uses the +1-pixel convention
``area = (x2 - x1 + 1) * (y2 - y1 + 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from patchvad.geometry import box_iou, paired_iou
from patchvad.metrics.frame import UndefinedMetricError

BETA = 0.1
ALPHA = 0.1


# --- IoU -----------------------------------------------------------------------------


# --- input checks --------------------------------------------------------------------


def _integral(values: np.ndarray, what: str) -> np.ndarray:
    if values.size and not (np.isfinite(values).all() and (values == np.round(values)).all()):
        raise ValueError(f"{what} must be integers")
    return values.astype(np.int64)


def _check_regions(regions: np.ndarray, n_frames: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(R, 6)`` regions -> ``track (R,) int64, frame (R,) int64, boxes (R, 4) float64``."""
    r = np.asarray(regions)
    if r.size == 0:
        r = r.reshape(0, 6)
    if r.ndim != 2 or r.shape[1] != 6:
        raise ValueError(f"ground-truth regions must have shape (R, 6), got {r.shape}")
    r = r.astype(np.float64, copy=False) if not np.issubdtype(r.dtype, np.integer) else r
    track = _integral(np.asarray(r[:, 0]), "track ids")
    frame = _integral(np.asarray(r[:, 1]), "region frame ids")
    boxes = np.asarray(r[:, 2:6], dtype=np.float64)
    if not np.isfinite(boxes).all():
        raise ValueError("region boxes contain NaN or inf")
    _check_frames(frame, n_frames, "region")
    return track, frame, boxes


def _check_predictions(boxes: np.ndarray, n_frames: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(N, 6)`` predictions -> ``frame (N,) int64, boxes (N, 4), scores (N,)`` float64."""
    p = np.asarray(boxes, dtype=np.float64)
    if p.size == 0:
        p = p.reshape(0, 6)
    if p.ndim != 2 or p.shape[1] != 6:
        raise ValueError(f"predicted boxes must have shape (N, 6), got {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("predicted boxes contain NaN or inf")
    frame = _integral(p[:, 0], "predicted frame ids")
    _check_frames(frame, n_frames, "prediction")
    return frame, p[:, 1:5], p[:, 5]


def _check_frames(frame: np.ndarray, n_frames: int | None, what: str) -> None:
    if frame.size and frame.min() < 0:
        raise ValueError(f"{what} frame id {int(frame.min())} is negative")
    if n_frames is not None and frame.size and frame.max() >= n_frames:
        raise ValueError(f"{what} frame id {int(frame.max())} outside the {n_frames} test frames")


# --- area under a false-positives-per-frame curve ------------------------------------


def area_up_to(fpr: np.ndarray, rate: np.ndarray, max_fpr: float = 1.0) -> float:
    """Trapezoid area under ``(fpr, rate)`` for ``fpr`` in ``[0, max_fpr]``.

    The curve must start at ``(0, 0)`` with ``fpr`` non-decreasing. It is cut at
    ``max_fpr`` (the rate at the crossing is interpolated linearly between the two
    points around it) and, if it ends before ``max_fpr``, extended flat at its last
    rate. The result is divided by nothing: with ``max_fpr = 1`` the maximum is 1.
    """
    x = np.asarray(fpr, dtype=np.float64)
    y = np.asarray(rate, dtype=np.float64)
    inside = int(np.searchsorted(x, max_fpr, side="right"))  # points with x <= max_fpr
    xs, ys = x[:inside], y[:inside]
    if inside < x.size:
        x0, y0, x1, y1 = x[inside - 1], y[inside - 1], x[inside], y[inside]
        y_cut = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
    else:
        y_cut = ys[-1]
    return float(np.trapezoid(np.r_[ys, y_cut], np.r_[xs, max_fpr]))


# --- RBDC / TBDC ---------------------------------------------------------------------


@dataclass(frozen=True)
class DetectionCurves:
    """RBDC / TBDC and the curves they integrate.

    Attributes:
        rbdc, tbdc: areas under (FPR, RBDR) and (FPR, TBDR) for FPR in [0, 1]; max 1.
        fpr: ``(K+1,)`` false positives per test frame after each distinct score
            threshold (descending); ``fpr[0] = 0`` is the start point (threshold inf).
        rbdr: ``(K+1,)`` region detection rate at the same thresholds.
        tbdr: ``(K+1,)`` track detection rate at the same thresholds.
        thresholds: ``(K+1,)`` ``inf`` then the distinct predicted scores, descending.
        n_regions, n_tracks, n_frames, n_predictions: the denominators and input size.
        true_positives, false_positives: totals at the lowest threshold.
    """

    rbdc: float
    tbdc: float
    fpr: np.ndarray
    rbdr: np.ndarray
    tbdr: np.ndarray
    thresholds: np.ndarray
    n_regions: int
    n_tracks: int
    n_frames: int
    n_predictions: int
    true_positives: int
    false_positives: int


def _frames_needed(lengths: np.ndarray, alpha: float) -> np.ndarray:
    """Smallest integer m with ``m / length >= alpha`` (the float comparison itself).

    ``ceil(alpha * length)`` alone is off by one where ``alpha * length`` rounds up
    (``0.55 * 100 = 55.00000000000001`` although ``55 / 100 >= 0.55``), so the
    candidate is corrected both ways against the literal ratio test of the definition.
    """
    m = np.ceil(alpha * lengths).astype(np.int64)
    m = np.where((m - 1) / lengths >= alpha, m - 1, m)
    m = np.where(m / lengths >= alpha, m, m + 1)
    return np.clip(m, 1, lengths)


def rbdc_tbdc(gt_regions: np.ndarray, pred_boxes: np.ndarray, n_frames: int, beta: float = BETA,
              alpha: float = ALPHA) -> DetectionCurves:
    """Region- and track-based detection criteria over a whole test set.

    The definition walks the predictions by descending score: a prediction whose IoU
    with every ground-truth region of its frame is below ``beta`` (or whose frame has
    none) is a false positive; otherwise each not-yet-matched region of its frame with
    IoU >= ``beta`` becomes matched (one true positive each), and a prediction that
    only re-matches already matched regions counts as neither.

    That walk needs no loop: a prediction's FP status does not depend on the order,
    and a region is matched by the first prediction (in walk order) with IoU >= beta
    to it, so each region's match step is a minimum over its candidate predictions.
    The pairs (prediction, region of the same frame) are built with sorted arrays;
    their number is the sum over predictions of the regions in the prediction's frame.

    Ties: predictions are walked in descending score, ties in input order (stable
    sort), but curve points exist only at distinct scores, so the curve - and the
    areas - do not depend on the order among tied predictions.

    Args:
        gt_regions: ``(R, 6)`` rows ``track_id, frame_id, x_min, y_min, x_max, y_max``
            with global frame ids and track ids unique across the test set.
        pred_boxes: ``(N, 6)`` rows ``frame_id, x_min, y_min, x_max, y_max, score``.
        n_frames: number of test frames (all test videos, normal ones too).
        beta: IoU needed to match a region (0.1).
        alpha: fraction of a track's regions to be matched for it to count as
            detected (0.1); a track's length is its number of region rows.

    Raises:
        UndefinedMetricError: there is no ground-truth region.
        ValueError: malformed arrays, frame ids outside ``[0, n_frames)``.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if not (0.0 < beta <= 1.0 and 0.0 < alpha <= 1.0):
        raise ValueError(f"need 0 < beta, alpha <= 1, got beta={beta}, alpha={alpha}")
    track, r_frame, r_boxes = _check_regions(gt_regions, n_frames)
    p_frame, p_boxes, p_score = _check_predictions(pred_boxes, n_frames)
    n_reg, n_pred = r_frame.size, p_frame.size
    if n_reg == 0:
        raise UndefinedMetricError("RBDC/TBDC need at least one ground-truth region")

    # Regions sorted by frame, predictions in walk order (descending score, stable).
    r_order = np.argsort(r_frame, kind="stable")
    r_frame, r_boxes, track = r_frame[r_order], r_boxes[r_order], track[r_order]
    p_order = np.argsort(-p_score, kind="stable")
    p_frame, p_boxes, p_score = p_frame[p_order], p_boxes[p_order], p_score[p_order]

    # Candidate pairs: prediction k with every region of its frame. Built in walk order
    # (k ascending), which the first-match step below relies on.
    lo = np.searchsorted(r_frame, p_frame, side="left")
    hi = np.searchsorted(r_frame, p_frame, side="right")
    count = hi - lo
    pair_pred = np.repeat(np.arange(n_pred), count)
    within = np.arange(pair_pred.size) - np.repeat(np.cumsum(count) - count, count)
    pair_reg = np.repeat(lo, count) + within
    hit = paired_iou(p_boxes[pair_pred], r_boxes[pair_reg]) >= beta
    pair_pred, pair_reg = pair_pred[hit], pair_reg[hit]

    matches_any = np.zeros(n_pred, dtype=bool)
    matches_any[pair_pred] = True
    fp_step = (~matches_any).astype(np.int64)

    # Each region's match step: the first prediction (pairs are in walk order) hitting it.
    never = n_pred
    reg_step = np.full(n_reg, never, dtype=np.int64)
    hit_regs, first = np.unique(pair_reg, return_index=True)
    reg_step[hit_regs] = pair_pred[first]
    tp_step = np.bincount(reg_step[reg_step < never], minlength=n_pred)

    # A track is detected at the step its m-th region gets matched, m = frames needed.
    track_codes, track_idx, track_len = np.unique(track, return_inverse=True, return_counts=True)
    by_track = np.lexsort((reg_step, track_idx))
    steps_sorted = reg_step[by_track]
    track_start = np.cumsum(track_len) - track_len
    track_step = steps_sorted[track_start + _frames_needed(track_len, alpha) - 1]
    det_step = np.bincount(track_step[track_step < never], minlength=n_pred)

    # One curve point per distinct score: the cumulative counts at the end of each run.
    ends = np.r_[np.flatnonzero(np.diff(p_score)), n_pred - 1] if n_pred else np.zeros(0, dtype=np.int64)
    cum_fp = np.cumsum(fp_step)[ends]
    cum_tp = np.cumsum(tp_step)[ends]
    cum_det = np.cumsum(det_step)[ends]
    fpr = np.r_[0.0, cum_fp / n_frames]
    rbdr = np.r_[0.0, cum_tp / n_reg]
    tbdr = np.r_[0.0, cum_det / track_codes.size]
    return DetectionCurves(
        rbdc=area_up_to(fpr, rbdr), tbdc=area_up_to(fpr, tbdr), fpr=fpr, rbdr=rbdr, tbdr=tbdr,
        thresholds=np.r_[np.inf, p_score[ends]], n_regions=int(n_reg), n_tracks=int(track_codes.size),
        n_frames=int(n_frames), n_predictions=int(n_pred), true_positives=int(tp_step.sum()),
        false_positives=int(fp_step.sum()))


# --- TIoU ----------------------------------------------------------------------------


def tiou(gt_regions: np.ndarray, pred_boxes: np.ndarray, frame_scores: np.ndarray, tau: float) -> float:
    """TIoU of Liu & Ma (2019) over the ground-truth-annotated frames.

    For every frame with at least one region: IoU(predicted box, ground-truth box) x
    1[frame score >= tau], where the predicted box is the frame's highest-scoring box
    (ties: the first in input order; IoU 0 when the frame has no box) and the
    ground-truth box is the union (enclosing) box of the frame's regions. TIoU is the
    mean over those frames; frames without regions do not enter it.

    Args:
        gt_regions: ``(R, 6)`` regions (global frame ids) of the anomalous videos.
        pred_boxes: ``(N, 6)`` predictions (global frame ids).
        frame_scores: ``(F,)`` frame scores indexed by global frame id.
        tau: frame-score threshold (the Youden-J threshold of the micro frame ROC).

    Raises:
        UndefinedMetricError: no region (no annotated frame).
    """
    s = np.asarray(frame_scores, dtype=np.float64)
    if s.ndim != 1 or not np.isfinite(s).all():
        raise ValueError("frame_scores must be a 1-D array of finite numbers")
    _, r_frame, r_boxes = _check_regions(gt_regions, s.size)
    p_frame, p_boxes, p_score = _check_predictions(pred_boxes, s.size)
    if r_frame.size == 0:
        raise UndefinedMetricError("TIoU needs at least one ground-truth-annotated frame")

    order = np.argsort(r_frame, kind="stable")
    r_frame, r_boxes = r_frame[order], r_boxes[order]
    gt_frames, starts = np.unique(r_frame, return_index=True)
    union = np.column_stack([np.minimum.reduceat(r_boxes[:, 0], starts),
                             np.minimum.reduceat(r_boxes[:, 1], starts),
                             np.maximum.reduceat(r_boxes[:, 2], starts),
                             np.maximum.reduceat(r_boxes[:, 3], starts)])

    # Highest-scoring box per frame: lexsort is stable, so tied scores keep input order.
    best = np.lexsort((-p_score, p_frame))
    pred_frames, first = np.unique(p_frame[best], return_index=True)
    best_boxes = p_boxes[best[first]]

    pos = np.searchsorted(pred_frames, gt_frames)
    has_box = np.zeros(gt_frames.size, dtype=bool)
    inside = pos < pred_frames.size
    has_box[inside] = pred_frames[pos[inside]] == gt_frames[inside]
    ious = np.zeros(gt_frames.size)
    ious[has_box] = paired_iou(best_boxes[pos[has_box]], union[has_box])
    ious *= s[gt_frames] >= tau
    return float(ious.mean())


# --- streaming over videos -----------------------------------------------------------


class SpatialAccumulator:
    """Collects per-video regions and boxes into global arrays, video by video.

    Each :meth:`add` offsets the video's frame ids by the frames added before it and
    maps its track ids to ids unique across the test set, so that
    :func:`rbdc_tbdc` and :func:`tiou` see one long test set.
    """

    def __init__(self) -> None:
        self._regions: list[np.ndarray] = []
        self._boxes: list[np.ndarray] = []
        self._anomalous: list[np.ndarray] = []
        self.n_frames = 0
        self.n_tracks = 0

    def add(self, regions: np.ndarray, boxes: np.ndarray, n_frames: int, anomalous: bool = True) -> None:
        """Add one video.

        Args:
            regions: ``(R, 6)`` the video's regions (its own frame and track ids).
            boxes: ``(N, 6)`` the video's predicted boxes (its own frame ids).
            n_frames: the video's frame count.
            anomalous: video-level label; TIoU uses only anomalous videos' regions.
        """
        track, frame, r_boxes = _check_regions(regions, n_frames)
        p_frame, p_boxes, p_score = _check_predictions(boxes, n_frames)
        _, local_track = np.unique(track, return_inverse=True)
        self._regions.append(np.column_stack([local_track + self.n_tracks, frame + self.n_frames, r_boxes])
                             .astype(np.float64).reshape(-1, 6))
        self._boxes.append(np.column_stack([p_frame + self.n_frames, p_boxes, p_score]).reshape(-1, 6))
        self._anomalous.append(np.full(frame.size, bool(anomalous)))
        self.n_frames += int(n_frames)
        self.n_tracks += int(local_track.max()) + 1 if local_track.size else 0

    @property
    def regions(self) -> np.ndarray:
        """``(R, 6)`` all regions, global frame and track ids."""
        return np.concatenate(self._regions) if self._regions else np.zeros((0, 6))

    @property
    def boxes(self) -> np.ndarray:
        """``(N, 6)`` all predicted boxes, global frame ids."""
        return np.concatenate(self._boxes) if self._boxes else np.zeros((0, 6))

    @property
    def anomalous_regions(self) -> np.ndarray:
        """``(R', 6)`` the regions of videos added with ``anomalous=True``."""
        if not self._regions:
            return np.zeros((0, 6))
        return self.regions[np.concatenate(self._anomalous)]

    def rbdc_tbdc(self, beta: float = BETA, alpha: float = ALPHA) -> DetectionCurves:
        """:func:`rbdc_tbdc` of every region and box added, over all frames added."""
        return rbdc_tbdc(self.regions, self.boxes, self.n_frames, beta=beta, alpha=alpha)

    def tiou(self, frame_scores: np.ndarray, tau: float) -> float:
        """TIoU over the anomalous videos; ``frame_scores (n_frames,)`` in add order."""
        return tiou(self.anomalous_regions, self.boxes, frame_scores, tau)


__all__ = [
    "ALPHA", "BETA", "DetectionCurves", "SpatialAccumulator", "area_up_to", "box_iou", "paired_iou",
    "rbdc_tbdc", "tiou",
]
