"""Test a finished experiment's runs at the checkpoint another selection rule would keep.

    python benchmarks/reselect.py --exp EXP --data DATA --features FEATURES --rule val_loss \
        [--methods proximity plain_topk] [--jobs 2]

EXP is a ``patchvad compare`` output folder (or one size ``n<size>/`` of ``patchvad
curves``) whose trained runs kept every evaluated checkpoint (``RUN/checkpoints/``: the
default ``train.select: val_auc_smooth`` keeps them, as does ``train.keep_checkpoints``).
For each run of the given methods the rule is applied to the run's validation history
(``train_log.jsonl``), exactly as ``fit`` would have applied it during training
(``val_loss``: lowest validation loss; ``val_auc``: highest validation AUC;
``val_auc_smooth``; ``last``; ties go to the later step), and the chosen checkpoint is
tested and evaluated into ``EXP/reselect_<rule>/``: ``pred_<run>/``,
``metrics_<run>.json`` and ``results.json`` (per run: the chosen step, the step ``fit``
selected, the metrics; per method: mean and sample std over seeds). A training setting
is thereby compared without training again: the weights at every evaluated step are
the same whichever rule selects among them (selection does not change the steps taken).

``benchmarks/newcam_summary.py LABEL=EXP/reselect_<rule>`` prints the rows beside others.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from pathlib import Path

from patchvad.inference import test
from patchvad.io.files import atomic_write_text
from patchvad.metrics.evaluate import evaluate_folder
from patchvad.parallel import run_parallel
from patchvad.training.loop import _selection_score, smoothed_best

RULES = ("val_loss", "val_auc", "val_auc_smooth", "last")
KEYS = ("frame_auc_micro", "tiou", "rbdc", "pauc")


def validation_history(run: Path) -> list[dict]:
    """The run's validation records ``{"step", "val_auc", "val_loss"}`` in step order."""
    lines = (run / "train_log.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines if line.strip()]
    return sorted((r for r in recs if r.get("kind") == "val"), key=lambda r: r["step"])


def chosen_step(history: list[dict], rule: str, smooth_window: int = 3) -> int:
    """The step ``fit`` would keep under ``rule`` (its own comparison: ties to the later step)."""
    if not history:
        raise ValueError("no validation record in the run's train_log.jsonl")
    if rule == "val_auc_smooth":
        return smoothed_best(history, smooth_window)
    best, best_step = float("-inf"), int(history[0]["step"])
    for rec in history:
        score = _selection_score(rule, rec, int(rec["step"]))
        if score >= best:
            best, best_step = score, int(rec["step"])
    return best_step


def _fit_selected_step(run: Path) -> int | None:
    """The step the fit itself kept (``model.safetensors``' metadata), when recorded."""
    from patchvad.model.model import read_metadata
    meta = read_metadata(run / "model.safetensors")
    step = meta.get("step")
    return int(step) if step is not None else None


def _test_one(item: tuple[str, str, str, str, str, str | None]) -> tuple[str, dict]:
    name, ckpt, data, features, out, cache = item
    pred = Path(out) / f"pred_{name}"
    test(ckpt, data, features, pred, encoding_cache=cache)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = evaluate_folder(data, pred)
    atomic_write_text(Path(out) / f"metrics_{name}.json", json.dumps(metrics, indent=1))
    return name, metrics


def main(argv: list[str] | None = None) -> int:
    """Apply ``--rule`` to every run of ``--methods`` in ``--exp``, test and evaluate, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--exp", type=Path, required=True, help="compare output folder")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--features", type=Path, required=True)
    ap.add_argument("--rule", choices=RULES, required=True)
    ap.add_argument("--methods", nargs="+", default=["proximity"])
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args(argv)
    out = args.exp / f"reselect_{args.rule}"
    out.mkdir(exist_ok=True)
    cache = args.exp / "encodings"
    runs, items = {}, []
    for method in args.methods:
        for run in sorted(args.exp.glob(f"{method}_s*")):
            if not (run / "train_log.jsonl").exists():
                continue
            step = chosen_step(validation_history(run), args.rule)
            ckpt = run / "checkpoints" / f"step_{step:06d}.safetensors"
            if not ckpt.exists():
                print(f"{ckpt}: missing (the run did not keep its checkpoints: train.keep_checkpoints)",
                      file=sys.stderr)
                return 2
            runs[run.name] = {"method": method, "step": step, "fit_selected_step": _fit_selected_step(run)}
            items.append((run.name, str(ckpt), str(args.data), str(args.features), str(out),
                          str(cache) if cache.is_dir() else None))
    for name, metrics in run_parallel(_test_one, items, args.jobs):       # in the order they finish
        runs[name].update({k: metrics[k] for k in KEYS})
    summary: dict[str, dict] = {}
    for method in args.methods:
        rows = [r for r in runs.values() if r["method"] == method]
        if rows:
            summary[method] = {k: {"mean": statistics.mean(r[k] for r in rows),
                                   "std": statistics.stdev(r[k] for r in rows) if len(rows) > 1 else 0.0}
                               for k in KEYS}
            steps = ", ".join(str(r["step"]) for r in rows)
            cells = " / ".join(f"{summary[method][k]['mean']:.3f} ± {summary[method][k]['std']:.3f}" for k in KEYS)
            print(f"{method} ({args.rule}; steps {steps}): frame AUC / TIoU / RBDC / patch AUC {cells}")
    atomic_write_text(out / "results.json", json.dumps({"rule": args.rule, "runs": runs, "summary": summary},
                                                       indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
