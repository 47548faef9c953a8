"""The experiment harness: runs of (method, seed, configuration) -> fit, test, evaluate; mean and spread.

    patchvad compare --data ROOT --features FEATS --out DIR [--methods M ...] [--seeds 0 1 2] [--config CFG]
                     [--oracle-labels DIR2] [--fresh] [--jobs N]

One loop serves ``patchvad compare`` and the demo (its methods x seeds and its ablation):

* :class:`Run`: one fit -> test -> evaluate and its folders;
* :func:`execute`: runs them (``jobs`` in parallel processes) and returns every run's
  :class:`RunResult` in the order of the runs, whatever order they finish in. A run
  whose fit ran to its end is not fitted again (unless ``fresh``), one whose fit was
  killed part-way resumes it (``FIT_COMPLETE`` in the checkpoint), a run whose
  predictions were written after its checkpoint is not tested again; evaluation always
  runs (seconds);
* :func:`plan`: ``compare``'s runs: every method x seed (a method that is not
  ``seeded`` in the method registry: its first seed only);
* :func:`compare_command`: ``patchvad compare``: writes ``DIR/<method>_s<seed>/`` (run),
  ``DIR/pred_<method>_s<seed>/`` (predictions), ``DIR/results.json`` (every run's
  metrics, the summary, the grid ceiling, the command), ``DIR/results.md`` (the
  table: mean and sample standard deviation over seeds, the grid ceiling of the test
  split (:func:`patchvad.metrics.ceiling.grid_ceiling`), the command) and
  ``DIR/training_curves.png`` (validation AUC and loss against the step, mean over
  seeds per trained method; :mod:`patchvad.viz.training`), embedded in results.md. Runs already in
  ``results.json`` are kept (``--fresh`` fits and tests everything again).

The supervised oracle (``oracle``, an upper bound trained on the training videos'
ground-truth cells) runs only with ``oracle_labels`` (``--oracle-labels DIR2``, written
by ``patchvad synth ROOT --oracle-labels DIR2``); the folder goes to the oracle's fits
and to no other run (:func:`labels_for`). With the oracle in the table, results.json's
``ratios`` and results.md's ``<weak> / oracle`` rows give, per weakly supervised trained
method and metric, its mean over the oracle's (:mod:`patchvad.metrics.ratios`).

Methods come from the method registry (:mod:`patchvad.model.methods`), metrics from the
metric table (:mod:`patchvad.metrics.table`). Parallel runs start fresh interpreters, so
a method or metric registered at run time (not by an import of patchvad) needs ``jobs=1``.
"""

from __future__ import annotations

import json
import shlex
import time
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from patchvad.config import RunConfig
from patchvad.ensemble import INFERENCE_FILE
from patchvad.errors import ConfigError
from patchvad.features.store import FeatureStore
from patchvad.inference import test
from patchvad.io.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from patchvad.metrics.ceiling import grid_ceiling
from patchvad.metrics.evaluate import evaluate_folder
from patchvad.metrics.ratios import ORACLE, RATIO_NOTE, oracle_ratios
from patchvad.metrics.table import headline_metrics, summary_keys, table_metrics
from patchvad.model.methods import METHODS, get_method
from patchvad.model.model import read_metadata
from patchvad.parallel import run_parallel
from patchvad.training import MODEL_FILE, fit
from patchvad.training.loop import FIT_COMPLETE
from patchvad.viz.report import summarize_runs
from patchvad.viz.training import training_curves_png

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
#: validation AUC and loss against the step per method (mean over seeds), beside results.md.
TRAINING_PNG = "training_curves.png"
#: per-run values ``compare`` summarises beside the metrics: header of its table.
RUN_COLUMNS = {"val_auc": "val vid AUC", "fit_s": "fit s"}


