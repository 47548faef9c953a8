"""Generate a synthetic benchmark into the generic dataset folder layout.

    ROOT/manifest.csv                 video,split,label,class,frames,fps,width,height
    ROOT/videos/train/train_0000.mp4  H.264 mp4, one per video
    ROOT/videos/test/test_0000.mp4
    ROOT/tracks/test_XXXX.csv         anomalous test videos only
    ROOT/frame_labels/test_XXXX.npy   every test video (all zeros for normal ones)
    ROOT/synth.json                   seed, preset, parameters, per-test-video event record

Weak supervision is kept on disk: for a training video only its video-level label
exists (manifest ``class`` is ``normal`` or ``anomalous``); its anomaly type, time
span and boxes are never written, not even in synth.json. Training videos' ground
truth is computed nowhere: the worker that renders a training video does not even
collect its tracks.

The one exception is asked for by name: ``oracle_labels=DIR`` (CLI ``--oracle-labels``)
writes the training videos' boxes, for a supervised oracle to compare against, into
a separate folder that may not lie inside ROOT (nor ROOT inside it), in the test
split's annotation layout:

    DIR/tracks/train_XXXX.csv         anomalous training videos only
    DIR/frame_labels/train_XXXX.npy   every training video
    DIR/oracle.json                   what the folder is, seed, preset, counts

ROOT's files are the same bytes with or without it, and none of them names DIR.
:func:`write_oracle_labels` writes the same folder later for a benchmark generated
without it (from synth.json's seed, preset and counts; the scenes are built again,
nothing is rendered).

Determinism: a video depends only on (seed, split, index) and the config; videos can
be rendered by any number of worker processes, and x264 runs single-threaded, so two
runs with one seed give byte-identical files (same platform and library versions).
"""

from __future__ import annotations

import multiprocessing
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from patchvad.data.folder import MANIFEST, write_frame_labels, write_manifest, write_tracks
from patchvad.data.synth.config import ANOMALY_TYPES, PRESETS, SynthConfig, resolve_preset
from patchvad.data.synth.render import AgentScene, VideoSpec, build_scene, write_scene
from patchvad.errors import ConfigError, DatasetError
from patchvad.io.files import atomic_write_json

__all__ = ["ANOMALY_TYPES", "PRESETS", "generate_benchmark", "plan_benchmark", "synth_command", "write_oracle_labels"]

RECORD = "synth.json"
RECORD_FORMAT = "patchvad-synth"
RECORD_VERSION = 1
ORACLE_RECORD = "oracle.json"
ORACLE_FORMAT = "patchvad-synth-oracle"
_SPLIT_CODE = {"train": 0, "test": 1}


def _type_cycle(rng: np.random.Generator, types: tuple[str, ...]) -> Iterator[str]:
    """Types in successive random permutations: every run of len(types) holds each once."""
    while True:
        for k in rng.permutation(len(types)):
            yield types[int(k)]


def plan_benchmark(n_train: int, n_test: int, seed: int, preset: str | SynthConfig = "default") -> list[VideoSpec]:
    """The plan of every video (test videos first, then training videos).

    About ``anomalous_fraction`` of each split is anomalous (shuffled). Anomaly types
    are dealt from successive random permutations, test videos first: the test split
    covers every type as soon as it has as many anomalous videos as there are types,
    and the benchmark as a whole (train + test) does likewise.

    Raises:
        ConfigError: negative counts, no videos, or an invalid preset.
    """
    config = resolve_preset(preset)
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise ConfigError(f"need a non-negative number of training and test videos, and at least one "
                          f"video in all; got train={n_train}, test={n_test}")
    rng = np.random.default_rng([int(seed), 0x5E7])
    anomalies = _type_cycle(rng, config.anomaly_types)
    counterparts = _type_cycle(rng, config.anomaly_types)
    specs: list[VideoSpec] = []
    for split, count in (("test", n_test), ("train", n_train)):
        n_anom = int(round(count * config.anomalous_fraction))
        if count >= 2:
            n_anom = min(max(n_anom, 1), count - 1)   # both classes in every split of 2+ videos
        labels = rng.permutation(np.array([1] * n_anom + [0] * (count - n_anom), dtype=np.int64))
        width = max(4, len(str(max(count - 1, 0))))
        for index, label in enumerate(labels.tolist()):
            kind = next(anomalies) if label else next(counterparts)
            specs.append(VideoSpec(
                stem=f"{split}_{index:0{width}d}", split=split, index=index, label=int(label), kind=kind,
                frames=int(rng.integers(config.frames[0], config.frames[1] + 1)),
                camera=-1 if config.camera_draw is not None else int(rng.integers(config.n_cameras)),
                seed=(int(seed), _SPLIT_CODE[split], index)))
    return specs


