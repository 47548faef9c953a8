"""Speed of generating the demo's synthetic benchmark (`patchvad demo`, stage 1).

Runs ``generate_benchmark`` with the demo's arguments (seed 2026, oracle labels; the
preset ``default`` unless ``--preset`` says otherwise: the small demo now uses
``quick``) and reports wall time, CPU seconds of the main process and of the
workers, frames/s and the load average before and after (the development machine's
2 cores are shared: a number without its load means little). Like the installed
``patchvad`` script, this file imports ``patchvad.cli`` at the top, so spawned workers
pay what they pay under ``make demo`` (they re-import the main script).

``--split N`` instead times the parts of one process's work over N videos, in CPU ms
per frame: building the scene, rendering (drawing, rasterising sprites, sensor noise),
the RGB -> yuv420p conversion, and x264 (with the frame hand-over and muxing).

    .venv/bin/python benchmarks/synth.py [--train 240] [--test 80] [--workers 2] [--preset default] [--out DIR]
    .venv/bin/python benchmarks/synth.py --split 8

For a before/after comparison run it twice with ``PYTHONPATH`` pointing at each
checkout's ``src``, alternating, and compare the files (they must be identical).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import patchvad.cli  # noqa: F401  (what the installed script imports; see the docstring)


def stage(out: Path, n_train: int, n_test: int, workers: int, preset: str) -> None:
    """Generate into ``out`` as the demo does and print the figures."""
    from patchvad.data.synth import generate_benchmark
    from patchvad.data.synth.generate import plan_benchmark

    frames = sum(s.frames for s in plan_benchmark(n_train, n_test, 2026, preset))
    load0 = os.getloadavg()[0]
    start = time.perf_counter()
    generate_benchmark(out / "data", n_train, n_test, seed=2026, preset=preset, workers=workers, overwrite=True,
                       oracle_labels=out / "labels")
    wall = time.perf_counter() - start
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"{n_train} + {n_test} '{preset}' videos ({frames} frames), workers={workers}: {wall:.1f} s "
          f"({frames / wall:.0f} frames/s); CPU s: main {me.ru_utime + me.ru_stime:.1f}, workers "
          f"{kids.ru_utime + kids.ru_stime:.1f}; load average {load0:.2f} -> {os.getloadavg()[0]:.2f}")


def split(n_videos: int, out: Path, preset: str) -> None:
    """CPU ms per frame of each part of rendering and encoding, in this process."""
    from patchvad.data.synth.config import resolve_preset
    from patchvad.data.synth.generate import plan_benchmark
    from patchvad.data.synth.render import build_scene, open_writer
    from patchvad.io.video import rgb_planes_to_yuv420p

    config = resolve_preset(preset)
    parts = {"build scene": 0.0, "render": 0.0, "rgb -> yuv420p": 0.0, "x264": 0.0}
    frames = 0
    clock = time.process_time
    for spec in plan_benchmark(240, 80, 2026, config)[:n_videos]:
        t = clock()
        scene = build_scene(spec, config)
        parts["build scene"] += clock() - t
        writer = open_writer(out / "split.mp4", config)
        rendered = scene._noisy_planes(False)
        while True:
            t = clock()
            planes = next(rendered, None)
            if planes is None:
                break
            parts["render"] += clock() - t
            t = clock()
            yuv = rgb_planes_to_yuv420p(planes)
            parts["rgb -> yuv420p"] += clock() - t
            t = clock()
            writer.write_yuv420p(yuv)
            parts["x264"] += clock() - t
            frames += 1
        t = clock()
        writer.close()
        parts["x264"] += clock() - t
    total = sum(parts.values())
    print(f"{n_videos} videos, {frames} frames, CPU ms per frame (load average {os.getloadavg()[0]:.2f}):")
    for name, seconds in parts.items():
        print(f"  {name:15s} {seconds / frames * 1e3:6.3f}  ({seconds / total:.0%})")
    print(f"  {'total':15s} {total / frames * 1e3:6.3f}")


def main() -> None:
    """Parse the arguments and run one of the two measurements."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=240)
    parser.add_argument("--test", type=int, default=80)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--preset", default="default", help="synthetic preset (the small demo uses 'quick')")
    parser.add_argument("--out", default=None, help="output folder (default: a temporary one, removed)")
    parser.add_argument("--split", type=int, default=0, metavar="N", help="time the parts over N videos instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        if args.split:
            split(args.split, out, args.preset)
        else:
            stage(out, args.train, args.test, args.workers, args.preset)


if __name__ == "__main__":
    main()
