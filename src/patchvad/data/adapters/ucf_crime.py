"""UCF-Crime (Sultani, Chen and Shah, CVPR 2018) -> the generic folder.

Official files read:

* ``Anomaly_Train.txt`` / ``Anomaly_Test.txt``: one ``<Folder>/<video>.mp4`` per line
  (1610 / 290 videos).
* ``Temporal_Anomaly_Annotation_for_Testing_Videos.txt`` (also accepted under its
  short name ``Temporal_Anomaly_Annotation.txt``): ``<video>.mp4 <Category> s1 e1 s2 e2``,
  ``-1`` for "no segment". The values are **1-based frame numbers with an inclusive
  end** (the authors' ``Evaluate_Anomaly_Detector.m`` does ``GT(max(s,1):min(e,n)) = 1``),
  so frames ``s-1 .. e-1`` (0-based) are anomalous, clamped to the real frame count.
* Liu & Ma boxes (``Test_annotation.pkl``, optional): ``video -> [[path, x1, y1, x2, y2], ...]``,
  a Python-2 protocol-0 pickle of builtins, loaded with the restricted unpickler.
  ``image_NNNN.jpg`` is numbered like ffmpeg's default image output, from 1, the same
  numbering as the temporal annotation (every box falls inside its video's 1-based
  segments), so frame ``NNNN`` is index ``NNNN - 1``. Coordinates are 1-based
  inclusive pixels of the 320x240 frames (values reach 320/240), so 1 is subtracted;
  they are rescaled when a video is not 320x240.
  ``Train_annotation.pkl`` is only counted: training ground truth must stay out of the
  folder (WSVAD trains on video labels).

Boxes between annotated frames: by default only the annotated frames (about every
16th frame of an anomaly) carry a region; the frame labels come from the temporal
annotation. Option ``hold=N`` repeats each box on the following frames, up to N frames
in all, never past the next annotated frame of its track, the end of its segment or
the video. Track ids: one track per temporal segment (event) that holds boxes.
"""

from __future__ import annotations

import math
import re
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from patchvad.data.adapters.common import (
    PlannedVideo,
    PrepareContext,
    check_splits,
    clean_regions,
    labels_from_segments,
    parse_int,
    read_lines,
    scale_boxes,
    summarize,
)
from patchvad.errors import DatasetError
from patchvad.io.files import safe_pickle_load
from patchvad.io.video import VIDEO_EXTENSIONS

NAME = "ucf_crime"
TITLE = "UCF-Crime"
FPS = 30.0
BOX_FRAME_SIZE = (320, 240)          # (W, H) the Liu & Ma boxes are drawn on
OFFICIAL = {"train": (1610, 810), "test": (290, 140)}
REFERENCE = "Sultani et al. 2018 split lists"
LIU_MA_TEST = (140, 3102)            # videos, boxes
LIU_MA_TRAIN = (810, 25483)
TEMPORAL_NAMES = ("Temporal_Anomaly_Annotation_for_Testing_Videos.txt", "Temporal_Anomaly_Annotation.txt")
OPTIONS = {"hold": int}
SPLITS_ORIGIN = ("It ships with the UCF-Crime download in Anomaly_Detection_splits/, and in the authors' repository "
                 "github.com/WaqasSultani/AnomalyDetectionCVPR2018 (Sultani et al., CVPR 2018)")
TEMPORAL_ORIGIN = ("It ships with the UCF-Crime download, and in the authors' repository "
                   "github.com/WaqasSultani/AnomalyDetectionCVPR2018 as Temporal_Anomaly_Annotation.txt")
LIU_MA_ORIGIN = ("Liu & Ma boxes (ACM MM 2019): Test_annotation.pkl and Train_annotation.pkl from "
                 "github.com/xuzero/UCFCrime_BoundingBox_Annotation; put them anywhere under the source")
_FRAME_RE = re.compile(r"image_(\d+)\.jpg$")
_MAX_FRAME = 2 ** 31 - 1            # frame numbers and pixel coordinates end up in int64 arrays
_MAX_PIXEL = 2 ** 31 - 1


def _read_list(path: Path) -> list[tuple[int, PurePosixPath]]:
    out = []
    for line, text in read_lines(path):
        normalized = text.replace("\\", "/")
        entry = PurePosixPath(normalized[2:] if normalized.startswith("./") else normalized)
        if (entry.suffix.lower() not in VIDEO_EXTENSIONS or entry.is_absolute() or ".." in entry.parts
                or any(ord(c) < 32 for c in normalized)):
            raise DatasetError(f"expected '<Folder>/<video>.mp4', found '{text}'", path=path, line=line)
        out.append((line, entry))
    return out