def video_path(spec: VideoSpec) -> str:
    """Path of a video relative to the dataset root."""
    return f"videos/{spec.split}/{spec.stem}.mp4"


def annotate(spec: VideoSpec, scene: AgentScene, frames: int, oracle: bool = False) -> dict:
    """What a rendered video hands back to the folder writer.

    Its stem and frame count, and for a test video (any video with ``oracle``) its
    track rows ``(R, 6)`` and frame labels ``(F,)``. Without ``oracle``, training
    videos' ground truth is never computed.
    """
    result = {"stem": spec.stem, "frames": frames}
    if spec.split == "test" or oracle:
        rows = scene.tracks() if spec.label == 1 else np.zeros((0, 6), dtype=np.int64)
        if spec.label == 1 and rows.shape[0] == 0:  # pragma: no cover - guarded by the builders
            raise DatasetError(f"anomaly '{spec.kind}' of {spec.stem} never became visible")
        result["rows"] = rows
        result["labels"] = scene.frame_labels(rows)
    return result


def _produce(job: tuple[VideoSpec, SynthConfig, str, bool]) -> dict:
    """Render, encode and annotate one video (training videos only for an oracle). Runs in a worker."""
    spec, config, root, oracle = job
    scene = build_scene(spec, config)
    frames = write_scene(scene, Path(root) / video_path(spec))
    return annotate(spec, scene, frames, oracle)


def _annotate_training(job: tuple[VideoSpec, SynthConfig]) -> dict:
    """Build one training video's scene again and annotate it (no rendering). Runs in a worker."""
    spec, config = job
    return annotate(spec, build_scene(spec, config), spec.frames, oracle=True)


def prepare_folder(root: Path, overwrite: bool, record: str = RECORD, what: str = "synthetic benchmark",
                    folders: tuple[str, ...] = ("videos", "tracks", "frame_labels"),
                    files: tuple[str, ...] = (MANIFEST,)) -> None:
    """Make ``root`` ready for writing: new, empty, or holding an earlier output of the same kind.

    An earlier output (it has ``record``) is accepted with ``overwrite``; its ``folders``
    and ``files`` are removed.
    """
    if root.exists() and not root.is_dir():
        raise DatasetError("exists and is not a folder", path=root)
    if root.exists() and any(root.iterdir()):
        if not (root / record).is_file():
            raise DatasetError(f"folder is not empty and holds no earlier {what} "
                               f"({record}); choose an empty or new folder", path=root)
        if not overwrite:
            raise DatasetError(f"folder already holds a {what}; pass overwrite=True "
                               "(CLI: --overwrite) to replace it", path=root)
        # Remove only what this generator writes, so nothing unrelated is lost.
        for name in folders:
            shutil.rmtree(root / name, ignore_errors=True)
        for name in files + (record,):
            (root / name).unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)


