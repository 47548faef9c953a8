"""End-to-end speed of ``patchvad predict`` and streaming latency, on this machine.

Measures, with the default backbone (EfficientNet-Lite0 + motion, 14x14 grid):
* offline frames/s (decode + features + scorer + boxes + events), overlay off and on,
  on 320x240 video and on 768x576 real footage (shared/data/vtest/vtest.avi);
* streaming latency: wall time from the moment a snippet's last frame was decoded to
  the moment its score is reported (``--delay 0``), median and max.
Goals (issue 7): >= 30 frames/s at 320x240 on 2 CPU cores; latency under one
snippet duration (16 frames / fps) plus 200 ms.

    .venv/bin/python benchmarks/predict.py [--frames 320] [--ckpt RUN/model.safetensors]

Without ``--ckpt`` a proximity model is trained for a few steps on a tiny synthetic
set first (its quality does not matter here, only its cost).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
VTEST = (REPO / ".." / "shared" / "data" / "vtest" / "vtest.avi").resolve()


def quick_checkpoint(folder: Path) -> Path:
    from patchvad.config import RunConfig, TrainConfig
    from patchvad.data.synth import generate_benchmark
    from patchvad.features.extract import extract_dataset
    from patchvad.training import fit

    generate_benchmark(folder / "data", 12, 2, seed=0, preset="tiny")
    extract_dataset(folder / "data", folder / "feats", progress=False)
    cfg = RunConfig(train=TrainConfig(steps=20, eval_every=10, batch_size=4))
    return fit(folder / "data", folder / "feats", folder / "run", method="proximity", seed=0, config=cfg,
               log=None).checkpoint


def street_video(path: Path, frames: int) -> Path:
    """The same 320x240 moving-object clip as benchmarks/extract.py."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from extract import _make_video

    return _make_video((path, 0, frames))


def offline_fps(detector, video: Path, out: Path) -> tuple[float, float, int]:
    from patchvad.predict import write_detection

    t0 = time.perf_counter()
    det = detector.predict(video)
    write_detection(det, out / "no_overlay", overlay=False, thumbnails=False)
    t_off = time.perf_counter() - t0
    t0 = time.perf_counter()
    det = detector.predict(video)
    write_detection(det, out / "overlay", overlay=True, thumbnails=True)
    t_on = time.perf_counter() - t0
    return det.frame_count / t_off, det.frame_count / t_on, det.frame_count


def stream_latency(detector, video: Path) -> tuple[float, float, float, float]:
    """Median / max latency (s) from a snippet's last decoded frame to its score; fps."""
    from patchvad.io.video import VideoReader

    arrival: list[float] = []
    original = VideoReader.frame_pairs

    def timed(self, size):
        for pair in original(self, size):
            arrival.append(time.perf_counter())
            yield pair

    VideoReader.frame_pairs = timed
    latencies = []
    try:
        t0 = time.perf_counter()
        for upd in detector.stream(video, delay=0, history=64):
            if upd.snippet >= 0:
                latencies.append(time.perf_counter() - arrival[upd.last_frame])
        seconds = time.perf_counter() - t0
    finally:
        VideoReader.frame_pairs = original
    return float(np.median(latencies)), float(np.max(latencies)), len(arrival) / seconds, detector.last_fps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=320, help="frames of the 320x240 test video")
    parser.add_argument("--ckpt", default=None)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    from patchvad.predict import Detector

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = Path(args.ckpt) if args.ckpt else quick_checkpoint(tmp / "ckpt")
        detector = Detector(ckpt)
        videos = [("320x240 synthetic", street_video(tmp / "street.mp4", args.frames))]
        if VTEST.exists():
            videos.append(("768x576 vtest.avi", VTEST))
        print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}; model {detector.model.method}, "
              f"grid {detector.spec.grid[0]}x{detector.spec.grid[1]}, backbone {detector.spec.backbone}")
        for name, video in videos:
            fps_off, fps_on, n = offline_fps(detector, video, tmp / name.split()[0])
            med, mx, stream_fps, video_fps = stream_latency(detector, video)
            budget = detector.spec.snippet_len / video_fps + 0.2
            print(f"{name} ({n} frames): offline {fps_off:6.1f} frames/s (overlay off), {fps_on:6.1f} frames/s "
                  f"(overlay + thumbnails on); goal >= 30 at 320x240")
            print(f"{'':>20} streaming {stream_fps:6.1f} frames/s; latency median {med * 1000:6.0f} ms, max "
                  f"{mx * 1000:6.0f} ms (goal < one snippet {detector.spec.snippet_len / video_fps * 1000:.0f} ms "
                  f"+ 200 ms = {budget * 1000:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