@dataclass(frozen=True)
class Run:
    """One fit -> test -> evaluate.

    Attributes:
        key: how the caller names the run's result (e.g. ``(method, seed)``).
        method: registered method name.
        seed: training seed.
        config: the run configuration, a YAML path, or None for the method's defaults.
        model_dir: the RUN folder (``model.safetensors``).
        pred_dir: the predictions folder of the test split.
        oracle_labels: the training videos' ground truth, for a method trained on cells
            (the oracle) only; None for every weakly supervised method.
    """

    key: Hashable
    method: str
    seed: int
    config: RunConfig | Path | None
    model_dir: Path
    pred_dir: Path
    oracle_labels: Path | None = None


@dataclass(frozen=True)
class RunResult:
    """What one run gave.

    Attributes:
        run: the run.
        metrics: :func:`~patchvad.metrics.evaluate.evaluate_folder`'s result.
        val_auc: validation video AUC of the selected checkpoint (None without validation videos).
        best_step: the selected checkpoint's step.
        fit_seconds: time of the fit, None when an existing checkpoint was reused.
        snippets_per_second: speed of the test pass that wrote the predictions.
    """

    run: Run
    metrics: dict[str, Any]
    val_auc: float | None
    best_step: int | None
    fit_seconds: float | None
    snippets_per_second: float | None


def _number(text: str | None) -> float | None:
    return None if text in (None, "None") else float(text)


def execute_one(run: Run, data: Path, features: Path, fresh: bool = False,
                encoding_cache: Path | None = None) -> RunResult:
    """Fit (unless its checkpoint exists), test (unless its predictions are newer), evaluate.

    ``encoding_cache``: the folder the runs of one experiment share their normalisers and
    encoded videos through (:mod:`patchvad.model.encoding_cache`).
    """
    ckpt = run.model_dir / MODEL_FILE
    fit_seconds = None
    # A checkpoint of a fit that was killed before its end holds best-so-far weights: the
    # fit resumes from its saved state (or starts again without one) rather than being reused.
    unfinished = not fresh and ckpt.exists() and read_metadata(ckpt).get(FIT_COMPLETE, "true") != "true"
    if fresh or not ckpt.exists() or unfinished:
        t0 = time.perf_counter()
        fit(data, features, run.model_dir, method=run.method, seed=run.seed, config=run.config, log=None,
            oracle_labels=run.oracle_labels, resume=unfinished, encoding_cache=encoding_cache)
        fit_seconds = time.perf_counter() - t0
    done = run.pred_dir / INFERENCE_FILE
    if not done.exists() or done.stat().st_mtime < ckpt.stat().st_mtime:
        test(ckpt, data, features, run.pred_dir, encoding_cache=encoding_cache)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # each warning is a line of the result's "warnings"
        metrics = evaluate_folder(data, run.pred_dir)
    meta = read_metadata(ckpt)
    inference = json.loads(done.read_text(encoding="utf-8"))
    step = _number(meta.get("step"))
    return RunResult(run=run, metrics=metrics, val_auc=_number(meta.get("val_auc")),
                     best_step=None if step is None else int(step), fit_seconds=fit_seconds,
                     snippets_per_second=inference.get("snippets_per_second"))


def _execute_packed(packed: tuple[Run, Path, Path, bool, Path | None]) -> RunResult:
    return execute_one(*packed)