def check_oracle_folder(root: str | Path, oracle: str | Path) -> Path:
    """The oracle label folder, refused when it lies inside the dataset root or holds it.

    Training boxes inside ROOT would be within reach of every weakly supervised
    method that reads the dataset; ROOT inside the oracle folder would put the two
    trees' ``tracks/`` and ``frame_labels/`` a path segment apart. Symlinks are
    followed before comparing.

    Raises:
        ConfigError: the folders are the same, or one lies inside the other.
    """
    r, o = Path(root).resolve(), Path(oracle).resolve()
    if o == r or r in o.parents:
        raise ConfigError(f"the oracle label folder {o} lies inside the dataset root {r}: training boxes "
                          "there would be within reach of weakly supervised training; choose a folder "
                          "outside the dataset root", path=oracle)
    if o in r.parents:
        raise ConfigError(f"the dataset root {r} lies inside the oracle label folder {o}; choose two "
                          "separate folders, neither inside the other", path=oracle)
    return o


def run_jobs(jobs: Iterable, total: int, workers: int, progress, produce: Callable[[Any], dict] = _produce
             ) -> list[dict]:
    """``produce(job)`` for every job, in ``workers`` processes; results in job order.

    ``jobs`` may be a generator: at most two jobs per worker are taken from it ahead
    of the results, so jobs that carry frames do not pile up in memory.
    """
    results: list[dict] = []
    if workers <= 1 or total <= 1:
        for k, job in enumerate(jobs):
            results.append(produce(job))
            if progress:
                progress(k + 1, total)
        return results
    # "spawn": a clean interpreter per worker (no inherited threads or torch state).
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        pending: deque = deque()

        def collect() -> None:
            results.append(pending.popleft().result())
            if progress:
                progress(len(results), total)

        for job in jobs:
            pending.append(pool.submit(produce, job))
            while len(pending) >= 2 * workers:
                collect()
        while pending:
            collect()
    return results


def generate_benchmark(root: str | Path, n_train: int, n_test: int, seed: int, preset: str | SynthConfig = "default",
                       workers: int = 1, overwrite: bool = False, progress=None,
                       oracle_labels: str | Path | None = None) -> Path:
    """Generate a synthetic benchmark folder and return its root.

    Args:
        root: output folder; created if missing. It must be empty, or hold an earlier
            synthetic benchmark and ``overwrite`` be set.
        n_train: number of training videos.
        n_test: number of test videos.
        seed: seeds every video; one seed always gives byte-identical files.
        preset: a name in :data:`PRESETS` or a :class:`SynthConfig`.
        workers: processes that render and encode videos in parallel (the output does
            not depend on it).
        overwrite: replace an earlier synthetic benchmark in ``root``.
        progress: optional callable ``(done, total)`` called after each video.
        oracle_labels: a folder outside ``root`` that receives the training videos'
            boxes and frame labels (for a supervised oracle only; see the module
            docstring). None: training boxes are computed and written nowhere. The
            folder must be empty or new, or hold earlier oracle labels and
            ``overwrite`` be set.

    Raises:
        ConfigError: unknown preset, invalid values or counts; ``oracle_labels``
            inside ``root`` or holding it.
        DatasetError: ``root`` or ``oracle_labels`` is not usable.
        VideoError: a video could not be encoded.
    """
    config = resolve_preset(preset)
    preset_name = preset if isinstance(preset, str) else config.name
    specs = plan_benchmark(n_train, n_test, seed, config)
    root = Path(root)
    oracle = None if oracle_labels is None else check_oracle_folder(root, oracle_labels)
    prepare_folder(root, overwrite)
    if oracle is not None:
        prepare_folder(oracle, overwrite, ORACLE_RECORD, "set of oracle labels", ("tracks", "frame_labels"), ())
    workers = max(1, int(workers))
    results = run_jobs([(spec, config, str(root), oracle is not None) for spec in specs], len(specs), workers,
                       progress)
    if oracle is not None:
        _write_oracle(oracle, specs, results, seed, preset_name)

    test_records = write_ground_truth(root, specs, results, lambda spec: {"camera": spec.camera})
    atomic_write_json(root / RECORD, {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "seed": int(seed),
        "preset": preset_name,
        "parameters": config.to_dict(),
        "counts": split_counts(specs),
        "conventions": CONVENTIONS,
        "test_videos": test_records,
    })
    write_dataset_manifest(root, specs, results, config)
    return root


