"""Test helpers: tiny dataset folders and a literal (slow) reference of RBDC/TBDC."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from patchvad.data.folder import write_frame_labels, write_manifest, write_tracks


def build_dataset(root: Path, videos: list[dict]) -> Path:
    """Write a dataset folder whose manifest carries frames/width/height (no decoding).

    Each video dict: ``stem, split, label`` and optionally ``cls`` (""), ``frames`` (10),
    ``width`` / ``height`` (40), ``regions`` ((R, 6) rows), ``frame_labels`` ((F,) 0/1).
    An empty file stands in for each video (read_manifest checks it exists).
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "videos").mkdir(exist_ok=True)
    rows = []
    for v in videos:
        rel = f"videos/{v['stem']}.mp4"
        (root / rel).touch()
        rows.append({"video": rel, "split": v["split"], "label": v["label"], "class": v.get("cls", ""),
                     "frames": v.get("frames", 10), "width": v.get("width", 40), "height": v.get("height", 40)})
        if v.get("regions") is not None:
            write_tracks(root, v["stem"], np.asarray(v["regions"]))
        if v.get("frame_labels") is not None:
            write_frame_labels(root, v["stem"], np.asarray(v["frame_labels"]))
    write_manifest(root, rows)
    return root


def _iou(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(iw, 0) * max(ih, 0)
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _area(points: list[tuple[float, float]]) -> float:
    """Trapezoid from (0, 0), cut at x = 1 by interpolation, extended flat to x = 1."""
    total, (x0, y0) = 0.0, points[0]
    for x1, y1 in points[1:]:
        if x1 <= 1.0:
            total += (x1 - x0) * (y0 + y1) / 2
            x0, y0 = x1, y1
        else:
            y_cut = y0 + (y1 - y0) * (1.0 - x0) / (x1 - x0)
            return total + (1.0 - x0) * (y0 + y_cut) / 2
    return total + (1.0 - x0) * y0


def reference_rbdc_tbdc(regions, preds, n_frames: int, beta: float = 0.1, alpha: float = 0.1):
    """The RBDC/TBDC walk of docs/metrics.md, "Spatial", literally, one prediction at a time (slow; tests only).

    Returns (rbdc, tbdc, fpr list, rbdr list, tbdr list).
    """
    regions = [tuple(r) for r in np.asarray(regions).tolist()]
    preds = [tuple(p) for p in np.asarray(preds).reshape(-1, 6).tolist()]
    order = sorted(range(len(preds)), key=lambda i: -preds[i][5])  # sorted() is stable
    track_len: dict = {}
    for r in regions:
        track_len[r[0]] = track_len.get(r[0], 0) + 1
    matched: set = set()
    hits: dict = {}
    detected: set = set()
    tp = fp = 0
    points = [(0.0, 0.0, 0.0)]
    for k, i in enumerate(order):
        p = preds[i]
        in_frame = [j for j, r in enumerate(regions) if r[1] == p[0]]
        good = [j for j in in_frame if _iou(p[1:5], regions[j][2:6]) >= beta]
        if not good:
            fp += 1
        for j in good:
            if j not in matched:
                matched.add(j)
                tp += 1
                t = regions[j][0]
                hits[t] = hits.get(t, 0) + 1
                if hits[t] / track_len[t] >= alpha:
                    detected.add(t)
        last_of_score = k == len(order) - 1 or preds[order[k + 1]][5] != p[5]
        if last_of_score:
            points.append((fp / n_frames, tp / len(regions), len(detected) / len(track_len)))
    fpr = [q[0] for q in points]
    rbdr = [q[1] for q in points]
    tbdr = [q[2] for q in points]
    return _area(list(zip(fpr, rbdr))), _area(list(zip(fpr, tbdr))), fpr, rbdr, tbdr
