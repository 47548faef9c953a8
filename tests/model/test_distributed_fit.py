"""``patchvad fit`` under torchrun: 2 processes (gloo) train like 1, rank 0 writes, a kill resumes.

Tolerance. Both runs use one thread per process and see the same global batches,
augmentation draws and dropout masks (training/: ``BalancedSampler.next_share``, ``augment``
with ``rows``, ``BatchShare``), so the only difference is the order of float
reductions: the gradient is the mean over ranks of each share's mean instead of one
mean over the batch (DDP all-reduce), and the logged loss the mean of the two shares'
means. Measured on this set after 60 AdamW steps: training loss terms within 9.5e-8
relative, validation loss within 9.3e-8, validation AUC identical, checkpoint weights
within 6.9e-7 absolute (float32 rounding is 6e-8 relative per operation). We allow 1e-5
relative on losses (100x the measured drift, far below a real divergence: per-rank
dropout masks, measured on a similar toy set before ``BatchShare``, moved the loss by 2e-4 after 5
steps and 8e-2 after 40), one swapped pair of the 4 x 4 validation pairs on the AUC,
1e-5 absolute + 1e-4 relative on weights, and 1e-3 on the test metrics.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from patchvad.features.store import FeatureStore
from patchvad.inference import test
from patchvad.metrics.evaluate import evaluate_folder
from patchvad.model.model import load_model
from patchvad.training import fit

from toydata import make_toy_dataset

REL_TOL = 1e-5
CONFIG = """\
model: {width: 16, appearance_dims: 8, change_dims: 4}
train: {steps: 60, batch_size: 8, eval_every: 10, log_every: 5, device: cpu, threads: 1}
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "patchvad", *args]


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def _evaluate(data: Path, pred: Path) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate_folder(data, pred)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("dist")
    make_toy_dataset(base / "data", base / "feats", n_train=40, n_test=12, grid=(6, 6), seed=7, snippets=(8, 14))
    (base / "cfg.yaml").write_text(CONFIG)
    torch.set_num_threads(1)
    one = fit(base / "data", base / "feats", base / "one", config=base / "cfg.yaml", log=None)
    two = subprocess.run(_torchrun("fit", "--data", str(base / "data"), "--features", str(base / "feats"), "--out",
                                   str(base / "two"), "--config", str(base / "cfg.yaml")),
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    return {"base": base, "one": one, "two": two}


@pytest.mark.slow
def test_two_processes_train_like_one(runs) -> None:
    base = runs["base"]
    one_log, two_log = _log(base / "one"), _log(base / "two")
    setup = [r for r in two_log if r["kind"] == "setup"]
    assert setup == [{"kind": "setup", "world_size": 2, "backend": "gloo", "batch_size": 8, "per_rank_batch": 4}]
    two_log = [r for r in two_log if r["kind"] != "setup"]
    assert [(r["kind"], r["step"]) for r in one_log] == [(r["kind"], r["step"]) for r in two_log]
    auc_step = 1.0 / (4 * 4)            # 8 validation videos, 4 per class: one swapped pair
    for a, b in zip(one_log, two_log):
        if a["kind"] == "train":
            for key in a:
                if key not in ("kind", "step"):
                    assert b[key] == pytest.approx(a[key], rel=REL_TOL, abs=1e-9), (a["step"], key)
        else:
            assert b["val_loss"] == pytest.approx(a["val_loss"], rel=REL_TOL), a["step"]
            assert abs(b["val_auc"] - a["val_auc"]) <= auc_step + 1e-12, a["step"]
    # One summary line (rank 0), with the effective batch.
    summary = [line for line in runs["two"].stdout.splitlines() if "model.safetensors" in line]
    assert len(summary) == 1 and "2 processes, effective batch 8" in summary[0]
    # Only rank 0 wrote, and only the files of a single-process run.
    assert sorted(p.name for p in (base / "two").iterdir()) == sorted(p.name for p in (base / "one").iterdir())
    assert not [p for p in (base / "two").rglob("*") if ".tmp" in p.name or "rank" in p.name]

    # The checkpoint loads and tests like the single-process one.
    spec = FeatureStore(base / "feats").spec
    model = load_model(base / "two" / "model.safetensors", spec)
    assert model.method == "proximity"
    with safe_open(str(base / "two" / "model.safetensors"), framework="pt") as fh:
        meta = fh.metadata()
    assert int(meta["step"]) == runs["one"].best_step
    ta, tb = load_file(str(base / "one" / "model.safetensors")), load_file(str(base / "two" / "model.safetensors"))
    for k in ta:
        torch.testing.assert_close(tb[k], ta[k], rtol=1e-4, atol=1e-5)
    metrics = {}
    for name in ("one", "two"):
        test(base / name / "model.safetensors", base / "data", base / "feats", base / f"pred_{name}")
        metrics[name] = _evaluate(base / "data", base / f"pred_{name}")
    for key in ("frame_auc_micro", "frame_ap", "tiou", "rbdc", "tbdc", "pauc"):
        assert metrics["two"][key] == pytest.approx(metrics["one"][key], abs=1e-3), key


@pytest.mark.slow
def test_killed_distributed_fit_resumes(runs) -> None:
    base = runs["base"]
    run = base / "killed"
    args = _torchrun("fit", "--data", str(base / "data"), "--features", str(base / "feats"), "--out", str(run),
                     "--config", str(base / "cfg.yaml"))
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = run / "train_state.safetensors"
    deadline = time.time() + 120
    while time.time() < deadline and not state.exists() and proc.poll() is None:
        time.sleep(0.01)
    # A crash of the whole job: both workers (in their own sessions) and the launcher, by pid.
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    for pid in children:
        os.kill(int(pid), signal.SIGKILL)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for pid in children:                # gone (or a zombie) before the rerun starts
        while "zombie" not in _status(pid):
            time.sleep(0.01)
    with safe_open(str(state), framework="pt") as fh:
        killed_at = json.loads(fh.metadata()["info"])["step"]
    assert 0 < killed_at < 60, "the kill should land mid-run"

    out = subprocess.run(args + ["--resume"], env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"resumed at step {killed_at}" in out.stderr
    # The resumed run ends exactly where the uninterrupted 2-process run ended.
    a, b = load_file(str(base / "two" / "train_state.safetensors")), load_file(str(state))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    a, b = load_file(str(base / "two" / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with safe_open(str(state), framework="pt") as fh:
        history = json.loads(fh.metadata()["info"])["history"]
    assert [h["step"] for h in history] == list(range(0, 61, 10))


def _status(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "zombie"


def test_sampler_shares_one_balanced_batch() -> None:
    from patchvad.distributed import Context
    from patchvad.errors import ConfigError
    from patchvad.training import BalancedSampler

    sampler = BalancedSampler(np.array([0, 1] * 6), 3, torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="split evenly"):
        sampler.next_share(0, 2)
    # Shares of one global batch: disjoint, balanced, together the whole batch.
    twins = [BalancedSampler(np.array([0, 1] * 6), 4, torch.Generator().manual_seed(0)) for _ in range(2)]
    for _ in range(5):
        (idx0, rows0), (idx1, rows1) = twins[0].next_share(0, 2), twins[1].next_share(1, 2)
        assert np.array_equal(idx0, idx1)
        assert sorted(rows0.tolist() + rows1.tolist()) == list(range(8))
        assert rows0.tolist() == [0, 2, 4, 6] and rows1.tolist() == [1, 3, 5, 7]
    assert Context().distributed is False
