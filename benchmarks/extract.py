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
from patchvad.features.extract import extract_many
from patchvad.io.video import VideoReader, write_video


def _make_video(args: tuple[Path, int, int]) -> Path:
    path, seed, frames = args
    rng = np.random.default_rng(seed)
    bg = (rng.random((240, 320, 3)) * 120 + 60).astype(np.uint8)
    clip = []
    for t in range(frames):
        f = bg.copy()
        x = (10 + 3 * t) % 280
        f[100:140, x:x + 16] = (200, 40, 40)
        clip.append(f)
    write_video(path, clip, fps=25)
    return path


def make_videos(folder: Path, count: int, frames: int, processes: int = 1) -> list[Path]:
    jobs = [(folder / f"v{i}.mp4", i, frames) for i in range(count)]
    if processes <= 1:
        return [_make_video(j) for j in jobs]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(processes, mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(_make_video, jobs))


def _decode_count(path: str) -> int:
    return sum(1 for _ in VideoReader(path).frames(size=(224, 224), threads=1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=160)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--decode-workers", type=int, default=0,
                        help="decode in N processes (GPU: e.g. 15); 0 decodes in a thread")
    parser.add_argument("--compare-cpu", action="store_true",
                        help="also check the GPU features against CPU features of one video")
    args = parser.parse_args()
    # On a GPU the main process only feeds the device; leave the cores to the decoders.
    torch.set_num_threads(2 if args.device != "cpu" else (os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_videos(Path(tmp), args.videos, args.frames, processes=max(1, args.decode_workers))
        total = args.videos * args.frames
        t0 = time.perf_counter()
        for p in paths:
            for _ in VideoReader(p).frames(size=(224, 224)):
                pass
        decode_fps = total / (time.perf_counter() - t0)
        par_decode_fps = None
        if args.decode_workers > 0:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(args.decode_workers, mp_context=mp.get_context("spawn")) as pool:
                list(pool.map(_decode_count, [str(p) for p in paths[:args.decode_workers]]))   # warm-up
                t0 = time.perf_counter()
                n = sum(pool.map(_decode_count, [str(p) for p in paths]))
                par_decode_fps = n / (time.perf_counter() - t0)
        results = {}
        for motion in (True, False):
            ex = PatchFeatureExtractor(motion=motion, device=args.device)
            list(extract_many(paths[:1], ex, batch_size=args.batch_size))      # warm-up
            t0 = time.perf_counter()
            got = list(extract_many(paths, ex, batch_size=args.batch_size, decode_workers=args.decode_workers))
            results[motion] = total / (time.perf_counter() - t0)
            assert all(feats is not None for _, feats, _, _ in got), "a benchmark video failed"
            if motion and args.compare_cpu and args.device != "cpu":
                cpu = PatchFeatureExtractor(device="cpu")
                (_, ref, _, _), = list(extract_many(paths[:1], cpu))
                (_, gpu, _, _), = list(extract_many(paths[:1], ex))
                rel = np.abs(ref - gpu).max() / (np.abs(ref).max() + 1e-9)
                print(f"GPU (float16 autocast) vs CPU features, max abs diff / max abs value: {rel:.4f}")
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "none"
    print(f"machine: {os.cpu_count()} CPU cores, GPU {gpu}, torch {torch.__version__}, device {args.device}, "
          f"decode workers {args.decode_workers}")
    print(f"video: {args.videos} x {args.frames} frames of 320x240 H.264, snippets of 16, 2 backbone passes, "
          f"14x14 grid")
    print(f"decode only (resized to 224x224):   {decode_fps:8.0f} frames/s   (one process)")
    if par_decode_fps is not None:
        print(f"decode only, {args.decode_workers} processes:         {par_decode_fps:8.0f} frames/s   (the ceiling)")
    goal = ">= 6000 on a GPU machine" if args.device != "cpu" else ">= 150 on 2 CPU cores"
    print(f"extract, appearance + motion:       {results[True]:8.0f} frames/s   (goal {goal})")
    print(f"extract, appearance only:           {results[False]:8.0f} frames/s")
    print(f"motion cost: with/without ratio   = {results[True] / results[False]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
