"""Feature-extraction speed of every backbone in the registry, on the machine at hand.

For each backbone: the extractor (random weights: the same compute as the real
ones, and no download) runs on batches of decoded snippets (no decoding in the
timing) at its usual setting, 224x224 input, 14x14 grid, 16-frame snippets, motion
channels on. Prints video frames/s (frames of the video covered per wall-clock
second), video frames per CPU-second of this process (what a busy, shared machine
distorts least; with ``--threads 1`` it is the single-core speed), the backbone's
images/s (frames that go through the network: ``passes`` = 2 per snippet for image
backbones, 16 per snippet for VideoMAE), and the CPU speed relative to the default
``effnet-lite0`` measured first in the same process (and again last, to show drift).

    .venv/bin/python benchmarks/backbones.py [--snippets 16] [--batch 8] [--threads N] [--only NAME ...]

Backbones whose optional package is missing are reported as such and skipped.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from patchvad.errors import PatchvadError
from patchvad.features.backbones import PatchFeatureExtractor, available_backbones


def measure(name: str, snippets: int, batch: int, size: int, repeats: int) -> tuple[float, float, float, int]:
    """Video frames per wall-clock second, per CPU-second of this process, backbone images/s, D."""
    ex = PatchFeatureExtractor(backbone=name, grid=14, input_size=size, snippet_len=16, pretrained=False)
    x = np.random.default_rng(0).integers(0, 255, (batch, 16, size, size, 3), dtype=np.uint8)
    ex(x[:1])                                              # warm-up (allocations, oneDNN kernels)
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(max(1, snippets // batch)):
            ex(x)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    frames = max(1, snippets // batch) * batch * 16
    return frames / best, frames / best_cpu, frames / best * ex.spec.passes / 16, ex.spec.dim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--snippets", type=int, default=16, help="snippets per timing")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2, help="best of this many timings")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = [n for n in (args.only or available_backbones()) if n != "effnet-lite0"]
    names = ["effnet-lite0"] + names + ["effnet-lite0"]       # the reference first and last (a busy machine drifts)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f}; {args.snippets} snippets of 16 frames at 224x224, grid 14x14")
    print(f"{'backbone':46s} {'frames/s':>9s} {'frames/CPU-s':>13s} {'images/s':>9s} {'CPU vs effnet':>14s} {'D':>5s}")
    base = None
    for name in names:
        try:
            fps, per_cpu, ips, dim = measure(name, args.snippets, args.batch, 224, args.repeats)
        except PatchvadError as exc:
            print(f"{name:46s} skipped: {exc}")
            continue
        base = per_cpu if name == "effnet-lite0" and base is None else base
        print(f"{name:46s} {fps:9.1f} {per_cpu:13.1f} {ips:9.1f} {per_cpu / base:13.3f}x {dim:5d}", flush=True)


if __name__ == "__main__":
    main()
