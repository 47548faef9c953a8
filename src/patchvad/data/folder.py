"""The generic dataset folder (docs/data-format.md, "The generic dataset folder").

    ROOT/manifest.csv              video,split,label,class[,frames,fps,width,height]
    ROOT/tracks/<stem>.csv         track_id,frame_id,x_min,y_min,x_max,y_max
    ROOT/frame_labels/<stem>.npy   uint8 (F,), 1 = anomalous frame

Training code gets a :class:`TrainSet`: video entries and video-level labels, and no
way to reach tracks or frame labels (it holds no root-level ground-truth accessor at
all). Evaluation gets a :class:`TestSet`, whose :meth:`TestSet.ground_truth` refuses
training videos. The optional manifest columns ``frames,fps,width,height`` let an
adapter record what it already knows (frame folders, huge datasets) so the reader
need not decode; when absent they are probed from the video.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from patchvad.errors import DatasetError, PatchvadError, UnsafeFileError, VideoError
from patchvad.io.files import atomic_save_npy, atomic_write_text, load_npy, resolve_inside, text_lines
from patchvad.io.video import VideoInfo, probe

MANIFEST = "manifest.csv"
REQUIRED_COLUMNS = ("video", "split", "label")
OPTIONAL_COLUMNS = ("class", "frames", "fps", "width", "height")
TRACK_COLUMNS = ("track_id", "frame_id", "x_min", "y_min", "x_max", "y_max")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class VideoEntry:
    """One manifest row.

    Attributes:
        video: path relative to the dataset root, as written in the manifest.
        path: that path resolved inside the root.
        split: ``"train"`` or ``"test"``.
        label: 0 normal, 1 anomalous (video level).
        cls: free-text class ("" when absent).
        stem: file stem, unique in the dataset; names tracks, labels, features.
        frames, fps, width, height: known video facts, or None to probe.
        line: 1-based manifest line (for error messages).
    """

    video: str
    path: Path
    split: str
    label: int
    cls: str = ""
    stem: str = ""
    frames: int | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    line: int = 0

    def info(self) -> VideoInfo:
        """Frame count, fps and size: from the manifest when given, else probed."""
        if self.frames is not None and self.width is not None and self.height is not None:
            return VideoInfo(str(self.path), int(self.frames), float(self.fps or 25.0),
                             int(self.width), int(self.height), "")
        return probe(self.path)


@dataclass(frozen=True)
class GroundTruth:
    """Ground truth of one test video.

    Attributes:
        frame_labels: ``(F,)`` uint8, 1 = anomalous frame.
        regions: ``(R, 6)`` int64 rows ``track_id, frame_id, x_min, y_min, x_max, y_max``
            (inclusive pixel boxes in the video's own resolution), sorted by frame.
        width, height: frame size the boxes refer to.
    """

    frame_labels: np.ndarray
    regions: np.ndarray
    width: int
    height: int

    @property
    def frame_count(self) -> int:
        """``F``, frames of the video."""
        return int(self.frame_labels.shape[0])

    def boxes_of_frame(self, frame_id: int) -> np.ndarray:
        """``(n, 4)`` xyxy boxes of one frame."""
        return self.regions[self.regions[:, 1] == frame_id, 2:6]


INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1


def _parse_int(value: str, what: str, path: Path, line: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        try:
            as_float = float(str(value).strip())
        except ValueError:
            raise DatasetError(f"{what} '{value}' is not an integer", path=path, line=line) from None
        if not as_float.is_integer():
            raise DatasetError(f"{what} '{value}' is not an integer", path=path, line=line) from None
        number = int(as_float)
    if not INT64_MIN <= number <= INT64_MAX:
        raise DatasetError(f"{what} '{value}' is out of range (64-bit integers)", path=path, line=line)
    return number


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]], int]:
    """Header, ``(line, row)`` of each non-blank data row, and the header's line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError("file not found", path=path) from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not UTF-8 text ({exc.reason})", path=path) from None
    except OSError as exc:
        raise DatasetError(f"cannot read ({exc.strerror})", path=path) from None
    # Number rows by the physical line they start on (a quoted field may span lines).
    reader = csv.reader(io.StringIO("\n".join(text_lines(text))))
    numbered: list[tuple[int, list[str]]] = []
    try:
        while True:
            first_line = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            if any(c.strip() for c in row):
                numbered.append((first_line, row))
    except csv.Error as exc:
        raise DatasetError(f"malformed CSV ({exc})", path=path, line=reader.line_num or None) from None
    if not numbered:
        raise DatasetError("empty file: expected a header line", path=path)
    header = [c.strip() for c in numbered[0][1]]
    return header, numbered[1:], numbered[0][0]


def read_manifest(root: str | Path, check_files: bool = True) -> list[VideoEntry]:
    """Read and validate ``ROOT/manifest.csv``.

    Raises:
        DatasetError: unknown or missing columns, bad split/label, duplicate stems,
            missing video files; each names the manifest and line.
        UnsafeFileError: a video path that is absolute or leaves ROOT.
    """
    root = Path(root)
    path = root / MANIFEST
    if not root.is_dir():
        raise DatasetError("dataset root is not a folder", path=root)
    header, rows, head = _read_csv(path)
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        raise DatasetError(f"unknown column(s) {unknown}; allowed: "
                           f"{list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}", path=path, line=head)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DatasetError(f"missing column(s) {missing}", path=path, line=head)
    if len(set(header)) != len(header):
        raise DatasetError("duplicate column names in header", path=path, line=head)
    col = {name: i for i, name in enumerate(header)}
    entries: list[VideoEntry] = []
    stems: dict[str, int] = {}
    for line, row in rows:
        if len(row) != len(header):
            raise DatasetError(f"expected {len(header)} fields, found {len(row)}", path=path, line=line)

        def get(name: str) -> str:
            return row[col[name]].strip() if name in col else ""

        video = get("video")
        resolved = resolve_inside(root, video, source=path, line=line)
        split = get("split")
        if split not in SPLITS:
            raise DatasetError(f"split must be 'train' or 'test', found '{split}'", path=path, line=line)
        label_text = get("label")
        if label_text not in ("0", "1"):
            raise DatasetError(f"label must be 0 or 1, found '{label_text}'", path=path, line=line)
        stem = Path(video).stem
        if stem in stems:
            raise DatasetError(f"video stem '{stem}' also on line {stems[stem]}: stems name tracks, "
                               f"labels and features and must be unique", path=path, line=line)
        stems[stem] = line
        if check_files and not _exists(resolved):
            raise DatasetError(f"video '{video}' not found", path=path, line=line)
        facts = _row_facts(get, path, line)
        entries.append(VideoEntry(video=video, path=resolved, split=split, label=int(label_text),
                                  cls=get("class"), stem=stem, line=line, **facts))
    if not entries:
        raise DatasetError("manifest lists no videos", path=path)
    return entries


def _row_facts(get: Callable[[str], str], path: Path, line: int) -> dict[str, Any]:
    """A manifest row's optional ``frames``, ``width``, ``height`` and ``fps`` (None where empty).

    Raises:
        DatasetError: a count that is not a positive integer below 2**31, or an fps that
            is not a positive number.
    """
    facts: dict[str, Any] = {}
    for name in ("frames", "width", "height"):
        text = get(name)
        facts[name] = None if text == "" else _parse_int(text, name, path, line)
        if facts[name] is not None and not 1 <= facts[name] < 2 ** 31:
            raise DatasetError(f"{name} must be a positive count below 2**31, found {text}", path=path,
                               line=line)
    fps_text = get("fps")
    try:
        facts["fps"] = None if fps_text == "" else float(fps_text)
    except ValueError:
        raise DatasetError(f"fps '{fps_text}' is not a number", path=path, line=line) from None
    if facts["fps"] is not None and not (math.isfinite(facts["fps"]) and facts["fps"] > 0):
        raise DatasetError(f"fps must be a positive number, found {fps_text}", path=path, line=line)
    return facts


def _exists(path: Path) -> bool:
    """``path.exists()`` that says False for names the file system cannot even look up."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class TrainSet:
    """Training videos and their video-level labels; nothing else.

    This type is all that training code receives. It has no reference to the dataset
    root's ``tracks/`` or ``frame_labels/``, so box and frame ground truth of training
    videos is out of its reach by construction.
    """

    entries: tuple[VideoEntry, ...]

    def __post_init__(self) -> None:
        bad = [e.video for e in self.entries if e.split != "train"]
        if bad:
            raise DatasetError(f"TrainSet given non-training videos: {bad[:3]}")

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[VideoEntry]:
        return iter(self.entries)

    @property
    def labels(self) -> np.ndarray:
        """``(N,)`` int64 video labels."""
        return np.array([e.label for e in self.entries], dtype=np.int64)


@dataclass(frozen=True)
class TestSet:
    """Test videos with access to their ground truth."""

    root: Path
    entries: tuple[VideoEntry, ...]
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[VideoEntry]:
        return iter(self.entries)

    def ground_truth(self, entry: VideoEntry) -> GroundTruth:
        """Frame labels and track regions of one test video, validated.

        Raises:
            DatasetError: ``entry`` is not a test video; frame labels of the wrong
                length or with values other than 0/1; an anomalous video without
                tracks or frame labels; track boxes outside the frame; frame ids past
                the end. Each error names the offending file (and line).
        """
        if entry.split != "test":
            raise DatasetError("ground truth is only available for test videos", path=entry.video)
        if entry.stem in self._cache:
            return self._cache[entry.stem]
        try:
            info = entry.info()
        except VideoError as exc:
            raise DatasetError(f"cannot read video facts: {exc}", path=entry.path) from exc
        gt = load_ground_truth(self.root, entry.stem, entry.label, info.frame_count, info.width, info.height)
        self._cache[entry.stem] = gt
        return gt


def load_ground_truth(root: Path, stem: str, label: int, frame_count: int, width: int,
                      height: int) -> GroundTruth:
    """Read and validate ``tracks/<stem>.csv`` and ``frame_labels/<stem>.npy``."""
    root = Path(root)
    tracks_path = root / "tracks" / f"{stem}.csv"
    labels_path = root / "frame_labels" / f"{stem}.npy"
    regions = read_tracks(tracks_path, frame_count, width, height) if tracks_path.exists() \
        else np.zeros((0, 6), dtype=np.int64)
    if labels_path.exists():
        try:
            labels = load_npy(labels_path)
        except PatchvadError as exc:
            raise DatasetError(exc.message, path=labels_path) from exc
        if labels.dtype.kind not in "biuf":
            raise DatasetError(f"frame labels must be a numeric 0/1 array, found dtype {labels.dtype}",
                               path=labels_path)
        if labels.ndim != 1:
            raise DatasetError(f"frame labels must be 1-D, found shape {labels.shape}", path=labels_path)
        if labels.shape[0] != frame_count:
            raise DatasetError(f"{labels.shape[0]} frame labels for a video of {frame_count} frames",
                               path=labels_path)
        if labels.size and not np.isin(labels, (0, 1)).all():
            bad = np.unique(labels[~np.isin(labels, (0, 1))])[:5]
            raise DatasetError(f"frame labels must be 0 or 1, found {bad.tolist()}", path=labels_path)
        frame_labels = labels.astype(np.uint8)
    else:
        frame_labels = np.zeros(frame_count, dtype=np.uint8)
        if regions.size:
            frame_labels[np.unique(regions[:, 1])] = 1
    if label == 1 and not tracks_path.exists() and not labels_path.exists():
        raise DatasetError(f"video '{stem}' is labelled anomalous but has neither "
                           f"tracks/{stem}.csv nor frame_labels/{stem}.npy", path=root / MANIFEST)
    if label == 0 and frame_labels.any():
        raise DatasetError(f"video '{stem}' is labelled normal but has anomalous frames",
                           path=labels_path if labels_path.exists() else tracks_path)
    return GroundTruth(frame_labels=frame_labels, regions=regions, width=width, height=height)


def read_oracle_labels(directory: str | Path, videos: Sequence[VideoEntry]) -> dict[str, GroundTruth]:
    """Ground truth of *training* videos from an oracle label folder, for a supervised oracle.

    Weakly supervised training never calls this: a dataset root holds no training
    boxes, and the oracle folder (``patchvad synth ROOT --oracle-labels DIR``) lies
    outside it. The folder uses the test split's layout (``tracks/<stem>.csv`` for
    anomalous videos, ``frame_labels/<stem>.npy`` for every video) and is read with
    the same validation as a test video's ground truth.

    Args:
        directory: the oracle label folder.
        videos: the training videos wanted (e.g. a :class:`TrainSet`); their labels,
            frame counts and sizes check the files.

    Returns:
        ``{stem: GroundTruth}`` in the order of ``videos``.

    Raises:
        DatasetError: the folder is missing; a video has no frame labels there (every
            training video gets them, normal ones too, so a missing file means the
            folder belongs to another dataset); or a file fails the ground-truth checks.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError("oracle label folder not found; write one with patchvad synth ROOT "
                           "--oracle-labels DIR", path=directory)
    out: dict[str, GroundTruth] = {}
    for entry in videos:
        labels_path = directory / "frame_labels" / f"{entry.stem}.npy"
        if not labels_path.is_file():
            raise DatasetError(f"no oracle labels for video '{entry.stem}' (frame_labels/{entry.stem}.npy is "
                               "missing): is this the oracle folder of this dataset?", path=directory)
        try:
            info = entry.info()
        except VideoError as exc:
            raise DatasetError(f"cannot read video facts: {exc}", path=entry.path) from exc
        out[entry.stem] = load_ground_truth(directory, entry.stem, entry.label, info.frame_count, info.width,
                                            info.height)
    return out