def execute(runs: Sequence[Run], data: Path, features: Path, jobs: int = 1, fresh: bool = False,
            desc: str = "fit+test", on_result: Callable[[RunResult], None] | None = None,
            encoding_cache: Path | None = None) -> dict[Hashable, RunResult]:
    """Every run through :func:`execute_one`; ``jobs`` > 1 spreads them over processes.

    Args:
        runs: the runs, keys unique; longest first lets a pool end evenly.
        data: the dataset folder.
        features: its feature store.
        jobs: parallel processes (:func:`patchvad.parallel.run_parallel`).
        fresh: fit and test again even where a checkpoint exists.
        desc: label of the progress bar.
        on_result: called with each result as it finishes (finishing order).
        encoding_cache: shared normalisers and encoded videos (:func:`execute_one`).

    Returns:
        ``{run.key: RunResult}`` in the order of ``runs``.
    """
    keys = [r.key for r in runs]
    if len(set(keys)) != len(keys):
        raise ValueError("runs must have distinct keys")
    done: dict[Hashable, RunResult] = {}
    with tqdm(total=len(runs), desc=desc, unit="run") as bar:
        packed = [(r, Path(data), Path(features), fresh, encoding_cache) for r in runs]
        for result in run_parallel(_execute_packed, packed, jobs):
            done[result.run.key] = result
            if on_result is not None:
                on_result(result)
            bar.update(1)
    return {k: done[k] for k in keys}


#: the folder under an experiment's output that its runs share encodings through.
ENCODING_CACHE = "encodings"
#: no shared encoding cache when the encoded videos would take more than this (float32, MB).
ENCODING_CACHE_LIMIT_MB = 2048
#: channels of an encoded token assumed for that estimate (the defaults give 55).
_ENCODED_CHANNELS = 64


def experiment_cache(features: Path, out: Path, limit_mb: float = ENCODING_CACHE_LIMIT_MB) -> Path | None:
    """``out/encodings`` when every video of ``features`` encoded would fit in ``limit_mb``, else None.

    The runs of one experiment share their normalisers and encoded videos through it
    (:mod:`patchvad.model.encoding_cache`); on a set too large for that (a UCF-Crime-sized
    one) each run encodes what it needs, as before.
    """
    store = FeatureStore(features)
    tokens = 0
    for stem in store.finished():
        t, gh, gw = store.record(stem)["shape"][:3]
        tokens += int(t) * int(gh) * int(gw)
    return Path(out) / ENCODING_CACHE if tokens * _ENCODED_CHANNELS * 4 <= limit_mb * 2 ** 20 else None


def labels_for(method: str, oracle_labels: Path | None) -> Path | None:
    """The oracle label folder for a method trained on cells; None for every other method.

    The one place where a run is handed training ground truth (``fit`` refuses it for
    weak methods as well).
    """
    return Path(oracle_labels) if oracle_labels is not None and get_method(method).needs_cell_targets else None


def weak_trained(methods: Sequence[str]) -> list[str]:
    """The weakly supervised trained methods among ``methods`` (the rows of ``weak / oracle``)."""
    return [m for m in methods if m in METHODS and METHODS[m].trained and not METHODS[m].needs_cell_targets]


def plan(methods: Sequence[str], seeds: Sequence[int], out: Path, config: RunConfig | Path | None = None,
         oracle_labels: Path | None = None) -> list[Run]:
    """``compare``'s runs: method x seed (first seed only for a method that is not seeded), ``out`` layout.

    ``oracle_labels`` reaches the runs of methods trained on cells only (:func:`labels_for`).
    """
    runs = []
    for name in methods:
        method = get_method(name)
        for seed in (seeds if method.seeded else seeds[:1]):
            key = f"{name}_s{seed}"
            runs.append(Run(key, name, int(seed), config, out / key, out / f"pred_{key}",
                            labels_for(name, oracle_labels)))
    return runs


def check_methods(methods: Sequence[str] | None, oracle_labels: Path | None) -> list[str]:
    """The methods to run: as given, or every registered one (a cell-trained one only with labels).

    Raises:
        ConfigError: a method trained on cells without ``oracle_labels``; ``oracle_labels``
            that no requested method reads, or that is not a folder.
    """
    if methods is None:
        methods = [m for m in METHODS if oracle_labels is not None or not METHODS[m].needs_cell_targets]
    methods = list(methods)
    cells = [m for m in methods if get_method(m).needs_cell_targets]
    if cells and oracle_labels is None:
        raise ConfigError(f"method {cells[0]!r} is the supervised upper bound and is trained on the training "
                          "videos' ground truth: give --oracle-labels DIR (written by patchvad synth ROOT "
                          f"--oracle-labels DIR), or leave {cells[0]!r} out of --methods")
    if oracle_labels is not None:
        if not cells:
            raise ConfigError("--oracle-labels is read by the supervised oracle only; add oracle to --methods "
                              "or leave --oracle-labels out", path=oracle_labels)
        if not Path(oracle_labels).is_dir():
            raise ConfigError("oracle label folder not found; write one with patchvad synth ROOT "
                              "--oracle-labels DIR", path=oracle_labels)
    return methods