def _read_temporal(path: Path) -> dict[str, tuple[str, list[tuple[int, int]], int]]:
    """``video stem -> (category, [(s, e) 1-based inclusive], line)``."""
    out: dict[str, tuple[str, list[tuple[int, int]], int]] = {}
    for line, text in read_lines(path):
        fields = text.split()   # fields are separated by two spaces, with trailing spaces
        if len(fields) != 6:
            raise DatasetError(f"expected '<video> <Category> s1 e1 s2 e2', found {len(fields)} fields",
                               path=path, line=line)
        name, category = fields[0], fields[1]
        values = [parse_int(v, "frame number", path, line) for v in fields[2:]]
        segments = []
        for s, e in (values[0:2], values[2:4]):
            if (s == -1) != (e == -1):
                raise DatasetError(f"segment ({s}, {e}) has only one end set to -1", path=path, line=line)
            if s == -1:
                continue
            if s < 0 or e < s:
                raise DatasetError(f"segment ({s}, {e}) is not a 1-based inclusive range", path=path, line=line)
            segments.append((s, e))
        stem = PurePosixPath(name).stem
        if stem in out:
            raise DatasetError(f"video '{name}' annotated twice (also line {out[stem][2]})", path=path, line=line)
        out[stem] = (category, segments, line)
    return out


def _parse_boxes(raw: object, path: Path) -> dict[str, list[tuple[int, int, int, int, int]]]:
    """Liu & Ma pickle -> ``stem -> [(frame_number_1based, x1, y1, x2, y2)]`` sorted by frame."""
    if not isinstance(raw, dict):
        raise DatasetError(f"expected a dict of videos, found {type(raw).__name__}", path=path)
    out: dict[str, list[tuple[int, int, int, int, int]]] = {}
    for key, rows in raw.items():
        if not isinstance(key, str) or not isinstance(rows, list):
            raise DatasetError(f"entry '{key}' is not 'video -> list of boxes'", path=path)
        boxes = []
        for row in rows:
            if not (isinstance(row, (list, tuple)) and len(row) == 5 and isinstance(row[0], str)):
                raise DatasetError(f"video '{key}': box entry {row!r} is not [path, x1, y1, x2, y2]", path=path)
            match = _FRAME_RE.search(row[0])
            if not match or int(match.group(1)) > _MAX_FRAME:
                raise DatasetError(f"video '{key}': no frame number in '{row[0]}'", path=path)
            coords: list[Any] = [_pixel(v) for v in row[1:]]      # ints once the None check below passes
            if None in coords:
                raise DatasetError(f"video '{key}': box {row[1:]!r} is not four integer pixel coordinates",
                                   path=path)
            x1, y1, x2, y2 = coords
            # The key names the video; some train paths carry a '<video>0' folder typo.
            boxes.append((int(match.group(1)), x1, y1, x2, y2))
        boxes.sort()
        out[key] = boxes
    return out


