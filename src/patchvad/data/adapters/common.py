"""Shared machinery of the public-dataset adapters (docs/datasets.md).

An adapter reads one dataset's *official* files (split lists, annotation files, videos
or frame folders) and returns a plan: one :class:`PlannedVideo` per video with its
split, label, real frame count and, for test videos, the ground truth derived from the
annotations and that frame count. :func:`write_dataset` turns a plan into the generic
dataset folder of ``patchvad.data.folder``.

How videos are referenced (the folder reader refuses absolute paths, ``..`` and
symlinks that leave the dataset root, and that rule stays):

1. **In place.** When ``--out`` is a folder *above* ``--source``, the manifest points
   at the source files themselves (paths relative to ROOT, inside ROOT). Nothing is
   linked or copied.
2. **Hard links (default otherwise).** Each video file (or each image of a frame
   folder) is hard-linked under ``ROOT/videos/``. A hard link is a second name of the
   same file, inside ROOT, so the reader needs no exception and no disk space is used.
   It needs ROOT on the same filesystem as the source; when the link is refused the
   error says so and suggests ``--copy``.
3. **Copies** (``copy_videos=True``): the files are copied under ``ROOT/videos/``.

Frame folders can also be transcoded to mp4 (``frames_as="mp4"``) for pipelines that
read video files only; that is lossy (H.264) and therefore never the default.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, Self, overload

import numpy as np
from scipy import ndimage

from patchvad.data.folder import MANIFEST, write_frame_labels, write_manifest, write_tracks
from patchvad.errors import DatasetError, PatchvadError
from patchvad.geometry import link_frame_boxes
from patchvad.io.files import atomic_write_json, text_lines
from patchvad.io.video import (  # noqa: F401 - re-exported: the adapters import these from here
    IMAGE_EXTENSIONS,
    image_errors,
    is_hidden,
    list_frame_files,
    natural_key,
    probe,
)

REPORT_NAME = "prepare_report.json"
# Written instead of the dataset when a strict run refuses: the full report.
FAILED_NAME = "prepare_failed.json"
# Folders the writer owns inside ROOT; never indexed as source material.
OUTPUT_DIRS = ("videos", "tracks", "frame_labels")
# macOS zip leftovers and VCS folders carry copies/resource forks of real files
# (``__MACOSX/._Abuse001_x264.mp4``); indexing them would create false duplicates.
_SKIP_DIRS = frozenset({"__MACOSX", ".git", ".svn", ".hg"})


# --- frame counting -------------------------------------------------------------


@dataclass(frozen=True)
class MediaInfo:
    """What the frame-count probe learned about one video file or frame folder.

    Attributes:
        frames: number of frames (decoded frames of a video; image files of a folder).
        width, height: frame size in pixels.
        fps: frame rate, or None when the source does not carry one (frame folders).
    """

    frames: int
    width: int
    height: int
    fps: float | None = None


class FrameCounter(Protocol):
    """The injectable probe: ``counter(path) -> MediaInfo`` for a video file or frame folder.

    The default is :func:`default_frame_counter`. Tests inject a stand-in that returns
    the real frame counts of videos that are not on disk (UCF-Crime videos have up to
    ~100k frames; writing them would make tests pointless and slow).
    """

    def __call__(self, path: Path) -> MediaInfo:
        """Frame count, fps and size of the video file or frame folder ``path``."""
        ...


def default_frame_counter(path: Path) -> MediaInfo:
    """Count frames: decode-free packet count for video files, image count for folders.

    Raises:
        DatasetError: an empty frame folder, an unreadable first image, or a video that
            cannot be probed (the message names the file).
    """
    path = Path(path)
    if path.is_dir():
        frames = list_frame_files(path)
        if not frames:
            raise DatasetError("frame folder holds no image files", path=path)
        from PIL import Image

        try:
            with Image.open(frames[0]) as image:  # reads the header only
                width, height = image.size
        except image_errors() as exc:
            raise DatasetError(f"cannot read image size ({exc})", path=frames[0]) from exc
        return MediaInfo(len(frames), int(width), int(height), None)
    try:
        info = probe(path)
    except PatchvadError as exc:
        raise DatasetError(f"cannot probe video: {exc.message}", path=path) from exc
    return MediaInfo(info.frame_count, info.width, info.height, info.fps)


# --- options ------------------------------------------------------------------------


def choice(*allowed: str) -> Callable[[str], str]:
    """Option parser that accepts one of ``allowed``."""
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return text
    return parse


# --- reading small text files ----------------------------------------------------


def read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank, stripped lines with their 1-based numbers.

    Tolerates a BOM, CRLF endings, trailing spaces and a missing final newline (the
    official lists disagree on all four; see shared/data/README.md "Format pitfalls").
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError("file not found", path=path) from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not UTF-8 text ({exc.reason})", path=path) from None
    except OSError as exc:
        raise DatasetError(f"cannot read ({exc.strerror or exc})", path=path) from None
    return [(i + 1, line.strip()) for i, line in enumerate(text_lines(text)) if line.strip()]


INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1


def parse_int(text: str, what: str, path: Path, line: int) -> int:
    """``int(text)``, or a DatasetError naming file, line and field.

    Values outside the 64-bit range are refused too: every parsed number ends up in an
    int64 array, where they would overflow.
    """
    try:
        value = int(text)
    except ValueError:
        raise DatasetError(f"{what} '{text}' is not an integer", path=path, line=line) from None
    return check_int64(value, what, path, line)


def check_int64(value: int, what: str, path: Path, line: int | None = None) -> int:
    """``value`` if it fits an int64, else a DatasetError naming file (and line) and field."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise DatasetError(f"{what} {value} is out of range (64-bit integers)", path=path, line=line)
    return value