#: Ground-truth conventions, recorded in synth.json.
CONVENTIONS = {
    "boxes": "inclusive xyxy pixels, 0-based frame ids; tight amodal box of the whole drawn object",
    "visibility": "a row exists for an event frame when >= 25% of the object is inside the frame",
    "fighting": "one track per fighter (track ids 1 and 2)",
    "left_object": "the bag only, from release until pick-up or the end of the video",
    "training_videos": "only the video-level label is recorded (manifest); no type, span or box",
}


def split_counts(specs: list[VideoSpec]) -> dict:
    """Videos and anomalous videos per split, for the record."""
    counts = {}
    for split in ("train", "test"):
        counts[split] = sum(1 for s in specs if s.split == split)
        counts[f"{split}_anomalous"] = sum(s.label for s in specs if s.split == split)
    return {k: counts[k] for k in ("train", "train_anomalous", "test", "test_anomalous")}


def write_ground_truth(root: Path, specs: list[VideoSpec], results: list[dict],
                       extra: Callable[[VideoSpec], dict] | None = None) -> list[dict]:
    """Write the test videos' frame labels and tracks; return one record per test video.

    Each record holds the video, its label, class and frame count, then ``extra(spec)``
    and, for an anomalous video, its first and last labelled frame, labelled frame
    count and number of tracks. Training videos get nothing.
    """
    records = []
    for spec, result in zip(specs, results):
        if spec.split != "test":
            continue
        rows, labels = result["rows"], result["labels"]
        write_frame_labels(root, spec.stem, labels)
        record = {"video": video_path(spec), "label": spec.label, "class": spec.kind if spec.label else "normal",
                  "frames": result["frames"], **(extra(spec) if extra else {})}
        if spec.label:
            write_tracks(root, spec.stem, rows)
            record.update({"event_start": int(rows[:, 1].min()), "event_end": int(rows[:, 1].max()),
                           "labelled_frames": int(labels.sum()), "tracks": int(np.unique(rows[:, 0]).size)})
        records.append(record)
    return records


def write_dataset_manifest(root: Path, specs: list[VideoSpec], results: list[dict], config: SynthConfig) -> None:
    """Write the manifest (last, so an interrupted run never looks like a finished dataset).

    A test video's class is its anomaly type, a training video's only ``anomalous`` or
    ``normal``.
    """
    rows = []
    for spec, result in zip(specs, results):
        cls = (spec.kind if spec.label else "normal") if spec.split == "test" else (
            "anomalous" if spec.label else "normal")
        rows.append({"video": video_path(spec), "split": spec.split, "label": spec.label, "class": cls,
                     "frames": result["frames"], "fps": config.fps, "width": config.width,
                     "height": config.height})
    # Train rows first in the manifest (the usual reading order).
    rows.sort(key=lambda r: (r["split"] != "train", r["video"]))
    write_manifest(root, rows)


def _write_oracle(oracle: Path, specs: list[VideoSpec], results: list[dict], seed: int, preset: str) -> None:
    """The training videos' ground truth, in the test split's layout, and a record."""
    train = [(spec, result) for spec, result in zip(specs, results) if spec.split == "train"]
    for spec, result in train:
        write_frame_labels(oracle, spec.stem, result["labels"])
        if spec.label:
            write_tracks(oracle, spec.stem, result["rows"])
    atomic_write_json(oracle / ORACLE_RECORD, {
        "format": ORACLE_FORMAT,
        "version": RECORD_VERSION,
        "seed": int(seed),
        "preset": preset,
        "purpose": "ground truth of the TRAINING videos, for a supervised oracle only; weakly supervised "
                   "methods must not read it",
        "counts": {"train": len(train), "train_anomalous": sum(spec.label for spec, _ in train)},
        "layout": "tracks/<stem>.csv (anomalous videos) and frame_labels/<stem>.npy (every video), as the "
                  "dataset root holds them for test videos; read with patchvad.data.folder.read_oracle_labels",
    })


