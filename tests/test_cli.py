"""The command line end to end, as a user types it (subprocesses, real files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from patchvad.data.folder import DatasetFolder
from patchvad.features.store import FeatureStore
from patchvad.io.video import probe

ENV = {**os.environ, "OMP_NUM_THREADS": "2"}


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "patchvad", *args], env=ENV, capture_output=True, text=True)
    if check and run.returncode != 0:
        raise AssertionError(f"patchvad {' '.join(args)} exited {run.returncode}:\n{run.stderr[-3000:]}")
    return run


@pytest.mark.slow
def test_synth_extract_fit_test_evaluate(tmp_path: Path) -> None:
    s, f = tmp_path / "s", tmp_path / "f"
    # The foundation issue's acceptance command, with the default backbone and grid.
    cli("synth", str(s), "--train", "8", "--test", "6", "--seed", "1")
    cli("extract", str(s), "--out", str(f))
    ds = DatasetFolder(s)
    assert len(ds.train_set()) == 8 and len(ds.test_set()) == 6
    store = FeatureStore(f)
    assert store.spec.grid == (14, 14) and store.spec.dim == 552
    for e in ds.entries:
        assert probe(e.path, exact=True).frame_count == e.frames       # mp4s decode to the stated counts
        vf = store.load(e.stem)
        assert vf.x.dtype == np.float16 and vf.x.shape[1:] == (14, 14, 552)
        assert vf.snippets.frame_count == e.frames and vf.x.shape[0] == -(-e.frames // 16)
    assert not list((s / "tracks").glob("train_*"))                    # no training ground truth on disk
    index = json.loads((f / "manifest.json").read_text())
    assert index["spec"]["backbone"] == "effnet-lite0" and len(index["videos"]) == 14

    cli("fit", "--data", str(s), "--features", str(f), "--out", str(tmp_path / "run"), "--method", "motion_floor",
        "--quiet")
    ckpt = tmp_path / "run" / "model.safetensors"
    assert ckpt.is_file()
    cli("test", "--ckpt", str(ckpt), "--data", str(s), "--features", str(f), "--out", str(tmp_path / "pred"))
    out = cli("evaluate", "--dataset", str(s), "--predictions", str(tmp_path / "pred"), "--out",
              str(tmp_path / "metrics.json"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("frame_auc_micro", "frame_auc_macro", "frame_ap", "tiou", "tiou_threshold", "rbdc", "tbdc",
                "pauc", "pap"):
        assert key in metrics
    assert 0.0 <= metrics["frame_auc_micro"] <= 1.0
    assert "frame_auc_micro" in out.stdout or "AUC" in out.stdout


def test_errors_are_one_line_with_exit_status_2(tmp_path: Path) -> None:
    run = cli("extract", str(tmp_path / "missing"), "--out", str(tmp_path / "f"), check=False)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [f"patchvad extract: error: {tmp_path / 'missing'}: dataset root is "
                                               f"not a folder"]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "manifest.csv").write_text("video,split,label\n../../etc/passwd,train,0\n")
    run = cli("extract", str(tmp_path / "d"), "--out", str(tmp_path / "f"), check=False)
    assert run.returncode == 2 and "manifest.csv:2" in run.stderr and "Traceback" not in run.stderr
    run = cli("evaluate", "--dataset", str(tmp_path / "d"), "--predictions", str(tmp_path / "p"), check=False)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    run = cli("predict", str(tmp_path / "nope.mp4"), "--ckpt", str(tmp_path / "x.safetensors"), "--out",
              str(tmp_path / "o"), check=False)
    assert run.returncode == 2 and "x.safetensors" in run.stderr and "Traceback" not in run.stderr
