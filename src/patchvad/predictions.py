"""The predictions folder: the one module that writes and reads it.

Layout (docs/data-format.md, "The predictions folder")::

    PRED/<stem>/scores.npy            float32 (F,), one score per frame
    PRED/<stem>/boxes.csv             frame_id,x_min,y_min,x_max,y_max,score
    PRED/<stem>/maps.npy              optional; float16 (T, Gh, Gw) patch scores
    PRED/<stem>/frame_to_snippet.npy  patchvad's addition; int32 (F,), the snippet whose
                                      map each frame uses; written with every maps.npy

A ``maps.npy`` without ``frame_to_snippet.npy`` (another tool's output) is read with
the equal-length assumption: snippet length ``L = ceil(F / T)``, frame ``f`` ->
snippet ``min(f // L, T - 1)``; :attr:`VideoPrediction.frame_to_snippet_assumed`
says so.

Every file is written atomically; ``scores.npy`` is removed first and written last,
so a folder with scores is complete (a rewrite that fails half-way leaves none). Every
read error is a :class:`PredictionError` naming the file (and line).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from patchvad.errors import PatchvadError, PredictionError
from patchvad.io.files import atomic_save_npy, atomic_write_text, load_npy, text_lines

SCORES = "scores.npy"
BOXES = "boxes.csv"
MAPS = "maps.npy"
FRAME_TO_SNIPPET = "frame_to_snippet.npy"
BOX_COLUMNS = ("frame_id", "x_min", "y_min", "x_max", "y_max", "score")


@dataclass(frozen=True)
class VideoPrediction:
    """What a method predicted for one video: made by inference, written and read back here.

    Attributes:
        frame_scores: ``(F,)`` frame scores (float32 from inference; float64 when read
            back from ``scores.npy``, which stores float32).
        boxes: ``(N, 6)`` float64 rows ``frame_id, x_min, y_min, x_max, y_max, score``.
        maps: ``(T, Gh, Gw)`` float32 patch scores, or None (video-level folders).
        frame_to_snippet: ``(F,)`` int64 snippet index of each frame, or None (no maps).
        snippet_scores: ``(T,)`` float32 snippet scores (inference only; not stored).
        tracks: ``(N, 7)`` float64 rows ``track_id, frame_id, x1, y1, x2, y2, score``
            (inference; stored as ``tracks.csv``, not read back).
        stem: the video's stem (the folder name; "" before it is written).
        path: ``PRED/<stem>`` once read from disk.
        frame_to_snippet_assumed: True when maps came without ``frame_to_snippet.npy``
            and the equal-length mapping was assumed.
    """

    frame_scores: np.ndarray
    boxes: np.ndarray
    maps: np.ndarray | None = None
    frame_to_snippet: np.ndarray | None = None
    snippet_scores: np.ndarray | None = None
    tracks: np.ndarray | None = None
    stem: str = ""
    path: Path | None = None
    frame_to_snippet_assumed: bool = False

    @property
    def frame_count(self) -> int:
        """``F``, the number of frames scored."""
        return int(self.frame_scores.shape[0])


def default_frame_to_snippet(frame_count: int, n_snippets: int) -> np.ndarray:
    """Equal-length snippets: ``L = ceil(F / T)``, frame f -> ``min(f // L, T - 1)``.

    Returns ``(F,)`` int64.
    """
    if frame_count < 1 or n_snippets < 1:
        raise ValueError(f"need frame_count >= 1 and n_snippets >= 1, got {frame_count}, {n_snippets}")
    length = math.ceil(frame_count / n_snippets)
    return np.minimum(np.arange(frame_count) // length, n_snippets - 1).astype(np.int64)


def _video_dir(pred_dir: str | Path, stem: str) -> Path:
    # The stem becomes a folder name: refuse anything that would leave PRED.
    if not stem or stem in (".", "..") or "/" in stem or "\\" in stem or "\x00" in stem:
        raise PredictionError(f"'{stem}' is not a valid video stem for a predictions folder", path=pred_dir)
    return Path(pred_dir) / stem


def _fmt(value: float) -> str:
    # repr gives the shortest text that reads back to the same float64, so a score
    # survives the CSV round trip exactly (no accidental ties from rounding).
    return repr(float(value))


def write_prediction(pred_dir: str | Path, stem: str, scores: np.ndarray, boxes: np.ndarray | None = None,
                     maps: np.ndarray | None = None, frame_to_snippet: np.ndarray | None = None) -> Path:
    """Write ``PRED/<stem>/`` atomically (one file at a time, ``scores.npy`` last).

    Args:
        pred_dir: the predictions folder ``PRED``.
        stem: the video stem.
        scores: ``(F,)`` finite frame scores, stored as float32.
        boxes: ``(N, 6)`` rows ``frame_id, x_min, y_min, x_max, y_max, score`` (frame ids
            in ``[0, F)``); None writes a header-only ``boxes.csv``.
        maps: ``(T, Gh, Gw)`` finite patch scores, stored as float16; None removes a
            stale ``maps.npy`` / ``frame_to_snippet.npy`` from an earlier write.
        frame_to_snippet: ``(F,)`` ints in ``[0, T)``; only with maps. When maps are
            given without it, the equal-length mapping is written
            (:func:`default_frame_to_snippet`), so the folder always says how
            frames meet snippets.

    Returns:
        The folder ``PRED/<stem>``.

    Raises:
        PredictionError: invalid arrays (named after the file they were meant for).
    """
    folder = _video_dir(pred_dir, stem)
    s = np.asarray(scores)
    if s.ndim != 1 or s.size == 0 or not np.issubdtype(s.dtype, np.number) or not np.isfinite(s).all():
        raise PredictionError(f"scores must be a non-empty 1-D array of finite numbers, got shape {s.shape}",
                              path=folder / SCORES)
    if np.abs(s).max() > np.finfo(np.float32).max:
        raise PredictionError("scores exceed the float32 range they are stored in", path=folder / SCORES)
    n_frames = s.shape[0]
    b = np.zeros((0, 6)) if boxes is None else np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        b = b.reshape(0, 6)
    _check_boxes(b, n_frames, folder / BOXES, first_line=2)
    f2s = None
    if maps is not None:
        m = np.asarray(maps)
        if m.ndim != 3 or 0 in m.shape or not np.isfinite(m).all():
            raise PredictionError(f"maps must be a finite (T, Gh, Gw) array, got shape {m.shape}",
                                  path=folder / MAPS)
        if np.abs(m).max() > np.finfo(np.float16).max:
            raise PredictionError("maps exceed the float16 range", path=folder / MAPS)
        f2s = (default_frame_to_snippet(n_frames, m.shape[0]) if frame_to_snippet is None
               else _check_f2s(np.asarray(frame_to_snippet), n_frames, m.shape[0], folder / FRAME_TO_SNIPPET))
    elif frame_to_snippet is not None:
        raise PredictionError("frame_to_snippet given without maps", path=folder / FRAME_TO_SNIPPET)

    frame_ids = b[:, 0].astype(np.int64)
    lines = [",".join(BOX_COLUMNS)]
    lines.extend(f"{fid},{_fmt(x1)},{_fmt(y1)},{_fmt(x2)},{_fmt(y2)},{_fmt(sc)}"
                 for fid, (x1, y1, x2, y2, sc) in zip(frame_ids.tolist(), b[:, 1:].tolist()))
    try:
        # A rewrite first drops the completion marker: if it fails half-way (a full disk),
        # new boxes never pass as complete beside the old scores.
        (folder / SCORES).unlink(missing_ok=True)
        atomic_write_text(folder / BOXES, "\n".join(lines) + "\n")
        if maps is not None:
            assert f2s is not None                      # made with the maps' checks above
            atomic_save_npy(folder / MAPS, np.asarray(maps).astype(np.float16))
            atomic_save_npy(folder / FRAME_TO_SNIPPET, f2s.astype(np.int32))
        else:
            for stale in (MAPS, FRAME_TO_SNIPPET):
                with contextlib.suppress(FileNotFoundError):
                    (folder / stale).unlink()
        atomic_save_npy(folder / SCORES, s.astype(np.float32))
    except PatchvadError as exc:
        raise PredictionError(exc.message, path=exc.path) from exc
    except OSError as exc:
        raise PredictionError(f"cannot write ({exc.strerror or exc})", path=folder) from exc
    return folder


def _check_f2s(f2s: np.ndarray, n_frames: int, n_snippets: int, path: Path) -> np.ndarray:
    if f2s.ndim != 1 or not np.issubdtype(f2s.dtype, np.integer):
        raise PredictionError(f"frame_to_snippet must be a 1-D integer array, got {f2s.dtype} {f2s.shape}",
                              path=path)
    if f2s.shape[0] != n_frames:
        raise PredictionError(f"frame_to_snippet has {f2s.shape[0]} entries but the video has {n_frames} "
                              f"frame scores", path=path)
    if f2s.size and (f2s.min() < 0 or f2s.max() >= n_snippets):
        raise PredictionError(f"frame_to_snippet values must lie in [0, {n_snippets}) (maps has {n_snippets} "
                              f"snippets), found {int(f2s.min())}..{int(f2s.max())}", path=path)
    return f2s.astype(np.int64)


def _check_boxes(b: np.ndarray, n_frames: int, path: Path, first_line: int,
                 line_numbers: np.ndarray | None = None) -> None:
    """Validate ``(N, 6)`` box rows; errors name ``path`` and the offending line."""
    if b.ndim != 2 or b.shape[1] != 6:
        raise PredictionError(f"boxes must have shape (N, 6), got {b.shape}", path=path)

    def fail(mask: np.ndarray, message: str) -> None:
        k = int(np.flatnonzero(mask)[0])
        line = int(line_numbers[k]) if line_numbers is not None else first_line + k
        raise PredictionError(message.format(row=b[k].tolist()), path=path, line=line)

    if b.shape[0] == 0:
        return
    bad = ~np.isfinite(b).all(axis=1)
    if bad.any():
        fail(bad, "box row {row} contains NaN or inf")
    bad = (b[:, 0] != np.round(b[:, 0])) | (b[:, 0] < 0) | (b[:, 0] >= n_frames)
    if bad.any():
        fail(bad, f"frame_id of row {{row}} is not an integer in [0, {n_frames}) (the video has {n_frames} "
                  f"frame scores)")
    bad = (b[:, 3] < b[:, 1]) | (b[:, 4] < b[:, 2])
    if bad.any():
        fail(bad, "box {row} has x_max < x_min or y_max < y_min")


def _read_boxes(path: Path, n_frames: int) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PredictionError("file not found (a method that predicts no boxes writes a header-only "
                              f"{BOXES})", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PredictionError(f"cannot read as UTF-8 text ({exc})", path=path) from None
    lines = text_lines(text)
    numbered = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip()]
    if not numbered:
        raise PredictionError(f"empty file: expected the header {','.join(BOX_COLUMNS)}", path=path)
    if numbered[0][1].strip() != ",".join(BOX_COLUMNS):
        raise PredictionError(f"header must be {','.join(BOX_COLUMNS)}, found {numbered[0][1].strip()}",
                              path=path, line=numbered[0][0])
    rows = numbered[1:]
    if not rows:
        return np.zeros((0, 6))
    line_numbers = np.array([n for n, _ in rows])
    try:
        # Fast path: numpy's C parser. On any problem, the slow path finds the line.
        data = np.loadtxt([ln for _, ln in rows], delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError:
        data = None
    if data is None or data.shape[1] != 6:
        for n, ln in rows:
            fields = ln.split(",")
            if len(fields) != 6:
                raise PredictionError(f"expected 6 fields, found {len(fields)}", path=path, line=n)
            for name, field in zip(BOX_COLUMNS, fields):
                try:
                    float(field)
                except ValueError:
                    raise PredictionError(f"{name} '{field.strip()}' is not a number", path=path,
                                          line=n) from None
        raise PredictionError("cannot parse as CSV numbers", path=path)
    _check_boxes(data, n_frames, path, first_line=2, line_numbers=line_numbers)
    return data


def _load(path: Path) -> np.ndarray:
    try:
        return load_npy(path)
    except PatchvadError as exc:
        raise PredictionError(exc.message, path=path) from exc


def read_prediction(pred_dir: str | Path, stem: str, frame_count: int | None = None) -> VideoPrediction:
    """Read and validate ``PRED/<stem>/``.

    Args:
        pred_dir: the predictions folder.
        stem: the video stem.
        frame_count: the video's frame count, if known; a different number of scores
            is an error naming the video and both lengths (nothing is truncated).

    Raises:
        PredictionError: missing folder or file; scores not a 1-D float array, NaN or
            inf, wrong length; boxes.csv header not exactly
            ``frame_id,x_min,y_min,x_max,y_max,score``, non-numbers, frame ids outside
            the video, inverted boxes; maps not a finite ``(T, Gh, Gw)`` float array;
            a frame_to_snippet array of the wrong length or range, or without maps.
    """
    folder = _video_dir(pred_dir, stem)
    if not folder.is_dir():
        raise PredictionError(f"no predictions for test video '{stem}' (folder missing)", path=folder)
    scores_path = folder / SCORES
    scores = _load(scores_path)
    if scores.ndim != 1 or not np.issubdtype(scores.dtype, np.floating):
        raise PredictionError(f"scores must be a 1-D float array, found {scores.dtype} of shape {scores.shape}",
                              path=scores_path)
    if scores.size == 0:
        raise PredictionError("scores are empty", path=scores_path)
    if not np.isfinite(scores).all():
        k = int(np.flatnonzero(~np.isfinite(scores))[0])
        n_bad = int((~np.isfinite(scores)).sum())
        raise PredictionError(f"{n_bad} score(s) are NaN or inf (first at frame {k}: {scores[k]})",
                              path=scores_path)
    if frame_count is not None and scores.shape[0] != frame_count:
        raise PredictionError(f"video '{stem}' has {frame_count} frames but {scores.shape[0]} scores "
                              f"(scores must cover every frame exactly; nothing is truncated)",
                              path=scores_path)
    n = int(scores.shape[0])
    boxes = _read_boxes(folder / BOXES, n)

    maps = f2s = None
    assumed = False
    maps_path, f2s_path = folder / MAPS, folder / FRAME_TO_SNIPPET
    if maps_path.exists():
        raw = _load(maps_path)
        if raw.ndim != 3 or 0 in raw.shape or not np.issubdtype(raw.dtype, np.floating):
            raise PredictionError(f"maps must be a float (T, Gh, Gw) array, found {raw.dtype} of shape "
                                  f"{raw.shape}", path=maps_path)
        if not np.isfinite(raw).all():
            raise PredictionError("maps contain NaN or inf", path=maps_path)
        maps = raw.astype(np.float32)
        if f2s_path.exists():
            f2s = _check_f2s(_load(f2s_path), n, maps.shape[0], f2s_path)
        else:
            f2s = default_frame_to_snippet(n, maps.shape[0])
            assumed = True
    elif f2s_path.exists():
        raise PredictionError(f"{FRAME_TO_SNIPPET} without {MAPS}", path=f2s_path)
    return VideoPrediction(frame_scores=scores.astype(np.float64), boxes=boxes, maps=maps, frame_to_snippet=f2s,
                           stem=stem, path=folder, frame_to_snippet_assumed=assumed)


def prediction_stems(pred_dir: str | Path) -> list[str]:
    """Stems with a prediction folder (a ``scores.npy``) in ``pred_dir``, sorted."""
    root = Path(pred_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / SCORES).is_file())


__all__ = ["BOX_COLUMNS", "VideoPrediction", "default_frame_to_snippet", "prediction_stems", "read_prediction",
           "write_prediction"]
