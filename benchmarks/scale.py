"""Scale benchmark: feature-store reads and a training epoch, 1 process vs N processes (torchrun).

Writes ``--videos`` random float16 feature arrays ``(T, G, G, D)`` in the store format
(and a dataset folder labelling them, half anomalous) to a temporary folder, then
measures, each once with one process and once with ``--procs`` processes started by
``python -m torch.distributed.run --standalone``:

1. read throughput: every video loaded through ``FeatureStore.load`` (memory-mapped)
   and converted to float32, each process reading its shard (every N-th video),
   snippets per second of the whole job. ``cold``: the files are first evicted from the
   page cache (``posix_fadvise(DONTNEED)`` on these files only); ``warm``: read again.
2. one training epoch of ``patchvad.training.fit`` (proximity model, batch 16 by default,
   ``ceil(train videos / batch)`` steps): the optimisation steps' time (``FitResult.timings``),
   plus the normaliser fit and the encoding pass, reported apart. Under torchrun the
   effective batch is the same (each process trains on its half).

Results are printed side by side with the ratio (N processes / 1 process; > 1 is
faster) and written as JSON with ``--json``. UCF-Crime's training split is 1,610 videos
(about 22 GB at T=64, 14x14, D=552); the default is smaller so that a run takes a few
minutes on 2 cores, and the epoch time is also extrapolated linearly to
``--target-videos`` (the steps of an epoch scale with the videos; a step does not).

    .venv/bin/python benchmarks/scale.py                       # 128 videos, 1 vs 2 processes, CPU
    .venv/bin/python benchmarks/scale.py --videos 1610         # the full size (~22 GB of disk)
    python benchmarks/scale.py --device cuda --procs 1         # GPU epoch (benchmarks/gpu.sh)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

UCF_TRAIN_VIDEOS = 1610


def make_dataset(root: Path, feats: Path, n: int, t: int, grid: int, dim: int, seed: int = 0) -> None:
    """Random features of ``n`` training videos (labels alternate) + a dataset folder naming them."""
    from random_features import write_random_store  # benchmarks/random_features.py

    from patchvad.data.folder import write_manifest

    store = write_random_store(feats, n, t, grid, dim, seed)
    rows = []
    (root / "videos").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        stem = f"v{i:05d}"
        (root / "videos" / f"{stem}.mp4").write_bytes(b"")
        rows.append({"video": f"videos/{stem}.mp4", "split": "train", "label": i % 2, "class": "random",
                     "frames": t * 16, "fps": 30, "width": 320, "height": 240})
    write_manifest(root, rows)
    store.write_index()


def evict(feats: Path) -> None:
    """Drop these feature files from the page cache (clean pages only; other files untouched)."""
    for p in feats.glob("*.npy"):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# --- workers (run as ``scale.py _read`` / ``scale.py _fit``, alone or under torchrun) ---------------


def _worker_read(args: argparse.Namespace) -> None:
    import torch

    from patchvad import distributed
    from patchvad.features.store import FeatureStore

    with distributed.session("cpu") as ctx:
        torch.set_num_threads(distributed.threads_per_process())
        store = FeatureStore(args.feats)
        stems = store.finished()[ctx.rank::ctx.world_size]
        ctx.barrier()
        t0 = time.perf_counter()
        snippets, checksum = 0, 0.0
        for stem in stems:
            x = store.load(stem, mmap=True).x
            checksum += float(np.asarray(x, dtype=np.float32)[:, 0, 0, 0].sum())      # every byte converted
            snippets += x.shape[0]
            del x
        mine = time.perf_counter() - t0
        ctx.barrier()
        seconds = time.perf_counter() - t0
        total = int(ctx.all_reduce_sum(torch.tensor([snippets], dtype=torch.int64))[0])
        if ctx.is_main:
            Path(args.json).write_text(json.dumps({"snippets": total, "seconds": seconds, "rank0_seconds": mine,
                                                   "processes": ctx.world_size,
                                                   "peak_rss_mb": _peak_rss_mb()}))


def _worker_fit(args: argparse.Namespace) -> None:
    from patchvad import distributed
    from patchvad.config import RunConfig, TrainConfig
    from patchvad.training import fit

    cfg = RunConfig(train=TrainConfig(steps=args.steps, batch_size=args.batch_size, eval_every=args.steps,
                                      log_every=max(1, args.steps), device=args.device, cache=args.cache))
    res = fit(args.data, args.feats, args.run, config=cfg, log=None)
    peak = _peak_rss_mb()
    if distributed.env_layout()[0] == 0:
        Path(args.json).write_text(json.dumps({"processes": res.world_size, "batch_size": res.batch_size,
                                               "steps": res.steps, "timings": res.timings, "seconds": res.seconds,
                                               "peak_rss_mb": peak}))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- driver ------------------------------------------------------------------------------------------


def _launch(procs: int, kind: str, spec: dict, env: dict) -> None:
    script = str(Path(__file__).resolve())
    spec_file = Path(spec["json"]).with_suffix(".args.json")
    spec_file.write_text(json.dumps(spec))
    argv = [kind, str(spec_file)]          # positional only: nothing for torchrun's own options to match
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs),
               script, *argv]
    else:
        cmd = [sys.executable, script, *argv]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"benchmark step failed: {' '.join(cmd)}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_read", "_fit"):      # a worker: its arguments come as one JSON file
        a = argparse.Namespace(**json.loads(Path(argv[1]).read_text()))
        (_worker_read if argv[0] == "_read" else _worker_fit)(a)
        return 0

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=128, help="training videos written (default 128)")
    ap.add_argument("--target-videos", type=int, default=UCF_TRAIN_VIDEOS,
                    help="epoch time also extrapolated to this many (UCF-Crime train: 1,610)")
    ap.add_argument("--snippets", type=int, default=64, help="T per video")
    ap.add_argument("--grid", type=int, default=14)
    ap.add_argument("--dim", type=int, default=552)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--procs", type=int, default=2, help="processes of the distributed runs (1: single only)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (training)")
    ap.add_argument("--cache", default="auto", choices=["auto", "memory", "disk"], help="train.cache")
    ap.add_argument("--skip-read", action="store_true")
    ap.add_argument("--tmp", type=Path, default=None, help="where to write the features (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda"):
        import torch
        if args.procs > torch.cuda.device_count():
            ap.error(f"--procs {args.procs} with --device cuda needs {args.procs} GPUs; "
                     f"{torch.cuda.device_count()} visible")

    tmp = Path(tempfile.mkdtemp(prefix="patchvad-scale-", dir=args.tmp))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("OMP_NUM_THREADS", None)            # each process takes cores / processes (patchvad.distributed)
    counts = [1] + ([args.procs] if args.procs > 1 else [])
    res: dict = {"videos": args.videos, "snippets": args.snippets, "grid": args.grid, "dim": args.dim,
                 "batch_size": args.batch_size, "device": args.device, "cpu_count": os.cpu_count(), "runs": {}}
    try:
        t0 = time.perf_counter()
        make_dataset(tmp / "data", tmp / "feats", args.videos, args.snippets, args.grid, args.dim)
        res["write_s"] = time.perf_counter() - t0
        res["bytes"] = int(sum(p.stat().st_size for p in (tmp / "feats").glob("*.npy")))
        # fit holds out 20% of the videos for validation: an epoch is ceil(train part / batch) steps.
        from patchvad.data.folder import DatasetFolder
        from patchvad.training import split_train_val
        n_train = len(split_train_val(list(DatasetFolder(tmp / "data", check_files=False).train_set()), 0.2, 0)[0])
        steps = math.ceil(n_train / args.batch_size)
        res["epoch_steps"], res["train_videos"] = steps, n_train
        for procs in counts:
            run: dict = {}
            if not args.skip_read:
                for temp in ("cold", "warm"):
                    if temp == "cold":
                        evict(tmp / "feats")
                    out = tmp / f"read_{procs}_{temp}.json"
                    _launch(procs, "_read", {"feats": str(tmp / "feats"), "json": str(out)}, env)
                    r = json.loads(out.read_text())
                    run[f"read_{temp}"] = {**r, "snippets_per_s": r["snippets"] / r["seconds"]}
            out = tmp / f"fit_{procs}.json"
            _launch(procs, "_fit", {"data": str(tmp / "data"), "feats": str(tmp / "feats"),
                                    "run": str(tmp / f"run_{procs}"), "json": str(out), "steps": steps,
                                    "batch_size": args.batch_size, "device": args.device, "cache": args.cache}, env)
            f = json.loads(out.read_text())
            f["epoch_s"] = f["timings"]["steps"]
            f["step_s"] = f["epoch_s"] / max(1, f["steps"])
            f["epoch_s_target"] = f["step_s"] * math.ceil(args.target_videos * 0.8 / args.batch_size)
            run["fit"] = f
            res["runs"][str(procs)] = run
            shutil.rmtree(tmp / f"run_{procs}", ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    _print(res, counts, args)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


def _print(res: dict, counts: list[int], args: argparse.Namespace) -> None:
    print(f"features: {res['videos']} videos x ({res['snippets']}, {res['grid']}, {res['grid']}, {res['dim']}) "
          f"float16, {res['bytes'] / 2 ** 30:.2f} GiB, written in {res['write_s']:.0f} s; {res['cpu_count']} CPU "
          f"cores; "
          f"training on {args.device}, effective batch {res['batch_size']}, epoch = {res['epoch_steps']} steps "
          f"({res['train_videos']} training videos)")
    rows = []
    if not args.skip_read:
        rows += [("store read, cold cache (snippets/s)", lambda r: r["read_cold"]["snippets_per_s"], True),
                 ("store read, warm cache (snippets/s)", lambda r: r["read_warm"]["snippets_per_s"], True)]
    rows += [("normaliser fit (s)", lambda r: r["fit"]["timings"]["normaliser"], False),
             ("encoding pass (s)", lambda r: r["fit"]["timings"]["encode"], False),
             (f"one epoch, {res['epoch_steps']} steps (s)", lambda r: r["fit"]["epoch_s"], False),
             (f"epoch of {args.target_videos} videos, extrapolated (s)", lambda r: r["fit"]["epoch_s_target"], False),
             ("peak RSS of rank 0 in fit (MB)", lambda r: r["fit"]["peak_rss_mb"], None)]
    head = ["measure"] + [f"{c} process{'es' if c > 1 else ''}" for c in counts]
    if len(counts) > 1:
        head.append(f"ratio ({counts[1]} / 1, >1 = faster)")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, get, higher_better in rows:
        vals = [get(res["runs"][str(c)]) for c in counts]
        cells = [name] + [f"{v:,.1f}" for v in vals]
        if len(counts) > 1:
            if higher_better is None:
                cells.append("")
            else:
                ratio = vals[1] / vals[0] if higher_better else vals[0] / vals[1]
                cells.append(f"{ratio:.2f}x")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
