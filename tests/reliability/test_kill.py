"""Area 1: ``kill -9`` in the middle of extract, fit and predict; the rerun finishes the job.

Each test starts the real command line in a subprocess, kills it with SIGKILL at a
point defined by the files it has written so far (not by a timer), checks that
nothing half-written passes as finished, reruns the same command, and checks that
(1) the rerun completes, (2) work finished before the kill was not redone (files
untouched: same modification times), (3) the result equals an uninterrupted run and
(4) no temporary file is left behind. States a kill leaves only in a window too
narrow to hit by polling (an array renamed but its record not yet written, a
half-written temporary file) are made by hand in ``test_every_partial_state_...``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from patchvad.data.synth import generate_benchmark
from patchvad.errors import CheckpointError, FeatureError
from patchvad.features.backbones import PatchFeatureExtractor
from patchvad.features.extract import extract_dataset
from patchvad.features.store import FeatureStore
from patchvad.io.video import write_video

from .helpers import SMALL_ARGS, SMALL_SPEC, kill_when, mtimes, patchvad, smooth_frames, start, temp_files

TESTS = Path(__file__).resolve().parents[1]


def _records(feats: Path) -> list[Path]:
    return sorted(p for p in feats.glob("*.json") if p.name != "manifest.json" and not p.name.startswith("."))


# --- extract -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    generate_benchmark(root, 6, 2, seed=11, preset="tiny")
    return root


@pytest.fixture(scope="module")
def straight(synth: Path, tmp_path_factory) -> Path:
    """The same extraction, never interrupted."""
    out = tmp_path_factory.mktemp("straight") / "feats"
    patchvad("extract", synth, "--out", out, *SMALL_ARGS)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [0, 3], ids=["before-first-video", "after-3-videos"])
def test_killed_extraction_resumes_without_redoing_finished_videos(synth: Path, straight: Path, tmp_path: Path,
                                                                   kill_after: int) -> None:
    out = tmp_path / "feats"
    proc = start("extract", synth, "--out", out, *SMALL_ARGS)
    if kill_after == 0:
        kill_when(proc, lambda: (out / "manifest.json").exists(), "the feature store is created")
    else:
        kill_when(proc, lambda: len(_records(out)) >= kill_after, f"{kill_after} finished videos")
    store = FeatureStore(out)
    finished = [p.stem for p in _records(out)]
    assert len(finished) < 8, "the kill landed after the last video"
    # Every record on disk is a complete, verified video: a kill never leaves a false one.
    assert all(store.is_complete(s, verify=True) for s in finished)
    before = mtimes([out / f"{s}{ext}" for s in finished for ext in (".npy", ".json")])

    rerun = patchvad("extract", synth, "--out", out, *SMALL_ARGS)
    assert f"extracted {8 - len(finished)} videos" in rerun.stdout
    assert f"skipped {len(finished)} already finished, 0 failed" in rerun.stdout
    assert mtimes(list(before)) == before                             # finished work was not redone
    reference, resumed = FeatureStore(straight), FeatureStore(out)
    assert resumed.finished() == reference.finished() and len(reference.finished()) == 8
    for stem in reference.finished():
        np.testing.assert_array_equal(resumed.load(stem).x, reference.load(stem).x)
        assert resumed.record(stem)["sha256"] == reference.record(stem)["sha256"]
    assert sorted(json.loads((out / "manifest.json").read_text())["videos"]) == reference.finished()
    assert temp_files(out) == []


@pytest.fixture(scope="module")
def extractor() -> PatchFeatureExtractor:
    return PatchFeatureExtractor(**SMALL_SPEC)


def test_every_partial_state_a_kill_can_leave_is_redone(tmp_path: Path, extractor: PatchFeatureExtractor) -> None:
    """Each state a kill can leave between the atomic steps of a write, made by hand."""
    from patchvad.data.folder import write_manifest

    root = tmp_path / "data"
    stems = ["a", "a.b", "c", "d", "e", "f"]        # 'a' is a prefix of 'a.b': their temporaries must not mix
    rows = []
    for i, stem in enumerate(stems):
        write_video(root / "videos" / f"{stem}.mp4", smooth_frames(20, 64, 48, seed=i), fps=25)
        rows.append({"video": f"videos/{stem}.mp4", "split": "train", "label": i % 2})
    write_manifest(root, rows)
    feats = tmp_path / "feats"
    extract_dataset(root, feats, extractor=extractor, progress=False)
    good = {s: FeatureStore(feats).load(s, mmap=False).x.copy() for s in stems}

    # a: killed while writing its array: a temporary file, no array, no record.
    (feats / "a.npy").rename(feats / ".a.npy.k1ll3d00.tmp.npy")
    (feats / ".a.npy.k1ll3d00.tmp.npy").write_bytes((feats / ".a.npy.k1ll3d00.tmp.npy").read_bytes()[:50])
    (feats / "a.json").unlink()
    # a.b: finished; a temporary file of a second process writing it again must survive a's cleanup.
    (feats / ".a.b.npy.0th3rpr0.tmp.npy").write_bytes(b"in progress")
    # c: killed after its array was renamed into place, before its record was written.
    (feats / "c.json").unlink()
    # d: the array cut short after the record was written (a damaged disk).
    (feats / "d.npy").write_bytes((feats / "d.npy").read_bytes()[:-10])
    # e: a record that is not JSON (a damaged disk); f: untouched.
    (feats / "e.json").write_text('{"stem": "e", "sha')
    store = FeatureStore(feats)
    assert [s for s in stems if store.is_complete(s)] == ["a.b", "f"]
    with pytest.raises(FeatureError, match="d.npy"):
        store.load("d")
    with pytest.raises(FeatureError, match="e.json"):
        store.load("e")
    kept = mtimes([feats / "a.b.npy", feats / "f.npy", feats / "a.b.json", feats / "f.json"])

    report = extract_dataset(root, feats, extractor=extractor, progress=False)
    assert sorted(report.done) == ["a", "c", "d", "e"] and sorted(report.skipped) == ["a.b", "f"]
    assert mtimes(list(kept)) == kept
    store = FeatureStore(feats)
    for stem in stems:
        np.testing.assert_array_equal(store.load(stem).x, good[stem])
    assert [p.name for p in temp_files(feats)] == [".a.b.npy.0th3rpr0.tmp.npy"]   # only the other process's


# --- fit ------------------------------------------------------------------------------------------


def _toydata():
    spec = importlib.util.spec_from_file_location("toydata", TESTS / "model" / "toydata.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIT_CONFIG = ("model:\n  width: 16\n  appearance_dims: 8\n  change_dims: 4\n"
              "train:\n  steps: 100\n  batch_size: 4\n  eval_every: 40\n  log_every: 5\n  device: cpu\n"
              "  threads: 1\n  select: val_auc\n")


@pytest.fixture(scope="module")
def fit_runs(tmp_path_factory) -> dict:
    """A straight ``fit`` and one killed at step 45 (state saved at step 40, the next at 80), then resumed."""
    base = tmp_path_factory.mktemp("fit")
    _toydata().make_toy_dataset(base / "data", base / "feats", n_train=16, n_test=4, seed=1, grid=(6, 6),
                                snippets=(8, 14))
    (base / "config.yaml").write_text(FIT_CONFIG)
    args = ["fit", "--data", base / "data", "--features", base / "feats", "--config", base / "config.yaml"]
    patchvad(*args, "--out", base / "straight")

    run = base / "killed"
    log = run / "train_log.jsonl"

    def logged_step_45() -> bool:
        try:
            return any(json.loads(line).get("step") == 45 for line in log.read_text().splitlines() if line)
        except (OSError, ValueError):
            return False

    kill_when(start(*args, "--out", run), logged_step_45, "training step 45 is logged")
    state = {"log": log.read_text(), "has_model": (run / "model.safetensors").exists(),
             "state_step": json.loads(_metadata(run / "train_state.safetensors")["info"])["step"]}
    resumed = patchvad(*args, "--out", run, "--resume")
    return {"base": base, "run": run, "straight": base / "straight", "killed": state, "resumed": resumed}


def _metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return fh.metadata()


@pytest.mark.slow
def test_killed_fit_resumes_to_the_same_model(fit_runs: dict) -> None:
    killed, run, straight = fit_runs["killed"], fit_runs["run"], fit_runs["straight"]
    assert killed["state_step"] == 40                      # the last state saved before the kill
    assert "resumed at step 40" in fit_runs["resumed"].stderr
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _metadata(straight / "model.safetensors")["threshold"] == _metadata(run / "model.safetensors")["threshold"]
    sa, sb = load_file(str(straight / "train_state.safetensors")), load_file(str(run / "train_state.safetensors"))
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    assert temp_files(run) == []


def test_killed_fit_log_has_each_step_once(fit_runs: dict) -> None:
    records = [json.loads(line) for line in (fit_runs["run"] / "train_log.jsonl").read_text().splitlines() if line]
    keys = [(r["kind"], r["step"]) for r in records if r.get("kind") in ("train", "val")]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


def test_damaged_training_state_and_checkpoint_are_refused(fit_runs: dict, tmp_path: Path) -> None:
    """A truncated resume state or checkpoint never loads as if it were whole."""
    from patchvad.model.model import load_model

    run = tmp_path / "run"
    shutil.copytree(fit_runs["straight"], run)
    ckpt = run / "model.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model(ckpt)
    state = run / "train_state.safetensors"
    state.write_bytes(state.read_bytes()[:-100])
    base = fit_runs["base"]
    result = patchvad("fit", "--data", base / "data", "--features", base / "feats", "--config", base / "config.yaml",
                      "--out", run, "--resume", check=False)
    assert result.returncode == 2 and "train_state.safetensors" in result.stderr
    assert "Traceback" not in result.stderr


# --- predict --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_killed_predict_resumes_without_redoing_finished_videos(floor_ckpt: Path, tmp_path: Path) -> None:
    videos = tmp_path / "in"
    write_video(videos / "v0.mp4", smooth_frames(24, 96, 64, seed=1), fps=25)
    write_video(videos / "v1.mp4", smooth_frames(200, 320, 240, seed=2), fps=25)   # a long overlay to kill in
    write_video(videos / "v2.mp4", smooth_frames(24, 96, 64, seed=3), fps=25)
    out = tmp_path / "out"
    args = ["predict", videos, "--ckpt", floor_ckpt, "--out", out]
    kill_when(start(*args), lambda: (out / "v1" / "scores.npy").exists(), "v1's scores are written")
    assert (out / "v0" / "events.json").is_file()
    assert not (out / "v1" / "events.json").exists()       # v1 was cut mid-way: it has no completion record
    assert not (out / "v2").exists() and not (out / "predict.json").exists()
    done_v0 = mtimes(sorted(p for p in (out / "v0").rglob("*") if p.is_file()))

    rerun = patchvad(*args)
    assert "v0: already predicted" in rerun.stdout and "skipped 1 already predicted; 0 failed" in rerun.stdout
    assert mtimes(sorted(p for p in (out / "v0").rglob("*") if p.is_file())) == done_v0
    for stem, frames in (("v0", 24), ("v1", 200), ("v2", 24)):
        record = json.loads((out / stem / "events.json").read_text())
        assert record["status"] == "complete" and record["frame_count"] == frames
        assert len(np.load(out / stem / "scores.npy")) == frames
    assert json.loads((out / "predict.json").read_text())["videos"] == ["v0", "v1", "v2"]  # source order
    assert temp_files(out) == []

    # Other settings are other work: a new threshold redoes every video.
    changed = patchvad(*args, "--threshold", "0.9", "--no-overlay")
    assert "predicted 3 video(s)" in changed.stdout and "skipped" not in changed.stdout
    assert json.loads((out / "v0" / "events.json").read_text())["threshold"] == 0.9
