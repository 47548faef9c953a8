"""Extraction throughput of the default backbone, with and without the motion channels.

Prints, for 320x240 H.264 video, all measured in this process on this machine:

* the decode worker's CPU time per frame (the code GPU extraction runs in each decode
  process: decode, resize to 224x224 RGB, snippets, shared-memory hand-over), with
  libswscale single-threaded as patchvad runs it and, for comparison, with PyAV's
  default of a scaler thread per core. On a GPU machine decoding is the bottleneck,
  so ``1e6 / (us per frame) x decode processes`` bounds extraction;
* with ``--decode-workers N``: the feed ceiling, frames/s through N decode processes
  and the hand-over into the main process (and onto the device) with the backbone
  left out;
* extraction frames/s with and without motion (decode + backbone + motion), and decode
  alone in one process;
* extraction's CPU time per frame (all threads of this process): the steadier measure
  when other jobs share the machine.

Goals: >= 600 frames/s on 2 CPU cores for the default features (issue 15; issue 2 asked
>= 150); >= 6,000 on one H100-class GPU machine (issue 8; benchmarks/gpu.sh runs this
with the GPU options).

    .venv/bin/python benchmarks/extract.py [--videos 4] [--frames 160] [--device cpu]
    .venv/bin/python benchmarks/extract.py --decode-workers 1 --feed-only     # 2-core machine
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# torch and the extractor are imported inside the functions that need them: the decode
# processes (spawned) re-import this module, and a worker must stay as light as the ones
# `patchvad extract` starts (PyAV and numpy only).


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
    from patchvad.io.video import write_video

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
    from patchvad.io.video import VideoReader

    return sum(1 for _ in VideoReader(path).frames(size=(224, 224), threads=1))


def worker_cpu_per_frame(paths: list[Path], chunk: int = 8) -> float:
    """CPU microseconds per frame of the decode processes' loop run in this process (best of 3).

    The hand-over blocks it makes are read back and freed outside the timed part.
    """
    import queue

    from patchvad.features.decode import decode_loop, take_shared

    best, frames = float("inf"), 0
    for _ in range(3):
        tasks, results = queue.Queue(), queue.Queue()
        for i, p in enumerate(paths):
            tasks.put((i, str(p)))
        tasks.put(None)
        t0 = time.process_time()
        decode_loop(tasks, results, (224, 224), 16, 16, chunk)       # what each decode process runs
        best = min(best, time.process_time() - t0)
        frames = 0
        while not results.empty():
            _, kind, payload = results.get()
            if kind == "chunk":
                take_shared(payload[1], payload[2])
            elif kind == "done":
                frames += payload[2]["frame_count"]
            elif kind == "error":
                raise SystemExit(f"benchmark video failed: {payload}")
    return best / frames * 1e6


def scaler_cpu_per_frame(path: Path, threads: int) -> float:
    """CPU microseconds per frame of the resize + RGB conversion alone (libswscale ``threads``)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        frames = list(container.decode(stream))
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        for f in frames:
            f.reformat(width=224, height=224, format="rgb24", interpolation="AREA", threads=threads).to_ndarray()
        best = min(best, time.process_time() - t0)
    return best / len(frames) * 1e6


class FeedOnly:
    """Stands in for the backbone to measure the feed alone: returns zeros of shape ``(B, 1, 1, 1)``.

    The snippets still travel the whole way (shared memory, pinned copy, device).
    """

    def __init__(self, device: str):
        import torch

        from patchvad.features.backbones import PatchFeatureExtractor

        self.spec = PatchFeatureExtractor(device="cpu", pretrained=False).spec
        self.device = torch.device(device)

    def submit(self, snippets):
        import torch

        from patchvad.features.backbones import PendingFeatures

        x = torch.as_tensor(snippets)
        return PendingFeatures(torch.zeros((x.shape[0], 1, 1, 1)))

    def __call__(self, snippets) -> np.ndarray:
        return self.submit(snippets).numpy()


def timed(paths: list[Path], extractor, batch_size: int, decode_workers: int,
          frames: int) -> tuple[float, float, float]:
    """Frames/s of ``extract_many`` over ``paths`` (whole run, steady state) and CPU us per frame.

    The CPU time is this process's, all its threads. The steady state counts the videos finished after the first one, over the time since
    it finished (leaves out starting the decode processes and filling the pipeline,
    which a dataset-sized run pays once). The CPU time counts decoding when it runs in
    this process (``--decode-workers 0``) and OpenMP threads spinning at a barrier; on a
    machine shared with other jobs it is the steadier measure of the work done.
    """
    import torch

    from patchvad.features.extract import extract_many

    t0, c0 = time.perf_counter(), time.process_time()
    first = None
    count = 0
    for _, feats, _, facts in extract_many(paths, extractor, batch_size=batch_size, decode_workers=decode_workers):
        if feats is None:
            raise SystemExit(f"benchmark video failed: {facts}")
        if first is None:
            first = time.perf_counter()
        else:
            count += facts["frame_count"]
    if extractor.device.type == "cuda":
        torch.cuda.synchronize()
    end = time.perf_counter()
    cpu_us = (time.process_time() - c0) / (len(paths) * frames) * 1e6
    return len(paths) * frames / (end - t0), (count / (end - first) if count else float("nan")), cpu_us


