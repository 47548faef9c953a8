"""Learning curves: every method's scores against the number of training videos.

    patchvad curves --data ROOT --features FEATS --out DIR --sizes 40 80 160
                    [--methods M ...] [--seeds 0 1 2] [--oracle-labels DIR2] [--config CFG] [--jobs N] [--fresh]

For each size ``n`` the runs of ``patchvad compare`` (:func:`patchvad.compare.compare_command`:
methods x seeds, the oracle's labels to its fits only) go to ``DIR/n<n>/`` with the run
configuration ``DIR/n<n>/config.yaml`` = ``CFG`` (or the defaults) with
``train.train_videos: n``: each fit trains on a nested, label-stratified subset of ``n``
training videos (:func:`patchvad.training.data.subset_train`; the subset of ``n`` lies
inside that of ``2n``; the validation videos are taken from the subset). Runs already in
a size's ``results.json`` are reused (``--fresh``: fitted again), so an interrupted
command resumes. A reused run that was fitted on another number of videos (its
``split.json``) is refused.

Then it writes:

* ``DIR/curves.json``: ``sizes``, ``methods``, ``seeds``, ``metrics`` (key -> label), per
  size (``by_size[str(n)]``) compare's ``summary`` (per method ``mean``/``std``/``n`` of
  every table metric over seeds), its ``ratios`` (``<weak>/oracle``, empty without the
  oracle), ``above_floor`` (per trained method and score, seeds above the motion floor:
  :func:`patchvad.compare.seeds_above_floor`) and ``fitted_videos`` (per run, the videos
  its fit read: training + validation part), and the command;
* ``DIR/curves.md``: one table per metric, rows methods, columns sizes, mean ± sample std
  (ratio rows when the oracle ran);
* ``DIR/curves.png``: one panel per metric of :data:`PANELS` (frame AUC, TIoU, RBDC, patch
  AUC), x = training videos on a log2 axis, the mean line and a ±std band per method;
* ``DIR/curves.html``: the figure, the tables and each size's training curves
  (``DIR/n<n>/training_curves.png``, validation AUC and loss against the step) in one page
  built with :func:`patchvad.viz.report.html_page`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from patchvad.compare import (
    RUN_COLUMNS,
    TRAINING_PNG,
    check_methods,
    compare_command,
    experiment_command,
    plan,
    weak_trained,
)
from patchvad.config import RunConfig
from patchvad.data.folder import DatasetFolder
from patchvad.errors import ConfigError
from patchvad.io.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from patchvad.metrics.ratios import ORACLE, RATIO_NOTE
from patchvad.metrics.table import METRICS, metric_label, table_metrics
from patchvad.viz.plots import _figure, _png, _style, method_color, method_label, method_order
from patchvad.viz.report import _e, _img, html_page

CURVES_JSON = "curves.json"
CURVES_MD = "curves.md"
CURVES_PNG = "curves.png"
CURVES_HTML = "curves.html"
#: the metrics of curves.png, one panel each.
PANELS = ("frame_auc_micro", "tiou", "rbdc", "pauc")
PANEL_TITLES = {"frame_auc_micro": "frame AUC (micro)", "tiou": "TIoU", "rbdc": "RBDC", "pauc": "patch AUC"}


def size_dir(out: Path, n: int) -> Path:
    """The folder of the runs trained on ``n`` videos: ``out/n<n>``."""
    return Path(out) / f"n{n}"


def check_sizes(sizes: Sequence[int], data: Path) -> list[int]:
    """The sizes, ascending: positive, distinct, at most the dataset's training videos.

    Raises:
        ConfigError: no size, a repeated size, a size below 1 or above the training videos.
    """
    sizes = [int(n) for n in sizes]
    if not sizes:
        raise ConfigError("give at least one size (--sizes 40 80 160)")
    if len(set(sizes)) != len(sizes):
        raise ConfigError(f"--sizes holds a size twice: {sizes}")
    available = len(list(DatasetFolder(data, check_files=False).train_set()))
    bad = [n for n in sizes if n < 1 or n > available]
    if bad:
        raise ConfigError(f"--sizes {bad[0]}: the dataset holds {available} training videos; give sizes between 1 "
                          f"and {available}", path=data)
    return sorted(sizes)


def fitted_videos(out: Path, methods: Sequence[str], seeds: Sequence[int]) -> dict[str, int | None]:
    """Per run of ``out`` (compare's layout), the videos its fit read (``split.json``: train + val); None if absent."""
    counts: dict[str, int | None] = {}
    for run in plan(methods, seeds, out):
        split = run.model_dir / "split.json"
        if split.is_file():
            rec = json.loads(split.read_text(encoding="utf-8"))
            counts[str(run.key)] = len(rec["train"]) + len(rec["val"])
        else:
            counts[str(run.key)] = None
    return counts


def _cell(summary: Mapping[str, Any] | None, key: str, digits: int = 4) -> str:
    if not summary:
        return "-"
    mean, std = summary["mean"].get(key), summary["std"].get(key)
    if mean is None:
        return "-"
    n = summary["n"].get(key, 0)
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def table_rows(curves: Mapping[str, Any], key: str) -> list[tuple[str, list[str]]]:
    """One metric's table: ``[(row name, [cell per size])]``; methods then ``<weak> / oracle`` rows."""
    sizes = [str(n) for n in curves["sizes"]]
    by = curves["by_size"]
    rows = [(m, [_cell(by[n]["summary"].get(m), key) for n in sizes]) for m in method_order(curves["methods"])]
    names = list(dict.fromkeys(r for n in sizes for r in by[n].get("ratios", {})))
    for name in names:
        cells = []
        for n in sizes:
            v = by[n].get("ratios", {}).get(name, {}).get(key)
            cells.append("-" if v is None else f"{v:.3f}")
        rows.append((name.replace("/", " / "), cells))
    return rows


def format_markdown(curves: Mapping[str, Any], out: Path) -> str:
    """``curves.md`` in ``out``: a table per metric (rows methods, columns training videos), the figure, the command."""
    sizes = curves["sizes"]
    text = ["# Learning curves", "",
            "Mean ± sample std over seeds (one run for a method whose output does not depend on the seed); "
            "columns: training videos (a nested, label-stratified subset; the validation videos are part of it).",
            "", f"![learning curves]({CURVES_PNG})", ""]
    for key, label in curves["metrics"].items():
        text += [f"## {label}", "", "| method | " + " | ".join(str(n) for n in sizes) + " |",
                 "|---|" + "---|" * len(sizes)]
        text += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in table_rows(curves, key)]
        text.append("")
    if any(curves["by_size"][str(n)].get("ratios") for n in sizes):
        text += [RATIO_NOTE, ""]
    text += ["Training curves (validation video AUC and loss against the step) per size: "
             + ", ".join(f"[n{n}](n{n}/{TRAINING_PNG})" for n in sizes
                         if (size_dir(out, n) / TRAINING_PNG).is_file()), ""]
    text += [f"Command: `{curves['command']}`", ""]
    return "\n".join(text)


