"""The demo's record: what a ``patchvad demo`` run measured, on what, in how long.

``patchvad demo`` writes the record of its own run to ``OUT/record.json``; the
repository commits the reference run's record as ``docs/results/demo.json``, and
README's results table is generated from that file (``benchmarks/readme_table.py``),
so the numbers README shows are the numbers a run wrote. A demo run ends by comparing
its numbers with the committed record at the digits the tables print (3 decimals).

A record (JSON)::

    {"format": 1,
     "setup": {"preset": "small", "seeds": 3, "training_steps": 400, "train_videos": 240,
               "test_videos": 80, "synth_preset": "default", "benchmark_seed": 2026},
     "metrics": ["frame_auc_micro", ...],            # the table's scores when recorded
     "methods": {method: {"mean": {metric: float|None}, "std": {...},
                          "seeds": {"0": {metric: float|None}, ...}}},   # DEMO_METHODS order
     "ratios": {"proximity/oracle": {metric: float|None}, ...},   # when the run has them
     "machine": {"cpu": "AMD EPYC", "simd": ["X86_V3", ...], "cpu_count": 2, "platform": ...,
                 "python": ..., "torch": ..., "patchvad": "0.1.0", "commit": "<sha>"|None, "dirty": bool|None},
     "timings_seconds": {stage: seconds}, "total_seconds": float,
     "reused": {"benchmark": bool, "feature_videos": int, "fits": int}}   # from an earlier run in OUT
"""

from __future__ import annotations

import importlib
import math
import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from patchvad.metrics.table import metric_label, table_metrics

#: version of the record's layout (bumped when a key changes meaning).
RECORD_FORMAT = 1

#: decimals every results table prints (README, the demo's terminal table, the report).
DIGITS = 3

#: README's table sits between these two lines (the script rewrites what is between).
README_START = "<!-- demo-table:start -->"
README_END = "<!-- demo-table:end -->"

#: README's columns: metric key -> header. The README shows six of the table's scores
#: (not frame AUC macro and patch AP, which the report and the terminal table show).
README_COLUMNS: tuple[tuple[str, str], ...] = (
    ("frame_auc_micro", "frame AUC (micro)"),
    ("frame_ap", "frame AP"),
    ("tiou", "TIoU"),
    ("rbdc", "RBDC"),
    ("tbdc", "TBDC"),
    ("pauc", "patch AUC"),
)

#: README's row names; a method not listed here is shown under its registered name.
METHOD_NAMES: dict[str, str] = {
    "proximity": "proximity (ours)",
    "plain_topk": "plain top-k",
    "video_mil": "video-level MIL",
    "motion_floor": "motion floor (no training)",
    "random": "random",
    "oracle": "oracle (box labels)",
}


def repository_root() -> Path:
    """The checkout that holds this package's source (``src/patchvad/..`` up two).

    For an installed (non-editable) package this is a folder of site-packages, where
    ``docs/results/demo.json`` does not exist: callers say "no committed record".
    """
    import patchvad

    return Path(patchvad.__file__).resolve().parents[2]


def default_record_path() -> Path:
    """Where the repository commits the reference run's record: ``docs/results/demo.json``."""
    return repository_root() / "docs" / "results" / "demo.json"


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def machine_info(root: Path | None = None) -> dict[str, Any]:
    """The machine and versions a run measured on.

    ``commit``/``dirty``: the git commit of ``root`` (default: :func:`repository_root`)
    and whether its tracked files had uncommitted changes; None when it is no git checkout
    (an installed package) or git is missing.
    """
    import numpy
    import torch

    import patchvad

    root = repository_root() if root is None else root
    commit = _git(root, "rev-parse", "HEAD") if (root / ".git").exists() else None
    status = _git(root, "status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "cpu": cpu_name(),
        "simd": simd_targets(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "patchvad": patchvad.__version__,
        "commit": commit,
        "dirty": None if status is None else bool(status),
    }


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``; else :func:`platform.processor`; "" when unknown)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def simd_targets() -> list[str]:
    """The numpy dispatch targets this CPU supports (e.g. ``["X86_V3", "X86_V4", "AVX512_ICL"]``).

    Vector instruction sets change float rounding in numpy and PyTorch kernels, so the
    same commit can give other numbers on a CPU with another set (see
    :func:`reproduction_lines`).
    """
    try:                                     # private module, no stubs: read by name
        umath = importlib.import_module("numpy._core._multiarray_umath")
        dispatch, features = umath.__cpu_dispatch__, umath.__cpu_features__
    except (ImportError, AttributeError):    # another numpy layout: unknown, not an error
        return []
    return [str(t) for t in dispatch if features.get(t)]


