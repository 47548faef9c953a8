"""Measure the new-camera quality floor of tests/model/test_newcam_floor.py over training seeds.

    python benchmarks/newcam_floor.py --out DIR [--seeds 0 1 2 3 4 5 6 7 8 9]

Builds the test's set once (its ``N_TRAIN``, ``N_TEST``, ``BENCHMARK_SEED``, read from the
test module so the two cannot drift apart): ``newcam-tiny`` videos, default features;
then fits the proximity model with the test's ``CONFIG`` once per training seed, tests
and evaluates it, and prints one JSON line per seed (frame AUC, TIoU, RBDC, patch AUC,
the selected step, fit seconds) and the minimum of each metric. The motion floor (no
training) and the normal memory (fitted on the normal training videos, no seed) are
evaluated once beside them. The test's bounds are those minima less a
margin (docs/model.md, "End-to-end quality floor on new cameras").
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
import warnings
from pathlib import Path

from patchvad.config import RunConfig
from patchvad.data.synth import generate_benchmark
from patchvad.features.extract import extract_dataset
from patchvad.inference import test
from patchvad.metrics.evaluate import evaluate_folder
from patchvad.training import fit

KEYS = ("frame_auc_micro", "tiou", "rbdc", "pauc")
TEST_FILE = Path(__file__).resolve().parents[1] / "tests" / "model" / "test_newcam_floor.py"


def _test_settings():
    spec = importlib.util.spec_from_file_location("test_newcam_floor", TEST_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(method: str, seed: int, data: Path, features: Path, out: Path, config: RunConfig) -> dict:
    t0 = time.perf_counter()
    res = fit(data, features, out / f"run_{method}_{seed}", method=method, seed=seed, config=config, log=None)
    fit_s = time.perf_counter() - t0
    test(res.checkpoint, data, features, out / f"pred_{method}_{seed}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = evaluate_folder(data, out / f"pred_{method}_{seed}")
    return {"method": method, "seed": seed, "step": res.best_step, "fit_s": round(fit_s, 1),
            **{k: round(float(ev[k]), 4) for k in KEYS}}


def main(argv: list[str] | None = None) -> int:
    """Build the test's set, fit every seed, print one JSON line per run and the extremes."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    args = ap.parse_args(argv)
    t = _test_settings()
    data, features = args.out / "data", args.out / "features"
    if not (data / "synth.json").exists():
        generate_benchmark(data, t.N_TRAIN, t.N_TEST, t.BENCHMARK_SEED, preset="newcam-tiny", workers=2)
    extract_dataset(data, features, progress=False)
    config = RunConfig.from_dict(t.CONFIG)
    rows = [_run(m, 0, data, features, args.out, config) for m in ("motion_floor", "normal_memory")]
    for row in rows:
        print(json.dumps(row), flush=True)
    for seed in args.seeds:
        rows.append(_run("proximity", seed, data, features, args.out, config))
        print(json.dumps(rows[-1]), flush=True)
    trained = [r for r in rows if r["method"] == "proximity"]
    print(json.dumps({"min_over_seeds": {k: min(r[k] for r in trained) for k in KEYS},
                      "max_over_seeds": {k: max(r[k] for r in trained) for k in KEYS}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