def curves_png(curves: Mapping[str, Any], keys: Sequence[str] = PANELS) -> bytes:
    """One panel per metric: mean against training videos (log2 axis), ±std band, one line per method."""
    sizes = np.asarray(curves["sizes"], dtype=float)
    fig = _figure(3.2 * len(keys), 3.4)
    axes = np.atleast_1d(fig.subplots(1, len(keys)))
    for ax, key in zip(axes, keys):
        _style(ax)
        for i, m in enumerate(method_order(curves["methods"])):
            stats = [curves["by_size"][str(int(n))]["summary"].get(m) for n in sizes]
            mean = np.array([np.nan if s is None or s["mean"].get(key) is None else s["mean"][key] for s in stats])
            std = np.array([0.0 if s is None or s["std"].get(key) is None else s["std"][key] for s in stats])
            ok = np.isfinite(mean)
            if not ok.any():
                continue
            color = method_color(m, i)
            ax.plot(sizes[ok], mean[ok], color=color, linewidth=1.6, marker="o", markersize=3.5,
                    linestyle="--" if m == ORACLE else "-", label=method_label(m))
            ax.fill_between(sizes[ok], (mean - std)[ok], (mean + std)[ok], color=color, alpha=0.15, linewidth=0)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(int(n)) for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("training videos", fontsize=9.5, color="#343a40")
        ax.set_title(PANEL_TITLES.get(key, metric_label(key)), fontsize=10.5, color="#212529", loc="left")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, frameon=False, loc="outside lower center", ncols=min(4, len(labels) or 1))
    return _png(fig)


def _html_table(curves: Mapping[str, Any], key: str) -> str:
    head = "".join(f'<th scope="col" class="num">{n}</th>' for n in curves["sizes"])
    body = "".join(f'<tr><th scope="row" class="method">{_e(method_label(name) if name in curves["methods"] else name)}'
                   f'</th>' + "".join(f'<td class="num">{_e(c)}</td>' for c in cells) + "</tr>"
                   for name, cells in table_rows(curves, key))
    return (f'<div class="table-wrap"><table class="results" data-metric="{_e(key)}"><thead><tr>'
            f'<th scope="col">Method \\ training videos</th>{head}</tr></thead><tbody>{body}</tbody></table></div>')


