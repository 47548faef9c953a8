"""UBnormal (Acsintoae et al., CVPR 2022) -> the generic folder.

Official files read (layout of the dataset download and of the authors' scripts):

* ``{abnormal,normal}_{training,validation,test}_video_names.txt``: the split, one video
  name per line (train 268 / validation 64 / test 211).
* ``Scene<S>/<video>.mp4``: the videos.
* ``Scene<S>/<video>_annotations/<video>_tracks.txt``: rows ``object_id,start,end``,
  0-based frames, **end inclusive**; ``<video>_new_tracks.txt`` (same format, some
  videos): the authors' corrected tracks for the region/track-level ground truth.
* ``<video>_annotations/**/<video>_<NNNN>_gt.png``: per-frame object-id maps (pixel
  value = object id, 0 = background).

Ground truth of abnormal test videos, as the authors' scripts derive it:

* frame labels: ``[start, end]`` of every row of ``_tracks.txt``, as
  ``write_frame_level_ground_truth.py`` does (it never reads ``_new_tracks.txt``);
* regions: from ``_new_tracks.txt`` where it exists, else ``_tracks.txt``, as
  ``create_tracks_for_tbdc_rbdc.py`` (the RBDC/TBDC tracks) does; one region per track
  row and frame: the box of the largest connected component of ``map == object_id``
  (their ``get_bbox``), here as inclusive pixels. A frame inside a track's range where
  the object is not visible gets no box; regions on frames that ``_tracks.txt`` leaves
  normal are kept and noted.

The generic folder has train and test splits only. Option ``validation``: ``skip``
(default; the validation videos are left out), ``train`` or ``test``.
``object_names_per_video.pkl`` is not read: the ground truth does not need it, and its
``numpy.str_`` keys would need numpy globals in the unpickler.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from patchvad.data.adapters.common import (
    MediaInfo,
    PlannedVideo,
    PrepareContext,
    check_int64,
    check_splits,
    choice,
    clean_regions,
    image_errors,
    labels_from_segments,
    mask_boxes,
    read_lines,
    summarize,
)
from patchvad.errors import DatasetError
from patchvad.io.video import VIDEO_EXTENSIONS

NAME = "ubnormal"
TITLE = "UBnormal"
OFFICIAL_LISTS = {("training", "abnormal"): 82, ("training", "normal"): 186,
                  ("validation", "abnormal"): 38, ("validation", "normal"): 26,
                  ("test", "abnormal"): 158, ("test", "normal"): 53}
REFERENCE = "UBnormal split files"
OPTIONS = {"validation": choice("skip", "train", "test")}
LISTS_ORIGIN = ("The six split lists are in the authors' repository (Acsintoae et al., CVPR 2022): "
                "github.com/lilygeorgescu/UBnormal, folder scripts/")
_GT_RE = re.compile(r"_(\d+)_gt\.png$")


def read_tracks_txt(path: Path) -> list[tuple[int, int, int]]:
    """``<video>_tracks.txt`` -> ``[(object_id, start, end_inclusive)]`` in file order."""
    rows = []
    for line, text in read_lines(path):
        fields = [f.strip() for f in text.split(",")]
        if len(fields) != 3:
            raise DatasetError(f"expected object_id,start,end, found {len(fields)} fields", path=path, line=line)
        # The authors read these with np.loadtxt, so '3.0' is a valid integer here.
        values = []
        for f in fields:
            try:
                number = float(f)
            except ValueError:
                raise DatasetError(f"'{f}' is not a number", path=path, line=line) from None
            if not number.is_integer():
                raise DatasetError(f"'{f}' is not an integer", path=path, line=line)
            values.append(check_int64(int(number), "value", path, line))
        obj, start, end = values
        if start < 0 or end < start:
            raise DatasetError(f"track range [{start}, {end}] is not a 0-based inclusive range",
                               path=path, line=line)
        rows.append((obj, start, end))
    return rows


def _gt_maps(folder: Path, video: str) -> dict[int, Path]:
    """``frame -> <video>_<NNNN>_gt.png`` anywhere under the annotation folder."""
    out: dict[int, Path] = {}
    for path in sorted(folder.rglob(f"{video}_*_gt.png")):
        match = _GT_RE.search(path.name)
        if match and path.name == f"{video}_{match.group(1)}_gt.png":
            out.setdefault(int(match.group(1)), path)
    return out


def _read_map(path: Path) -> np.ndarray:
    from PIL import Image

    image: Image.Image
    try:
        with Image.open(path) as image:
            # Grey maps are read as stored; anything else is converted to grey like the
            # authors' cv2.imread(path, 0).
            if image.mode not in ("L", "I", "I;16"):
                image = image.convert("L")
            return np.asarray(image)
    except image_errors() as exc:
        raise DatasetError(f"cannot read object-id map ({type(exc).__name__}: {exc})", path=path) from exc


def _largest_box(mask: np.ndarray) -> np.ndarray | None:
    boxes = mask_boxes(mask)
    if not len(boxes):
        return None
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    return boxes[int(np.argmax(areas))]


def _read_lists(ctx: PrepareContext) -> list[tuple[str, str, int]]:
    """``(official split, video, label)`` of every listed video, each once; counts and problems to the report."""
    report, index = ctx.report, ctx.index
    listed: list[tuple[str, str, int]] = []     # (official split, video, label)
    seen: dict[str, str] = {}
    for (official, kind), expected in OFFICIAL_LISTS.items():
        path = index.find_file([f"{kind}_{official}_video_names.txt"], f"UBnormal {kind} {official} list",
                               origin=LISTS_ORIGIN)
        names = [text for _, text in read_lines(path)]
        report.expect(f"{kind} {official} videos listed", expected, len(names), REFERENCE)
        for name in names:
            if not name.startswith(f"{kind}_scene_"):
                report.problem(f"{path.name}: '{name}' does not start with '{kind}_scene_'")
            if name in seen:
                report.problem(f"'{name}' is listed in both {seen[name]} and {path.name}")
                continue
            seen[name] = path.name
            listed.append((official, name, 1 if kind == "abnormal" else 0))
    return listed


def plan(ctx: PrepareContext) -> list[PlannedVideo]:
    """Read the UBnormal split files, videos and test annotations; plan the folder."""
    report, index = ctx.report, ctx.index
    validation = ctx.options.get("validation", "skip")
    split_map = {"training": "train", "test": "test", "validation": None if validation == "skip" else validation}
    listed = _read_lists(ctx)
    if validation == "skip":
        report.note(f"{sum(1 for o, _, _ in listed if o == 'validation')} validation videos left out "
                    f"(option validation=skip)")

    wanted = [(split_map[o], name, label) for o, name, label in listed if split_map[o] is not None]
    sources: dict[str, Path] = {}
    missing = []
    for _, name, _ in wanted:
        found = [p for ext in VIDEO_EXTENSIONS for p in index.files(name + ext)]
        if len(found) == 1:
            sources[name] = found[0]
        else:
            missing.append(f"{name} ({'not found' if not found else 'ambiguous'})")
    report.problem_list("listed videos not found under the source", missing)
    infos = ctx.probe_many(list(sources.values()))

    plans: list[PlannedVideo] = []
    clamped: list[str] = []
    invisible: list[str] = []
    fixed: list[str] = []
    corrected: list[str] = []
    outside: list[str] = []
    no_annotations: list[str] = []
    for split, name, label in wanted:
        assert split is not None                    # wanted keeps the official splits that map to one
        source = sources.get(name)
        if source is None or source not in infos:
            continue
        info = infos[source]
        scene = source.parent.name if source.parent.name.startswith("Scene") else f"Scene{name.split('_')[2]}"
        planned = PlannedVideo(stem=name, source=source, link_name=f"{scene}/{source.name}", split=split,
                               label=label, cls=scene, info=info, fps=info.fps)
        if split == "test":
            if label == 0:
                planned.frame_labels = np.zeros(info.frames, dtype=np.uint8)
            else:
                if len(ctx.index.dirs(f"{name}_annotations")) == 0:
                    no_annotations.append(name)
                    continue
                gt = _ground_truth(ctx, name, info, clamped, invisible, fixed, corrected, outside)
                if gt is None:
                    continue
                planned.frame_labels, planned.regions = gt
        plans.append(planned)
    report.problem_list("abnormal test videos without a <video>_annotations folder (the ground truth ships "
                        "with the dataset download)", no_annotations)
    report.note_list("tracks clamped to the video's real frame count", clamped)
    report.note_list("track frames where the object is not visible in its map (frame label kept, no box)",
                     invisible)
    report.note_list("videos whose boxes were clipped or deduplicated", fixed)
    report.note_list("videos whose regions come from <video>_new_tracks.txt (the authors' corrected tracks for "
                     "RBDC/TBDC; frame labels still from <video>_tracks.txt)", corrected)
    report.note_list("videos with regions on frames that <video>_tracks.txt leaves normal (frames)", outside)
    # Official videos per generic split, given where the validation videos go.
    per_split = {"train": [0, 0], "test": [0, 0]}
    for official in ("training", "validation", "test"):
        target = split_map[official]
        if target is not None:
            per_split[target][0] += OFFICIAL_LISTS[(official, "abnormal")] + OFFICIAL_LISTS[(official, "normal")]
            per_split[target][1] += OFFICIAL_LISTS[(official, "abnormal")]
    check_splits(report, plans, {k: (v[0], v[1]) for k, v in per_split.items()}, REFERENCE)
    summarize(report, plans)
    return plans


def _track_boxes(ctx: PrepareContext, tracks: list[tuple[int, int, int]], maps: dict[int, Path],
                 info: MediaInfo) -> tuple[list[list[int]], int, list[int]] | None:
    """Each track frame's box: the largest box of its object in the frame's object-id map.

    Returns:
        ``(rows, hidden, missing_maps)``: rows ``track_id, frame_id, x_min, y_min, x_max,
        y_max``, the count of frames where the object is not visible and the frames without
        a map; None, with a problem in the report, when a map has another size than the video.
    """
    report = ctx.report
    rows: list[list[int]] = []
    hidden = 0
    missing_maps: list[int] = []
    cache: dict[int, np.ndarray] = {}
    # The authors renumber tracks 0.. after sorting rows by object id (stable).
    for new_id, (obj, start, end) in enumerate(sorted(tracks, key=lambda t: t[0])):
        for frame in range(start, min(end, info.frames - 1) + 1):
            if frame not in maps:
                missing_maps.append(frame)
                continue
            if frame not in cache:
                cache[frame] = _read_map(maps[frame])
                if cache[frame].shape != (info.height, info.width):
                    report.problem(f"{maps[frame]}: map of {cache[frame].shape[1]}x{cache[frame].shape[0]} "
                                   f"for a {info.width}x{info.height} video")
                    return None
            box = _largest_box(cache[frame] == obj)
            if box is None:
                hidden += 1
                continue
            rows.append([new_id, frame, *box.tolist()])
    return rows, hidden, missing_maps


def _ground_truth(ctx: PrepareContext, name: str, info: MediaInfo, clamped: list[str], invisible: list[str],
                  fixed: list[str], corrected: list[str],
                  outside: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Frame labels (``_tracks.txt``) and regions (``_new_tracks.txt`` if any) of one abnormal test video.

    Returns None, with a problem in the report, when the ground truth is missing.
    """
    report = ctx.report
    folders = ctx.index.dirs(f"{name}_annotations")
    if len(folders) != 1:
        report.problem(f"{name}: several '{name}_annotations' folders: " + ", ".join(str(f) for f in folders[:3]))
        return None
    folder = folders[0]
    tracks_path = folder / f"{name}_tracks.txt"
    if not tracks_path.is_file():
        report.problem(f"{name}: no {name}_tracks.txt in {folder} (the frame-level ground truth; it ships with "
                       f"the UBnormal download in Scene<S>/{name}_annotations/: unpack that folder again)")
        return None
    tracks = read_tracks_txt(tracks_path)
    if not tracks:
        report.problem(f"{tracks_path}: abnormal test video with an empty tracks file")
        return None
    # [start, end] inclusive -> [start, end + 1) half-open.
    labels, n_clamped = labels_from_segments(info.frames, [(s, e + 1) for _, s, e in tracks])
    if n_clamped:
        clamped.append(f"{name} ({info.frames} frames)")
    new_path = folder / f"{name}_new_tracks.txt"
    if new_path.is_file():
        tracks = read_tracks_txt(new_path)
        if not tracks:
            report.problem(f"{new_path}: abnormal test video with an empty tracks file")
            return None
        corrected.append(name)
    maps = _gt_maps(folder, name)
    boxed = _track_boxes(ctx, tracks, maps, info)
    if boxed is None:
        return None
    rows, hidden, missing_maps = boxed
    if missing_maps:
        report.problem(f"{name}: {len(missing_maps)} track frame(s) without a {name}_<NNNN>_gt.png map "
                       f"(first: frame {missing_maps[0]})")
        return None
    if hidden:
        invisible.append(f"{name} ({hidden})")
    regions, fixes = clean_regions(np.asarray(rows, dtype=np.int64).reshape(-1, 6), info.frames,
                                   info.width, info.height)
    if fixes.clipped or fixes.duplicates:
        fixed.append(name)
    unlabelled = int((labels[np.unique(regions[:, 1])] == 0).sum())
    if unlabelled:
        outside.append(f"{name} ({unlabelled})")
    return labels, regions


__all__ = ["NAME", "OFFICIAL_LISTS", "OPTIONS", "TITLE", "plan", "read_tracks_txt"]