def _cpu_label(machine: Mapping[str, Any]) -> str:
    """``AMD EPYC (X86_V3, X86_V4)``: a record's CPU and SIMD targets as the notes print them."""
    return f"{machine.get('cpu') or 'unknown CPU'} ({', '.join(machine.get('simd') or []) or 'SIMD unknown'})"


def _cpu_note(run_record: Mapping[str, Any], record: Mapping[str, Any]) -> list[str]:
    """A line when the record was made on another CPU, or does not say on which."""
    here, there = run_record.get("machine") or {}, record.get("machine") or {}
    why = "the same commit can give other numbers on a CPU with other vector instructions"
    if "cpu" not in there:
        return [f"  the record does not name its CPU (this run: {_cpu_label(here)}); {why}"]
    if (there.get("cpu"), there.get("simd")) != (here.get("cpu"), here.get("simd")):
        return [f"  the record was made on another CPU ({_cpu_label(there)}; this run: {_cpu_label(here)}); {why}"]
    return []


def _number(v: Any) -> float | None:
    """A finite float, else None (JSON has no NaN; a missing metric prints like an undefined one)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def make_record(metrics: Mapping[str, Any], timings: Mapping[str, float], *, setup: Mapping[str, Any],
                total_seconds: float | None = None, machine: Mapping[str, Any] | None = None,
                reused: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The record of one demo run.

    Args:
        metrics: the run's summary (``metrics.json``: ``{"methods": {method: {"mean",
            "std", "seeds"}}}``, :func:`patchvad.viz.report.summarize_runs`); an optional
            ``"ratios"`` entry is copied as it is.
        timings: seconds per stage (``{"benchmark": 50.2, ...}``).
        setup: what was run (preset, seeds, training steps, benchmark size and seed); a
            comparison with another record is meaningful only when the setups are equal.
        total_seconds: the whole run (None: the sum of ``timings``).
        machine: :func:`machine_info` (default: this machine, now).
        reused: what the run took over from an earlier run in its folder (``{"benchmark":
            bool, "feature_videos": int, "fits": int}``); the times are the whole demo's
            only when nothing was (default: nothing).

    Returns:
        The record (module docstring): for every method and every score of the metric
        table, mean, std and the value of each seed, as floats or None.
    """
    keys = [spec.key for spec in table_metrics()]
    methods: dict[str, Any] = {}
    for method, entry in metrics["methods"].items():
        seeds = entry.get("seeds") or {}
        methods[str(method)] = {
            "mean": {k: _number((entry.get("mean") or {}).get(k)) for k in keys},
            "std": {k: _number((entry.get("std") or {}).get(k)) for k in keys},
            "seeds": {str(s): {k: _number(r.get(k)) for k in keys} for s, r in seeds.items()},
        }
    record: dict[str, Any] = {"format": RECORD_FORMAT, "setup": dict(setup), "metrics": keys, "methods": methods}
    if metrics.get("ratios"):
        record["ratios"] = metrics["ratios"]
    total = sum(timings.values()) if total_seconds is None else total_seconds
    record["machine"] = dict(machine_info() if machine is None else machine)
    record["timings_seconds"] = {k: round(float(v), 1) for k, v in timings.items()}
    record["total_seconds"] = round(float(total), 1)
    record["reused"] = dict(reused or {})
    return record


def format_cell(mean: float | None, std: float | None, digits: int = DIGITS) -> str:
    """One table cell as README prints it: ``0.681 ± 0.045``.

    ``n/a`` when the metric is undefined. A score that is exactly 0 with no spread
    (every seed 0: video-level MIL's whole-frame box detects no region) is printed as
    ``0.000`` alone; every other value carries its ``± std``, ``± 0.000`` included.
    """
    if mean is None:
        return "n/a"
    if mean == 0.0 and not std:
        return f"{0.0:.{digits}f}"
    return f"{mean:.{digits}f} ± {std or 0.0:.{digits}f}"


