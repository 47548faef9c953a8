"""The main job: ``patchvad demo`` (what ``make demo`` runs), composed from the pieces.

    synthetic benchmark -> patch features -> fit every method over seeds -> test
    -> evaluate -> metrics.json, report.html, overlays/*.mp4, models/, a terminal table

The methods include the supervised oracle (an upper bound trained on the training
videos' ground-truth cells); the benchmark's training boxes go to ``OUT/oracle_labels``,
outside the dataset root ``OUT/data``, and reach the oracle's fits only. metrics.json's
``ratios`` (``{"<weak method>/oracle": {metric: ratio of means}}``,
:mod:`patchvad.metrics.ratios`) and the ratio rows of both tables say how much of the
upper bound each weakly supervised trained method reaches.

Every stage is resumable: a rerun into the same ``--out`` reuses the benchmark, the
features, finished models and finished predictions (each is written atomically and
checked before reuse), so an interrupted demo costs only the stage it was in.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patchvad.compare import Run, execute, experiment_cache, labels_for, weak_trained
from patchvad.config import RunConfig
from patchvad.errors import ConfigError
from patchvad.io.files import atomic_write_json
from patchvad.metrics.ratios import ORACLE, oracle_ratios
from patchvad.metrics.table import headline_metrics, table_metrics
from patchvad.model.methods import get_method

#: the demo's choice of registered methods (model/methods/); the first is the paper's.
#: Longest fits first (the pool then ends evenly): the oracle trains the proximity model's
#: scorer for as many steps, on every cell of every snippet.
DEMO_METHODS = ("proximity", "oracle", "plain_topk", "video_mil", "motion_floor", "random")
#: the folder under ``--out`` that holds the training videos' boxes (outside ``data/``).
ORACLE_LABELS = "oracle_labels"


@dataclass(frozen=True)
class DemoPreset:
    """Size of the demo. ``small`` is what ``make demo`` runs (minutes on 2 cores)."""

    synth_preset: str
    n_train: int
    n_test: int
    benchmark_seed: int = 2026
    steps: int | None = None          # training steps (None: the model's default)
    #: other ``train`` settings of every method (e.g. ``{"eval_every": 25}``).
    train: tuple[tuple[str, object], ...] = ()
    #: ``train`` settings of one method, over ``steps`` and ``train`` (e.g. the oracle's own
    #: step count: an upper bound must be trained to convergence, not to the weak model's budget).
    method_train: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = ()


DEMO_PRESETS: dict[str, DemoPreset] = {
    # Sized for minutes on 2 cores: the ``quick`` synthetic preset (the default's cameras
    # and events in 112-144-frame videos) and 150 steps, validated every 25. Chosen on a
    # development benchmark of the same shape (seed 101, never the demo's): 100, 150, 250
    # steps of batch 16 and 300 of batch 8 compared in docs/model.md ("The five-minute demo").
    "small": DemoPreset("quick", n_train=240, n_test=80, steps=150, train=(("eval_every", 25),)),
    "full": DemoPreset("default", n_train=480, n_test=120),
    # Plumbing only (tests): too little data for the model to learn much.
    "tiny": DemoPreset("tiny", n_train=24, n_test=8, steps=40),
}

#: one factor at a time around the default proximity model (``--ablate``).
ABLATION: dict[str, list[tuple[str, dict]]] = {
    "window": [("fixed", {"loss": {"window": "fixed"}}), ("cusum", {"loss": {"window": "cusum"}}),
               ("none", {"loss": {"window": "none"}})],
    "selection": [("gauss", {"loss": {"selection": "gauss"}}), ("radius", {"loss": {"selection": "radius"}}),
                  ("plain", {"loss": {"selection": "plain"}})],
    "k": [("2", {"loss": {"k": 2}}), ("4", {"loss": {"k": 4}}), ("8", {"loss": {"k": 8}})],
    "sigma": [("0.5", {"loss": {"sigma": 0.5}}), ("1", {"loss": {"sigma": 1.0}}), ("2", {"loss": {"sigma": 2.0}})],
    "ln_weight": [("0", {"loss": {"w_n": 0.0}}), ("0.1", {"loss": {"w_n": 0.1}}), ("1", {"loss": {"w_n": 1.0}})],
}


def demo_config(method: str, preset: DemoPreset, override: dict | None = None) -> RunConfig:
    """The run configuration the demo trains ``method`` with.

    The preset's ``steps`` and ``train`` settings, then its ``method_train`` settings of
    ``method``, then ``override`` (``{section: {key: value}}``, the ablation's).
    """
    base = RunConfig()
    own = dict(preset.method_train).get(method, ())
    if preset.steps is not None or preset.train or own:
        changes: dict[str, Any] = dict(preset.train)
        if preset.steps is not None:
            changes["steps"] = preset.steps
        changes.update(own)
        base = dataclasses.replace(base, train=dataclasses.replace(base.train, **changes))
    if override:
        data = base.to_dict()
        for section, values in override.items():
            data[section].update(values)
        base = RunConfig.from_dict(data)
    return RunConfig.for_method(method, base)


def _check_reusable(data: Path, p: DemoPreset, labels: Path | None = None) -> None:
    """Refuse to resume into a folder made by another preset.

    Its features, models and predictions belong to other videos under the same names.
    ``labels``: the oracle label folder, checked against the preset too when it holds a record.
    """
    import json

    from patchvad.data.synth.generate import ORACLE_RECORD, RECORD

    try:
        record = json.loads((data / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the demo benchmark's record ({exc}); remove {data.parent}",
                          path=data / RECORD) from None
    counts = record.get("counts", {})
    have = (counts.get("train"), counts.get("test"), record.get("seed"), record.get("preset"))
    want = (p.n_train, p.n_test, p.benchmark_seed, p.synth_preset)
    if have != want:
        raise ConfigError(f"holds a demo benchmark of {have[0]} training + {have[1]} test videos (seed {have[2]}, "
                          f"preset {have[3]}), not this preset's {want[0]} + {want[1]} (seed {want[2]}, preset "
                          f"{want[3]}); choose another --out or remove {data.parent}", path=data / RECORD)
    if labels is None or not (labels / ORACLE_RECORD).is_file():
        return
    try:
        oracle = json.loads((labels / ORACLE_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the oracle labels' record ({exc}); remove {labels}",
                          path=labels / ORACLE_RECORD) from None
    made = ((oracle.get("counts") or {}).get("train"), oracle.get("seed"), oracle.get("preset"))
    if made != (p.n_train, p.benchmark_seed, p.synth_preset):
        raise ConfigError(f"holds the oracle labels of {made[0]} training videos (seed {made[1]}, preset "
                          f"{made[2]}), not of this demo's benchmark; remove {labels} (it is written again "
                          "from the benchmark)", path=labels / ORACLE_RECORD)


def overlay_choice(data: Path) -> list[str]:
    """The overlay videos: the first test video (by name) of each anomaly type.

    Chosen from the manifest alone, before looking at any prediction (no cherry-picking),
    and covering every type, so the page shows the misses along with the hits.
    """
    from patchvad.data.folder import DatasetFolder

    first: dict[str, str] = {}
    for entry in sorted(DatasetFolder(data, check_files=False).test_set(), key=lambda e: e.stem):
        if entry.label == 1 and entry.cls not in first:
            first[entry.cls] = entry.stem
    return sorted(first.values())


def default_jobs() -> int:
    """Parallel fits: one per core up to 4.

    A fit uses 1-2 threads well; more cores go to the threads of each fit.
    """
    return max(1, min(4, os.cpu_count() or 1))


def format_table(metrics: dict, methods: tuple[str, ...] = DEMO_METHODS, keys: tuple[str, ...] | None = None) -> str:
    """The summary table: mean ± std over seeds per method (``keys``: the metric table's scores by default).

    Then one row per entry of ``metrics["ratios"]`` (``<weak>/oracle``: the ratio of means)
    and the line that says what they are.
    """
    from patchvad.metrics.ratios import RATIO_NOTE

    keys = tuple(spec.key for spec in table_metrics()) if keys is None else keys
    ratios = metrics.get("ratios") or {}
    width = max([14, *(len(name) + 2 for name in ratios)])
    head = f"{'method':<{width}}" + "".join(f"{k:>17}" for k in keys)
    lines = [head, "-" * len(head)]
    for m in methods:
        entry = metrics["methods"].get(m)
        if entry is None:
            continue
        cells = []
        for k in keys:
            mean, std = entry["mean"].get(k), entry["std"].get(k)
            cells.append(f"{'n/a':>17}" if mean is None else f"{mean:>10.3f} ± {std or 0.0:.3f}")
        lines.append(f"{m:<{width}}" + "".join(cells))
    for name, row in ratios.items():
        # As wide as a "mean ± std" cell (18 characters), so that the columns stay aligned.
        cells = [f"{'n/a' if row.get(k) is None else f'{row[k]:.3f}':>10}" + " " * 8 for k in keys]
        lines.append((f"{name:<{width}}" + "".join(cells)).rstrip())
    if ratios:
        lines += ["", RATIO_NOTE]
    return "\n".join(lines)


def run_demo(out: str | Path = "runs/demo", preset: str = "small", seeds: int = 3, ablate: bool = False,
             workers: int | None = None, echo: Callable[[str], None] = print, jobs: int | None = None,
             record: str | Path | None = None) -> dict:
    """Run the whole demo into ``out`` and return the metrics summary (metrics.json).

    Ends by comparing the run with the committed record (``record``, default
    ``docs/results/demo.json`` of the repository) at the printed digits and saying
    whether it reproduces it, or which numbers differ.

    Args:
        out: output folder (``data/``, ``oracle_labels/`` (training boxes, the oracle's
            only), ``features/``, ``models/``, ``predictions/``, ``metrics.json``,
            ``record.json``, ``report.html``, ``overlays/``).
        preset: ``small`` (make demo) or ``full``.
        seeds: training seeds per method (mean and spread are reported).
        ablate: also train the one-factor ablations of the proximity model (seed 0 ..
            seeds-1) and add their table to the report.
        workers: processes for generating the benchmark (default: all cores).
        echo: where the progress lines go.
        jobs: fits run in parallel processes (default: one per core, at most 4).
        record: the committed record to compare with (default
            :func:`patchvad.demo_record.default_record_path`).
    """
    import torch

    from patchvad.data.synth import generate_benchmark
    from patchvad.data.synth.generate import ORACLE_RECORD, write_oracle_labels
    from patchvad.demo_record import make_record, reproduction_lines
    from patchvad.features.extract import extract_dataset
    from patchvad.viz.collect import build_report
    from patchvad.viz.report import summarize_runs

    if preset not in DEMO_PRESETS:
        raise ConfigError(f"unknown demo preset '{preset}'; choose one of {sorted(DEMO_PRESETS)}")
    if seeds < 1:
        raise ConfigError("--seeds must be >= 1")
    p = DEMO_PRESETS[preset]
    out = Path(out)
    data, feats, labels = out / "data", out / "features", out / ORACLE_LABELS
    workers = workers or os.cpu_count() or 1
    torch.set_num_threads(os.cpu_count() or 1)
    timings: dict[str, float] = {}
    # What this run took over from an earlier one in ``out``: the record's times are the
    # whole demo's only when nothing was.
    reused = {"benchmark": False, "feature_videos": 0, "fits": 0}
    start = time.perf_counter()

    t0 = time.perf_counter()
    if not (labels / ORACLE_RECORD).is_file():
        # Labels written only in part (an interrupted run; the record comes last): the
        # writer's own subfolders go, so that it may write them again.
        for name in ("tracks", "frame_labels"):
            shutil.rmtree(labels / name, ignore_errors=True)
    if (data / "manifest.csv").exists() and (data / "synth.json").exists():
        _check_reusable(data, p, labels)
        reused["benchmark"] = True
        echo(f"[1/5] benchmark: reusing {data}")
        if not (labels / ORACLE_RECORD).is_file():
            # A demo folder from before the oracle joined: its boxes follow from the benchmark's
            # seed and preset (write_oracle_labels renders nothing), so nothing else is redone.
            echo(f"      writing the training videos' oracle labels to {labels}")
            write_oracle_labels(data, labels, workers=workers, overwrite=True)
    else:
        echo(f"[1/5] benchmark: generating {p.n_train} training + {p.n_test} test videos ({p.synth_preset} preset)"
             f" and the training videos' oracle labels ({labels})")
        generate_benchmark(data, p.n_train, p.n_test, seed=p.benchmark_seed, preset=p.synth_preset, workers=workers,
                           overwrite=True, oracle_labels=labels)
    timings["benchmark"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    echo("[2/5] features: EfficientNet-Lite0 + motion, 14x14 grid (resumable)")
    report = extract_dataset(data, feats)
    if report.failed:
        raise ConfigError(f"feature extraction failed for {sorted(report.failed)}")
    reused["feature_videos"] = len(report.skipped)
    timings["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    runs: dict[str, dict[int, dict]] = {m: {} for m in DEMO_METHODS}
    n_jobs = jobs or default_jobs()
    echo(f"[3/5] training and testing {len(DEMO_METHODS)} methods x {seeds} seeds ({n_jobs} in parallel)")
    # Longest first (DEMO_METHODS is ordered so), so that the pool ends evenly. A method whose
    # output does not depend on the seed (the motion floor: its normaliser comes from the
    # split's seed) runs once; its row then has no spread. The oracle label folder goes to
    # the oracle's runs only (labels_for).
    work = [Run((m, s), m, s, demo_config(m, p), out / "models" / m / f"seed{s}", out / "predictions" / m / f"seed{s}",
                labels_for(m, labels)) for m in DEMO_METHODS for s in range(seeds if get_method(m).seeded else 1)]
    cache = experiment_cache(feats, out)
    for res in execute(work, data, feats, jobs=n_jobs, desc="fit+test", encoding_cache=cache).values():
        runs[res.run.method][res.run.seed] = res.metrics
        reused["fits"] += res.fit_seconds is None
    timings["train+test"] = time.perf_counter() - t0

    ablation = None
    if ablate:
        t0 = time.perf_counter()
        ablation = _run_ablation(data, feats, out, p, seeds, echo, runs["proximity"], n_jobs, cache)
        timings["ablation"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    echo("[4/5] metrics")
    metrics = summarize_runs(runs)
    metrics["ratios"] = oracle_ratios(metrics["methods"], weak_trained(DEMO_METHODS), ORACLE)
    metrics["title"] = "patchvad demo: synthetic surveillance benchmark"
    metrics["dataset"] = {"train_videos": p.n_train, "test_videos": p.n_test, "synth_preset": p.synth_preset,
                          "benchmark_seed": p.benchmark_seed, "seeds": seeds}
    if ablation is not None:
        metrics["ablation"] = ablation
    atomic_write_json(out / "metrics.json", metrics)
    echo("[5/5] report and overlays")
    build_report(out, data, {m: out / "predictions" / m / "seed0" for m in DEMO_METHODS}, metrics,
                 ablation=ablation, seed=0, title=metrics["title"], overlay_stems=overlay_choice(data),
                 training_runs={m: [r.model_dir for r in work if r.method == m] for m in DEMO_METHODS})
    timings["report"] = time.perf_counter() - t0
    metrics["timings_seconds"] = {k: round(v, 1) for k, v in timings.items()}
    atomic_write_json(out / "metrics.json", metrics)
    steps = demo_config(DEMO_METHODS[0], p).train.steps
    own_steps = {m: demo_config(m, p).train.steps for m in DEMO_METHODS}
    setup = {"preset": preset, "seeds": seeds, "training_steps": steps,
             **({"method_training_steps": {m: n for m, n in own_steps.items() if n != steps}}
                if any(n != steps for n in own_steps.values()) else {}),
             **{k: v for k, v in metrics["dataset"].items() if k != "seeds"}}
    run_record = make_record(metrics, timings, setup=setup, total_seconds=time.perf_counter() - start,
                             reused=reused)
    atomic_write_json(out / "record.json", run_record)

    echo("")
    echo(format_table(metrics))
    echo("")
    echo("stage times: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    echo(f"report: {out / 'report.html'}   metrics: {out / 'metrics.json'}   models: {out / 'models'}")
    for line in reproduction_lines(run_record, record):
        echo(line)
    return metrics


def _run_ablation(data: Path, feats: Path, out: Path, p: DemoPreset, seeds: int, echo: Callable[[str], None],
                  proximity: dict[int, dict], n_jobs: int = 1, cache: Path | None = None) -> dict:
    """One factor at a time around the default proximity model; mean/std over seeds.

    ``proximity``: the main proximity runs' metrics by seed, which are the default setting's.
    """
    from patchvad.viz.report import summarize_runs

    defaults = RunConfig().loss
    default_of = {"window": defaults.window, "selection": defaults.selection, "k": str(defaults.k),
                  "sigma": f"{defaults.sigma:g}", "ln_weight": f"{defaults.w_n:g}"}
    settings = [(f, name, ov) for f, options in ABLATION.items() for name, ov in options]
    echo(f"      ablation: {len(settings) * seeds} settings x seeds ({n_jobs} in parallel)")
    work = []
    for factor, name, override in settings:
        if name == default_of[factor]:
            continue  # the main proximity run, not trained again
        tag = f"{factor.replace(' ', '_')}={name}"
        for seed in range(seeds):
            run_dir = out / "ablation" / tag / f"seed{seed}"
            work.append(Run((factor, name, seed), "proximity", seed, demo_config("proximity", p, override),
                            run_dir / "model", run_dir / "predictions"))
    done = execute(work, data, feats, jobs=n_jobs, desc="ablation", encoding_cache=cache)
    factors: dict[str, dict[str, dict]] = {}
    for factor, name, _ in settings:
        by_seed = (proximity if name == default_of[factor]
                   else {seed: done[(factor, name, seed)].metrics for seed in range(seeds)})
        factors.setdefault(factor, {})[name] = summarize_runs({name: by_seed})["methods"][name]
    return {"default": default_of, "factors": factors, "metrics": [spec.key for spec in headline_metrics()]}


def demo_command(out: Path, preset: str = "small", seeds: int = 3, ablate: bool = False,
                 jobs: int | None = None) -> dict:
    """``patchvad demo``."""
    t0 = time.perf_counter()
    metrics = run_demo(out, preset=preset, seeds=seeds, ablate=ablate, jobs=jobs)
    print(f"demo finished in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return metrics


__all__ = ["DEMO_METHODS", "DEMO_PRESETS", "ORACLE_LABELS", "demo_command", "demo_config", "format_table", "run_demo"]