def render_html(curves: Mapping[str, Any], png: bytes, training: Mapping[int, bytes]) -> str:
    """``curves.html``: the figure, one table per metric, the training curves of each size."""
    nav = [("figure", "Learning curves"), ("tables", "Tables")]
    parts = [f'<section id="figure"><h2>Learning curves</h2><p class="lead">Mean over seeds against the number of '
             f'training videos (log2 axis); the band is ± the sample standard deviation.</p>'
             f'<figure>{_img(png, "image/png", "learning curves")}</figure></section>']
    tables = "".join(f"<h3>{_e(label)}</h3>{_html_table(curves, key)}" for key, label in curves["metrics"].items())
    ratios = any(curves["by_size"][str(n)].get("ratios") for n in curves["sizes"])
    note = f'<p class="ratio-note">{_e(RATIO_NOTE)}</p>' if ratios else ""
    parts.append(f'<section id="tables"><h2>Tables</h2><p class="lead">Mean ± sample std over seeds.</p>'
                 f'{tables}{note}</section>')
    if training:
        nav.append(("training", "Training curves"))
        cards = "".join(f'<figure>{_img(b, "image/png", f"training curves, {n} videos")}<figcaption><b>{n} training '
                        f'videos</b> — validation video AUC and loss against the step, mean over seeds'
                        f'</figcaption></figure>' for n, b in training.items())
        parts.append(f'<section id="training"><h2>Training curves</h2>{cards}</section>')
    chips = [f"sizes {', '.join(map(str, curves['sizes']))}", f"seeds {', '.join(map(str, curves['seeds']))}",
             f"{len(curves['methods'])} methods"]
    return html_page("patchvad learning curves", curves["command"], chips, nav, parts,
                     "The numbers of this page (curves.json) are embedded below as JSON", "patchvad-curves", curves)


def curves_command(data: Path, features: Path, out: Path, sizes: Sequence[int], methods: Sequence[str] | None = None,
                   seeds: Sequence[int] = (0, 1, 2), config: Path | None = None, oracle_labels: Path | None = None,
                   jobs: int = 1, fresh: bool = False, command: str | None = None) -> dict:
    """``patchvad curves`` (module docstring): compare at each size, then curves.json/md/png/html.

    Args:
        data: the dataset folder.
        features: its feature store.
        out: the output folder.
        sizes: training-set sizes (videos, validation part included), each at most the
            dataset's training videos.
        methods: registered methods (default as ``compare``: every one, the oracle only
            with ``oracle_labels``).
        seeds: training seeds.
        config: a YAML run configuration for every run (its ``train.train_videos`` is
            replaced by each size).
        oracle_labels: the training videos' ground truth, for the oracle's fits only.
        jobs: runs in parallel processes.
        fresh: fit and test every run again.
        command: the command line recorded in the outputs.

    Returns:
        The content of ``curves.json``.

    Raises:
        ConfigError: bad sizes (:func:`check_sizes`) or methods (:func:`patchvad.compare.check_methods`);
            a reused run fitted on another number of videos.
    """
    data, features, out = Path(data), Path(features), Path(out)
    methods = check_methods(methods, oracle_labels)
    seeds = [int(s) for s in seeds]
    sizes = check_sizes(sizes, data)
    base = RunConfig.load(config) if config is not None else RunConfig()
    if command is None:
        command = experiment_command("curves", data, features, out, extra=["--sizes", *sizes], methods=methods,
                                     seeds=seeds, oracle_labels=oracle_labels)
    by_size: dict[str, Any] = {}
    training: dict[int, bytes] = {}
    for n in sizes:
        sub = size_dir(out, n)
        sub.mkdir(parents=True, exist_ok=True)
        cfg_path = sub / "config.yaml"
        atomic_write_text(cfg_path, dataclasses.replace(base, train=dataclasses.replace(
            base.train, train_videos=n)).to_yaml())
        # The recorded command of a size is the compare command that redoes its runs alone.
        redo = experiment_command("compare", data, features, sub, methods=methods, seeds=seeds, config=cfg_path,
                                  oracle_labels=oracle_labels)
        results = compare_command(data, features, sub, methods=methods, seeds=seeds, config=cfg_path, fresh=fresh,
                                  jobs=jobs, command=redo, oracle_labels=oracle_labels)
        counts = fitted_videos(sub, methods, seeds)
        wrong = {k: c for k, c in counts.items() if c is not None and c != n}
        if wrong:
            key = next(iter(wrong))
            raise ConfigError(f"run {key} was fitted on {wrong[key]} videos, not {n}: it was made with another "
                              f"configuration; run again with --fresh or remove {sub / key}", path=sub / key)
        by_size[str(n)] = {"summary": results["summary"], "ratios": results.get("ratios", {}),
                           "above_floor": results.get("above_floor", {}), "fitted_videos": counts}
        if (sub / TRAINING_PNG).is_file():
            training[n] = (sub / TRAINING_PNG).read_bytes()
    keys = [spec.key for spec in table_metrics()] + list(RUN_COLUMNS)
    curves: dict[str, Any] = {
        "sizes": sizes, "methods": methods, "seeds": seeds, "weak_trained": weak_trained(methods),
        "metrics": {k: (METRICS[k].label if k in METRICS else RUN_COLUMNS[k]) for k in keys if k != "fit_s"},
        "by_size": by_size, "command": command}
    atomic_write_json(out / CURVES_JSON, curves)
    png = curves_png(curves)
    atomic_write_bytes(out / CURVES_PNG, png)
    text = format_markdown(curves, out)
    atomic_write_text(out / CURVES_MD, text)
    atomic_write_text(out / CURVES_HTML, render_html(curves, png, training))
    print(text)
    return curves


__all__ = ["CURVES_HTML", "CURVES_JSON", "CURVES_MD", "CURVES_PNG", "PANELS", "check_sizes", "curves_command",
           "curves_png", "fitted_videos", "format_markdown", "render_html", "size_dir", "table_rows"]
