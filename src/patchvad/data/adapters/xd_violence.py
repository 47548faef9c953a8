"""XD-Violence (Wu et al., ECCV 2020) -> the generic folder (frame level only, no boxes).

Official files read:

* ``annotations.txt``: ``<video> s1 e1 [s2 e2 ...]`` for the 500 violent test videos.
  The authors' ``make_gt.py`` applies ``gt[s:e] = 1``: **0-based, end exclusive**. 14
  names carry a ``.mp4`` suffix; it is stripped before matching.
* ``rgb_test.list`` (optional, the authors' feature list): the official 800 test videos
  in order (5 crops each), from github.com/Roc-Ng/XDVioDet. When absent, a video is a
  test video when a folder on its path below the source has "test" in its name; a
  problem (with where to get the list) is reported when that does not give 800.
* The videos (``*.mp4``) anywhere under the source; every video that is not a test
  video is a training video (3,954 officially).

Labels follow the naming rule: ``label_A`` is normal; any other label (``B1`` fighting,
``B2`` shooting, ``B4`` riot, ``B5`` abuse, ``B6`` car accident, ``G`` explosion, several
joined by ``-``) is violent. Frame labels cover every real frame; the authors' script
also drops the last frame and the remainder modulo 16 to fit 16-frame I3D clips, which
belongs to feature extraction, not to ground truth, and is not done here.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from patchvad.data.adapters.common import (
    PlannedVideo,
    PrepareContext,
    check_splits,
    labels_from_segments,
    parse_int,
    read_lines,
    summarize,
)
from patchvad.errors import DatasetError
from patchvad.io.video import VIDEO_EXTENSIONS

NAME = "xd_violence"
TITLE = "XD-Violence"
FPS = 24.0
OFFICIAL = {"train": (3954, None), "test": (800, 500)}
REFERENCE = "Wu et al. 2020"
ANNOTATED = (500, 1238)            # violent test videos, segments
TEST_LIST_LINES = 4000             # 800 videos x 5 crops
OPTIONS: dict = {}
ANNOTATIONS_ORIGIN = ("It is the test annotation of Wu et al. (ECCV 2020), read by the authors' list/make_gt.py "
                      "(github.com/Roc-Ng/XDVioDet); github.com/nwpu-zxr/VadCLIP publishes it as "
                      "list/annotations.txt")
TEST_LIST_ORIGIN = ("rgb_test.list is the authors' list of the 800 official test videos (4,000 lines, 5 crops "
                    "each), published with their features in github.com/Roc-Ng/XDVioDet as list/rgb_test.list")
CODES = {"A": "normal", "B1": "fighting", "B2": "shooting", "B4": "riot", "B5": "abuse", "B6": "car accident",
         "G": "explosion"}
_LABEL_RE = re.compile(r"_label_([A-Za-z0-9-]+)$")
_CROP_RE = re.compile(r"__\d+\.npy$")


def label_codes(name: str) -> list[str]:
    """The label codes of a video name (``..._label_B1-B2-0`` -> ``['B1', 'B2']``)."""
    match = _LABEL_RE.search(name)
    if not match:
        return []
    return [c for c in match.group(1).split("-") if c and c != "0"]


def is_normal(name: str) -> bool:
    """The dataset's naming rule: ``label_A`` marks a non-violent video."""
    return label_codes(name) == ["A"]


def read_annotations(path: Path) -> dict[str, tuple[list[tuple[int, int]], int]]:
    """``annotations.txt`` -> ``name -> ([(start, stop) 0-based half-open], line)``."""
    out: dict[str, tuple[list[tuple[int, int]], int]] = {}
    for line, text in read_lines(path):
        fields = text.split()
        name = fields[0][:-4] if fields[0].lower().endswith(".mp4") else fields[0]
        numbers = [parse_int(v, "frame number", path, line) for v in fields[1:]]
        if not numbers or len(numbers) % 2:
            raise DatasetError(f"expected '<video> s1 e1 [s2 e2 ...]', found {len(numbers)} numbers",
                               path=path, line=line)
        segments = list(zip(numbers[0::2], numbers[1::2]))
        for s, e in segments:
            if s < 0 or e <= s:
                raise DatasetError(f"segment [{s}, {e}) is empty or negative", path=path, line=line)
        if name in out:
            raise DatasetError(f"video '{name}' annotated twice (also line {out[name][1]})", path=path, line=line)
        out[name] = (segments, line)
    return out