# --- the source index --------------------------------------------------------------


class SourceIndex:
    """One walk over the source tree: files and folders by name.

    Image files are not indexed (Street Scene alone has ~200k); frame folders are
    listed on demand. Symlinked folders are followed, so third-party files can sit
    beside a download as a folder of links; they are walked after every real folder,
    under their link's path. A link is not followed when its folder was walked already
    (a loop, or a second name of a folder), when it leads to the source itself or a
    folder above it (a link to ``/`` or ``..``), or into the output folders; each such
    link, and every dangling one, is recorded in :attr:`skipped_links`. Links that
    resolve outside the source are recorded too, so the report can say where the data
    really came from: links to folders and to indexed files one by one in
    :attr:`outside_links`, linked images (there can be thousands) as a count per folder
    in :attr:`outside_images`.

    Attributes:
        source: the folder walked.
        outside_links: ``(link, resolved target)`` of the followed links that leave ``source``.
        outside_images: ``(folder, n)``: ``n`` images of ``folder`` are links that leave ``source``.
        skipped_links: ``(link, target, why)`` of the links not followed.
        unlisted: folders that could not be listed (no permission, vanished).
    """

    def __init__(self, source: Path, exclude: Iterable[Path] = ()):
        self.source = Path(source)
        self.outside_links: list[tuple[Path, Path]] = []
        self.outside_images: list[tuple[Path, int]] = []
        self.skipped_links: list[tuple[Path, Path, str]] = []
        self.unlisted: list[Path] = []
        self._files: dict[str, list[Path]] = {}
        self._dirs: dict[str, list[Path]] = {}
        self._excluded = {Path(p).resolve() for p in exclude}
        self._real_source = self.source.resolve()
        self._visited: set[Path] = {self._real_source}
        pending: list[tuple[Path, Path]] = []
        self._walk(self.source, self._real_source, pending)
        # Links are followed after the real folders, so a folder is indexed under its
        # own path when it has one, and under its link's path only otherwise.
        while pending:
            link, target = pending.pop(0)
            why = self._refusal(target)
            if why:
                self.skipped_links.append((link, target, why))
                continue
            self._visited.add(target)
            self._dirs.setdefault(link.name, []).append(link)
            if not self._inside(target):
                self.outside_links.append((link, target))
            self._walk(link, target, pending)
        for table in (self._files, self._dirs):
            for paths in table.values():
                paths.sort(key=lambda p: (len(p.parts), str(p)))

    def _inside(self, real: Path) -> bool:
        return real == self._real_source or self._real_source in real.parents

    def _refusal(self, target: Path) -> str:
        """Why a symlinked folder is not followed ('' when it is)."""
        if target == self._real_source or target in self._real_source.parents:
            return "a loop (the source or a folder above it)"
        if target in self._visited:
            return "a folder indexed already"
        if any(target == e or e in target.parents for e in self._excluded):
            return "a folder prepare writes"
        return ""

    def _walk(self, top: Path, top_real: Path, pending: list[tuple[Path, Path]]) -> None:
        """Index ``top`` without following links; queue the symlinked folders found."""
        stack = [(top, top_real)]
        while stack:
            here, here_real = stack.pop()
            try:
                with os.scandir(here) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError:
                self.unlisted.append(here)
                continue
            subdirs = []
            images_outside = 0
            for entry in entries:
                name = entry.name
                if is_hidden(name):
                    continue
                path = here / name
                if entry.is_symlink():
                    target = Path(os.path.realpath(path))
                    if target.is_dir():
                        if name not in _SKIP_DIRS:
                            pending.append((path, target))
                    elif not target.exists():
                        self.skipped_links.append((path, target, "nothing there"))
                    elif Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                        images_outside += not self._inside(target)
                    else:
                        self._files.setdefault(name, []).append(path)
                        if not self._inside(target):
                            self.outside_links.append((path, target))
                    continue
                if entry.is_dir(follow_symlinks=False):
                    real = here_real / name
                    if name in _SKIP_DIRS or real in self._excluded or real in self._visited:
                        continue
                    self._visited.add(real)
                    self._dirs.setdefault(name, []).append(path)
                    subdirs.append((path, real))
                elif Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                    self._files.setdefault(name, []).append(path)
            if images_outside:
                self.outside_images.append((here, images_outside))
            stack.extend(reversed(subdirs))

    def under(self, folder: Path) -> SourceIndex:
        """The same index limited to the paths inside ``folder`` (a folder of this index)."""
        folder = Path(folder)
        view = object.__new__(SourceIndex)
        view.__dict__.update(self.__dict__)
        view.source = folder
        view._files = {k: v for k, v in ((k, [p for p in ps if folder in p.parents]) for k, ps in self._files.items())
                       if v}
        view._dirs = {k: v for k, v in ((k, [p for p in ps if folder in p.parents]) for k, ps in self._dirs.items())
                      if v}
        return view

    def files(self, name: str) -> list[Path]:
        """Every file called ``name`` (shallowest first)."""
        return list(self._files.get(name, ()))

    def dirs(self, name: str) -> list[Path]:
        """Every folder called ``name`` (shallowest first)."""
        return list(self._dirs.get(name, ()))

    def all_files(self, predicate: Callable[[Path], bool] | None = None) -> list[Path]:
        """Every indexed file (optionally filtered), sorted by path."""
        out = [p for paths in self._files.values() for p in paths if predicate is None or predicate(p)]
        return sorted(out, key=str)

    def all_dirs(self, predicate: Callable[[Path], bool] | None = None) -> list[Path]:
        """Every indexed folder (optionally filtered), sorted by path."""
        out = [p for paths in self._dirs.values() for p in paths if predicate is None or predicate(p)]
        return sorted(out, key=str)

    @overload
    def find_file(self, names: Sequence[str], what: str, required: Literal[True] = True, origin: str = "") -> Path: ...

    @overload
    def find_file(self, names: Sequence[str], what: str, required: bool, origin: str = "") -> Path | None: ...

    def find_file(self, names: Sequence[str], what: str, required: bool = True, origin: str = "") -> Path | None:
        """The one annotation file called any of ``names`` (tried in order).

        Several copies with identical bytes are fine (the shallowest is used); copies
        that differ are an error, because picking one silently could pick the wrong
        version of a ground-truth file.

        Args:
            names: file names, the preferred first.
            what: the file in words, for messages.
            required: raise when none is found (else return None).
            origin: where the file comes from (paper, repository, download); the
                not-found error quotes it.

        Raises:
            DatasetError: none found (when ``required``), or differing copies.
        """
        for name in names:
            found = self.files(name)
            if not found:
                continue
            first = found[0]
            differing = [p for p in found[1:] if not _same_bytes(first, p)]
            if differing:
                listing = ", ".join(str(p) for p in [first, *differing])
                raise DatasetError(f"{what}: several different files named '{name}' under the source "
                                   f"({listing}); keep one or pass the folder that holds the right one",
                                   path=self.source)
            return first
        if required:
            raise DatasetError(not_found_text(what, names, origin), path=self.source)
        return None