def _ratio_rows(record: Mapping[str, Any]) -> list[tuple[str, dict[str, float | None]]]:
    """``record["ratios"]`` as (row name, {metric: value}) in the record's order."""
    ratios = record.get("ratios") or {}
    return [(str(name), {k: _number(v) for k, v in values.items()}) for name, values in ratios.items()
            if isinstance(values, Mapping)]


def compare_to_record(metrics: Mapping[str, Any], record: Mapping[str, Any], digits: int = DIGITS) -> list[str]:
    """The numbers of ``metrics`` that differ from ``record`` at the printed digits.

    Args:
        metrics: a run's summary (``metrics.json``) or another record: ``{"methods":
            {method: {"mean": {...}, "std": {...}}}}`` and optionally ``"ratios"``.
        record: the record to reproduce (:func:`make_record`).
        digits: decimals compared (the tables' 3).

    Returns:
        One line per differing cell, ``"<method> <metric>: got 0.110 ± 0.016, recorded
        0.109 ± 0.016"``, for every method of either side and every score of the metric
        table (the record's and today's); a method on one side only is one line. Empty
        when the run reproduces the record. Per-seed values are not compared (no table
        prints them).
    """
    keys = list(dict.fromkeys([*(record.get("metrics") or []), *(spec.key for spec in table_metrics())]))
    got_methods, want_methods = metrics.get("methods") or {}, record.get("methods") or {}
    diffs: list[str] = []
    for method in dict.fromkeys([*want_methods, *got_methods]):
        if method not in got_methods:
            diffs.append(f"{method}: in the record, not in this run")
            continue
        if method not in want_methods:
            diffs.append(f"{method}: in this run, not in the record")
            continue
        got, want = got_methods[method], want_methods[method]
        for k in keys:
            g, w = (_printed(entry, k, digits) for entry in (got, want))
            if g != w:
                diffs.append(f"{method} {metric_label(k)}: got {g}, recorded {w}")
    got_ratios, want_ratios = dict(_ratio_rows(metrics)), dict(_ratio_rows(record))
    for name in dict.fromkeys([*want_ratios, *got_ratios]):
        g_row, w_row = got_ratios.get(name), want_ratios.get(name)
        if g_row is None or w_row is None:
            diffs.append(f"{name}: in {'the record' if g_row is None else 'this run'} only")
            continue
        for k in dict.fromkeys([*w_row, *g_row]):
            g, w = (_fmt(row.get(k), digits) for row in (g_row, w_row))
            if g != w:
                diffs.append(f"{name} {metric_label(k)}: got {g}, recorded {w}")
    return diffs


def _fmt(v: float | None, digits: int) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _printed(entry: Mapping[str, Any], key: str, digits: int) -> str:
    """``mean ± std`` of one metric as the terminal table prints it (both always shown)."""
    mean, std = _number((entry.get("mean") or {}).get(key)), _number((entry.get("std") or {}).get(key))
    return "n/a" if mean is None else f"{_fmt(mean, digits)} ± {_fmt(std or 0.0, digits)}"


def setup_differences(setup: Mapping[str, Any], record: Mapping[str, Any]) -> list[str]:
    """How ``setup`` (a run's) differs from the record's: ``["seeds: 2 here, 3 in the record"]``."""
    want = record.get("setup") or {}
    return [f"{k}: {setup.get(k)} here, {want.get(k)} in the record"
            for k in dict.fromkeys([*want, *setup]) if setup.get(k) != want.get(k)]


