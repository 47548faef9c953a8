"""Summarise the newcam development runs (benchmarks/newcam_dev.sh): one table row per folder.

    python benchmarks/newcam_summary.py LABEL=DIR [LABEL=DIR ...]

Each DIR is a ``patchvad compare`` output folder (``results.json``, ``<method>_s<seed>/``) or
a folder of oracle runs laid out the same way (``oracle_s<seed>/`` with
``metrics_oracle_s<seed>.json`` beside it, written by ``patchvad evaluate --out``).
Prints, per (label, method): mean ± sample std over seeds of frame AUC (micro), TIoU,
RBDC and patch AUC, and the validation curve of each seed from ``train_log.jsonl``
(validation AUC and loss at every evaluation, from step 0).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

KEYS = (("frame_auc_micro", "frame AUC"), ("tiou", "TIoU"), ("rbdc", "RBDC"), ("pauc", "patch AUC"))


def _runs(folder: Path) -> dict[str, dict[str, dict]]:
    """``{method: {seed: metrics}}`` from results.json and/or metrics_<key>.json files."""
    out: dict[str, dict[str, dict]] = {}
    res = folder / "results.json"
    if res.exists():
        for key, rec in json.loads(res.read_text())["runs"].items():
            method, seed = key.rsplit("_s", 1)
            out.setdefault(method, {})[seed] = rec
    for path in sorted(folder.glob("metrics_*.json")):
        key = path.stem[len("metrics_"):]
        method, seed = key.rsplit("_s", 1)
        rec = json.loads(path.read_text())
        out.setdefault(method, {})[seed] = rec.get("summary", rec)
    return out


def _curve(run: Path) -> str:
    log = run / "train_log.jsonl"
    if not log.exists():
        return "-"
    val = [json.loads(line) for line in log.read_text().splitlines() if '"kind": "val"' in line]
    if not val:
        return "-"
    aucs = [v["val_auc"] for v in val]
    losses = [v["val_loss"] for v in val]
    step = "?"
    fit_log = run.with_suffix(".log")            # the oracle's `patchvad fit` output (newcam_dev.sh)
    if fit_log.exists():
        done = [line for line in fit_log.read_text().splitlines() if "done:" in line and "(step " in line]
        if done:
            step = done[-1].split("(step ", 1)[1].split(",", 1)[0]
    return ("val AUC " + " ".join(f"{a:.2f}" for a in aucs) + ", val loss " + " ".join(f"{v:.2f}" for v in losses)
            + ("" if step == "?" else f", selected step {step}"))


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main(argv: list[str]) -> None:
    """Print the markdown table and the per-seed validation curves."""
    print("| setting | method | n | " + " | ".join(label for _, label in KEYS) + " |")
    print("|---|---|---|" + "---|" * len(KEYS))
    curves = []
    for arg in argv:
        label, _, folder = arg.partition("=")
        folder_p = Path(folder)
        for method, seeds in _runs(folder_p).items():
            cells = [_fmt([float(r[k]) for r in seeds.values() if r.get(k) is not None]) for k, _ in KEYS]
            print(f"| {label} | {method} | {len(seeds)} | " + " | ".join(cells) + " |")
            for seed in sorted(seeds):
                run = folder_p / f"{method}_s{seed}"
                sel = seeds[seed].get("best_step")
                curves.append(f"{label} {method} s{seed}: {_curve(run)}" + (f" (best_step {sel})" if sel is not None
                                                                              else ""))
    print()
    print("\n".join(curves))


if __name__ == "__main__":
    main(sys.argv[1:])