def not_found_text(what: str, names: Sequence[str], origin: str = "") -> str:
    """The message for a missing file: what it is, where it comes from, where to put it."""
    text = f"{what} not found: no file named {' or '.join(names)} under the source folder."
    if origin:
        text += f" {origin}."
    return text + (" Put it anywhere under the source folder (a symlink to it, or a symlinked folder "
                   "holding it, works too) and run prepare again")


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return False


# --- plan and report ---------------------------------------------------------------


@dataclass
class PlannedVideo:
    """One video of the prepared dataset.

    Attributes:
        stem: unique name; names ``tracks/<stem>.csv`` and ``frame_labels/<stem>.npy``.
        source: the video file or frame folder in the source tree.
        link_name: where it goes under ``ROOT/videos/`` when linked or copied (posix,
            relative; its stem must be ``stem``).
        split: ``"train"`` or ``"test"``.
        label: 0 normal, 1 anomalous (video level).
        cls: free-text class.
        info: frame count and size from the probe.
        fps: frame rate to record (the probe's, else the dataset's documented rate).
        frame_labels: ``(frames,)`` uint8, test videos only.
        regions: ``(R, 6)`` int64 ``track_id, frame_id, x_min, y_min, x_max, y_max``
            (inclusive pixels, 0-based frames), test videos only.
    """

    stem: str
    source: Path
    link_name: str
    split: str
    label: int
    cls: str
    info: MediaInfo
    fps: float | None = None
    frame_labels: np.ndarray | None = None
    regions: np.ndarray | None = None

    @property
    def is_folder(self) -> bool:
        """The source is a folder of frame images (not a video file)."""
        return self.source.is_dir()


@dataclass(frozen=True)
class CountCheck:
    """One count compared with its official value."""

    what: str
    expected: int
    found: int
    reference: str = ""

    @property
    def ok(self) -> bool:
        """The count matches."""
        return self.expected == self.found

    def __str__(self) -> str:
        ref = f" ({self.reference})" if self.reference else ""
        return f"{self.what}: expected {self.expected:,}{ref}, found {self.found:,}"


