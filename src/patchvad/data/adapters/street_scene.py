"""Street Scene (Ramachandra and Jones, WACV 2020) -> the generic folder.

Official layout (``Train.tgz``, ``Test.tgz`` from MERL)::

    StreetScene/Train/Train001/001.jpg ...      46 training sequences (frame folders)
    StreetScene/Test/Test001/001.jpg ...        35 test sequences
    StreetScene/Test/Test001/Test001_gt.txt     anomaly tracks of the sequence

Ground-truth rows: ``<frame file> <track_id> <x_center> <y_center> <width> <height>``,
whitespace separated. Frames are numbered from 1 in the file names (frame ``k`` is index
``k - 1``); boxes are given by centre and size in pixels and become inclusive corners
``x_min = round(xc - w/2)``, ``x_max = x_min + round(w) - 1`` (rounded half up) (so the +1-pixel IoU
convention sees a box of width ``w``), clipped to the frame. A frame is anomalous when it
holds a box (the authors' frame-level labels are derived the same way). Track ids are
kept as given. Frames are 15 fps.
"""

from __future__ import annotations

import math
import re
from pathlib import Path, PurePosixPath

import numpy as np

from patchvad.data.adapters.common import (
    PlannedVideo,
    PrepareContext,
    check_int64,
    check_splits,
    clean_regions,
    list_frame_files,
    read_lines,
    summarize,
)
from patchvad.errors import DatasetError

NAME = "street_scene"
TITLE = "Street Scene"
FPS = 15.0
OFFICIAL = {"train": (46, 0), "test": (35, None)}
OFFICIAL_FRAMES = {"train": 56847, "test": 146410}
REFERENCE = "Ramachandra & Jones 2020"
OPTIONS: dict = {}
_SEQ = re.compile(r"^(Train|Test)(\d{3})$")
_MAX_PIXEL = 2 ** 31                # coordinates and frame numbers end up in int64 arrays


def read_gt(path: Path) -> np.ndarray:
    """A ``TestNNN_gt.txt`` -> ``(R, 6)`` rows ``track, frame (0-based), x1, y1, x2, y2`` (unclipped)."""
    rows = []
    for line, text in read_lines(path):
        fields = text.split()
        if len(fields) != 6:
            raise DatasetError(f"expected '<frame file> <track_id> <x_center> <y_center> <width> <height>', "
                               f"found {len(fields)} fields", path=path, line=line)
        digits = re.findall(r"\d+", PurePosixPath(fields[0].replace("\\", "/")).stem)
        if not digits:
            raise DatasetError(f"no frame number in '{fields[0]}'", path=path, line=line)
        number = int(digits[-1])
        if number < 1:
            raise DatasetError(f"frame number {number}: Street Scene numbers frames from 1", path=path, line=line)
        try:
            track = int(fields[1])
            xc, yc, w, h = (float(v) for v in fields[2:])
        except ValueError:
            raise DatasetError(f"non-numeric field in '{text}'", path=path, line=line) from None
        if not all(math.isfinite(v) and abs(v) < _MAX_PIXEL for v in (xc, yc, w, h)):
            raise DatasetError(f"box ({fields[2]}, {fields[3]}, {fields[4]}, {fields[5]}) is not finite pixel "
                               f"values", path=path, line=line)
        if w <= 0 or h <= 0:
            raise DatasetError(f"box of size {w}x{h}", path=path, line=line)
        check_int64(track, "track_id", path, line)
        if number > _MAX_PIXEL:
            raise DatasetError(f"frame number {number} is out of range", path=path, line=line)
        # Round half up (Python's round() rounds half to even, which would make the
        # result depend on the parity of the coordinate).
        x1, y1 = math.floor(xc - w / 2 + 0.5), math.floor(yc - h / 2 + 0.5)
        bw, bh = max(1, math.floor(w + 0.5)), max(1, math.floor(h + 0.5))
        rows.append([track, number - 1, x1, y1, x1 + bw - 1, y1 + bh - 1])
    return np.asarray(rows, dtype=np.int64).reshape(-1, 6)


def plan(ctx: PrepareContext) -> list[PlannedVideo]:
    """Find the Train/Test frame folders and the test GT files; plan the folder."""
    report, index = ctx.report, ctx.index
    sequences: dict[str, list[Path]] = {}
    for folder in index.all_dirs(lambda p: bool(_SEQ.match(p.name))):
        sequences.setdefault(folder.name, []).append(folder)
    chosen: dict[str, Path] = {}
    ambiguous: dict[str, int] = {}
    for name, folders in sorted(sequences.items()):
        with_frames = [f for f in folders if list_frame_files(f)]
        if len(with_frames) == 1:
            chosen[name] = with_frames[0]
        elif len(with_frames) > 1:
            ambiguous[name] = len(with_frames)
    report.problem_list("sequences found in several frame folders",
                        [f"{name} ({n} folders)" for name, n in ambiguous.items()])
    if not chosen:
        raise DatasetError("no Train<NNN>/ or Test<NNN>/ frame folders under the source", path=ctx.source)
    official = [f"{split.capitalize()}{k:03d}" for split in ("train", "test") for k in range(1, OFFICIAL[split][0] + 1)]
    report.problem_list("sequences of the official release not found under the source (expected Train/TrainNNN/ "
                        "and Test/TestNNN/ frame folders)",
                        [n for n in official if n not in chosen and n not in ambiguous])
    report.problem_list("sequences that are not in the official release", sorted(set(chosen) - set(official)))
    infos = ctx.probe_many(list(chosen.values()))

    plans: list[PlannedVideo] = []
    no_gt: list[str] = []
    fixed: list[str] = []
    for name, folder in chosen.items():
        if folder not in infos:
            continue
        info = infos[folder]
        split = "train" if name.startswith("Train") else "test"
        planned = PlannedVideo(stem=name, source=folder, link_name=f"{'Train' if split == 'train' else 'Test'}/{name}",
                               split=split, label=0, cls="", info=info, fps=info.fps or FPS)
        if split == "test":
            gt_files = ctx.index.files(f"{name}_gt.txt")
            inside = [p for p in gt_files if p.parent == folder]
            gt_path = next(iter(inside or gt_files), None)
            if gt_path is None:
                no_gt.append(name)
                continue
            regions, fixes = clean_regions(read_gt(gt_path), info.frames, info.width, info.height)
            if fixes.past_end or fixes.clipped or fixes.duplicates:
                fixed.append(f"{name} ({fixes.past_end} past the end, {fixes.clipped} clipped, "
                             f"{fixes.duplicates} duplicates)")
            labels = np.zeros(info.frames, dtype=np.uint8)
            labels[regions[:, 1]] = 1
            planned.frame_labels, planned.regions = labels, regions
            planned.label = int(labels.any())
        plans.append(planned)
    report.problem_list("test sequences without a <name>_gt.txt (it ships in Test.tgz beside the frames, "
                        "Test/TestNNN/TestNNN_gt.txt)", no_gt)
    report.note_list("sequences whose boxes were clipped, deduplicated or fell past the end", fixed)
    check_splits(report, plans, OFFICIAL, REFERENCE)
    for split, expected in OFFICIAL_FRAMES.items():
        report.expect(f"{split} frames", expected, sum(p.info.frames for p in plans if p.split == split), REFERENCE)
    summarize(report, plans)
    report.counts["anomalous tracks"] = int(sum(len(np.unique(p.regions[:, 0])) for p in plans
                                                if p.regions is not None and len(p.regions)))
    return plans


__all__ = ["FPS", "NAME", "OFFICIAL", "OPTIONS", "TITLE", "plan", "read_gt"]
