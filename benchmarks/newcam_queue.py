r"""Run a priority-ordered queue of (setting, method, seed) fits on one benchmark, two at a time.

    python benchmarks/newcam_queue.py --data ROOT --features FEATS [--oracle-labels DIR] [--jobs 2] \\
        OUTDIR:METHOD:SEED[:CONFIG.yaml] ...

Each item is one ``patchvad compare`` run (``OUTDIR/<method>_s<seed>/``,
``OUTDIR/pred_<method>_s<seed>/``, its record in ``OUTDIR/results.json`` in compare's
format), so ``patchvad compare --out OUTDIR ...`` afterwards reuses it. Unlike one
``compare`` per setting, the whole queue shares one pool: no idle core while a
setting's last seed runs alone, and the items finish in the order given (most
important first). ``oracle`` items are fitted with the training videos' boxes
(``--oracle-labels``), then tested and evaluated like the others.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from patchvad.compare import Run, RunResult, execute_one, run_record
from patchvad.io.files import atomic_write_json
from patchvad.parallel import run_parallel
from patchvad.training import MODEL_FILE, fit


def _one(packed: tuple[Run, Path, Path, Path | None]) -> RunResult:
    run, data, features, oracle = packed
    if run.method == "oracle" and not (run.model_dir / MODEL_FILE).exists():
        log_path = run.model_dir.with_suffix(".log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w", encoding="utf-8") as fh:
            fit(data, features, run.model_dir, method="oracle", seed=run.seed, config=run.config,
                log=lambda msg: print(msg, file=fh, flush=True), oracle_labels=oracle)
    return execute_one(run, data, features)


def main() -> None:
    """Parse the queue, run it, record every result in its folder's results.json."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--features", type=Path, required=True)
    ap.add_argument("--oracle-labels", type=Path)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("items", nargs="+", help="OUTDIR:METHOD:SEED[:CONFIG.yaml]")
    a = ap.parse_args()
    runs = []
    for item in a.items:
        parts = item.split(":")
        out, method, seed = Path(parts[0]), parts[1], int(parts[2])
        cfg = Path(parts[3]) if len(parts) > 3 else None
        key = f"{method}_s{seed}"
        runs.append(Run((str(out), key), method, seed, cfg, out / key, out / f"pred_{key}"))
    for result in run_parallel(_one, [(r, a.data, a.features, a.oracle_labels) for r in runs], a.jobs):
        out_dir, key = Path(result.run.key[0]), result.run.key[1]
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "results.json"
        results = json.loads(path.read_text()) if path.exists() else {"runs": {}}
        rec = run_record(result)
        results["runs"][key] = rec
        atomic_write_json(path, results)
        print(f"{out_dir.name}/{key}: frame AUC {rec['frame_auc_micro']:.4f} TIoU {rec['tiou']:.4f} "
              f"RBDC {rec['rbdc']:.4f} PAUC {rec['pauc']:.4f} step {rec['best_step']} fit {result.fit_seconds}",
              flush=True)


if __name__ == "__main__":
    main()