def _pixel(value: object) -> int | None:
    """An integer pixel coordinate (an int, or a float with an integer value), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    number = int(value)
    return number if -_MAX_PIXEL <= number <= _MAX_PIXEL else None


def _load_boxes(path: Path) -> dict[str, list[tuple[int, int, int, int, int]]]:
    return _parse_boxes(safe_pickle_load(path), path)


def _resolve_video(ctx: PrepareContext, entry: PurePosixPath) -> tuple[Path | None, str]:
    """Find a listed video: at its listed path, else by name (preferring its listed folder).

    The official download spreads the lists' folders over several zips
    (``Anomaly-Videos-Part-1/Abuse/...``), so the listed path often is not the path on
    disk; normal videos also exist twice in some downloads (``Normal_Videos_for_Event_Recognition``),
    hence the preference for a candidate inside the listed folder.
    """
    direct = ctx.source / Path(*entry.parts)
    if direct.is_file():
        return direct, ""
    candidates = ctx.index.files(entry.name)
    if not candidates:
        return None, "not found"
    if len(candidates) == 1:
        return candidates[0], ""
    folder = entry.parent.name
    in_folder = [c for c in candidates if c.parent.name == folder]
    if len(in_folder) == 1:
        return in_folder[0], ""
    return None, "ambiguous: " + ", ".join(str(c) for c in candidates[:4])


def _regions(boxes: list[tuple[int, int, int, int, int]], segments: list[tuple[int, int]], frames: int,
             size: tuple[int, int], hold: int) -> tuple[np.ndarray, int]:
    """Liu & Ma boxes of one video -> ``(R, 6)`` rows; also the number outside every segment."""
    seg0 = [(s - 1, e) for s, e in segments]           # 0-based half-open
    track_of_segment: dict[int, int] = {}
    rows: list[list[int]] = []
    outside = 0
    seen: set[int] = set()
    per_track: dict[int, list[tuple[int, np.ndarray, int]]] = {}
    coords = np.array([b[1:] for b in boxes], dtype=np.int64).reshape(-1, 4) - 1   # 1-based -> 0-based
    if size != BOX_FRAME_SIZE:
        coords = scale_boxes(coords, BOX_FRAME_SIZE, size)
    for (number, *_), box in zip(boxes, coords):
        frame = number - 1
        if frame in seen:
            continue   # one box per annotated frame; a repeat would duplicate a region
        seen.add(frame)
        seg = next((k for k, (lo, hi) in enumerate(seg0) if lo <= frame < hi), None)
        if seg is None:
            outside += 1
            key, end = -1, frames      # all stray boxes of the video: one extra track
        else:
            key, end = seg, seg0[seg][1]
        if key not in track_of_segment:
            track_of_segment[key] = len(track_of_segment)
        per_track.setdefault(track_of_segment[key], []).append((frame, box, end))
    for track, items in per_track.items():
        items.sort(key=lambda t: t[0])
        for k, (frame, box, end) in enumerate(items):
            stop = min(frame + max(1, hold), end, frames)
            if k + 1 < len(items):
                stop = min(stop, items[k + 1][0])
            for f in range(frame, max(stop, frame + 1)):
                rows.append([track, f, *box.tolist()])
    return np.asarray(rows, dtype=np.int64).reshape(-1, 6), outside


def _read_lists(train_path: Path, test_path: Path) -> list[tuple[str, PurePosixPath, Path, int]]:
    """``(split, entry, list file, line)`` of every listed video, in list order.

    Raises:
        DatasetError: a video listed twice (in one list or in both).
    """
    listed: list[tuple[str, PurePosixPath, Path, int]] = []
    split_of: dict[str, tuple[str, Path, int]] = {}
    for split, path in (("train", train_path), ("test", test_path)):
        for line, entry in _read_list(path):
            stem = entry.stem
            if stem in split_of:
                other = split_of[stem]
                raise DatasetError(f"video '{entry.name}' is listed twice (also {other[1].name}:{other[2]})",
                                   path=path, line=line)
            split_of[stem] = (split, path, line)
            listed.append((split, entry, path, line))
    return listed


def _read_box_files(ctx: PrepareContext, listed: list[tuple[str, PurePosixPath, Path, int]]
                    ) -> dict[str, list[tuple[int, int, int, int, int]]]:
    """The Liu & Ma test boxes per video stem (empty without ``Test_annotation.pkl``).

    Both files' counts go to the report; the train boxes are read to check the file
    and never returned (training ground truth must stay unreachable).
    """
    report, index = ctx.report, ctx.index
    box_path = index.find_file(["Test_annotation.pkl"], "Liu & Ma test boxes", required=False)
    boxes: dict[str, list[tuple[int, int, int, int, int]]] = {}
    if box_path is not None:
        boxes = _load_boxes(box_path)
        report.expect("Liu & Ma test videos with boxes", LIU_MA_TEST[0], len(boxes), "Liu & Ma 2019")
        report.expect("Liu & Ma test boxes", LIU_MA_TEST[1], sum(len(v) for v in boxes.values()), "Liu & Ma 2019")
        report.counts["Liu & Ma test boxes"] = sum(len(v) for v in boxes.values())
    else:
        report.note(f"no Test_annotation.pkl: test videos get frame labels only, no regions. {LIU_MA_ORIGIN}")
    train_box_path = index.find_file(["Train_annotation.pkl"], "Liu & Ma train boxes", required=False)
    if train_box_path is not None:
        # Counted to validate the file; never written (training GT must stay unreachable).
        train_boxes = _load_boxes(train_box_path)
        report.expect("Liu & Ma train videos with boxes", LIU_MA_TRAIN[0], len(train_boxes), "Liu & Ma 2019")
        report.expect("Liu & Ma train boxes", LIU_MA_TRAIN[1], sum(len(v) for v in train_boxes.values()),
                      "Liu & Ma 2019")
        stray = sorted(set(train_boxes) - {e.stem for s, e, _, _ in listed if s == "train"})
        report.problem_list("Liu & Ma train boxes for videos not in the train list", stray)
    return boxes


def _resolve_videos(ctx: PrepareContext, listed: list[tuple[str, PurePosixPath, Path, int]]) -> dict[str, Path]:
    """``stem -> file`` of the listed videos found under the source; the others go to the report."""
    resolved: dict[str, Path] = {}
    missing: list[str] = []
    for _, entry, _, _ in listed:
        found, why = _resolve_video(ctx, entry)
        if found is None:
            missing.append(f"{entry} ({why})")
        else:
            resolved[entry.stem] = found
    ctx.report.problem_list("listed videos not found under the source", missing)
    return resolved


def plan(ctx: PrepareContext) -> list[PlannedVideo]:
    """Read the official UCF-Crime files under ``ctx.source`` and plan the folder."""
    report, index = ctx.report, ctx.index
    hold = int(ctx.options.get("hold", 1))
    if hold < 1:
        raise DatasetError(f"option hold must be >= 1, found {hold}")
    train_path = index.find_file(["Anomaly_Train.txt"], "UCF-Crime train list", origin=SPLITS_ORIGIN)
    test_path = index.find_file(["Anomaly_Test.txt"], "UCF-Crime test list", origin=SPLITS_ORIGIN)
    temporal_path = index.find_file(TEMPORAL_NAMES, "UCF-Crime temporal annotation", origin=TEMPORAL_ORIGIN)
    temporal = _read_temporal(temporal_path)

    listed = _read_lists(train_path, test_path)

    test_stems = {e.stem for s, e, _, _ in listed if s == "test"}
    not_annotated = sorted(test_stems - set(temporal))
    not_listed = sorted(set(temporal) - test_stems)
    report.problem_list(f"test videos without a line in {temporal_path.name}", not_annotated)
    report.problem_list(f"videos in {temporal_path.name} that are not in {test_path.name}", not_listed)
    report.expect("temporal annotation lines", OFFICIAL["test"][0], len(temporal), "Sultani et al. 2018")

    boxes = _read_box_files(ctx, listed)

    resolved = _resolve_videos(ctx, listed)
    infos = ctx.probe_many(list(resolved.values()))

    plans: list[PlannedVideo] = []
    clamped_videos: list[str] = []
    outside_total = 0
    fixed: list[str] = []
    box_label_conflicts: list[str] = []
    for split, entry, list_path, line in listed:
        stem = entry.stem
        source = resolved.get(stem)
        if source is None or source not in infos:
            continue
        info = infos[source]
        normal = stem.startswith("Normal_Videos") or "normal" in entry.parent.name.lower()
        label = 0 if normal else 1
        cls = "Normal" if normal else entry.parent.name
        planned = PlannedVideo(stem=stem, source=source, link_name=str(entry), split=split, label=label,
                               cls=cls, info=info, fps=info.fps or FPS)
        if split == "test":
            if stem not in temporal:
                continue   # already a problem above
            category, segments, t_line = temporal[stem]
            if bool(segments) != bool(label):
                report.problem(f"{temporal_path.name}:{t_line}: '{stem}' is listed as "
                               f"{'anomalous' if label else 'normal'} but has {len(segments)} segment(s)")
                continue
            if label and category != entry.parent.name:
                report.note(f"{stem}: category '{category}' in {temporal_path.name} but folder "
                            f"'{entry.parent.name}' in {list_path.name}")
            # 1-based inclusive [s, e] -> 0-based half-open [s-1, e).
            planned.frame_labels, clamped = labels_from_segments(info.frames, [(s - 1, e) for s, e in segments])
            if clamped:
                clamped_videos.append(f"{stem} ({info.frames} frames)")
            if stem in boxes:
                if not label:
                    box_label_conflicts.append(stem)
                    continue
                regions, outside = _regions(boxes[stem], segments, info.frames, (info.width, info.height), hold)
                outside_total += outside
                regions, fixes = clean_regions(regions, info.frames, info.width, info.height)
                if fixes.past_end or fixes.clipped or fixes.duplicates:
                    fixed.append(f"{stem} ({fixes.past_end} past the end, {fixes.clipped} clipped)")
                planned.regions = regions
        plans.append(planned)
    report.problem_list("Liu & Ma boxes on videos listed as normal", box_label_conflicts)
    report.note_list("anomaly segments clamped to the video's real last frame", clamped_videos)
    report.note_list("videos whose boxes were clipped to the frame or fell past its end", fixed)
    if outside_total:
        report.note(f"{outside_total} Liu & Ma boxes lie outside every temporal segment (each video's such "
                    f"boxes form one extra track)")
    if hold > 1:
        report.note(f"each Liu & Ma box is held for up to {hold} frames (option hold={hold})")
    check_splits(report, plans, OFFICIAL, REFERENCE)
    summarize(report, plans)
    return plans


__all__ = ["FPS", "NAME", "OFFICIAL", "OPTIONS", "TITLE", "plan"]
