"""Measured distributions of a preset: object sizes, anomaly durations, crowd levels.

Builds the scenes of a sample of videos (geometry only: no frames are rendered or
encoded) and measures what their ground truth and agents look like. docs/synthetic.md
quotes its output:

    python -m patchvad.data.synth.stats --preset default --videos 300
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from patchvad.data.synth.config import SynthConfig, resolve_preset
from patchvad.data.synth.generate import plan_benchmark
from patchvad.data.synth.render import build_scene


def _summary(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"n": 0}
    p10, p50, p90 = np.percentile(v, [10, 50, 90])
    return {"n": int(v.size), "p10": float(p10), "median": float(p50), "p90": float(p90),
            "min": float(v.min()), "max": float(v.max())}


def measure(preset: str | SynthConfig = "default", videos: int = 200, seed: int = 12345,
            normal_every: int = 10) -> dict:
    """Distributions over ``videos`` planned videos (about half anomalous).

    Returns a dict of summaries (p10 / median / p90) keyed by quantity and type:
    ``box_w``, ``box_h``, ``area_px``, ``area_pct`` (one sample per track row; for
    fighting also the union of both fighters per frame, under ``fighting_union``),
    ``duration_frames``, ``duration_pct`` (labelled frames of the event / video
    length), plus ``normal_person_*`` and ``car_*`` sizes of fully visible normal
    agents (sampled every ``normal_every`` frames), ``video_frames`` and
    ``persons_in_view``.
    """
    config = resolve_preset(preset)
    frame_area = float(config.width * config.height)
    specs = plan_benchmark(0, videos, seed, config)
    acc: dict[str, list[float]] = defaultdict(list)
    for spec in specs:
        scene = build_scene(spec, config)
        n = spec.frames
        acc["video_frames"].append(n)
        for t in range(0, n, normal_every):
            acc["persons_in_view"].append(scene.persons_in_view(t, normal_only=False))
            for agent in scene.agents:
                if agent.anomalous or not agent.present[t] or agent.kind not in ("person", "car"):
                    continue
                got = scene.object_box(agent, t)
                if got is None or got[1] < got[2]:       # fully visible ones only
                    continue
                x1, y1, x2, y2 = got[0]
                key = "normal_person" if agent.kind == "person" else "car"
                acc[f"{key}_w"].append(x2 - x1 + 1)
                acc[f"{key}_h"].append(y2 - y1 + 1)
                acc[f"{key}_area_px"].append((x2 - x1 + 1) * (y2 - y1 + 1))
        if spec.label != 1:
            continue
        rows = scene.tracks()
        kind = spec.kind
        labelled = np.unique(rows[:, 1])
        for key in (kind, "all"):
            acc[f"duration_frames/{key}"].append(labelled.size)
            acc[f"duration_pct/{key}"].append(100.0 * labelled.size / n)
        for r in rows:
            w, h = r[4] - r[2] + 1, r[5] - r[3] + 1
            for key in (kind, "all"):
                acc[f"box_w/{key}"].append(w)
                acc[f"box_h/{key}"].append(h)
                acc[f"area_px/{key}"].append(w * h)
                acc[f"area_pct/{key}"].append(100.0 * w * h / frame_area)
        if kind == "fighting":
            for t in labelled:
                r = rows[rows[:, 1] == t]
                w = r[:, 4].max() - r[:, 2].min() + 1
                h = r[:, 5].max() - r[:, 3].min() + 1
                acc["area_px/fighting_union"].append(w * h)
                acc["area_pct/fighting_union"].append(100.0 * w * h / frame_area)
    return {"preset": config.name, "videos": videos, "seed": seed,
            "summaries": {k: _summary(v) for k, v in sorted(acc.items())}}


def markdown(result: dict, types: tuple[str, ...] | None = None) -> str:
    """The measured distributions as markdown tables (medians with p10-p90)."""
    s = result["summaries"]

    def cell(key: str, digits: int = 0) -> str:
        v = s.get(key)
        if not v or v["n"] == 0:
            return "-"
        f = f"{{:.{digits}f}}"
        return f"{f.format(v['median'])} ({f.format(v['p10'])}-{f.format(v['p90'])})"

    kinds = sorted({k.split("/", 1)[1] for k in s if k.startswith("duration_frames/")} - {"all"})
    if types:
        kinds = [k for k in types if k in kinds]
    lines = [
        f"Preset `{result['preset']}`: {result['videos']} planned videos (seed {result['seed']}); "
        "median (p10-p90) over track rows (sizes) or events (durations).",
        "",
        "| anomaly type | events | box w px | box h px | area px | area % of frame | duration frames "
        "| duration % of video |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k in kinds + ["all"]:
        lines.append(f"| {k} | {s[f'duration_frames/{k}']['n']} | {cell(f'box_w/{k}')} | {cell(f'box_h/{k}')} | "
                     f"{cell(f'area_px/{k}')} | {cell(f'area_pct/{k}', 2)} | {cell(f'duration_frames/{k}')} | "
                     f"{cell(f'duration_pct/{k}', 1)} |")
    if "area_px/fighting_union" in s:
        lines.append(f"| fighting (union of both) | | | | {cell('area_px/fighting_union')} | "
                     f"{cell('area_pct/fighting_union', 2)} | | |")
    lines += [
        "",
        "| normal objects (fully visible) | w px | h px | area px |",
        "|---|---|---|---|",
        f"| pedestrian | {cell('normal_person_w')} | {cell('normal_person_h')} | {cell('normal_person_area_px')} |",
        f"| car | {cell('car_w')} | {cell('car_h')} | {cell('car_area_px')} |",
        "",
        f"Video length {cell('video_frames')} frames; pedestrians in view per frame {cell('persons_in_view', 1)}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the measured distributions of a preset as Markdown; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args(argv)
    print(markdown(measure(args.preset, args.videos, args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