def write_oracle_labels(root: str | Path, oracle_labels: str | Path, workers: int = 1, overwrite: bool = False,
                        progress=None) -> Path:
    """The oracle label folder of an existing synthetic benchmark, as ``generate_benchmark(..., oracle_labels=)``.

    A video's scene depends only on (seed, split, index) and the preset, so the training
    videos' boxes are computed from ``root``'s synth.json (seed, preset, counts) without
    rendering any video: the files are the bytes generation would have written.

    Args:
        root: a benchmark written by :func:`generate_benchmark`.
        oracle_labels: the folder to write, outside ``root`` (as for generation).
        workers: processes that build scenes.
        overwrite: replace earlier oracle labels in the folder.
        progress: optional callable ``(done, total)``.

    Returns:
        The oracle label folder.

    Raises:
        ConfigError: ``root``'s record is missing, of another kind, or made with
            parameters its preset no longer has; the folder lies inside ``root``.
        DatasetError: the folder is not usable.
    """
    import json

    root = Path(root)
    try:
        record = json.loads((root / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the benchmark's record ({exc})", path=root / RECORD) from None
    if record.get("format") != RECORD_FORMAT:
        raise ConfigError(f"not a painted synthetic benchmark (format {record.get('format')!r}); oracle labels "
                          "can only be written for one", path=root / RECORD)
    config = resolve_preset(record["preset"])
    if config.to_dict() != record.get("parameters"):
        raise ConfigError(f"preset '{record['preset']}' has changed since this benchmark was generated, so its "
                          "boxes cannot be computed again; generate the benchmark again with --oracle-labels",
                          path=root / RECORD)
    counts = record["counts"]
    specs = plan_benchmark(int(counts["train"]), int(counts["test"]), int(record["seed"]), config)
    oracle = check_oracle_folder(root, oracle_labels)
    prepare_folder(oracle, overwrite, ORACLE_RECORD, "set of oracle labels", ("tracks", "frame_labels"), ())
    train = [spec for spec in specs if spec.split == "train"]
    results = run_jobs([(spec, config) for spec in train], len(train), max(1, int(workers)), progress,
                       produce=_annotate_training)
    _write_oracle(oracle, train, results, int(record["seed"]), record["preset"])
    return oracle


def synth_command(root: str | Path, train: int | None = None, test: int | None = None, seed: int = 0,
                  preset: str = "default", workers: int | None = None, overwrite: bool = False,
                  oracle_labels: str | Path | None = None) -> int:
    """``patchvad synth ROOT --train N --test M --seed S [--preset NAME] [--oracle-labels DIR]``.

    Counts default to the preset's ``default_train`` / ``default_test``; ``workers``
    defaults to the number of CPU cores. Prints a one-line summary; returns the
    exit status (0). Errors are raised as PatchvadError for the CLI to report.
    """
    config = resolve_preset(preset)
    n_train = config.default_train if train is None else int(train)
    n_test = config.default_test if test is None else int(test)
    if workers is None:
        workers = max(1, multiprocessing.cpu_count())
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\rsynth: {done}/{total} videos", end="" if done < total else "\n", file=sys.stderr)

    out = generate_benchmark(root, n_train, n_test, seed, preset=preset, workers=workers, overwrite=overwrite,
                             progress=progress, oracle_labels=oracle_labels)
    seconds = time.perf_counter() - started
    frames = sum(spec.frames for spec in plan_benchmark(n_train, n_test, seed, config))
    print(f"synth: wrote {n_train} training and {n_test} test videos ({frames} frames, preset "
          f"'{preset}', seed {seed}) to {out} in {seconds:.1f} s ({frames / max(seconds, 1e-9):.0f} frames/s)")
    if oracle_labels is not None:
        print(f"synth: wrote the {n_train} training videos' oracle labels to {Path(oracle_labels)} "
              f"(for a supervised oracle only)")
    return 0