def run_record(result: RunResult) -> dict[str, Any]:
    """The entry of ``results.json`` for one run: summary metrics, fit and test figures, headline per class."""
    ev = result.metrics
    rec: dict[str, Any] = {k: ev.get(k) for k in summary_keys()}
    rec.update({"val_auc": result.val_auc, "best_step": result.best_step, "fit_s": result.fit_seconds,
                "snippets_per_s": result.snippets_per_second,
                "per_class": {c: {spec.key: m.get(spec.key) for spec in headline_metrics()}
                              for c, m in ev.get("per_class", {}).items()}})
    return rec


def summarise(results: dict, methods: Sequence[str], seeds: Sequence[int]) -> dict[str, dict]:
    """``{method: {"mean", "std", "n"}}`` over the seeds in ``results["runs"]`` (sample std, ddof=1)."""
    runs = {m: {s: results["runs"][f"{m}_s{s}"] for s in seeds if f"{m}_s{s}" in results["runs"]}
            for m in methods}
    summary = summarize_runs({m: r for m, r in runs.items() if r}, keys=summary_keys() + tuple(RUN_COLUMNS))
    return {m: {k: s[k] for k in ("mean", "std", "n")} for m, s in summary["methods"].items()}


#: the untrained reference every trained seed must beat, and on which scores (docs/model.md, "No collapse").
FLOOR_METHOD = "motion_floor"
COLLAPSE_KEYS = ("frame_auc_micro", "tiou", "rbdc")


def seeds_above_floor(results: dict, methods: Sequence[str]) -> dict[str, dict[str, list[int]]]:
    """Per trained method and score of :data:`COLLAPSE_KEYS`: ``[seeds above the floor, seeds run]``.

    The floor is the motion floor's run in the same experiment (it does not depend on
    the seed); a seed counts when its score is strictly higher. Empty when the floor
    did not run.
    """
    floor = next((rec for key, rec in results["runs"].items() if key.rsplit("_s", 1)[0] == FLOOR_METHOD), None)
    if floor is None:
        return {}
    out: dict[str, dict[str, list[int]]] = {}
    for method in methods:
        if method not in METHODS or not METHODS[method].trained:
            continue
        runs = [rec for key, rec in results["runs"].items() if key.rsplit("_s", 1)[0] == method]
        if runs:
            out[method] = {k: [sum(1 for r in runs if r.get(k) is not None and floor.get(k) is not None
                                   and r[k] > floor[k]), len(runs)] for k in COLLAPSE_KEYS}
    return out


def format_above_floor(above: dict[str, dict[str, list[int]]]) -> str:
    """One line per method: how many seeds beat the motion floor on each :data:`COLLAPSE_KEYS` score."""
    if not above:
        return ""
    labels = {spec.key: spec.label for spec in table_metrics()}
    head = " / ".join(labels.get(k, k) for k in COLLAPSE_KEYS)
    rows = "; ".join(f"{m} " + ", ".join(f"{a}/{n}" for a, n in counts.values()) for m, counts in above.items())
    return f"\nSeeds above the motion floor ({head}): {rows}.\n"