def read_tracks(path: Path, frame_count: int | None = None, width: int | None = None,
                height: int | None = None) -> np.ndarray:
    """Read a track CSV into ``(R, 6)`` int64 rows sorted by (frame, track).

    Raises:
        DatasetError: header, non-integers, inverted boxes, boxes outside the frame,
            frame ids past the end, duplicate (track, frame) rows; names file and line.
    """
    header, rows, head = _read_csv(path)
    if tuple(header) != TRACK_COLUMNS:
        raise DatasetError(f"header must be {','.join(TRACK_COLUMNS)}, found {','.join(header)}",
                           path=path, line=head)
    out = np.zeros((len(rows), 6), dtype=np.int64)
    seen: dict[tuple[int, int], int] = {}
    for k, (line, row) in enumerate(rows):
        if len(row) != 6:
            raise DatasetError(f"expected 6 fields, found {len(row)}", path=path, line=line)
        vals = [_parse_int(v, name, path, line) for v, name in zip(row, TRACK_COLUMNS)]
        track_id, frame_id, x1, y1, x2, y2 = vals
        if frame_id < 0 or (frame_count is not None and frame_id >= frame_count):
            raise DatasetError(f"frame_id {frame_id} outside the video's {frame_count} frames "
                               f"(0-based)", path=path, line=line)
        if x2 < x1 or y2 < y1:
            raise DatasetError(f"box ({x1},{y1},{x2},{y2}) has x_max < x_min or y_max < y_min",
                               path=path, line=line)
        if x1 < 0 or y1 < 0 or (width is not None and x2 >= width) or (height is not None and y2 >= height):
            raise DatasetError(f"box ({x1},{y1},{x2},{y2}) lies outside the {width}x{height} frame",
                               path=path, line=line)
        key = (track_id, frame_id)
        if key in seen:
            raise DatasetError(f"track {track_id} has two rows for frame {frame_id} "
                               f"(also line {seen[key]})", path=path, line=line)
        seen[key] = line
        out[k] = vals
    order = np.lexsort((out[:, 0], out[:, 1]))
    return out[order]