def readme_table(record: Mapping[str, Any], digits: int = DIGITS) -> str:
    """README's results table (markdown, no trailing newline) from a record.

    One row per method in the record's order, named by :data:`METHOD_NAMES` (the
    registered name otherwise), the :data:`README_COLUMNS` as ``mean ± std``
    (:func:`format_cell`); then one row per entry of ``record["ratios"]`` when the
    record has them (``{"<weak>/oracle": {metric: ratio of means}}``, the demo's
    metrics.json key), each value alone, named ``<weak's README name> / oracle``.
    """
    lines = ["| method | " + " | ".join(label for _, label in README_COLUMNS) + " |",
             "|" + "---|" * (len(README_COLUMNS) + 1)]
    for method, entry in (record.get("methods") or {}).items():
        mean, std = entry.get("mean") or {}, entry.get("std") or {}
        cells = [format_cell(_number(mean.get(k)), _number(std.get(k)), digits) for k, _ in README_COLUMNS]
        lines.append(f"| {METHOD_NAMES.get(method, method)} | " + " | ".join(cells) + " |")
    for name, values in _ratio_rows(record):
        cells = [_fmt(values.get(k), digits) for k, _ in README_COLUMNS]
        lines.append(f"| {_ratio_name(name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ratio_name(name: str) -> str:
    """README's name of a ratio row: ``proximity/oracle`` -> ``proximity (ours) / oracle``."""
    weak, sep, ref = name.partition("/")
    return f"{METHOD_NAMES.get(weak, weak)} / {ref}" if sep else name


def _block_bounds(text: str, where: str | Path = "README.md") -> tuple[int, int]:
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < 0 or end < start or text.count(README_START) != 1 or text.count(README_END) != 1:
        from patchvad.errors import ConfigError

        raise ConfigError(f"needs exactly one '{README_START}' line followed by one '{README_END}' line around "
                          "the demo table; put them back around the table", path=where)
    return start + len(README_START), end


def readme_block(text: str, where: str | Path = "README.md") -> str:
    """The table README holds between the markers (stripped of surrounding blank lines)."""
    start, end = _block_bounds(text, where)
    return text[start:end].strip("\n")


def replace_readme_block(text: str, table: str, where: str | Path = "README.md") -> str:
    """``text`` with the table between the markers replaced by ``table``."""
    start, end = _block_bounds(text, where)
    return text[:start] + "\n" + table + "\n" + text[end:]


def load_record(path: str | Path) -> dict[str, Any]:
    """Read a record (ConfigError naming the file when it is missing or not a record)."""
    import json

    from patchvad.errors import ConfigError

    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("no demo record here; run `patchvad demo` (it writes OUT/record.json)",
                          path=path) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read this demo record ({exc})", path=path) from None
    if not isinstance(record, dict) or not isinstance(record.get("methods"), dict):
        raise ConfigError("not a demo record (no 'methods'); records are written by `patchvad demo` as "
                          "OUT/record.json", path=path)
    if record.get("format") != RECORD_FORMAT:
        raise ConfigError(f"demo record of format {record.get('format')!r}, this patchvad reads format "
                          f"{RECORD_FORMAT}; regenerate it with `patchvad demo`", path=path)
    return record


def reproduction_lines(run_record: Mapping[str, Any], path: str | Path | None = None) -> list[str]:
    """What ``patchvad demo`` says at its end about the committed record.

    Args:
        run_record: this run's record (:func:`make_record`).
        path: the committed record (default :func:`default_record_path`).

    Returns:
        Lines to print: ``reproduces <path> to the printed digits``; or the setups'
        differences (no comparison); or "no committed record"; or the numbers that differ,
        one line each.
    """
    from patchvad.errors import ConfigError

    path = default_record_path() if path is None else Path(path)
    shown = _shown(path)
    if not path.is_file():
        if not (repository_root() / "pyproject.toml").is_file():
            return ["no committed record to compare with: this patchvad is an installed package, not a checkout "
                    f"of its repository (which holds docs/results/demo.json; looked at {path})"]
        return [f"no committed record at {shown}: nothing to compare this run with"]
    try:
        record = load_record(path)
    except ConfigError as exc:
        return [f"cannot compare with the committed record: {exc}"]
    other = setup_differences(run_record.get("setup") or {}, record)
    if other:
        return [f"not comparable with {shown}: the committed record ran another setup ({'; '.join(other)})"]
    diffs = compare_to_record(run_record, record)
    if not diffs:
        return [f"reproduces {shown} to the printed digits"]
    return [f"does not reproduce {shown}: {len(diffs)} number(s) differ at the printed digits"] + \
        [f"  {d}" for d in diffs] + _cpu_note(run_record, record)


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (``docs/results/demo.json``)."""
    try:
        return str(path.resolve().relative_to(repository_root()))
    except ValueError:
        return str(path)


__all__ = ["DIGITS", "METHOD_NAMES", "README_COLUMNS", "README_END", "README_START", "RECORD_FORMAT",
           "compare_to_record", "default_record_path", "format_cell", "load_record", "machine_info",
           "make_record", "readme_block", "readme_table", "replace_readme_block", "reproduction_lines",
           "setup_differences"]

