"""Speed and memory of the spatial metrics at test-set scale.

100,000 test frames (1,000 videos of 100 frames, half of them anomalous), ground-truth
tracks in the anomalous videos, 500,000 predicted boxes (some near the ground truth,
most random). Times RBDC + TBDC + TIoU (and, for the record, the frame metrics that
TIoU needs) and reports the peak memory that numpy allocated (tracemalloc, second
pass, so tracing does not distort the timings) and the process's peak RSS.

Goal (issue 4): RBDC + TBDC + TIoU under 5 s on 2 CPU cores.

    .venv/bin/python benchmarks/metrics.py [--frames 100000] [--boxes 500000]
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

from patchvad.metrics import (
    frame_ap_stepwise,
    frame_auc,
    rbdc_tbdc,
    tiou,
    youden_threshold,
)


def make_data(n_frames: int, n_boxes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Synthetic global arrays: regions (R, 6), boxes (N, 6), frame labels and scores (F,)."""
    rng = np.random.default_rng(seed)
    video_len = 100
    n_videos = n_frames // video_len
    width, height = 320, 240
    regions = []
    track_id = 0
    for v in range(0, n_videos, 2):  # every other video is anomalous
        for _ in range(rng.integers(1, 4)):  # 1-3 tracks per anomalous video
            start = v * video_len + rng.integers(0, 60)
            length = int(rng.integers(10, 40))
            frames = np.arange(start, start + length)
            x = rng.integers(0, width - 60) + np.cumsum(rng.integers(-2, 3, length)).clip(-50, 50)
            y = rng.integers(0, height - 60) + np.cumsum(rng.integers(-2, 3, length)).clip(-50, 50)
            x = x.clip(0, width - 41)
            y = y.clip(0, height - 41)
            w, h = rng.integers(20, 40), rng.integers(20, 40)
            regions.append(np.column_stack([np.full(length, track_id), frames, x, y, x + w, y + h]))
            track_id += 1
    regions_arr = np.concatenate(regions).astype(np.int64)

    # 20% of the boxes jitter around ground-truth regions, the rest are random anywhere.
    n_near = n_boxes // 5
    pick = rng.integers(0, regions_arr.shape[0], n_near)
    near = regions_arr[pick, 2:6] + rng.integers(-15, 16, (n_near, 4))
    near_frames = regions_arr[pick, 1]
    n_far = n_boxes - n_near
    far_xy = np.column_stack([rng.integers(0, width - 40, n_far), rng.integers(0, height - 40, n_far)])
    far = np.column_stack([far_xy, far_xy + rng.integers(10, 40, (n_far, 2))])
    far_frames = rng.integers(0, n_frames, n_far)
    frames = np.r_[near_frames, far_frames]
    coords = np.r_[near, far].astype(np.float64)
    coords[:, 2] = np.maximum(coords[:, 2], coords[:, 0])
    coords[:, 3] = np.maximum(coords[:, 3], coords[:, 1])
    scores = np.r_[rng.beta(4, 2, n_near), rng.beta(2, 4, n_far)]
    boxes = np.column_stack([frames, coords, scores])

    labels = np.zeros(n_frames, dtype=np.uint8)
    labels[regions_arr[:, 1]] = 1
    frame_scores = np.clip(labels * 0.3 + rng.random(n_frames) * 0.7, 0, 1)
    return {"regions": regions_arr, "boxes": boxes, "labels": labels, "frame_scores": frame_scores}


def run(data: dict[str, np.ndarray], n_frames: int) -> dict[str, float]:
    """Compute the metrics once; return their values and the time of each stage."""
    t0 = time.perf_counter()
    curves = rbdc_tbdc(data["regions"], data["boxes"], n_frames)
    t1 = time.perf_counter()
    tau = youden_threshold(data["labels"], data["frame_scores"])
    t2 = time.perf_counter()
    t_iou = tiou(data["regions"], data["boxes"], data["frame_scores"], tau)
    t3 = time.perf_counter()
    auc = frame_auc(data["labels"], data["frame_scores"])
    ap = frame_ap_stepwise(data["labels"], data["frame_scores"])
    t4 = time.perf_counter()
    return {"rbdc": curves.rbdc, "tbdc": curves.tbdc, "tiou": t_iou, "tau": tau, "auc": auc, "ap": ap,
            "s_rbdc_tbdc": t1 - t0, "s_youden": t2 - t1, "s_tiou": t3 - t2, "s_auc_ap": t4 - t3,
            "s_total": t4 - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--boxes", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best is reported")
    args = parser.parse_args()

    data = make_data(args.frames, args.boxes)
    print(f"{args.frames} frames, {data['boxes'].shape[0]} predicted boxes, {data['regions'].shape[0]} GT regions "
          f"in {np.unique(data['regions'][:, 0]).size} tracks")
    runs = [run(data, args.frames) for _ in range(args.repeat)]
    best = min(runs, key=lambda r: r["s_total"])
    print(f"RBDC {best['rbdc']:.4f}  TBDC {best['tbdc']:.4f}  TIoU {best['tiou']:.4f} (tau {best['tau']:.4f})  "
          f"AUC {best['auc']:.4f}  AP {best['ap']:.4f}")
    print(f"time (best of {args.repeat}): RBDC+TBDC {best['s_rbdc_tbdc']:.3f} s, Youden {best['s_youden']:.3f} s, "
          f"TIoU {best['s_tiou']:.3f} s, frame AUC+AP {best['s_auc_ap']:.3f} s, total {best['s_total']:.3f} s")
    spatial = best["s_rbdc_tbdc"] + best["s_youden"] + best["s_tiou"]
    print(f"RBDC+TBDC+TIoU (incl. its threshold): {spatial:.3f} s  (goal < 5 s: "
          f"{'met' if spatial < 5.0 else 'NOT met'})")

    tracemalloc.start()
    run(data, args.frames)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory allocated by the metrics: {peak / 2**20:.1f} MiB (tracemalloc); "
          f"process peak RSS {rss_mib:.1f} MiB")


if __name__ == "__main__":
    main()