class DatasetFolder:
    """A dataset in the generic layout. Splits it into a TrainSet and a TestSet."""

    def __init__(self, root: str | Path, check_files: bool = True):
        self.root = Path(root)
        self.entries: tuple[VideoEntry, ...] = tuple(read_manifest(self.root, check_files=check_files))

    def train_set(self) -> TrainSet:
        """The training videos, in manifest order."""
        return TrainSet(tuple(e for e in self.entries if e.split == "train"))

    def test_set(self) -> TestSet:
        """The test videos, in manifest order, with their ground truth."""
        return TestSet(self.root, tuple(e for e in self.entries if e.split == "test"))

    def entry(self, stem: str) -> VideoEntry:
        """The manifest row of video ``stem``.

        Raises:
            DatasetError: no video has that stem.
        """
        for e in self.entries:
            if e.stem == stem:
                return e
        raise DatasetError(f"no video with stem '{stem}'", path=self.root / MANIFEST)


# --- writing -------------------------------------------------------------------------


def write_manifest(root: str | Path, rows: Sequence[dict]) -> Path:
    """Write ``ROOT/manifest.csv`` atomically from dicts with the manifest's columns.

    Only the optional columns that some row sets are written.
    """
    root = Path(root)
    cols = list(REQUIRED_COLUMNS) + ["class"]
    for name in OPTIONAL_COLUMNS[1:]:
        if any(r.get(name) not in (None, "") for r in rows):
            cols.append(name)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for r in rows:
        for name in REQUIRED_COLUMNS:
            if name not in r:
                raise DatasetError(f"manifest row lacks '{name}': {r}")
        writer.writerow(["" if r.get(c) is None else r.get(c) for c in cols])
    target = root / MANIFEST
    atomic_write_text(target, buf.getvalue())
    return target


