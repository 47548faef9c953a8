"""Patch-feature extraction: shapes, the motion channels, resume after a kill, bad videos."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import make_tiny_dataset, moving_square_frames
from patchvad.data.folder import write_manifest
from patchvad.errors import FeatureError
from patchvad.features.backbones import PatchFeatureExtractor
from patchvad.features.backbones.motion import MOTION_CHANNELS, motion_features
from patchvad.features.extract import extract_dataset, extract_video
from patchvad.features.store import FeatureStore
from patchvad.io.video import write_video

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(grid=4, input_size=64, snippet_len=8, passes=2)


@pytest.fixture(scope="module")
def extractor() -> PatchFeatureExtractor:
    return PatchFeatureExtractor(**SMALL)


def test_default_spec_is_14x14_from_bundled_weights() -> None:
    ex = PatchFeatureExtractor()
    spec = ex.spec
    assert spec.grid == (14, 14) and spec.input_size == (224, 224) and spec.snippet_len == 16
    assert spec.weights_hash == "579344248a93e230"
    assert spec.channels == {"appearance": [0, 432], "appearance_change": [432, 544], "motion": [544, 552]}
    feats = ex(np.zeros((1, 16, 224, 224, 3), np.uint8))
    assert feats.shape == (1, 14, 14, 552)


def test_grid_7_and_28_come_from_same_backbone() -> None:
    for grid in (7, 28):
        ex = PatchFeatureExtractor(grid=grid, input_size=224, snippet_len=4, pretrained=False)
        assert ex(np.zeros((2, 4, 224, 224, 3), np.uint8)).shape == (2, grid, grid, 552)


def test_video_features_shape_and_map(square_video: Path, extractor: PatchFeatureExtractor) -> None:
    feats, snippets, facts = extract_video(square_video, extractor)
    # 40 frames, 8-frame snippets -> 5 snippets.
    assert feats.shape == (5, 4, 4, 552) and feats.dtype == np.float32
    assert snippets.num_snippets == 5 and facts["frame_count"] == 40
    assert (facts["width"], facts["height"]) == (96, 64)


def test_motion_sees_the_moving_cell() -> None:
    # A square moving right in grid cell (1, 2) of a 4x4 grid; everything else static.
    frames = np.zeros((1, 6, 32, 32), np.float32)
    for t in range(6):
        frames[0, t, 10:14, 17 + t:21 + t] = 1.0
    m = motion_features(__import__("torch").from_numpy(frames), (4, 4))[0].numpy()
    energy = m[..., MOTION_CHANNELS.index("energy_mean")]
    assert np.unravel_index(energy.argmax(), energy.shape) == (1, 2)
    assert energy[0, 0] == 0.0
    u = m[1, 2, MOTION_CHANNELS.index("flow_u")]
    v = m[1, 2, MOTION_CHANNELS.index("flow_v")]
    assert u > 0.3 and abs(v) < 0.5 * u     # moving right (+x), not vertically


def test_motion_channels_off(square_video: Path) -> None:
    ex = PatchFeatureExtractor(motion=False, **SMALL)
    assert "motion" not in ex.spec.channels and ex.spec.dim == 544
    feats, _, _ = extract_video(square_video, ex)
    assert feats.shape[-1] == 544


def test_dataset_extraction_store(tmp_path: Path, tiny_dataset: Path, extractor: PatchFeatureExtractor) -> None:
    report = extract_dataset(tiny_dataset, tmp_path / "f", extractor=extractor, progress=False)
    assert sorted(report.done) == ["test_00", "test_01", "train_00", "train_01", "train_02"]
    store = FeatureStore(tmp_path / "f")
    vf = store.load("test_01")
    assert vf.x.shape == (5, 4, 4, 552) and vf.x.dtype == np.float16
    assert isinstance(vf.x, np.memmap)
    assert vf.record["frame_count"] == 40 and vf.record["video"] == "videos/test_01.mp4"
    assert vf.snippets.to_frames(np.arange(5)).shape == (40,)
    again = extract_dataset(tiny_dataset, tmp_path / "f", extractor=extractor, progress=False)
    assert again.done == [] and len(again.skipped) == 5
    # A different extraction into the same folder is refused.
    with pytest.raises(FeatureError, match="another extraction"):
        extract_dataset(tiny_dataset, tmp_path / "f", extractor=PatchFeatureExtractor(grid=2, input_size=64,
                        snippet_len=8), progress=False)


def test_corrupt_array_is_not_complete(tmp_path: Path, tiny_dataset: Path, extractor: PatchFeatureExtractor) -> None:
    extract_dataset(tiny_dataset, tmp_path / "f", extractor=extractor, progress=False)
    path = tmp_path / "f" / "train_00.npy"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    store = FeatureStore(tmp_path / "f")
    assert not store.is_complete("train_00") and store.is_complete("train_01")
    report = extract_dataset(tiny_dataset, tmp_path / "f", extractor=extractor, progress=False)
    assert report.done == ["train_00"]


def test_bad_video_is_reported_and_run_continues(tmp_path: Path, extractor: PatchFeatureExtractor) -> None:
    root = make_tiny_dataset(tmp_path / "d", n_train=2, n_test=0)
    (root / "videos" / "broken.mp4").write_bytes(b"\x00" * 1000)
    write_manifest(root, [{"video": "videos/train_00.mp4", "split": "train", "label": 0},
                          {"video": "videos/broken.mp4", "split": "train", "label": 0},
                          {"video": "videos/train_01.mp4", "split": "train", "label": 1}])
    report = extract_dataset(root, tmp_path / "f", extractor=extractor, progress=False)
    assert sorted(report.done) == ["train_00", "train_01"]
    assert list(report.failed) == ["broken"] and "broken.mp4" in report.failed["broken"]
    assert "FAILED broken" in report.summary()


def test_killed_extraction_resumes_to_identical_features(tmp_path: Path) -> None:
    root = tmp_path / "d"
    rows = []
    for i in range(6):
        frames, _ = moving_square_frames(n=48, seed=i)
        write_video(root / "videos" / f"v{i}.mp4", frames, fps=25)
        rows.append({"video": f"videos/v{i}.mp4", "split": "train", "label": i % 2})
    write_manifest(root, rows)
    args = [sys.executable, "-m", "patchvad", "extract", str(root), "--grid", "4", "--input-size", "64",
            "--snippet-len", "8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(args + ["--out", str(tmp_path / "full")], check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(args + ["--out", str(killed)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(killed.glob("v*.json"))) < 2:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = sorted(p.stem for p in killed.glob("v*.json"))
    assert 2 <= len(finished_before) < 6, "the kill should land mid-run"
    mtimes = {s: (killed / f"{s}.npy").stat().st_mtime_ns for s in finished_before}

    out = subprocess.run(args + ["--out", str(killed)], check=True, env=env, capture_output=True, text=True)
    assert f"skipped {len(finished_before)} already finished" in out.stdout
    for s in finished_before:    # finished work was not recomputed
        assert (killed / f"{s}.npy").stat().st_mtime_ns == mtimes[s]
    full, resumed = FeatureStore(tmp_path / "full"), FeatureStore(killed)
    assert full.finished() == resumed.finished() == [f"v{i}" for i in range(6)]
    for s in full.finished():
        np.testing.assert_array_equal(full.load(s).x, resumed.load(s).x)
    assert not [p for p in killed.iterdir() if ".tmp" in p.name]


def test_torchrun_two_processes_give_identical_features(tmp_path: Path, tiny_dataset: Path) -> None:
    # One thread per process in both runs: equal thread counts give bitwise-equal features.
    args = ["extract", str(tiny_dataset), "--grid", "4", "--input-size", "64", "--snippet-len", "8",
            "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "patchvad", *args, "--out", str(tmp_path / "one")], check=True,
                   env=env, capture_output=True)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "patchvad", *args, "--out", str(tmp_path / "two")], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "[rank 0/2]" in run.stdout and "[rank 1/2]" in run.stdout
    one, two = FeatureStore(tmp_path / "one"), FeatureStore(tmp_path / "two")
    assert one.finished() == two.finished() and len(one.finished()) == 5
    import json
    index = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert sorted(index["videos"]) == one.finished()       # the merged manifest lists every shard's videos
    for s in one.finished():
        np.testing.assert_array_equal(one.load(s).x, two.load(s).x)


def test_parallel_decode_gives_identical_features(tmp_path: Path, tiny_dataset: Path,
                                                  extractor: PatchFeatureExtractor) -> None:
    extract_dataset(tiny_dataset, tmp_path / "a", extractor=extractor, progress=False)
    report = extract_dataset(tiny_dataset, tmp_path / "b", extractor=extractor, progress=False, decode_workers=2,
                             batch_size=3)
    assert len(report.done) == 5 and not report.failed
    a, b = FeatureStore(tmp_path / "a"), FeatureStore(tmp_path / "b")
    for s in a.finished():
        np.testing.assert_array_equal(a.load(s).x, b.load(s).x)
        assert a.load(s).snippets.starts.tolist() == b.load(s).snippets.starts.tolist()


def test_parallel_decode_reports_bad_video(tmp_path: Path, extractor: PatchFeatureExtractor) -> None:
    root = make_tiny_dataset(tmp_path / "d", n_train=2, n_test=0)
    (root / "videos" / "broken.mp4").write_bytes(b"\x00" * 1000)
    write_manifest(root, [{"video": "videos/train_00.mp4", "split": "train", "label": 0},
                          {"video": "videos/broken.mp4", "split": "train", "label": 0},
                          {"video": "videos/train_01.mp4", "split": "train", "label": 1}])
    report = extract_dataset(root, tmp_path / "f", extractor=extractor, progress=False, decode_workers=2)
    assert sorted(report.done) == ["train_00", "train_01"] and list(report.failed) == ["broken"]


def _long_videos(folder: Path, count: int, frames: int) -> list[Path]:
    paths = []
    for i in range(count):
        clip, _ = moving_square_frames(frames, size=(64, 48), seed=i)
        write_video(folder / f"long_{i}.mp4", clip, fps=25)
        paths.append(folder / f"long_{i}.mp4")
    return paths


def _shared_blocks() -> set[str]:
    shm = Path("/dev/shm")
    return {p.name for p in shm.iterdir() if p.name.startswith(("psm_", "pvad_"))} if shm.is_dir() else set()


def test_parallel_decode_survives_a_killed_worker(tmp_path: Path, extractor: PatchFeatureExtractor) -> None:
    """A decoding process that dies fails the video it was decoding; the run goes on without hanging."""
    import multiprocessing as mp

    from patchvad.features.extract import HANDOVER_SNIPPETS, extract_many

    # Each video is 4 whole hand-over blocks (+ its "done"), so a worker blocked on the full
    # queue (2 messages) is mid-video. Batches of one block each are the single-process
    # batches too: identical features whatever the thread count.
    frames = HANDOVER_SNIPPETS * SMALL["snippet_len"] * 4
    paths = _long_videos(tmp_path, 4, frames)
    reference = {i: f for i, f, _, _ in extract_many(paths, extractor, batch_size=HANDOVER_SNIPPETS)}
    before = _shared_blocks()
    others = {p.pid for p in mp.active_children()}
    gen = extract_many(paths, extractor, batch_size=HANDOVER_SNIPPETS, decode_workers=1)
    first_index, first, _, _ = next(gen)
    time.sleep(2.0)                    # the worker fills the bounded queue and blocks inside the next video
    (worker,) = [p for p in mp.active_children() if p.pid not in others]
    os.kill(worker.pid, signal.SIGKILL)
    rest = list(gen)
    results = {first_index: first, **{i: f for i, f, _, _ in rest}}
    messages = {i: m for i, f, _, m in rest if f is None}
    assert sorted(results) == [0, 1, 2, 3]                     # every video reported once
    assert list(messages) == [1]                                # the one being decoded when it died
    assert "the decoding process died (exit code -9" in messages[1] and str(paths[1]) in messages[1]
    for i, feats in results.items():
        if i != 1:
            np.testing.assert_array_equal(feats, reference[i])  # the others came through whole
    # Even the block the killed worker was filling is gone (SIGKILL runs no cleanup in it).
    assert _shared_blocks() - before == set()


def test_parallel_decode_frees_shared_memory(tmp_path: Path, extractor: PatchFeatureExtractor) -> None:
    from patchvad.features.extract import HANDOVER_SNIPPETS, extract_many

    paths = _long_videos(tmp_path, 3, HANDOVER_SNIPPETS * SMALL["snippet_len"] * 3)
    before = _shared_blocks()
    assert all(f is not None for _, f, _, _ in extract_many(paths, extractor, batch_size=4, decode_workers=2))
    assert _shared_blocks() - before == set()
    gen = extract_many(paths, extractor, batch_size=4, decode_workers=2)
    next(gen)
    time.sleep(1.0)                    # blocks queued and being filled
    gen.close()                        # the caller stops early: workers terminated, blocks freed
    assert _shared_blocks() - before == set()


def test_parallel_decode_refuses_a_small_dev_shm(tmp_path: Path, extractor: PatchFeatureExtractor,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from patchvad.features.extract import extract_many

    real = os.statvfs

    def tiny(path):
        st = real(path)
        if str(path) != "/dev/shm":
            return st
        return os.statvfs_result((st.f_bsize, 4096, 16384, 100, 100, st.f_files, st.f_ffree, st.f_favail,
                                  st.f_flag, st.f_namemax))

    monkeypatch.setattr(os, "statvfs", tiny)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    videos = _long_videos(tmp_path, 1, 20)
    with pytest.raises(FeatureError, match=r"/dev/shm has 0 MB free but 15 decode workers need about \d+ MB"):
        list(extract_many(videos, extractor, decode_workers=15))
    # Under torchrun the processes of a node share /dev/shm.
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    with pytest.raises(FeatureError, match=r"15 decode workers in each of 4 processes need"):
        list(extract_many(videos, extractor, decode_workers=15))


def test_single_threaded_scaler_gives_the_same_frames(tmp_path: Path) -> None:
    """patchvad runs libswscale with one thread; PyAV's default (a thread per core) gives the same pixels."""
    import av

    from patchvad.io.video import VideoReader

    clip, _ = moving_square_frames(12, size=(320, 240))
    path = tmp_path / "v.mp4"
    write_video(path, clip, fps=25)
    ours = list(VideoReader(path).frames(size=(224, 224)))
    with av.open(str(path)) as container:
        default = [f.reformat(width=224, height=224, format="rgb24", interpolation="AREA").to_ndarray()
                   for f in container.decode(video=0)]
    assert len(ours) == len(default) == 12
    for a, b in zip(ours, default):
        np.testing.assert_array_equal(a, b)