class Listing(str):
    """A report line about many items: ``what (n): a, b, c``, naming every item.

    The string itself is the full line (what ``prepare_report.json`` stores);
    :meth:`short` is the console form, cut to ``limit`` items with a pointer to the
    file that holds them all.
    """

    what: str
    items: tuple[str, ...]
    limit: int

    def __new__(cls, what: str, items: Sequence[object], limit: int = 8) -> Self:
        """The line ``what (n): a, b, c`` of ``items``; :meth:`short` shows at most ``limit`` of them."""
        names = tuple(str(i) for i in items)
        line = super().__new__(cls, f"{what} ({len(names)}): {', '.join(names)}")
        line.what, line.items, line.limit = what, names, limit
        return line

    def short(self, full_at: str | None) -> str:
        """The line with at most ``limit`` items; the rest are counted and ``full_at`` named."""
        if full_at is None or len(self.items) <= self.limit:
            return str(self)
        shown = ", ".join(self.items[:self.limit])
        return (f"{self.what} ({len(self.items)}): {shown} ... and {len(self.items) - self.limit} more "
                f"(all {len(self.items)} in {full_at})")


def console_line(line: str, full_at: str | None) -> str:
    """A report line as the console shows it (a :class:`Listing` abbreviated)."""
    return line.short(full_at) if isinstance(line, Listing) else str(line)