def write_tracks(root: str | Path, stem: str, regions: np.ndarray | Sequence[Sequence[int]]) -> Path:
    """Write ``ROOT/tracks/<stem>.csv`` from ``(R, 6)`` rows (track, frame, x1, y1, x2, y2)."""
    arr = np.asarray(regions, dtype=np.int64).reshape(-1, 6)
    buf = io.StringIO()
    buf.write(",".join(TRACK_COLUMNS) + "\n")
    for row in arr:
        buf.write(",".join(str(int(v)) for v in row) + "\n")
    target = Path(root) / "tracks" / f"{stem}.csv"
    atomic_write_text(target, buf.getvalue())
    return target


def write_frame_labels(root: str | Path, stem: str, labels: np.ndarray) -> Path:
    """Write ``ROOT/frame_labels/<stem>.npy`` (uint8 0/1)."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or (arr.size and not np.isin(arr, (0, 1)).all()):
        raise DatasetError(f"frame labels must be a 1-D array of 0/1 (stem '{stem}')")
    target = Path(root) / "frame_labels" / f"{stem}.npy"
    atomic_save_npy(target, arr.astype(np.uint8))
    return target


__all__ = [
    "DatasetFolder", "GroundTruth", "TestSet", "TrainSet", "VideoEntry", "load_ground_truth",
    "read_manifest", "read_oracle_labels", "read_tracks", "write_frame_labels", "write_manifest", "write_tracks",
    "UnsafeFileError",
]