def read_test_list(path: Path) -> list[str]:
    """``rgb_test.list`` -> the unique video names in the authors' order."""
    names: dict[str, None] = {}
    lines = read_lines(path)
    for line, text in lines:
        base = PurePosixPath(text.replace("\\", "/")).name
        if not _CROP_RE.search(base):
            raise DatasetError(f"expected '<path>/<video>__<k>.npy', found '{text}'", path=path, line=line)
        names.setdefault(_CROP_RE.sub("", base), None)
    return list(names)


def plan(ctx: PrepareContext) -> list[PlannedVideo]:
    """Read annotations.txt, the test list and the videos under ``ctx.source``; plan the folder."""
    report, index = ctx.report, ctx.index
    ann_path = index.find_file(["annotations.txt"], "XD-Violence annotations", origin=ANNOTATIONS_ORIGIN)
    annotations = read_annotations(ann_path)
    report.expect("annotated (violent) test videos", ANNOTATED[0], len(annotations), REFERENCE)
    report.expect("annotated segments", ANNOTATED[1], sum(len(s) for s, _ in annotations.values()), REFERENCE)
    labelled_normal = sorted(n for n in annotations if is_normal(n))
    report.problem_list(f"{ann_path.name} annotates label_A (normal) videos", labelled_normal)

    videos: dict[str, list[Path]] = {}
    for path in index.all_files(lambda p: p.suffix.lower() in VIDEO_EXTENSIONS):
        videos.setdefault(path.stem, []).append(path)
    ambiguous = sorted(f"{k} ({len(v)} files)" for k, v in videos.items() if len(v) > 1)
    report.problem_list("video names found more than once under the source", ambiguous)

    list_path = index.find_file(["rgb_test.list"], "XD-Violence test list", required=False)
    if list_path is not None:
        test_names = read_test_list(list_path)
        report.expect(f"lines of {list_path.name}", TEST_LIST_LINES, len(read_lines(list_path)), REFERENCE)
    else:
        test_names = sorted(k for k, v in videos.items()
                            if any("test" in part.lower() for part in v[0].relative_to(ctx.source).parent.parts))
        report.note("no rgb_test.list: test videos are those under a folder whose name contains 'test'")
        if len(test_names) != OFFICIAL["test"][0]:
            report.problem(f"rgb_test.list not found under the source, and the videos under a folder whose name "
                           f"contains 'test' (used instead) are {len(test_names)}, not the official "
                           f"{OFFICIAL['test'][0]}. {TEST_LIST_ORIGIN}. Put it anywhere under the source (e.g. "
                           f"{ctx.source / 'list' / 'rgb_test.list'}; a symlink works) and run prepare again")
    test_set = set(test_names)
    not_listed = sorted(set(annotations) - test_set)
    report.problem_list("annotated videos that are not test videos", not_listed)
    unannotated = sorted(n for n in test_names if not is_normal(n) and n not in annotations)
    report.problem_list(f"violent test videos without a line in {ann_path.name}", unannotated)
    unlabelled = sorted(n for n in set(videos) | test_set if not label_codes(n))
    report.problem_list("video names without a '_label_<codes>' part", unlabelled)

    missing = sorted(n for n in test_names if n not in videos)
    report.problem_list("test videos not found under the source", missing)
    order = [("test", n) for n in test_names if n in videos] + \
            [("train", n) for n in sorted(videos) if n not in test_set]
    chosen = {n: videos[n][0] for _, n in order if len(videos[n]) == 1}
    infos = ctx.probe_many(list(chosen.values()))

    plans: list[PlannedVideo] = []
    clamped: list[str] = []
    for split, name in order:
        source = chosen.get(name)
        if source is None or source not in infos or not label_codes(name):
            continue
        info = infos[source]
        label = 0 if is_normal(name) else 1
        cls = "+".join(CODES.get(c, c) for c in label_codes(name))
        planned = PlannedVideo(stem=name, source=source, link_name=f"{split}/{source.name}", split=split,
                               label=label, cls=cls, info=info, fps=info.fps or FPS)
        if split == "test":
            if label and name not in annotations:
                continue   # reported above
            segments = annotations[name][0] if label else []
            planned.frame_labels, n_clamped = labels_from_segments(info.frames, segments)
            if n_clamped:
                clamped.append(f"{name} ({info.frames} frames)")
        plans.append(planned)
    report.note_list("segments clamped to the video's real frame count", clamped)
    check_splits(report, plans, OFFICIAL, REFERENCE)
    summarize(report, plans)
    return plans


__all__ = ["CODES", "NAME", "OFFICIAL", "OPTIONS", "TITLE", "is_normal", "label_codes", "plan",
           "read_annotations", "read_test_list"]
