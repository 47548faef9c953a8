"""CUHK Avenue (Lu, Shi and Jia, ICCV 2013) -> the generic folder.

Official layout (``Avenue Dataset``)::

    training_videos/01.avi ... 16.avi                       all normal
    testing_videos/01.avi ... 21.avi
    ground_truth_demo/testing_label_mask/1_label.mat ...    ``volLabel``: 1xT cell of HxW masks

Frame folders in the layout many repositories use (``training/frames/01/``,
``testing/frames/01/``) are accepted instead of the videos.

Ground truth of test video ``k``: ``k_label.mat`` (MATLAB v5; loaded with
``scipy.io.loadmat``, which reads data only). Frame ``t`` is anomalous when its mask has
any pixel; regions are the mask's connected components (8-connected), linked into
tracks across consecutive frames by box overlap. Training and test videos share the
names 01, 02, ..., so the stems are ``train_01`` / ``test_01``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from patchvad.data.adapters.common import (
    PlannedVideo, PrepareContext, check_splits, clean_regions, list_frame_files, masks_to_regions, summarize,
)
from patchvad.errors import DatasetError
from patchvad.io.video import VIDEO_EXTENSIONS

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

    Raises:
        DatasetError: not a MATLAB v5 file, or no ``volLabel`` of 2-D masks.
    """
    from scipy.io import loadmat

    try:
        data = loadmat(str(path), squeeze_me=False)
    except NotImplementedError:
        raise DatasetError("MATLAB v7.3 (HDF5) files are not read; re-save it as v7 in MATLAB",
                           path=path) from None
    except (OSError, ValueError, TypeError) as exc:
        raise DatasetError(f"not a readable MATLAB file ({exc})", path=path) from exc
    if "volLabel" not in data:
        raise DatasetError(f"no 'volLabel' variable (found {sorted(k for k in data if not k.startswith('__'))})",
                           path=path)
    vol = data["volLabel"]
    if vol.dtype == object:
        frames = [np.asarray(m) for m in vol.ravel()]
    elif vol.ndim == 3:
        frames = [vol[:, :, t] for t in range(vol.shape[2])]   # MATLAB (H, W, T)
    else:
        raise DatasetError(f"volLabel of shape {vol.shape} is neither a cell of masks nor (H, W, T)", path=path)
    if not frames or any(f.ndim != 2 or f.shape != frames[0].shape for f in frames):
        raise DatasetError("volLabel masks are not 2-D arrays of one size", path=path)
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
            labels = masks.reshape(len(masks), -1).any(axis=1).astype(np.uint8)
            regions = masks_to_regions((f, masks[f]) for f in np.flatnonzero(labels))
            planned.frame_labels = labels
            planned.regions, _ = clean_regions(regions, info.frames, info.width, info.height)
            planned.label = int(labels.any())
        plans.append(planned)
    report.problem_list("test videos without a <k>_label.mat", no_gt)
    check_splits(report, plans, OFFICIAL, REFERENCE)
    for split, expected in OFFICIAL_FRAMES.items():
        report.expect(f"{split} frames", expected, sum(p.info.frames for p in plans if p.split == split), REFERENCE)
    summarize(report, plans)
    return plans


__all__ = ["FPS", "NAME", "OFFICIAL", "OPTIONS", "TITLE", "plan", "read_label_mat"]