class _SlowFeed:
    """Stands in for the backbone in tests of the decode protocol: zeros, after a callback."""

    def __init__(self, spec, on_submit):
        import torch

        self.spec = spec
        self.device = torch.device("cpu")
        self.on_submit = on_submit

    def submit(self, x):
        import torch

        from patchvad.features.backbones import PendingFeatures

        self.on_submit()
        return PendingFeatures(torch.zeros((len(x), 1, 1, 1)))


def test_a_dead_worker_fails_only_the_video_it_was_decoding(tmp_path: Path, extractor: PatchFeatureExtractor) -> None:
    """The worker finished A (its messages still queued behind a slow backbone), started B, then died:
    A comes through, B fails. The video is read from the worker's shared slot, not from the queue."""
    import multiprocessing as mp

    from patchvad.features.extract import HANDOVER_SNIPPETS, extract_many

    short = _long_videos(tmp_path / "a", 1, SMALL["snippet_len"] * 2)[0]        # one hand-over block
    long = _long_videos(tmp_path / "b", 1, HANDOVER_SNIPPETS * SMALL["snippet_len"] * 6)[0]
    others = {p.pid for p in mp.active_children()}
    killed: list[int] = []

    def kill_once_b_has_started() -> None:
        if killed:
            return
        (worker,) = [p for p in mp.active_children() if p.pid not in others]
        deadline = time.monotonic() + 20
        # The worker's 2nd block is B's first: it is decoding B (A's messages are queued).
        while not list(Path("/dev/shm").glob(f"pvad_{worker.pid}_*_2")) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
        killed.append(worker.pid)

    before = _shared_blocks()
    feed = _SlowFeed(extractor.spec, kill_once_b_has_started)
    got = {i: (f, m) for i, f, _, m in extract_many([short, long], feed, batch_size=1, decode_workers=1)}
    assert killed
    assert got[0][0] is not None and got[0][0].shape == (2, 1, 1, 1)
    assert got[1][0] is None and "the decoding process died (exit code -9" in got[1][1] and str(long) in got[1][1]
    assert _shared_blocks() - before == set()


