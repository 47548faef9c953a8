"""Training and inference speed / memory of the patch model on memory-mapped features.

Writes ``--videos`` random float16 feature files of ``(T, G, G, D)`` to a temporary
feature store (a UCF-Crime-sized set is 1,610 videos at T=64, 14x14, D=552, about
22 GB: too much for a small disk, so the default writes fewer and extrapolates the
epoch time linearly to ``--target-videos``), then measures, in this process:

1. fitting the normaliser on the normal videos (streamed, memory-mapped);
2. encoding every video once (memory-mapped read, one video at a time);
3. one training epoch: ``videos / batch_size`` AdamW steps of the proximity model
   on balanced batches, exactly the loop of ``patchvad.training.fit`` (encoded videos in
   a cache file read per batch, as ``fit`` does for sets above 1 GB; ``--cache memory``
   keeps them in RAM);
4. inference speed (snippets / second) of ``predict_video`` on a few videos;
5. peak resident memory of the process (``ru_maxrss``).

With ``--fit DEMO_OUT`` it measures instead one real ``patchvad.training.fit`` of the
proximity model on a demo's benchmark and features (``DEMO_OUT/data``,
``DEMO_OUT/features``; ``--steps`` steps, default 600, with the demo preset's other
training settings), wall time and the fit's own split (normaliser, encoding, steps,
validation). Issue 16's goal: a 600-step fit at the demo's size in <= 60 s on 2 CPU cores.

Usage::

    python benchmarks/train.py --fit runs/demo --threads 2   # a 600-step fit on the demo's data
    python benchmarks/train.py                     # 96 videos, extrapolated to 1,610
    python benchmarks/train.py --videos 1610       # the real size (needs ~22 GB free disk)
    python benchmarks/train.py --dim 64            # smaller D, more videos on a small disk
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from patchvad.config import RunConfig, TrainConfig
from patchvad.features.store import FeatureStore
from patchvad.inference import predict_video
from patchvad.model.model import AnomalyModel
from patchvad.training import BalancedSampler, encode_videos, pad_batch
from random_features import write_random_store  # benchmarks/random_features.py


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_store(path: Path, n: int, t: int, grid: int, dim: int, seed: int) -> tuple[FeatureStore, np.ndarray]:
    """Random features of ``n`` videos and their alternating labels."""
    return write_random_store(path, n, t, grid, dim, seed), np.arange(n) % 2


def fit_demo(demo_out: Path, steps: int, threads: int, json_path: Path | None) -> int:
    """One ``fit`` of the proximity model on a demo's data: wall time and the fit's own split."""
    from patchvad.demo import DEMO_PRESETS, demo_config
    from patchvad.training import fit

    cfg = demo_config("proximity", DEMO_PRESETS["small"])
    cfg = RunConfig.from_dict({**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "steps": steps,
                                                          "threads": threads}})
    with tempfile.TemporaryDirectory(prefix="patchvad-fit-") as tmp:
        t0 = time.perf_counter()
        res = fit(demo_out / "data", demo_out / "features", Path(tmp) / "run", "proximity", seed=0, config=cfg,
                  log=None)
        wall = time.perf_counter() - t0
    out = {"steps": steps, "threads": torch.get_num_threads(), "wall_s": wall, "timings": res.timings,
           "step_s": res.timings["steps"] / max(1, steps), "goal_s": 60.0}
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in res.timings.items())
    print(f"fit of {steps} steps on {demo_out}: {wall:.1f} s wall ({parts}; {out['step_s'] * 1e3:.0f} ms/step, "
          f"{out['threads']} torch threads); goal <= 60 s for 600 steps on 2 cores")
    if json_path:
        json_path.write_text(json.dumps(out, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=96, help="videos written (default 96)")
    ap.add_argument("--target-videos", type=int, default=1610, help="epoch time extrapolated to this many")
    ap.add_argument("--snippets", type=int, default=64)
    ap.add_argument("--grid", type=int, default=14)
    ap.add_argument("--dim", type=int, default=552)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--infer-videos", type=int, default=8)
    ap.add_argument("--cache", choices=["disk", "memory"], default="disk",
                    help="encoded videos in a cache file read per batch (fit's choice above 1 GB) or in RAM")
    ap.add_argument("--tmp", type=Path, default=None, help="where to write the features (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--fit", type=Path, default=None, metavar="DEMO_OUT",
                    help="time one real fit on DEMO_OUT/data and DEMO_OUT/features instead")
    ap.add_argument("--steps", type=int, default=600, help="with --fit: training steps (default 600)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.fit is not None:
        return fit_demo(args.fit, args.steps, args.threads, args.json)
    tmp = Path(tempfile.mkdtemp(prefix="patchvad-bench-", dir=args.tmp))
    out: dict = {"videos": args.videos, "snippets": args.snippets, "grid": args.grid, "dim": args.dim,
                 "batch_size": args.batch_size, "threads": torch.get_num_threads(),
                 "device": "cpu"}
    try:
        t0 = time.perf_counter()
        store, labels = make_store(tmp / "feats", args.videos, args.snippets, args.grid, args.dim, 0)
        out["write_s"] = time.perf_counter() - t0
        out["bytes_on_disk"] = int(sum(p.stat().st_size for p in (tmp / "feats").glob("*.npy")))
        rss_before = peak_rss_mb()
        cfg = RunConfig.for_method("proximity", RunConfig(train=TrainConfig(batch_size=args.batch_size)))
        model = AnomalyModel(cfg, store.spec)
        stems = store.finished()
        normals = [s for s, y in zip(stems, labels) if y == 0]

        t0 = time.perf_counter()
        model.encoder.fit((store.load(s).x for s in normals), max_videos_hint=len(normals))
        model.init_prior()
        out["normaliser_fit_s"] = time.perf_counter() - t0
        out["peak_rss_mb_after_normaliser"] = peak_rss_mb()

        class _E:  # the minimal VideoEntry interface encode_videos uses
            def __init__(self, stem: str):
                self.stem = stem

        t0 = time.perf_counter()
        cache = tmp / "encoded.cache" if args.cache == "disk" else None
        videos = encode_videos(model, store, [_E(s) for s in stems], cfg.train.max_snippets, False,
                               cache_file=cache)
        out["encode_s"] = time.perf_counter() - t0
        out["encoded_mb"] = videos.nbytes / 2 ** 20
        out["cache"] = args.cache
        out["peak_rss_mb_after_encode"] = peak_rss_mb()

        gen = torch.Generator().manual_seed(0)
        sampler = BalancedSampler(labels, args.batch_size // 2, gen)
        opt = torch.optim.AdamW(model.net.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        steps = max(1, args.videos // args.batch_size)
        model.train()
        t0 = time.perf_counter()
        for _ in range(steps):
            idx = sampler.next()
            x, mask, lengths = pad_batch([videos[i] for i in idx], torch.device("cpu"))
            loss, _, _ = model.impl.loss(model, x, mask, lengths, [int(labels[i]) for i in idx], None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.net.parameters(), 1.0)
            opt.step()
        out["epoch_steps"] = steps
        out["peak_rss_mb_after_epoch"] = peak_rss_mb()
        out["epoch_s"] = time.perf_counter() - t0
        out["step_s"] = out["epoch_s"] / steps
        scale = args.target_videos / args.videos
        out["target_videos"] = args.target_videos
        out["epoch_s_extrapolated"] = out["epoch_s"] * scale
        out["encode_s_extrapolated"] = out["encode_s"] * scale
        out["encoded_mb_extrapolated"] = out["encoded_mb"] * scale

        model.eval()
        t0 = time.perf_counter()
        n_snip = 0
        for s in stems[:args.infer_videos]:
            pred = predict_video(model, store.load(s))
            n_snip += pred.maps.shape[0]
        out["infer_snippets_per_s"] = n_snip / (time.perf_counter() - t0)
        out["peak_rss_mb"] = peak_rss_mb()
        out["peak_rss_mb_after_writing"] = rss_before
        videos.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"features: {args.videos} videos x ({args.snippets}, {args.grid}, {args.grid}, {args.dim}) float16, "
          f"{out['bytes_on_disk'] / 2 ** 30:.2f} GiB on disk, memory-mapped; {out['threads']} torch threads")
    print(f"normaliser fit (normal videos): {out['normaliser_fit_s']:.1f} s")
    print(f"encode pass: {out['encode_s']:.1f} s -> {out['encoded_mb']:.0f} MB encoded "
          f"(x{scale:.1f} -> {out['encode_s_extrapolated']:.0f} s, {out['encoded_mb_extrapolated']:.0f} MB "
          f"for {args.target_videos} videos)")
    print(f"one epoch: {steps} steps of {args.batch_size} videos in {out['epoch_s']:.1f} s "
          f"({out['step_s']:.3f} s/step) -> {out['epoch_s_extrapolated']:.0f} s per epoch of "
          f"{args.target_videos} videos (linear extrapolation)")
    print(f"inference: {out['infer_snippets_per_s']:.0f} snippets/s (predict_video, boxes included)")
    print(f"peak RSS: {out['peak_rss_mb']:.0f} MB (after writing {out['peak_rss_mb_after_writing']:.0f}, "
          f"normaliser {out['peak_rss_mb_after_normaliser']:.0f}, encode {out['peak_rss_mb_after_encode']:.0f}, "
          f"epoch {out['peak_rss_mb_after_epoch']:.0f}); encoded cache: {args.cache}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
