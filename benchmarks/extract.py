"""Extraction throughput of the default backbone, with and without the motion channels.

Prints video frames per second for 320x240 H.264 video (decode + backbone + motion),
decode alone, and the ratio motion-on / motion-off, all measured in this process on
this machine. Goal (issue 2): >= 150 frames/s on 2 CPU cores.

    .venv/bin/python benchmarks/extract.py [--videos 4] [--frames 160] [--device cpu]
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

from patchvad.features.backbones import PatchFeatureExtractor
from patchvad.features.extract import extract_video
from patchvad.io.video import VideoReader, write_video


def make_videos(folder: Path, count: int, frames: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        bg = (rng.random((240, 320, 3)) * 120 + 60).astype(np.uint8)
        clip = []
        for t in range(frames):
            f = bg.copy()
            x = (10 + 3 * t) % 280
            f[100:140, x:x + 16] = (200, 40, 40)
            clip.append(f)
        path = folder / f"v{i}.mp4"
        write_video(path, clip, fps=25)
        paths.append(path)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=160)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_videos(Path(tmp), args.videos, args.frames)
        total = args.videos * args.frames
        t0 = time.perf_counter()
        for p in paths:
            for _ in VideoReader(p).frames(size=(224, 224)):
                pass
        decode_fps = total / (time.perf_counter() - t0)
        results = {}
        for motion in (True, False):
            ex = PatchFeatureExtractor(motion=motion, device=args.device)
            extract_video(paths[0], ex, batch_size=args.batch_size)      # warm-up
            t0 = time.perf_counter()
            for p in paths:
                extract_video(p, ex, batch_size=args.batch_size)
            results[motion] = total / (time.perf_counter() - t0)
    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, device {args.device}")
    print(f"video: {args.videos} x {args.frames} frames of 320x240 H.264, snippets of 16, 2 backbone passes, "
          f"14x14 grid")
    print(f"decode only (resized to 224x224):   {decode_fps:8.0f} frames/s")
    print(f"extract, appearance + motion:       {results[True]:8.0f} frames/s   (goal >= 150)")
    print(f"extract, appearance only:           {results[False]:8.0f} frames/s")
    print(f"motion cost: with/without ratio   = {results[True] / results[False]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