def format_markdown(summary: dict[str, dict], ceiling: dict | None, command: str,
                    ratios: dict[str, dict[str, float | None]] | None = None, training_png: str | None = None,
                    above_floor: dict[str, dict[str, list[int]]] | None = None) -> str:
    """``results.md``: one row per method, the metric table's scores then :data:`RUN_COLUMNS`.

    ``ratios`` (:func:`~patchvad.metrics.ratios.oracle_ratios`): one ``<weak> / oracle``
    row each after the methods, and the footnote that says what they are.
    ``training_png``: the training-curves figure's file name, embedded after the table.
    ``above_floor``: :func:`seeds_above_floor`, one line after the table.
    """
    cols = [(spec.key, spec.label) for spec in table_metrics()] + list(RUN_COLUMNS.items())
    lines = ["| method | n | " + " | ".join(label for _, label in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for method, row in summary.items():
        n = max(row["n"].values(), default=0)
        cells = []
        for key, _ in cols:
            mean, std = row["mean"].get(key), row["std"].get(key)
            if mean is None:
                cells.append("-")
            elif key == "fit_s":
                cells.append(f"{mean:.0f}")
            else:
                cells.append(f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}")
        lines.append(f"| {method} | {n} | " + " | ".join(cells) + " |")
    for name, row in (ratios or {}).items():
        cells = ["-" if row.get(key) is None else f"{row[key]:.3f}" for key, _ in cols]
        lines.append(f"| {name.replace('/', ' / ')} | | " + " | ".join(cells) + " |")
    unseeded = [m for m in summary if m in METHODS and not METHODS[m].seeded]
    text = "\n".join(lines) + "\n\nmean ± sample std over seeds"
    text += f" ({', '.join(unseeded)}: one run, the output does not depend on the seed).\n" if unseeded else ".\n"
    text += format_above_floor(above_floor or {})
    if ceiling:
        text += "\nGrid ceiling (TIoU of a perfect whole-cell map on this test split): " + ", ".join(
            f"{g}: {v['tiou_ceiling']:.3f} ({100 * v['frac_iou_ge_0.1']:.0f}% of GT frames can reach IoU >= 0.1)"
            for g, v in ceiling.items() if v["tiou_ceiling"] is not None) + "\n"
    if ratios:
        text += f"\n{RATIO_NOTE}\n"
    if training_png:
        text += (f"\nValidation video AUC and validation loss against the step, mean over seeds per trained "
                 f"method:\n\n![training curves]({training_png})\n")
    text += f"\nCommand: `{command}`\n"
    return text


def run_dirs(methods: Sequence[str], seeds: Sequence[int], out: Path) -> dict[str, list[Path]]:
    """``{method: [RUN folder of each of its runs]}`` in ``compare``'s layout (:func:`plan`)."""
    dirs: dict[str, list[Path]] = {}
    for run in plan(methods, seeds, Path(out)):
        dirs.setdefault(run.method, []).append(run.model_dir)
    return dirs


def write_training_curves(out: Path, methods: Sequence[str], seeds: Sequence[int], title: str = "") -> Path | None:
    """``out/training_curves.png`` (:func:`~patchvad.viz.training.training_curves_png`); None when no run validated."""
    png = training_curves_png(run_dirs(methods, seeds, out), title=title)
    if png is None:
        return None
    atomic_write_bytes(Path(out) / TRAINING_PNG, png)
    return Path(out) / TRAINING_PNG


def experiment_command(verb: str, data: Path | str, features: Path | str, out: Path | str, *,
                       extra: Sequence[Any] = (), methods: Sequence[str] | None = None,
                       seeds: Sequence[int] | None = None, config: Path | str | None = None,
                       oracle_labels: Path | str | None = None, jobs: int = 1) -> str:
    """The command line that redoes a ``compare`` or ``curves`` run, as its outputs record it.

    Options in a fixed order: ``--data --features --out``, ``extra`` (a verb's own, e.g.
    ``--sizes``), then each of ``--methods --seeds --config --oracle-labels --jobs`` that
    is given (``methods`` when not empty, ``jobs`` when not 1); every word shell-quoted.
    """
    words: list[Any] = ["--data", data, "--features", features, "--out", out, *extra]
    words += ["--methods", *methods] if methods else []
    words += ["--seeds", *seeds] if seeds is not None else []
    words += ["--config", config] if config is not None else []
    words += ["--oracle-labels", oracle_labels] if oracle_labels is not None else []
    words += ["--jobs", jobs] if jobs != 1 else []
    return f"patchvad {verb} " + " ".join(shlex.quote(str(w)) for w in words)


def _log_line(result: RunResult, rec: dict[str, Any]) -> str:
    scores = " ".join(f"{spec.key}={rec[spec.key]:.4f}" for spec in table_metrics() if rec.get(spec.key) is not None)
    fit_s = "reused" if result.fit_seconds is None else f"{result.fit_seconds:.0f}s"
    return f"{result.run.key}: {scores} val_auc={rec['val_auc']} step={rec['best_step']} fit={fit_s}"


def compare_command(data: Path, features: Path, out: Path, methods: Sequence[str] | None = None,
                    seeds: Sequence[int] = (0, 1, 2), config: Path | None = None, fresh: bool = False,
                    jobs: int = 1, command: str | None = None, oracle_labels: Path | None = None) -> dict:
    """``patchvad compare``: every method x seed, ``results.json`` and ``results.md`` (module docstring).

    Args:
        data: the dataset folder.
        features: its feature store.
        out: the output folder.
        methods: registered method names (default: every registered method; the
            oracle only with ``oracle_labels``).
        seeds: training seeds.
        config: a YAML run configuration for every method (None: the defaults).
        fresh: fit and test again runs that are already in ``results.json`` or on disk.
        jobs: runs in parallel processes.
        command: the command line recorded in the outputs.
        oracle_labels: the training videos' ground truth (``patchvad synth ROOT
            --oracle-labels DIR``), handed to the oracle's fits only; required when
            ``methods`` holds the oracle.

    Returns:
        The content of ``results.json`` (``ratios``: ``{"<weak>/oracle": {metric: float | None}}``
        when the oracle ran, else empty).

    Raises:
        ConfigError: see :func:`check_methods`.
    """
    methods = check_methods(methods, oracle_labels)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULTS_JSON
    results = (json.loads(results_path.read_text(encoding="utf-8"))
               if results_path.exists() and not fresh else {"runs": {}})
    todo = [r for r in plan(methods, seeds, out, config, oracle_labels) if fresh or r.key not in results["runs"]]

    def record(result: RunResult) -> None:
        rec = run_record(result)
        results["runs"][result.run.key] = rec
        tqdm.write(_log_line(result, rec))
        atomic_write_json(results_path, results)

    execute(todo, data, features, jobs=jobs, fresh=fresh, on_result=record,
            encoding_cache=experiment_cache(features, out))
    command = command or experiment_command("compare", data, features, out, oracle_labels=oracle_labels)
    summary = summarise(results, methods, seeds)
    ratios = oracle_ratios(summary, weak_trained(methods)) if ORACLE in methods else {}
    ceiling = grid_ceiling(data)
    above = seeds_above_floor(results, methods)
    results.update({"summary": summary, "ratios": ratios, "above_floor": above, "grid_ceiling": ceiling,
                    "command": command})
    atomic_write_json(results_path, results)
    png = write_training_curves(out, methods, seeds)
    text = format_markdown(summary, ceiling, command, ratios, png.name if png else None, above)
    atomic_write_text(out / RESULTS_MD, text)
    print(text)
    return results


__all__ = ["COLLAPSE_KEYS", "FLOOR_METHOD", "RUN_COLUMNS", "TRAINING_PNG", "Run", "RunResult", "check_methods",
           "compare_command", "execute", "execute_one", "experiment_command", "format_above_floor",
           "format_markdown", "labels_for", "plan", "run_dirs", "run_record", "seeds_above_floor", "summarise",
           "weak_trained", "write_training_curves"]
