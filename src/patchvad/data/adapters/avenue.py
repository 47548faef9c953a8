"""CUHK Avenue (Lu, Shi and Jia, ICCV 2013) -> the generic folder.

Official layout (``Avenue Dataset``)::

    training_videos/01.avi ... 16.avi                       all normal
    testing_videos/01.avi ... 21.avi
    ground_truth_demo/testing_label_mask/1_label.mat ...    ``volLabel``: 1xT cell of HxW masks

Frame folders in the layout many repositories use (``training/frames/01/``,
``testing/frames/01/``) are accepted instead of the videos.

Ground truth of test video ``k``: ``k_label.mat`` (MATLAB v5; loaded with
``scipy.io.loadmat``, which reads data only, in a helper process: scipy's compiled
reader can crash on a damaged file). Frame ``t`` is anomalous when its mask has
any pixel; regions are the mask's connected components (8-connected), linked into
tracks across consecutive frames by box overlap. Training and test videos share the
names 01, 02, ..., so the stems are ``train_01`` / ``test_01``.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from patchvad.data.adapters.common import (
    PlannedVideo,
    PrepareContext,
    check_splits,
    clean_regions,
    list_frame_files,
    masks_to_regions,
    summarize,
)
from patchvad.errors import DatasetError
from patchvad.io.video import VIDEO_EXTENSIONS

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import SpawnProcess

NAME = "avenue"
TITLE = "CUHK Avenue"
FPS = 25.0
OFFICIAL = {"train": (16, 0), "test": (21, None)}
OFFICIAL_FRAMES = {"train": 15328, "test": 15324}
REFERENCE = "Lu et al. 2013"
OPTIONS: dict = {}
_NUM = re.compile(r"^\d{1,3}$")


def read_label_mat(path: Path) -> np.ndarray:
    """``k_label.mat`` -> ``(T, H, W)`` bool masks.

    The file is parsed in a helper process: ``scipy.io.loadmat`` is compiled code that a
    damaged (or hostile) MAT file can crash with a segmentation fault (found by
    fuzzing, tests/reliability). A crash, or a read that hangs, then costs a
    DatasetError naming the file instead of the whole ``prepare`` run.

    Raises:
        DatasetError: not a MATLAB v5 file, no ``volLabel`` of 2-D masks, or a file that
            crashes the reader.
    """
    return _MAT_READER.read(Path(path))


class _IsolatedMatReader:
    """One long-lived helper process that runs :func:`_read_label_mat_here`; restarted after a crash."""

    def __init__(self, timeout: float = 600.0):
        self.timeout = timeout
        self._proc: SpawnProcess | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def _start(self) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")        # no inherited threads or torch state
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_mat_worker, args=(child,), daemon=True, name="patchvad-mat-reader")
        self._proc.start()
        child.close()
        self._conn = parent

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join()
            assert self._conn is not None           # started together with _proc
            self._conn.close()
        self._proc = self._conn = None

    def read(self, path: Path) -> np.ndarray:
        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                self._stop()
                self._start()
            assert self._conn is not None           # started together with _proc
            try:
                self._conn.send(str(path))
                if not self._conn.poll(self.timeout):
                    self._stop()
                    raise DatasetError(f"reading did not finish in {self.timeout:.0f} s (a damaged file?)", path=path)
                status, payload = self._conn.recv()
            except (EOFError, OSError):
                code = self._proc.exitcode if self._proc is not None else None
                self._stop()
                raise DatasetError(f"the MATLAB file reader crashed on this file (exit {code}): damaged or not a "
                                   f"MAT file", path=path) from None
        if status == "error":
            raise DatasetError(payload, path=path)
        packed, shape = payload
        return np.unpackbits(packed, axis=-1, count=shape[-1]).astype(bool).reshape(shape)


def _mat_worker(conn) -> None:
    """Helper process: read MAT files named on ``conn``; answer bit-packed masks or an error message."""
    while True:
        try:
            path = conn.recv()
        except (EOFError, OSError):
            return
        try:
            masks = _read_label_mat_here(Path(path))
            conn.send(("ok", (np.packbits(masks, axis=-1), masks.shape)))
        except DatasetError as exc:
            conn.send(("error", exc.message))
        except Exception as exc:  # anything scipy raises is "not readable"
            conn.send(("error", f"not a readable MATLAB file ({type(exc).__name__}: {exc})"))


_MAT_READER = _IsolatedMatReader()


def _read_label_mat_here(path: Path) -> np.ndarray:
    """:func:`read_label_mat` in this process (the helper process runs it)."""
    from scipy.io import loadmat

    try:
        data = loadmat(str(path), squeeze_me=False)
    except NotImplementedError:
        raise DatasetError("MATLAB v7.3 (HDF5) files are not read; re-save it as v7 in MATLAB",
                           path=path) from None
    except Exception as exc:  # scipy's reader raises many types on damaged files
        raise DatasetError(f"not a readable MATLAB file ({type(exc).__name__}: {exc})", path=path) from exc
    if "volLabel" not in data:
        raise DatasetError(f"no 'volLabel' variable (found {sorted(k for k in data if not k.startswith('__'))})",
                           path=path)
    vol = data["volLabel"]
    if vol.dtype == object:
        frames = [m if isinstance(m, np.ndarray) else np.asarray(m, dtype=object) for m in vol.ravel()]
    elif vol.ndim == 3:
        frames = [vol[:, :, t] for t in range(vol.shape[2])]   # MATLAB (H, W, T)
    else:
        raise DatasetError(f"volLabel of shape {vol.shape} is neither a cell of masks nor (H, W, T)", path=path)
    if not frames or any(f.ndim != 2 or f.shape != frames[0].shape for f in frames):
        raise DatasetError("volLabel masks are not 2-D arrays of one size", path=path)
    if any(f.dtype.kind not in "biuf" for f in frames):
        raise DatasetError(f"volLabel masks must be numeric, found {sorted({str(f.dtype) for f in frames})}",
                           path=path)
    return np.stack(frames) > 0


def _sources(ctx: PrepareContext) -> dict[tuple[str, int], Path]:
    """``(split, number) -> video file or frame folder``."""
    out: dict[tuple[str, int], Path] = {}
    for split, folder_name in (("train", "training_videos"), ("test", "testing_videos")):
        for folder in ctx.index.dirs(folder_name):
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() in VIDEO_EXTENSIONS and _NUM.match(path.stem) and not path.name.startswith("."):
                    out.setdefault((split, int(path.stem)), path)
    for split, parent in (("train", "training"), ("test", "testing")):
        for frames_dir in ctx.index.dirs("frames"):
            if frames_dir.parent.name != parent:
                continue
            for path in sorted(frames_dir.iterdir()):
                if path.is_dir() and _NUM.match(path.name) and list_frame_files(path):
                    out.setdefault((split, int(path.name)), path)
    return out


def plan(ctx: PrepareContext) -> list[PlannedVideo]:
    """Find the Avenue videos (or frame folders) and label masks; plan the folder."""
    report = ctx.report
    sources = _sources(ctx)
    if not sources:
        raise DatasetError("no training_videos/ or testing_videos/ (nor training|testing/frames/) under the source",
                           path=ctx.source)
    official = [(split, k) for split in ("train", "test") for k in range(1, OFFICIAL[split][0] + 1)]
    folder = {"train": "training", "test": "testing"}
    report.problem_list("videos of the official release not found under the source",
                        [f"{split}_{k:02d} ({folder[split]}_videos/{k:02d}.avi or {folder[split]}/frames/{k:02d}/)"
                         for split, k in official if (split, k) not in sources])
    report.problem_list("videos that are not in the official release",
                        [f"{split}_{k:02d} ({sources[(split, k)]})"
                         for split, k in sorted(set(sources) - set(official))])
    infos = ctx.probe_many(list(sources.values()))
    plans: list[PlannedVideo] = []
    no_gt: list[str] = []
    for (split, number), source in sorted(sources.items()):
        if source not in infos:
            continue
        info = infos[source]
        stem = f"{split}_{number:02d}"
        link = f"{split}/{stem}" + ("" if source.is_dir() else source.suffix)
        planned = PlannedVideo(stem=stem, source=source, link_name=link, split=split, label=0, cls="",
                               info=info, fps=info.fps or FPS)
        if split == "test":
            mat = next((p for name in (f"{number}_label.mat", f"{number:02d}_label.mat")
                        for p in ctx.index.files(name)), None)
            if mat is None:
                no_gt.append(stem)
                continue
            masks = read_label_mat(mat)
            if masks.shape != (info.frames, info.height, info.width):
                report.problem(f"{mat}: {masks.shape[0]} masks of {masks.shape[2]}x{masks.shape[1]} for a video of "
                               f"{info.frames} frames of {info.width}x{info.height}")
                continue
            labels = np.asarray(masks.reshape(len(masks), -1).any(axis=1)).astype(np.uint8)
            regions = masks_to_regions((f, masks[f]) for f in np.flatnonzero(labels))
            planned.frame_labels = labels
            planned.regions, _ = clean_regions(regions, info.frames, info.width, info.height)
            planned.label = int(labels.any())
        plans.append(planned)
    report.problem_list("test videos without a <k>_label.mat (the masks ship with the Avenue download, "
                        "ground_truth_demo/testing_label_mask/)", no_gt)
    check_splits(report, plans, OFFICIAL, REFERENCE)
    for split, expected in OFFICIAL_FRAMES.items():
        report.expect(f"{split} frames", expected, sum(p.info.frames for p in plans if p.split == split), REFERENCE)
    summarize(report, plans)
    return plans


__all__ = ["FPS", "NAME", "OFFICIAL", "OPTIONS", "TITLE", "plan", "read_label_mat"]
