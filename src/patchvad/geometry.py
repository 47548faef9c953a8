"""Box geometry shared by the adapters, inference and the metrics.

Boxes are ``x_min, y_min, x_max, y_max`` in INCLUSIVE frame pixels: pixel ``x`` covers
``[x, x + 1)``, so a box's width is ``x_max - x_min + 1`` (the +1 convention of the
field's RBDC/TBDC code and of docs/conventions.md). A grid of ``Gh x Gw`` cells
splits a ``W x H`` frame evenly: cell column ``j`` covers pixels
``[floor(j W / Gw), ceil((j + 1) W / Gw) - 1]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def _as_boxes(boxes: np.ndarray, what: str) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{what} must have shape (n, 4), got {b.shape}")
    return b


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of inclusive pixel boxes (+1-pixel convention).

    Args:
        a: ``(N, 4)`` xyxy boxes.
        b: ``(M, 4)`` xyxy boxes.

    Returns:
        ``(N, M)`` float64 IoU in [0, 1] (0 where the union is empty: degenerate boxes).
    """
    a = _as_boxes(a, "a")
    b = _as_boxes(b, "b")
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1.0
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1.0
    inter = np.clip(iw, 0.0, None) * np.clip(ih, 0.0, None)
    area_a = (a[:, 2] - a[:, 0] + 1.0) * (a[:, 3] - a[:, 1] + 1.0)
    area_b = (b[:, 2] - b[:, 0] + 1.0) * (b[:, 3] - b[:, 1] + 1.0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of ``a[i]`` and ``b[i]``: ``(N, 4), (N, 4) -> (N,)`` (+1 pixel)."""
    a = _as_boxes(a, "a")
    b = _as_boxes(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired boxes differ in shape: {a.shape} vs {b.shape}")
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + 1.0
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + 1.0
    inter = np.clip(iw, 0.0, None) * np.clip(ih, 0.0, None)
    area_a = (a[:, 2] - a[:, 0] + 1.0) * (a[:, 3] - a[:, 1] + 1.0)
    area_b = (b[:, 2] - b[:, 0] + 1.0) * (b[:, 3] - b[:, 1] + 1.0)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def cell_box(box: Sequence[float], grid: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Smallest box of whole grid cells containing ``box`` (inclusive pixels, ``size`` = (W, H))."""
    gh, gw = grid
    w, h = size
    c0, c1 = int(box[0] * gw // w), int(box[2] * gw // w)
    r0, r1 = int(box[1] * gh // h), int(box[3] * gh // h)
    x1 = int(np.floor(c0 * w / gw))
    x2 = int(np.ceil((c1 + 1) * w / gw)) - 1
    y1 = int(np.floor(r0 * h / gh))
    y2 = int(np.ceil((r1 + 1) * h / gh)) - 1
    return x1, y1, min(x2, w - 1), min(y2, h - 1)


def chain_snippet_boxes(snippet_boxes: Sequence[Sequence[int]], link_iou: float) -> list[int]:
    """Track id of each snippet's ONE box: consecutive boxes with IoU >= ``link_iou`` share one.

    Inference makes one box per snippet; a track is a run of consecutive snippets whose
    boxes overlap. Ids start at 0 and increase with each break.
    """
    ids: list[int] = []
    next_id = 0
    for t, box in enumerate(snippet_boxes):
        if t > 0 and float(paired_iou(np.asarray([snippet_boxes[t - 1]]), np.asarray([box]))[0]) >= link_iou:
            ids.append(ids[-1])
        else:
            ids.append(next_id)
            next_id += 1
    return ids


def link_frame_boxes(per_frame: Iterable[tuple[int | np.integer, np.ndarray]], min_iou: float = 0.0) -> np.ndarray:
    """Link SEVERAL boxes per frame into tracks (ground-truth track identities for RBDC/TBDC).

    A box continues a track whose box in the *previous* frame overlaps it with IoU
    above ``min_iou``; pairs are taken greedily by descending IoU, so two objects that
    cross keep their identities as long as each overlaps itself most. A track ends at
    the first frame it is not continued; a box that continues nothing starts a track.

    Args:
        per_frame: ``(frame_id, boxes (n, 4))`` pairs, any order.
        min_iou: overlap a continuation must exceed (0: any overlap).

    Returns:
        ``(R, 6)`` int64 rows ``track_id, frame_id, x1, y1, x2, y2`` sorted by
        (frame, track); track ids start at 0 in order of appearance.
    """
    rows: list[tuple[int, ...]] = []
    previous: list[tuple[int, np.ndarray]] = []   # (track_id, box) alive in the previous frame
    previous_frame: int | None = None
    next_id = 0
    for frame_id, boxes in sorted(((int(f), np.asarray(b, dtype=np.int64).reshape(-1, 4))
                                   for f, b in per_frame), key=lambda t: t[0]):
        candidates = previous if previous_frame is not None and frame_id == previous_frame + 1 else []
        assigned = _continuations(candidates, boxes, min_iou)
        current: list[tuple[int, np.ndarray]] = []
        for bi, box in enumerate(boxes):
            track = assigned.get(bi)
            if track is None:
                track, next_id = next_id, next_id + 1
            current.append((track, box))
            rows.append((track, frame_id, *(int(v) for v in box)))
        previous, previous_frame = current, frame_id
    out = np.asarray(rows, dtype=np.int64).reshape(-1, 6)
    return out[np.lexsort((out[:, 0], out[:, 1]))] if len(out) else out


def _continuations(candidates: list[tuple[int, np.ndarray]], boxes: np.ndarray, min_iou: float) -> dict[int, int]:
    """``{box index: track id}`` of the boxes that continue a previous frame's track (greedy by IoU)."""
    assigned: dict[int, int] = {}
    if not candidates or not len(boxes):
        return assigned
    iou = box_iou(np.stack([b for _, b in candidates]), boxes)
    order = np.dstack(np.unravel_index(np.argsort(-iou, axis=None), iou.shape))[0]
    used_tracks: set[int] = set()
    for ti, bi in order:
        if iou[ti, bi] <= min_iou:
            break
        if ti in used_tracks or bi in assigned:
            continue
        used_tracks.add(int(ti))
        assigned[int(bi)] = candidates[int(ti)][0]
    return assigned


__all__ = ["box_iou", "cell_box", "chain_snippet_boxes", "link_frame_boxes", "paired_iou"]