@dataclass
class PrepareReport:
    """What ``prepare`` checked, found and wrote.

    Attributes:
        dataset: the dataset's title (``UCSD Ped2``).
        name: the registry name (``ucsd_ped2``); identifies the dataset an ``--out`` holds.
        checks: counts compared with the official numbers.
        problems: things that make the dataset wrong (missing videos, frame labels
            whose length is not the video's); strict mode refuses to write. A line
            about many items names every one of them (see :class:`Listing`).
        notes: facts worth knowing that are not errors (segments clamped at the end of
            a video, mask frames without boxes, symlinks that lead outside the source);
            never fatal.
        counts: summary numbers (videos per split, frames, boxes, ...).
        written: files written under ROOT (relative paths); empty until written.
        mode: how videos were referenced (``in-place``, ``hardlink``, ``copy``,
            ``transcode``) and how many of each.
    """

    dataset: str
    source: Path
    root: Path
    name: str = ""
    checks: list[CountCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    mode: dict[str, int] = field(default_factory=dict)

    def expect(self, what: str, expected: int, found: int, reference: str = "") -> CountCheck:
        """Record one count check and return it."""
        check = CountCheck(what, int(expected), int(found), reference)
        self.checks.append(check)
        return check

    def problem(self, message: str) -> None:
        """Record something that makes the dataset wrong."""
        self.problems.append(message)

    def note(self, message: str) -> None:
        """Record a fact worth knowing that is not an error."""
        self.notes.append(message)

    def problem_list(self, what: str, items: Sequence[str], limit: int = 8) -> None:
        """One problem line for many items, naming every one (the console shows ``limit``)."""
        if items:
            self.problems.append(Listing(what, items, limit))

    def note_list(self, what: str, items: Sequence[str], limit: int = 8) -> None:
        """One note line for many items, naming every one (the console shows ``limit``)."""
        if items:
            self.notes.append(Listing(what, items, limit))

    @property
    def mismatches(self) -> list[CountCheck]:
        """The count checks that failed."""
        return [c for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        """No count mismatch and no problem."""
        return not self.mismatches and not self.problems

    def failure_text(self, full_at: str | Path | None = None) -> str:
        """Every mismatch, problem and note, one per line (the strict-mode error).

        Args:
            full_at: the file that lists every item of the long lines (they are then
                abbreviated here); None writes every item here.
        """
        where = None if full_at is None else str(full_at)
        lines = [f"{self.dataset}: {len(self.mismatches)} count mismatch(es), {len(self.problems)} "
                 f"problem(s); nothing was written (use --lenient to write anyway and report)"]
        if where is not None:
            lines[0] += f"; the full report is {where}"
        lines += [f"  mismatch: {c}" for c in self.mismatches]
        lines += [f"  problem: {console_line(p, where)}" for p in self.problems]
        lines += [f"  note: {console_line(n, where)}" for n in self.notes]
        return "\n".join(lines)

    def summary(self, full_at: str | Path | None = None) -> str:
        """Human-readable report: counts, checks, problems, notes.

        Args:
            full_at: the file that lists every item of the long lines (they are then
                abbreviated here); None writes every item here.
        """
        where = None if full_at is None else str(full_at)
        lines = [f"{self.dataset}: {self.source} -> {self.root}"]
        if self.counts:
            lines.append("  " + ", ".join(f"{k} {v:,}" for k, v in self.counts.items()))
        if self.mode:
            lines.append("  videos: " + ", ".join(f"{v:,} {k}" for k, v in self.mode.items()))
        for c in self.checks:
            lines.append(f"  [{'ok' if c.ok else 'MISMATCH'}] {c}")
        lines += [f"  PROBLEM: {console_line(p, where)}" for p in self.problems]
        lines += [f"  note: {console_line(n, where)}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (``prepare_report.json``)."""
        return {
            "dataset": self.dataset, "name": self.name, "source": str(self.source), "root": str(self.root),
            "ok": self.ok, "counts": self.counts, "mode": self.mode,
            "checks": [{"what": c.what, "expected": c.expected, "found": c.found,
                        "reference": c.reference, "ok": c.ok} for c in self.checks],
            "problems": [str(p) for p in self.problems], "notes": [str(n) for n in self.notes],
            "written": self.written,
        }


@dataclass
class PrepareContext:
    """Everything an adapter's ``plan`` function gets.

    Attributes:
        source: the dataset as downloaded (read only).
        root: the output dataset root.
        index: the walk of ``source`` (output folders excluded).
        counter: the frame-count probe.
        report: where checks, problems and notes go.
        options: dataset-specific options, already parsed and validated.
        workers: threads for probing.
    """

    source: Path
    root: Path
    index: SourceIndex
    counter: FrameCounter
    report: PrepareReport
    options: dict[str, Any]
    workers: int = 4

    def probe_many(self, paths: Sequence[Path]) -> dict[Path, MediaInfo]:
        """Probe every path (threads; PyAV demuxing releases the GIL).

        Failures become one aggregated problem; the failed paths are absent from the
        result, so the adapter leaves those videos out.
        """
        results: dict[Path, MediaInfo] = {}
        failures: list[str] = []

        def one(path: Path) -> tuple[Path, MediaInfo | str]:
            try:
                info = self.counter(path)
            except PatchvadError as exc:
                return path, str(exc)
            if info.frames < 1 or info.width < 1 or info.height < 1:
                return path, f"{path}: probe returned {info.frames} frames of {info.width}x{info.height}"
            return path, info

        unique = list(dict.fromkeys(paths))
        if self.workers > 1 and len(unique) > 1:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                outcomes = list(pool.map(one, unique))
        else:
            outcomes = [one(p) for p in unique]
        for path, outcome in outcomes:
            if isinstance(outcome, MediaInfo):
                results[path] = outcome
            else:
                failures.append(outcome)
        self.report.problem_list("videos that could not be read", failures, limit=5)
        return results


# --- ground-truth helpers ----------------------------------------------------------


def labels_from_segments(frames: int, segments: Iterable[tuple[int, int]]) -> tuple[np.ndarray, int]:
    """Frame labels from 0-based half-open ``[start, stop)`` segments.

    Segments reaching past the last frame are clamped to it: the real frame count is
    the truth, and the dataset authors' own evaluation clamps the same way
    (UCF-Crime ``GT(max(s,1):min(e,nFrames))``).

    Returns:
        ``(labels (frames,) uint8, number of segments that had to be clamped)``.
    """
    labels = np.zeros(frames, dtype=np.uint8)
    clamped = 0
    for start, stop in segments:
        lo, hi = max(0, int(start)), min(frames, int(stop))
        if lo != start or hi != stop:
            clamped += 1
        if hi > lo:
            labels[lo:hi] = 1
    return labels, clamped


_EIGHT = np.ones((3, 3), dtype=bool)


def mask_boxes(mask: np.ndarray, min_area: int = 1) -> np.ndarray:
    """Boxes of the connected components of a 2-D mask.

    8-connectivity: a diagonal step stays in the same region, so a thin object drawn
    with a one-pixel diagonal edge is one region, not two.

    Returns:
        ``(n, 4)`` int64 inclusive ``x_min, y_min, x_max, y_max``, in label order
        (raster order of each component's first pixel).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    labels, count = ndimage.label(mask > 0, structure=_EIGHT)
    if count == 0:
        return np.zeros((0, 4), dtype=np.int64)
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    boxes = []
    for k, sl in enumerate(ndimage.find_objects(labels)):
        if sl is None or areas[k] < min_area:
            continue
        boxes.append((sl[1].start, sl[0].start, sl[1].stop - 1, sl[0].stop - 1))
    return np.asarray(boxes, dtype=np.int64).reshape(-1, 4)


def masks_to_regions(masks: Iterable[tuple[int | np.integer, np.ndarray]], min_area: int = 1,
                     min_iou: float = 0.0) -> np.ndarray:
    """Pixel masks -> connected-component boxes -> linked tracks (``(R, 6)`` rows)."""
    return link_frame_boxes(((f, mask_boxes(m, min_area)) for f, m in masks), min_iou=min_iou)


def scale_boxes(boxes: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Rescale inclusive xyxy boxes from a ``(W, H)`` frame to another ``(W, H)``.

    Pixel ``x`` covers ``[x, x+1)``; the scaled box covers the scaled interval, so a box
    spanning the whole frame still spans the whole frame.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    out = np.empty_like(boxes)
    out[:, 0] = np.floor(boxes[:, 0] * sx)
    out[:, 1] = np.floor(boxes[:, 1] * sy)
    out[:, 2] = np.ceil((boxes[:, 2] + 1) * sx) - 1
    out[:, 3] = np.ceil((boxes[:, 3] + 1) * sy) - 1
    return out.astype(np.int64)


@dataclass
class RegionFixes:
    """What :func:`clean_regions` had to change in one video (for the report)."""

    clipped: int = 0
    past_end: int = 0
    duplicates: int = 0


def clean_regions(regions: np.ndarray, frames: int, width: int, height: int) -> tuple[np.ndarray, RegionFixes]:
    """Make region rows valid for the folder reader.

    Boxes are clipped to the frame (annotations such as Subway's reach ``x = width``),
    rows on frames past the end are dropped, a repeated (track, frame) keeps its first
    row, and rows are sorted by (frame, track). Every change is counted.
    """
    fixes = RegionFixes()
    r = np.asarray(regions, dtype=np.int64).reshape(-1, 6).copy()
    if not len(r):
        return r, fixes
    keep = (r[:, 1] >= 0) & (r[:, 1] < frames)
    fixes.past_end = int((~keep).sum())
    r = r[keep]
    before = r[:, 2:6].copy()
    r[:, [2, 4]] = np.clip(r[:, [2, 4]], 0, width - 1)
    r[:, [3, 5]] = np.clip(r[:, [3, 5]], 0, height - 1)
    fixes.clipped = int((before != r[:, 2:6]).any(axis=1).sum())
    r = r[(r[:, 4] >= r[:, 2]) & (r[:, 5] >= r[:, 3])]
    _, first = np.unique(r[:, :2], axis=0, return_index=True)
    fixes.duplicates = int(len(r) - len(first))
    r = r[np.sort(first)]
    return r[np.lexsort((r[:, 0], r[:, 1]))], fixes


def check_splits(report: PrepareReport, plans: Sequence[PlannedVideo],
                 expected: Mapping[str, tuple[int, int | None]], reference: str) -> None:
    """Compare videos and anomalous videos per split with the official numbers.

    Args:
        report: where the checks are recorded.
        plans: the planned videos.
        expected: ``split -> (videos, anomalous or None when unknown)``.
        reference: where the official numbers come from (quoted in the report).
    """
    for split, (n_videos, n_anomalous) in expected.items():
        mine = [p for p in plans if p.split == split]
        report.expect(f"{split} videos", n_videos, len(mine), reference)
        if n_anomalous is not None:
            report.expect(f"anomalous {split} videos", n_anomalous, sum(p.label for p in mine), reference)


def summarize(report: PrepareReport, plans: Sequence[PlannedVideo]) -> None:
    """Fill ``report.counts`` with per-split video, anomalous and frame totals."""
    for split in ("train", "test"):
        mine = [p for p in plans if p.split == split]
        report.counts[f"{split} videos"] = len(mine)
        report.counts[f"anomalous {split} videos"] = sum(p.label for p in mine)
        report.counts[f"{split} frames"] = sum(p.info.frames for p in mine)
    test = [p for p in plans if p.split == "test"]
    report.counts["anomalous test frames"] = int(sum(int(p.frame_labels.sum()) for p in test
                                                     if p.frame_labels is not None))
    report.counts["test regions"] = int(sum(len(p.regions) for p in test if p.regions is not None))


# --- writing -----------------------------------------------------------------------


def check_output_root(source: Path, root: Path, name: str = "", title: str = "") -> bool:
    """Validate ``--out`` against ``--source``; return True for the in-place layout.

    An ``--out`` inside the source is allowed (the walk skips the folders prepare
    writes); an ``--out`` above the source is the in-place layout. An ``--out`` holds
    one dataset: re-preparing the dataset its ``prepare_report.json`` names is fine
    (that is how a folder is updated), preparing another one there is refused,
    since its manifest and report would replace the first dataset's.

    Args:
        source: the ``--source`` folder.
        root: the ``--out`` folder.
        name: the registry name of the dataset to prepare (``ucsd_ped2``).
        title: its title, for messages and for reports that predate the name field.

    Raises:
        DatasetError: ``--out`` is the source itself; the source lies in a folder the
            writer owns; ``--out`` holds another prepared dataset or an unreadable
            report; ``--out`` holds a manifest or output folders, or (outside the
            in-place layout) anything at all, that a previous ``prepare`` did not write.
    """
    source_r = source.resolve()
    root_r = root.resolve()
    if root_r == source_r:
        raise DatasetError("--out must not be the source folder itself (prepare would write manifest.csv, "
                           "tracks/ and frame_labels/ among the official files); use a parent folder of the "
                           "source to reference videos in place, or any other folder", path=root)
    _check_same_dataset(source, root, name, title)
    if root_r in source_r.parents:
        first = source_r.relative_to(root_r).parts[0]
        if first in OUTPUT_DIRS:
            raise DatasetError(f"the source lies in '{first}/' of --out, a folder prepare writes into; "
                               f"choose another --out", path=root)
        if not (root / REPORT_NAME).exists():
            foreign = [name for name in (MANIFEST, *OUTPUT_DIRS) if (root / name).exists()]
            if foreign:
                raise DatasetError(f"--out already holds {', '.join(foreign)} that prepare did not write; "
                                   f"refusing to write there", path=root)
        return True
    # An --out inside the source is fine: the walk skips the folders prepare writes.
    if root.exists():
        if not root.is_dir():
            raise DatasetError("--out exists and is not a folder", path=root)
        # A failed strict run leaves only its report; that folder is still prepare's.
        if any(p.name != FAILED_NAME for p in root.iterdir()) and not (root / REPORT_NAME).exists():
            raise DatasetError(f"--out is a non-empty folder without {REPORT_NAME} (not written by prepare); "
                               f"refusing to write into it", path=root)
    return False


def _check_same_dataset(source: Path, root: Path, name: str, title: str) -> None:
    """Refuse an ``--out`` whose ``prepare_report.json`` names another dataset."""
    path = root / REPORT_NAME
    if not path.is_file():
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        why = "" if isinstance(data, dict) else "not a JSON object"
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        why = str(exc)
    if why:
        raise DatasetError(f"cannot read this report of an earlier prepare ({why}); it says which dataset --out "
                           f"holds and which files prepare wrote there. Choose another --out, or delete what "
                           f"prepare wrote here ({MANIFEST}, {', '.join(d + '/' for d in OUTPUT_DIRS)}, "
                           f"{REPORT_NAME}) and run again", path=path)
    held_title, held_name = str(data.get("dataset", "")), str(data.get("name") or "")
    same = held_name == name if held_name else held_title == title
    if not name or same:
        return
    held = f"{held_title} (patchvad prepare {held_name})" if held_name else held_title
    raise DatasetError(f"--out already holds another prepared dataset, {held}; preparing {title} here would "
                       f"replace its manifest and report. A dataset folder holds one dataset: give {title} its "
                       f"own --out, e.g. --out {source.parent / (name + '_prepared')} (videos are hard-linked "
                       f"there), or, to reference the videos in place, a folder above the source that holds no "
                       f"other prepared dataset (docs/datasets.md, 'One dataset per --out')", path=root)


def _previous_written(root: Path) -> list[str]:
    path = root / REPORT_NAME
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [str(p) for p in data.get("written", [])]
    except (OSError, ValueError, AttributeError):
        return []


def write_failure(report: PrepareReport, root: Path) -> Path | None:
    """Write the report of a refused (strict) run to ``ROOT/prepare_failed.json``.

    Nothing of the dataset is written; this file lists every problem in full, which
    the console error abbreviates. Returns its path, or None when it cannot be
    written (the error then lists everything itself).
    """
    path = root / FAILED_NAME
    try:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, report.to_dict())
    except OSError:
        return None
    return path


def _link_or_copy(src: Path, dst: Path, copy: bool) -> None:
    """Hard-link (or copy) one file; an up-to-date destination is left alone."""
    if dst.is_symlink():
        dst.unlink()
    if dst.exists():
        try:
            same = os.path.samefile(src, dst)
            if same and not copy:
                return
            s, d = src.stat(), dst.stat()
            # A copy from an earlier --copy run is kept when size and mtime match; a hard
            # link left by an earlier run is replaced by a real copy.
            if copy and not same and s.st_size == d.st_size and int(s.st_mtime) == int(d.st_mtime):
                return
        except OSError:
            pass
        dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        tmp = dst.with_name(f".{dst.name}.tmp")
        try:
            shutil.copy2(src, tmp)
            os.replace(tmp, dst)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise DatasetError(f"cannot copy {src} ({exc.strerror or exc})", path=dst) from exc
        return
    try:
        os.link(src, dst)
    except OSError as exc:
        raise DatasetError(
            f"cannot hard-link {src} into the dataset root ({exc.strerror or exc}). Videos are referenced "
            f"by hard links, which need the dataset root on the same filesystem as the source and read-write "
            f"access to (or ownership of) the source files. Use --copy to copy them, or choose an --out "
            f"folder that contains the source to reference them in place", path=dst) from exc


def _transcode_folder(src: Path, dst: Path, fps: float, expected: int) -> None:
    """Encode a frame folder as an H.264 mp4 (only when ``frames_as='mp4'``).

    An mp4 newer than every frame and holding the expected frame count is kept, so a
    re-run does not re-encode the whole dataset.
    """
    from PIL import Image

    from patchvad.io.video import write_video

    files = list_frame_files(src)
    if dst.is_file() and files and dst.stat().st_mtime >= max(f.stat().st_mtime for f in files):
        try:
            if probe(dst).frame_count == expected:
                return
        except PatchvadError:
            pass

    def frames() -> Iterable[np.ndarray]:
        for path in files:
            with Image.open(path) as image:
                yield np.asarray(image.convert("RGB"))

    count = write_video(dst, frames(), fps=fps, crf=18)
    if count != expected:
        raise DatasetError(f"transcoded {count} frames but the folder was probed with {expected}", path=src)


def write_dataset(report: PrepareReport, plans: Sequence[PlannedVideo], root: Path, in_place: bool,
                  copy: bool = False, frames_as: str = "folder") -> PrepareReport:
    """Write the generic folder for a plan: videos, GT files, manifest, report.

    The manifest is written last, so a folder with a manifest is a complete one. Files
    that an earlier ``prepare`` wrote into this root and this run does not (a video
    that moved to another split, say) are removed, so no stale ground truth stays
    behind; nothing else in the root is touched.
    """
    if frames_as not in ("folder", "mp4"):
        raise DatasetError(f"frames_as must be 'folder' or 'mp4', found '{frames_as}'")
    root.mkdir(parents=True, exist_ok=True)
    stems: dict[str, str] = {}
    for p in plans:
        if p.stem in stems:
            raise DatasetError(f"two videos would share the stem '{p.stem}': {stems[p.stem]} and {p.source}",
                               path=p.source)
        stems[p.stem] = str(p.source)
    previous = set(_previous_written(root))
    # The manifest marks a complete folder: drop the old one first, so a run that fails
    # half-way leaves no manifest pointing at half-updated ground truth.
    if previous:
        (root / MANIFEST).unlink(missing_ok=True)
    written: list[str] = []
    rows: list[dict[str, Any]] = []
    mode: dict[str, int] = {}
    for p in plans:
        link = Path(p.link_name)
        own_name = link.name if p.is_folder else link.stem
        if link.is_absolute() or ".." in link.parts or own_name != p.stem:
            raise DatasetError(f"internal: link name '{p.link_name}' does not carry the stem '{p.stem}'")
        fps = p.fps if p.fps else (p.info.fps or None)
        dest, kind, width, height = _place_video(p, link, root, fps, in_place, copy, frames_as)
        if Path(dest).stem != p.stem:
            # The reader names tracks/labels by Path(video).stem; a folder name with a dot
            # would silently point the ground truth at another name.
            raise DatasetError(f"internal: manifest path '{dest}' would have the stem '{Path(dest).stem}', "
                               f"not '{p.stem}'")
        mode[kind] = mode.get(kind, 0) + 1
        if not kind == "in place":
            written.append(dest)
        if p.split == "test":
            if p.frame_labels is None:
                raise DatasetError(f"internal: test video '{p.stem}' has no frame labels")
            write_frame_labels(root, p.stem, p.frame_labels)
            written.append(f"frame_labels/{p.stem}.npy")
            if p.regions is not None and len(p.regions):
                write_tracks(root, p.stem, p.regions)
                written.append(f"tracks/{p.stem}.csv")
        rows.append({"video": dest, "split": p.split, "label": p.label, "class": p.cls,
                     "frames": p.info.frames, "fps": None if fps is None else round(float(fps), 6),
                     "width": width, "height": height})
    _remove_stale(root, previous - set(written))
    report.written = written + [MANIFEST, REPORT_NAME]
    report.mode = mode
    atomic_write_json(root / REPORT_NAME, report.to_dict())
    write_manifest(root, rows)
    (root / FAILED_NAME).unlink(missing_ok=True)
    return report


def _place_video(p: PlannedVideo, link: Path, root: Path, fps: float | None, in_place: bool, copy: bool,
                 frames_as: str) -> tuple[str, str, int, int]:
    """Put one planned video into ROOT (see :func:`write_dataset`).

    Returns:
        ``(dest, kind, width, height)``: the manifest path, how it got there
        (``transcoded``, ``in place``, ``copied`` or ``hard-linked``) and the frame size
        of what the manifest points at.
    """
    width, height = p.info.width, p.info.height
    if p.is_folder and frames_as == "mp4":
        dest = "videos/" + str(link.with_name(p.stem + ".mp4").as_posix())
        _transcode_folder(p.source, root / dest, fps or 25.0, p.info.frames)
        # H.264 4:2:0 needs even sizes: the writer pads odd ones at the right/bottom,
        # which leaves every box where it was.
        width, height = width + width % 2, height + height % 2
        kind = "transcoded"
    elif in_place and (inside := _in_place_path(p, root)) is not None:
        dest = inside
        kind = "in place"
    else:
        dest = "videos/" + link.as_posix()
        target = root / dest
        if p.is_folder:
            files = list_frame_files(p.source)
            if len(files) != p.info.frames:
                raise DatasetError(f"frame folder holds {len(files)} images but was probed with "
                                   f"{p.info.frames} frames", path=p.source)
            if target.is_dir():
                wanted = {f.name for f in files}
                for old in target.iterdir():
                    if old.name not in wanted and old.is_file():
                        old.unlink()
            for f in files:
                _link_or_copy(f, target / f.name, copy)
        else:
            _link_or_copy(p.source, target, copy)
        kind = "copied" if copy else "hard-linked"
    return dest, kind, width, height


def _in_place_path(p: PlannedVideo, root: Path) -> str | None:
    """The source's path relative to ROOT, or None when it cannot be referenced in place.

    The path is the resolved one: a video reached through a symlinked folder is
    referenced where it really is. That must be inside ROOT (the reader refuses
    anything else) and its own name must give the planned stem.
    """
    real = p.source.resolve()
    try:
        inside = real.relative_to(root.resolve())
    except ValueError:
        return None
    return inside.as_posix() if Path(real.name).stem == p.stem else None


def _remove_stale(root: Path, stale: Iterable[str]) -> None:
    for rel in sorted(stale):
        rel_path = Path(rel)
        if rel_path.is_absolute() or ".." in rel_path.parts or rel_path.parts[:1] not in [(d,) for d in OUTPUT_DIRS]:
            continue  # only ever delete inside the folders prepare owns
        target = root / rel_path
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)


def echo(message: str) -> None:
    """Print to stdout (one place, so the CLI can be quiet in tests if needed)."""
    print(message, file=sys.stdout)
