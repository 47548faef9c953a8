"""ShanghaiTech Campus, weakly-supervised split (Zhong et al. 2019) -> the generic folder.

Official files read:

* ``SH_Train.txt`` / ``SH_Test.txt`` (RTFM's ``list/``): one video id per line, 238 / 199
  ids. 4-digit ids (``01_0014``) are videos of the original test set and contain
  anomalies; 3-digit ids (``01_001``) are original training videos, all normal.
* ``testing/test_frame_mask/<id>.npy``: uint8 per-frame labels, 0-based, length = the
  video's frame count (107 files, 40,791 frames).
* ``testing/test_pixel_mask/<id>.npy`` (optional): ``(T, 480, 856)`` pixel masks.
* AED tracks ``<id>.txt`` (optional, Georgescu et al. TPAMI 2021):
  ``track_id,frame_idx,x_min,y_min,x_max,y_max``, 0-based frames, inclusive pixels of
  the 856x480 frames, not always sorted (sorted here).

Videos: ``training/videos/<id>.avi`` files and ``testing/frames/<id>/`` folders,
found anywhere under the source by name; when both a file and a frame folder exist,
option ``prefer`` picks (``video`` by default).

Test ground truth: frame labels = the frame mask (which must have the video's real
length); regions (option ``regions``): ``auto`` uses the AED tracks when present, else
connected components of the pixel masks linked into tracks, else none.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from patchvad.data.adapters.common import (
    MediaInfo,
    PlannedVideo,
    PrepareContext,
    check_splits,
    choice,
    clean_regions,
    list_frame_files,
    masks_to_regions,
    parse_int,
    read_lines,
    scale_boxes,
    summarize,
)
from patchvad.errors import DatasetError, PatchvadError
from patchvad.io.files import load_npy
from patchvad.io.video import VIDEO_EXTENSIONS

NAME = "shanghaitech"
TITLE = "ShanghaiTech (weakly-supervised split)"
FRAMES_FPS = 24.0    # assumed for frame folders, which carry no rate
FRAME_SIZE = (856, 480)
OFFICIAL = {"train": (238, 63), "test": (199, 44)}
REFERENCE = "Zhong et al. 2019 split (RTFM lists)"
MASKS = (107, 40791, 17326)         # frame-mask files, frames, anomalous frames
AED_TRACKS = (107, 158, 18937)      # files, tracks, boxes
_ID = re.compile(r"^\d{2}_\d{3,4}$")


OPTIONS = {"regions": choice("auto", "tracks", "pixel", "none"), "prefer": choice("video", "frames")}
LISTS_ORIGIN = ("It is the weakly supervised split of Zhong et al. (CVPR 2019) as RTFM publishes it: "
                "github.com/tianyu0207/RTFM, list/{name}")
AED_ORIGIN = ("AED track files <id>.txt come from Georgescu et al. (TPAMI 2021): github.com/lilygeorgescu/AED, "
              "folder annotations/ShanghaiTech/; put that folder anywhere under the source (a symlinked folder "
              "works too)")


def _read_ids(path: Path) -> list[str]:
    ids = []
    for line, text in read_lines(path):
        if not _ID.match(text):
            raise DatasetError(f"expected a video id like 01_0014, found '{text}'", path=path, line=line)
        ids.append(text)
    return ids


def _by_parent(ctx: PrepareContext, folder_name: str, suffix: str) -> dict[str, Path]:
    """``id -> file`` for ``<folder_name>/<id><suffix>`` files anywhere under the source."""
    out: dict[str, Path] = {}
    for folder in ctx.index.dirs(folder_name):
        for path in sorted(folder.glob(f"*{suffix}")):
            if _ID.match(path.stem) and path.stem not in out:
                out[path.stem] = path
    return out


def read_aed_tracks(path: Path) -> np.ndarray:
    """An AED track file -> ``(R, 6)`` int64 rows sorted by (track, frame)."""
    rows = []
    for line, text in read_lines(path):
        fields = [f.strip() for f in text.split(",")]
        if len(fields) != 6:
            raise DatasetError(f"expected track_id,frame_idx,x_min,y_min,x_max,y_max, found {len(fields)} "
                               f"fields", path=path, line=line)
        rows.append([parse_int(f, "value", path, line) for f in fields])
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 6)
    # Two upstream files are out of order (01_0134, 03_0059): sort before use.
    return arr[np.lexsort((arr[:, 1], arr[:, 0]))] if len(arr) else arr


def _find_video(ctx: PrepareContext, vid: str, prefer: str) -> tuple[Path | None, str]:
    files = [p for ext in VIDEO_EXTENSIONS for p in ctx.index.files(vid + ext)]
    folders = [d for d in ctx.index.dirs(vid) if list_frame_files(d)]
    ordered = (files, folders) if prefer == "video" else (folders, files)
    for group in ordered:
        if len(group) == 1:
            return group[0], ""
        if len(group) > 1:
            return None, "ambiguous: " + ", ".join(str(p) for p in group[:4])
    return None, "no video file or frame folder"


def _read_frame_masks(ctx: PrepareContext, frame_masks: dict[str, Path]) -> dict[str, np.ndarray]:
    """``id -> (frames,)`` uint8 frame labels of the mask files; their counts go to the report.

    Raises:
        DatasetError: a mask file that is unreadable or not a 1-D 0/1 array.
    """
    report = ctx.report
    mask_arrays: dict[str, np.ndarray] = {}
    for vid, path in frame_masks.items():
        try:
            arr = load_npy(path)
        except PatchvadError as exc:
            raise DatasetError(exc.message, path=path) from exc
        if arr.ndim != 1 or arr.dtype.kind not in "biuf" or (arr.size and not np.isin(arr, (0, 1)).all()):
            raise DatasetError(f"frame mask must be a 1-D 0/1 array, found shape {arr.shape}", path=path)
        mask_arrays[vid] = arr.astype(np.uint8)
    if frame_masks:
        report.expect("frame-mask files (original test videos)", MASKS[0], len(frame_masks), "ShanghaiTech")
        report.expect("frames in the frame masks", MASKS[1], sum(len(a) for a in mask_arrays.values()),
                      "ShanghaiTech test set")
        report.expect("anomalous frames in the frame masks", MASKS[2],
                      sum(int(a.sum()) for a in mask_arrays.values()), "ShanghaiTech test set")
    else:
        report.problem("no test_frame_mask/ folder with <id>.npy files under the source: these are the frame "
                       "labels of the 107 original test videos; they ship with the ShanghaiTech Campus download "
                       "in testing/test_frame_mask/ (RTFM publishes a copy in github.com/tianyu0207/RTFM, "
                       "list/test_frame_mask/). Put that folder anywhere under the source")
    return mask_arrays


def _find_track_files(ctx: PrepareContext, regions_mode: str, train_ids: list[str],
                      test_ids: list[str]) -> dict[str, Path]:
    """``id -> AED track file`` of the listed videos (none with ``regions_mode`` pixel or none).

    The counts of every track file in their folders go to the report.
    """
    report, index = ctx.report, ctx.index
    track_files: dict[str, Path] = {}
    if regions_mode in ("auto", "tracks"):
        for vid in sorted(set(train_ids) | set(test_ids)):
            found = [p for p in index.files(vid + ".txt")]
            if found:
                track_files[vid] = found[0]
        if track_files:
            folders = {p.parent for p in track_files.values()}
            all_files = [p for f in folders for p in f.glob("*.txt") if _ID.match(p.stem)]
            tracks = [read_aed_tracks(p) for p in all_files]
            report.expect("AED track files", AED_TRACKS[0], len(all_files), "Georgescu et al. 2021")
            report.expect("AED tracks", AED_TRACKS[1], sum(len(np.unique(t[:, 0])) for t in tracks),
                          "Georgescu et al. 2021")
            report.expect("AED track boxes", AED_TRACKS[2], sum(len(t) for t in tracks), "Georgescu et al. 2021")
        elif regions_mode == "tracks":
            report.problem(f"option regions=tracks but no AED <id>.txt track files were found. {AED_ORIGIN}")
        else:
            report.note(f"no AED track files: regions come from the pixel masks where present. {AED_ORIGIN}")
    return track_files


def plan(ctx: PrepareContext) -> list[PlannedVideo]:
    """Read the weak-split lists, masks and tracks under ``ctx.source`` and plan the folder."""
    report, index = ctx.report, ctx.index
    regions_mode = ctx.options.get("regions", "auto")
    prefer = ctx.options.get("prefer", "video")
    train_ids = _read_ids(index.find_file(["SH_Train.txt"], "ShanghaiTech weak-split train list",
                                          origin=LISTS_ORIGIN.format(name="SH_Train.txt")))
    test_ids = _read_ids(index.find_file(["SH_Test.txt"], "ShanghaiTech weak-split test list",
                                         origin=LISTS_ORIGIN.format(name="SH_Test.txt")))
    overlap = sorted(set(train_ids) & set(test_ids))
    report.problem_list("ids in both SH_Train.txt and SH_Test.txt", overlap)
    for name, ids in (("SH_Train.txt", train_ids), ("SH_Test.txt", test_ids)):
        dups = sorted({i for i in ids if ids.count(i) > 1})
        report.problem_list(f"ids listed twice in {name}", dups)

    frame_masks = _by_parent(ctx, "test_frame_mask", ".npy")
    pixel_masks = _by_parent(ctx, "test_pixel_mask", ".npy")
    mask_arrays = _read_frame_masks(ctx, frame_masks)
    track_files = _find_track_files(ctx, regions_mode, train_ids, test_ids)

    # An id listed twice (reported above) is planned once, where it is first listed.
    listed: list[tuple[str, str]] = []
    for split, ids in (("train", train_ids), ("test", test_ids)):
        listed += [(split, v) for v in ids if all(v != w for _, w in listed)]
    sources: dict[str, Path] = {}
    missing: list[str] = []
    for _, vid in listed:
        video_path, why = _find_video(ctx, vid, prefer)
        if video_path is None:
            missing.append(f"{vid} ({why})")
        else:
            sources[vid] = video_path
    report.problem_list("listed videos not found under the source", missing)
    infos = ctx.probe_many(list(sources.values()))

    plans: list[PlannedVideo] = []
    no_box_frames: list[str] = []
    box_on_normal: list[str] = []
    fixed: list[str] = []
    length_problems: list[str] = []
    no_regions: list[str] = []
    for split, vid in listed:
        source = sources.get(vid)
        if source is None or source not in infos:
            continue
        info = infos[source]
        label = 1 if len(vid.split("_")[1]) == 4 else 0
        fps = info.fps or FRAMES_FPS
        link = f"{'testing/frames' if source.is_dir() else 'training/videos'}/{vid}"
        link += "" if source.is_dir() else source.suffix
        planned = PlannedVideo(stem=vid, source=source, link_name=link, split=split, label=label,
                               cls="abnormal" if label else "normal", info=info, fps=fps)
        mask = mask_arrays.get(vid)
        if label and mask is not None and not mask.any():
            report.note(f"{vid}: 4-digit (original test) id whose frame mask has no anomalous frame")
        if split == "test":
            if label == 0:
                # Original training videos: all normal (RTFM does the same).
                planned.frame_labels = np.zeros(info.frames, dtype=np.uint8)
            elif mask is None:
                report.problem(f"{vid}: anomalous test video without test_frame_mask/{vid}.npy")
                continue
            elif len(mask) != info.frames:
                length_problems.append(f"{vid} (mask {len(mask)}, video {info.frames})")
                continue
            else:
                planned.frame_labels = mask
                planned.regions = _regions(ctx, vid, info, mask, regions_mode, track_files, pixel_masks,
                                           no_box_frames, box_on_normal, fixed)
                if planned.regions is None or not len(planned.regions):
                    no_regions.append(vid)
        plans.append(planned)
    report.problem_list("frame masks whose length is not the video's frame count", length_problems)
    report.note_list("videos with mask-positive frames that have no box (frames)", no_box_frames)
    report.note_list("videos with boxes on mask-negative frames", box_on_normal)
    report.note_list("videos whose boxes were clipped to the frame or fell past its end", fixed)
    if regions_mode != "none":
        report.note_list("anomalous test videos without regions (frame labels only)", no_regions)
    check_splits(report, plans, OFFICIAL, REFERENCE)
    summarize(report, plans)
    for split in ("train", "test"):
        report.counts[f"{split} frames with frame masks"] = int(sum(
            len(mask_arrays[p.stem]) for p in plans if p.split == split and p.stem in mask_arrays))
    return plans


def _regions(ctx: PrepareContext, vid: str, info: MediaInfo, mask: np.ndarray, mode: str, track_files: dict[str, Path],
             pixel_masks: dict[str, Path], no_box_frames: list[str], box_on_normal: list[str],
             fixed: list[str]) -> np.ndarray | None:
    """Regions of one anomalous test video, from AED tracks or pixel masks."""
    size = (info.width, info.height)
    if mode in ("auto", "tracks") and vid in track_files:
        regions = read_aed_tracks(track_files[vid])
        if size != FRAME_SIZE:
            regions[:, 2:6] = scale_boxes(regions[:, 2:6], FRAME_SIZE, size)
    elif mode in ("auto", "pixel") and vid in pixel_masks:
        try:
            pixels = load_npy(pixel_masks[vid], mmap=True)
        except PatchvadError as exc:
            ctx.report.problem(str(exc))
            return None
        if pixels.ndim != 3 or pixels.shape[0] != info.frames or pixels.shape[1:] != (info.height, info.width):
            ctx.report.problem(f"{pixel_masks[vid]}: pixel mask shape {pixels.shape}, expected "
                               f"({info.frames}, {info.height}, {info.width})")
            return None
        regions = masks_to_regions((f, np.asarray(pixels[f])) for f in np.flatnonzero(mask))
    else:
        return None
    regions, fixes = clean_regions(regions, info.frames, info.width, info.height)
    if fixes.past_end or fixes.clipped or fixes.duplicates:
        fixed.append(f"{vid} ({fixes.past_end} past the end, {fixes.clipped} clipped, "
                     f"{fixes.duplicates} duplicates)")
    boxed = np.zeros(info.frames, dtype=bool)
    boxed[regions[:, 1]] = True
    uncovered = int((mask.astype(bool) & ~boxed).sum())
    if uncovered:
        no_box_frames.append(f"{vid} ({uncovered})")
    if (boxed & ~mask.astype(bool)).any():
        box_on_normal.append(vid)
    return regions


__all__ = ["NAME", "OFFICIAL", "OPTIONS", "TITLE", "plan", "read_aed_tracks"]
