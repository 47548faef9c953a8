"""Methods x seeds through one harness: fit -> test -> evaluate -> table (mean and spread).

    python -m patchvad.model.compare --data ROOT --features FEATS --out DIR \\
        [--methods proximity plain_topk video_mil sultani motion_floor random] [--seeds 0 1 2] [--config CFG]
        [--jobs N]

Writes ``DIR/<method>_s<seed>/`` (run), ``DIR/pred_<method>_s<seed>/`` (predictions),
``DIR/results.json`` (every run's metrics) and ``DIR/results.md`` (the table: mean and
sample standard deviation over seeds, the grid ceiling, and the command). Finished runs
are reused (``--fresh`` retrains). Also reports the grid ceiling of the test split:
the TIoU of a perfect whole-cell map (:func:`grid_ceiling`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from patchvad.data.folder import DatasetFolder
from patchvad.io.files import atomic_write_json, atomic_write_text
from patchvad.geometry import cell_box, paired_iou
from patchvad.parallel import run_parallel

KEYS = ("frame_auc_micro", "frame_auc_macro", "frame_ap", "tiou", "rbdc", "tbdc", "pauc", "pap")
UNTRAINED = ("motion_floor", "random")


def grid_ceiling(data_root: str | Path, grids=((7, 7), (14, 14), (28, 28))) -> dict:
    """TIoU of a perfect whole-cell map per grid, over the GT frames of the test split.

    For each annotated frame: the union box of its regions, the smallest whole-cell box
    around it, their IoU (frame scores perfect). Also the share of frames that can
    reach IoU >= 0.1 (the RBDC match threshold).
    """
    test = DatasetFolder(data_root, check_files=False).test_set()
    ious: dict[tuple[int, int], list[float]] = {tuple(g): [] for g in grids}
    for e in test:
        if e.label != 1:
            continue
        gt = test.ground_truth(e)
        for f in np.unique(gt.regions[:, 1]):
            b = gt.boxes_of_frame(int(f))
            union = (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())
            for g in ious:
                cells = cell_box(union, g, (gt.width, gt.height))
                ious[g].append(float(paired_iou(np.asarray([union]), np.asarray([cells]))[0]))
    return {f"{g[0]}x{g[1]}": {"tiou_ceiling": float(np.mean(v)) if v else None,
                               "frac_iou_ge_0.1": float(np.mean(np.asarray(v) >= 0.1)) if v else None,
                               "frames": len(v)} for g, v in ious.items()}


def pool_features(src: str | Path, dst: str | Path, factor: int = 2) -> Path:
    """Grid ablation: a coarser feature store made by ``factor x factor`` mean pooling.

    Every channel is averaged over the fine cells of a coarse cell. For the
    appearance maps and the mean-type motion channels this is what a coarser
    extraction computes; for max-type motion channels (energy_max, energy_peak) and
    the flow it is an approximation. Grids must be divisible by ``factor``.
    """
    import dataclasses

    from patchvad.features.store import FeatureStore

    source = FeatureStore(src)
    gh, gw = source.spec.grid
    if gh % factor or gw % factor:
        raise ValueError(f"grid {gh}x{gw} is not divisible by {factor}")
    spec = dataclasses.replace(source.spec, grid=(gh // factor, gw // factor),
                               backbone=f"{source.spec.backbone}+pool{factor}")
    target = FeatureStore(dst, spec)
    for stem in source.finished():
        if stem in target:
            continue
        vf = source.load(stem)
        x = np.asarray(vf.x, dtype=np.float32)
        t, _, _, d = x.shape
        pooled = x.reshape(t, gh // factor, factor, gw // factor, factor, d).mean(axis=(2, 4))
        info = {k: v for k, v in vf.record.items() if k not in ("stem", "shape", "dtype", "bytes", "sha256",
                                                                 "snippets")}
        target.write(stem, pooled, vf.snippets, info)
    target.write_index()
    return Path(dst)


def _one_run(args: tuple) -> tuple[str, dict]:
    data, features, out, method, seed, config = args
    from patchvad.inference import test
    from patchvad.metrics.evaluate import evaluate_folder
    from patchvad.train import fit

    key = f"{method}_s{seed}"
    t0 = time.perf_counter()
    res = fit(data, features, out / key, method=method, seed=seed, config=config, log=None)
    t_fit = time.perf_counter() - t0
    tr = test(res.checkpoint, data, features, out / f"pred_{key}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = evaluate_folder(data, out / f"pred_{key}")
    rec = {k: ev.get(k) for k in KEYS}
    rec.update({"tiou_threshold": ev.get("tiou_threshold"), "val_auc": res.val_auc, "best_step": res.best_step,
                "fit_s": t_fit, "snippets_per_s": tr.snippets_per_second,
                "per_class": {c: {k: m.get(k) for k in ("frame_auc_micro", "tiou", "rbdc")}
                              for c, m in ev.get("per_class", {}).items()}})
    return key, rec


def run_all(data: Path, features: Path, out: Path, methods, seeds, config: Path | None = None,
            fresh: bool = False, jobs: int = 1, log=print) -> dict:
    """Fit, test and evaluate every (method, seed); ``jobs`` runs in parallel processes."""
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() and not fresh else {"runs": {}}
    todo = []
    for method in methods:
        for seed in (seeds[:1] if method == "motion_floor" else seeds):
            if f"{method}_s{seed}" not in results["runs"] or fresh:
                todo.append((data, features, out, method, seed, config))

    def record(key: str, rec: dict) -> None:
        results["runs"][key] = rec
        log(f"{key}: " + " ".join(f"{k}={rec[k]:.4f}" for k in KEYS if rec[k] is not None)
            + f" val_auc={rec['val_auc']} step={rec['best_step']} fit={rec['fit_s']:.0f}s")
        atomic_write_json(results_path, results)

    for key, rec in run_parallel(_one_run, todo, jobs):
        record(key, rec)
    return results


def summarise(results: dict, methods, seeds) -> dict:
    table = {}
    for method in methods:
        rows = [results["runs"][f"{method}_s{s}"] for s in seeds if f"{method}_s{s}" in results["runs"]]
        if not rows:
            continue
        table[method] = {}
        for k in KEYS + ("val_auc", "fit_s"):
            vals = [r[k] for r in rows if r.get(k) is not None]
            if vals:
                table[method][k] = (float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
                                    len(vals))
    return table


def format_markdown(table: dict, ceiling: dict | None, command: str) -> str:
    cols = ("frame_auc_micro", "frame_ap", "tiou", "rbdc", "tbdc", "pauc", "val_auc", "fit_s")
    names = {"frame_auc_micro": "frame AUC", "frame_ap": "frame AP", "tiou": "TIoU", "rbdc": "RBDC",
             "tbdc": "TBDC", "pauc": "PAUC", "val_auc": "val vid AUC", "fit_s": "fit s"}
    lines = ["| method | n | " + " | ".join(names[c] for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for method, row in table.items():
        n = max(v[2] for v in row.values())
        cells = []
        for c in cols:
            if c in row:
                m, s, _ = row[c]
                cells.append(f"{m:.0f}" if c == "fit_s" else (f"{m:.4f} ± {s:.4f}" if n > 1 else f"{m:.4f}"))
            else:
                cells.append("-")
        lines.append(f"| {method} | {n} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n\nmean ± sample std over seeds (motion_floor has no seed).\n"
    if ceiling:
        text += "\nGrid ceiling (TIoU of a perfect whole-cell map on this test split): " + ", ".join(
            f"{g}: {v['tiou_ceiling']:.3f} ({100 * v['frac_iou_ge_0.1']:.0f}% of GT frames can reach IoU >= 0.1)"
            for g, v in ceiling.items() if v["tiou_ceiling"] is not None) + "\n"
    text += f"\nCommand: `{command}`\n"
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--features", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--methods", nargs="+",
                    default=["proximity", "plain_topk", "video_mil", "sultani", "motion_floor", "random"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--fresh", action="store_true", help="retrain runs already in results.json")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    args = ap.parse_args(argv)
    command = "python -m patchvad.model.compare " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    results = run_all(args.data, args.features, args.out, args.methods, args.seeds, args.config, args.fresh,
                      args.jobs)
    table = summarise(results, args.methods, args.seeds)
    ceiling = grid_ceiling(args.data)
    results["summary"] = table
    results["grid_ceiling"] = ceiling
    results["command"] = command
    atomic_write_json(args.out / "results.json", results)
    text = format_markdown(table, ceiling, command)
    atomic_write_text(args.out / "results.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