def compute_cpu_per_frame(extractor, snippets: np.ndarray, repeat: int = 5) -> float:
    """CPU microseconds per frame of the extractor on already decoded snippets (median of ``repeat``).

    ``snippets``: ``(B, 16, 224, 224, 3)`` uint8. No decoding: the backbone and the motion
    channels alone, all threads of this process.
    """
    extractor(snippets)                         # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        extractor(snippets)
        times.append(time.process_time() - t0)
    return float(np.median(times)) / (snippets.shape[0] * snippets.shape[1]) * 1e6


def main() -> int:
    import torch

    from patchvad.features.backbones import PatchFeatureExtractor
    from patchvad.features.extract import extract_many
    from patchvad.io.video import VideoReader

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=160)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--decode-workers", type=int, default=0,
                        help="decode in N processes (GPU: e.g. 15); 0 decodes in a thread")
    parser.add_argument("--compare-cpu", action="store_true",
                        help="also check the GPU features against CPU features of one video")
    parser.add_argument("--feed-only", action="store_true",
                        help="measure decoding and the hand-over only (no backbone runs)")
    args = parser.parse_args()
    # On a GPU the main process only feeds the device; leave the cores to the decoders.
    torch.set_num_threads(2 if args.device != "cpu" else (os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_videos(Path(tmp), args.videos, args.frames, processes=max(1, args.decode_workers))
        total = args.videos * args.frames
        per_frame = worker_cpu_per_frame(paths[:4])
        scaler = {t: scaler_cpu_per_frame(paths[0], t) for t in (1, 0)}
        feed = None
        if args.decode_workers > 0:
            feed = timed(paths, FeedOnly(args.device), args.batch_size, args.decode_workers, args.frames)
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
        results, compute = {}, {}
        decoded = np.stack(list(VideoReader(paths[0]).frames(size=(224, 224)))[:args.batch_size * 16])
        batch = decoded.reshape(-1, 16, 224, 224, 3)
        for motion in (() if args.feed_only else (True, False)):
            ex = PatchFeatureExtractor(motion=motion, device=args.device)
            list(extract_many(paths[:1], ex, batch_size=args.batch_size))      # warm-up
            results[motion] = timed(paths, ex, args.batch_size, args.decode_workers, args.frames)
            compute[motion] = compute_cpu_per_frame(ex, batch)
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
    print(f"decode worker CPU per frame:        {per_frame:8.0f} us         (-> {1e6 / per_frame:,.0f} frames/s per "
          f"decode process)")
    print(f"  of which resize + RGB (swscale):  {scaler[1]:8.0f} us single-threaded; {scaler[0]:.0f} us with a "
          f"scaler thread per core (PyAV's default)")
    print(f"decode only (resized to 224x224):   {decode_fps:8.0f} frames/s   (one process)")
    if par_decode_fps is not None:
        print(f"decode only, {args.decode_workers} processes:         {par_decode_fps:8.0f} frames/s   (the ceiling)")
    if feed is not None:
        print(f"feed: {args.decode_workers} decoders + hand-over:     {feed[0]:8.0f} frames/s   (no backbone, to "
              f"{args.device}; steady state {feed[1]:,.0f})")
    if args.feed_only:
        return 0
    goal = ">= 6000 on a GPU machine" if args.device != "cpu" else ">= 600 on 2 CPU cores"
    print(f"extract, appearance + motion:       {results[True][0]:8.0f} frames/s   (goal {goal}; steady "
          f"state {results[True][1]:,.0f})")
    print(f"extract, appearance only:           {results[False][0]:8.0f} frames/s   (steady state "
          f"{results[False][1]:,.0f})")
    print(f"motion cost: with/without ratio   = {results[True][0] / results[False][0]:.2f}")
    print(f"extract CPU time per frame:         {results[True][2]:8.0f} us with motion, {results[False][2]:.0f} us "
          f"without (this process, all threads; {os.cpu_count()} cores at that cost: "
          f"{(os.cpu_count() or 1) * 1e6 / results[True][2]:,.0f} frames/s)")
    print(f"  backbone + motion, no decoding:   {compute[True]:8.0f} us with motion, {compute[False]:.0f} us without "
          f"({args.batch_size} decoded snippets, median of 5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