def _run_script(tmp_path: Path, body: str, timeout: float = 120) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text(body)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=tmp_path)


def test_workers_that_cannot_start_are_a_clear_error(tmp_path: Path) -> None:
    """A script without ``if __name__ == '__main__':`` makes every spawned worker fail at import."""
    run = _run_script(tmp_path, """
from patchvad.features.backbones import PatchFeatureExtractor
from patchvad.features.extract import extract_many
ex = PatchFeatureExtractor(grid=2, input_size=64, snippet_len=8, pretrained=False)
list(extract_many(["missing.mp4"], ex, decode_workers=1))
""")
    assert run.returncode != 0
    assert "FeatureError: a decode worker process exited with code 1 before it started" in run.stderr
    assert "if __name__ == '__main__':" in run.stderr


def test_early_stop_with_many_queued_videos_exits(tmp_path: Path) -> None:
    """Thousands of queued tasks (more than a pipe holds) must not keep the interpreter from exiting."""
    run = _run_script(tmp_path, """
if __name__ == "__main__":
    from patchvad.features.backbones import PatchFeatureExtractor
    from patchvad.features.extract import extract_many
    ex = PatchFeatureExtractor(grid=2, input_size=64, snippet_len=8, pretrained=False)
    gen = extract_many([f"missing_{i:05d}_{'x' * 40}.mp4" for i in range(3000)], ex, decode_workers=1)
    index, feats, _, why = next(gen)
    assert feats is None and "missing" in why
    gen.close()
    print("closed")
""", timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "closed" in run.stdout
