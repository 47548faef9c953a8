"""Drawing predictions on frames, and overlay videos, in plain numpy.

Colours say the same thing everywhere in patchvad's pictures:

* green rectangle: a predicted box;
* red rectangle: a ground-truth box;
* the ``inferno`` heatmap (dark purple -> yellow): the patch scores of the frame's
  snippet, blended in only where the score is notable (>= ``heat_floor``);
* the strip under the frame: the frame-score curve so far (yellow), the rest of the
  video (grey), the threshold (dashed), ground-truth anomalous frames (red band) and
  the current frame (white marker).

Boxes are inclusive ``x1, y1, x2, y2`` pixels (docs/conventions.md, "Pixels, boxes and
IoU"), drawn as 2-pixel lines on the inside of the box. No OpenCV: the heatmap is upsampled
bilinearly with two small matrix products, text goes through Pillow's default font.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from patchvad.errors import VideoError
from patchvad.io.video import VideoReader, VideoWriter, probe

GREEN = (40, 230, 80)
RED = (255, 40, 40)
STRIP_BG = (24, 26, 32)
STRIP_PANEL = (38, 41, 50)
CURVE_DONE = (255, 210, 40)
CURVE_TODO = (92, 96, 108)
GT_BAND = (112, 34, 42)
THRESHOLD = (200, 200, 210)
MARKER = (255, 255, 255)


# --- colours -------------------------------------------------------------------------


@lru_cache(maxsize=4)
def colormap_lut(name: str = "inferno") -> np.ndarray:
    """A ``(256, 3)`` uint8 lookup table of a matplotlib colormap (built once)."""
    import matplotlib

    cmap = matplotlib.colormaps[name]
    return np.round(cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


@lru_cache(maxsize=64)
def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """``(n_out, n_in)`` bilinear weights with half-pixel centres (align_corners=False)."""
    x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    x = np.clip(x, 0.0, n_in - 1)
    i0 = np.floor(x).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = (x - i0).astype(np.float32)
    m = np.zeros((n_out, n_in), dtype=np.float32)
    rows = np.arange(n_out)
    np.add.at(m, (rows, i0), 1.0 - w)
    np.add.at(m, (rows, i1), w)
    return m


def upsample(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a ``(Gh, Gw)`` map to ``(height, width)`` float32."""
    g = np.asarray(grid, dtype=np.float32)
    if g.ndim != 2:
        raise ValueError(f"a heatmap must be 2-D (Gh, Gw), got shape {g.shape}")
    if g.shape == (height, width):
        return g
    return _interp_matrix(height, g.shape[0]) @ g @ _interp_matrix(width, g.shape[1]).T


@dataclass(frozen=True)
class HeatLayer:
    """A heatmap ready to blend onto frames of one size (fixed-point, 8 fractional bits).

    Only the bounding box of the pixels it changes is stored, so blending a sparse
    map onto a frame touches a small region.

    Attributes:
        rows, cols: the region (slices) where the opacity is non-zero.
        premul: ``(h, w, 3)`` uint16 ``colour * a`` with ``a`` in ``[0, 256]``.
        keep: ``(h, w, 1)`` uint16 ``256 - a``.
    """

    rows: slice
    cols: slice
    premul: np.ndarray
    keep: np.ndarray

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """A blended copy of ``frame`` (``(H, W, 3)`` uint8)."""
        out = np.array(frame, dtype=np.uint8, copy=True)
        if self.premul.size:
            region = out[self.rows, self.cols].astype(np.uint16)
            region *= self.keep
            region += self.premul
            region += 128
            region >>= 8
            out[self.rows, self.cols] = region
        return out


def heat_layer(heatmap: np.ndarray, height: int, width: int, alpha: float = 0.6, floor: float = 0.3,
               cmap: str = "inferno") -> HeatLayer:
    """Colour and opacity of a heatmap in ``[0, 1]`` at frame size.

    The opacity rises smoothly (smoothstep) from 0 at ``floor`` to ``alpha`` at 1, so
    low scores leave the frame untouched; the colour is the ``cmap`` entry of the score.
    """
    h = np.clip(upsample(heatmap, height, width), 0.0, 1.0)
    ramp = np.clip((h - floor) / max(1e-6, 1.0 - floor), 0.0, 1.0)
    a = np.round(256.0 * alpha * ramp * ramp * (3.0 - 2.0 * ramp)).astype(np.uint16)
    ys, xs = np.nonzero(a.any(axis=1)), np.nonzero(a.any(axis=0))
    if ys[0].size == 0:
        return HeatLayer(slice(0, 0), slice(0, 0), np.zeros((0, 0, 3), np.uint16), np.zeros((0, 0, 1), np.uint16))
    rows = slice(int(ys[0][0]), int(ys[0][-1]) + 1)
    cols = slice(int(xs[0][0]), int(xs[0][-1]) + 1)
    a = a[rows, cols][:, :, None]
    color = colormap_lut(cmap)[np.round(h[rows, cols] * 255).astype(np.uint8)].astype(np.uint16)
    return HeatLayer(rows, cols, color * a, 256 - a)


# --- boxes ---------------------------------------------------------------------------


def draw_box(img: np.ndarray, box: Sequence[float], color: tuple[int, int, int], thickness: int = 2) -> None:
    """Draw an inclusive ``x1, y1, x2, y2`` rectangle in place, lines inside the box.

    Parts outside the image are clipped; a box entirely outside draws nothing.
    """
    h, w = img.shape[:2]
    x1, y1, x2, y2 = (int(round(float(v))) for v in box[:4])
    if x2 < 0 or y2 < 0 or x1 >= w or y1 >= h or x2 < x1 or y2 < y1:
        return
    t = max(1, int(thickness))
    cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, w - 1), min(y2, h - 1)
    c = np.asarray(color, dtype=img.dtype)
    if y1 >= 0:
        img[y1:min(y1 + t, cy2 + 1), cx1:cx2 + 1] = c
    if y2 < h:
        img[max(y2 - t + 1, cy1):y2 + 1, cx1:cx2 + 1] = c
    if x1 >= 0:
        img[cy1:cy2 + 1, x1:min(x1 + t, cx2 + 1)] = c
    if x2 < w:
        img[cy1:cy2 + 1, max(x2 - t + 1, cx1):x2 + 1] = c


def scale_boxes(boxes: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Inclusive pixel boxes of a frame scaled by ``sx, sy`` (pixel ``x`` covers ``[x, x+1)``)."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, 4))
    b = b.reshape(-1, b.shape[-1])
    out = b.copy()
    out[:, 0] = np.floor(b[:, 0] * sx)
    out[:, 1] = np.floor(b[:, 1] * sy)
    out[:, 2] = np.ceil((b[:, 2] + 1) * sx) - 1
    out[:, 3] = np.ceil((b[:, 3] + 1) * sy) - 1
    return out


# --- text ----------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def draw_text(img: np.ndarray, xy: tuple[int, int], text: str, color: tuple[int, int, int] = (235, 235, 240),
              size: int = 11) -> None:
    """Draw ``text`` in place with Pillow's default font (top-left at ``xy``)."""
    from PIL import Image, ImageDraw

    pil = Image.fromarray(img)
    ImageDraw.Draw(pil).text(xy, text, fill=tuple(int(c) for c in color), font=_font(size))
    img[...] = np.asarray(pil)


# --- the score strip -----------------------------------------------------------------


class ScoreStrip:
    """The panel under an overlay frame: frame scores over the whole video.

    Rendered once per video (background, ground-truth band, threshold, both curve
    colours); :meth:`render` then only picks columns, so a frame costs a copy.

    Args:
        scores: ``(F,)`` frame scores of the whole video.
        width, height: strip size in pixels.
        threshold: the frame-score threshold (dashed line), or None.
        gt_labels: ``(F,)`` 0/1 ground-truth frame labels (red band), or None.
        score_range: ``(lo, hi)`` mapped to the bottom / top; default ``(0, 1)`` when
            every score lies in ``[0, 1]``, else the scores' min and max.
        panel: width of the text panel on the left (score and frame number).
    """

    def __init__(self, scores: np.ndarray, width: int, height: int, threshold: float | None = None,
                 gt_labels: np.ndarray | None = None, score_range: tuple[float, float] | None = None,
                 panel: int | None = None):
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if s.size == 0:
            raise ValueError("a score strip needs at least one score")
        self.scores = s
        self.n = int(s.size)
        self.width, self.height = int(width), int(height)
        self.threshold = threshold
        if score_range is None:
            lo, hi = (0.0, 1.0) if s.min() >= 0.0 and s.max() <= 1.0 else (float(s.min()), float(s.max()))
            if threshold is not None and math.isfinite(threshold) and not (lo <= threshold <= hi):
                lo, hi = min(lo, threshold), max(hi, threshold)
        else:
            lo, hi = map(float, score_range)
        if hi <= lo:
            hi = lo + 1.0
        self.lo, self.hi = lo, hi
        if panel is None:
            panel = 0 if self.width < 200 else min(118, max(70, self.width // 5))  # no text on tiny strips
        self.panel = int(panel)
        self.plot_w = max(1, self.width - self.panel)       # the strip is as wide as the frame, however small
        self._starts = (np.arange(self.plot_w) * self.n) // self.plot_w  # first frame of each column
        self._build(gt_labels)

    def _y(self, v: np.ndarray) -> np.ndarray:
        pad = 3
        frac = (np.asarray(v, dtype=np.float64) - self.lo) / (self.hi - self.lo)
        y = (self.height - 1 - pad) - np.round(np.clip(frac, 0, 1) * (self.height - 1 - 2 * pad))
        return y.astype(np.int64)

    def _build(self, gt_labels: np.ndarray | None) -> None:
        h, pw = self.height, self.plot_w
        plot = np.empty((h, pw, 3), dtype=np.uint8)
        plot[:] = STRIP_BG
        if gt_labels is not None:
            g = np.asarray(gt_labels).reshape(-1)
            if g.size != self.n:
                raise ValueError(f"{g.size} ground-truth labels for {self.n} scores")
            band = np.maximum.reduceat(g.astype(np.uint8), self._starts) > 0
            plot[:, band] = GT_BAND
        if self.threshold is not None and math.isfinite(self.threshold):
            ty = int(self._y(np.array([self.threshold]))[0])
            dash = (np.arange(pw) // 4) % 2 == 0
            plot[ty, dash] = THRESHOLD
        col = np.maximum.reduceat(self.scores, self._starts)
        y = self._y(col)
        prev = np.r_[y[0], y[:-1]]
        top, bottom = np.minimum(y, prev), np.maximum(y, prev)
        rows = np.arange(h)[:, None]
        line = (rows >= top[None, :] - 0) & (rows <= bottom[None, :] + 1)
        self._line = line
        self._plot = plot
        done = plot.copy()
        done[line] = CURVE_DONE
        todo = plot.copy()
        todo[line] = CURVE_TODO
        self._done, self._todo = done, todo

    def hide_future(self) -> None:
        """Draw the part after the current frame as bare plot (no curve): a future nobody gave."""
        self._todo = self._plot.copy()

    def column_of(self, t: int) -> int:
        """The plot column that shows frame ``t`` (its last column when a frame spans several)."""
        return int(np.searchsorted(self._starts, t, side="right")) - 1

    def render(self, t: int, label: str | None = None) -> np.ndarray:
        """The strip at frame ``t``: ``(height, width, 3)`` uint8."""
        if not 0 <= t < self.n:
            raise ValueError(f"frame {t} outside the strip's {self.n} frames")
        c = self.column_of(t)
        plot = self._todo.copy()
        plot[:, :c + 1] = self._done[:, :c + 1]
        plot[:, c] = MARKER
        if c + 1 < self.plot_w:
            plot[:, c + 1] = (MARKER[0] // 2, MARKER[1] // 2, MARKER[2] // 2)
        out = np.empty((self.height, self.width, 3), dtype=np.uint8)
        out[:] = STRIP_PANEL
        out[:, self.panel:self.panel + self.plot_w] = plot
        if self.panel < 40:
            return out
        s = float(self.scores[t])
        above = self.threshold is not None and s >= self.threshold
        size = 11 if self.height >= 30 else 9
        draw_text(out, (6, 2), f"score {s:.3f}", color=(255, 120, 90) if above else (235, 235, 240), size=size)
        draw_text(out, (6, 2 + size + 2), label if label is not None else f"frame {t + 1}/{self.n}",
                  color=(170, 172, 182), size=size)
        if self.height >= 3 * size + 8:
            y = 2 + 2 * (size + 2)
            out[y + 2:y + size - 1, 6:14] = GREEN
            draw_text(out, (17, y), "pred", size=size)
            x = 17 + 4 * size
            out[y + 2:y + size - 1, x:x + 8] = RED
            draw_text(out, (x + 11, y), "GT", size=size)
        return out


# --- one frame -----------------------------------------------------------------------


def _as_boxes(boxes, cols: int) -> np.ndarray:
    if boxes is None:
        return np.zeros((0, cols))
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, cols))
    b = b.reshape(-1, b.shape[-1])
    if b.shape[1] < 4:
        raise ValueError(f"boxes need at least 4 columns x1, y1, x2, y2, got shape {b.shape}")
    return b


def draw_overlay(frame: np.ndarray, heatmap: np.ndarray | None = None, pred_boxes=None, gt_boxes=None,
                 score_history: Sequence[float] | np.ndarray | None = None, threshold: float | None = None, *,
                 n_frames: int | None = None, gt_labels: np.ndarray | None = None,
                 score_range: tuple[float, float] | None = None, strip_height: int | None = None,
                 heat_alpha: float = 0.6, heat_floor: float = 0.3, thickness: int = 2) -> np.ndarray:
    """Draw a frame's predictions and ground truth.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB (not modified).
        heatmap: ``(Gh, Gw)`` or ``(H, W)`` patch scores in ``[0, 1]`` (clipped), upsampled
            bilinearly and blended in where it is >= ``heat_floor``; None for none.
        pred_boxes: rows ``x1, y1, x2, y2[, score]`` in frame pixels (green).
        gt_boxes: rows ``x1, y1, x2, y2`` in frame pixels (red, drawn on top).
        score_history: frame scores up to and including this frame; when given, a
            score strip is appended under the frame (the current frame is its last entry).
        threshold: the frame-score threshold drawn in the strip.
        n_frames: frames of the whole video (the strip's x axis); default the history length.
        gt_labels: ``(n_frames,)`` ground-truth frame labels shaded in the strip.
        score_range: strip y range (see :class:`ScoreStrip`).
        strip_height: strip height in pixels (default ``max(36, H // 8)``).
        heat_alpha: the heatmap's opacity at score 1 (see :func:`heat_layer`).
        heat_floor: scores at or below this leave the frame untouched.
        thickness: box line width in pixels.

    Returns:
        ``(H, W, 3)`` uint8, or ``(H + strip_height, W, 3)`` with a score strip.
    """
    img = np.asarray(frame)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8, got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    if heatmap is not None:
        out = heat_layer(heatmap, h, w, alpha=heat_alpha, floor=heat_floor).apply(img)
    else:
        out = img.copy()
    for box in _as_boxes(pred_boxes, 4):
        draw_box(out, box, GREEN, thickness)
    for box in _as_boxes(gt_boxes, 4):
        draw_box(out, box, RED, thickness)
    if score_history is None:
        return out
    hist = np.asarray(score_history, dtype=np.float64).reshape(-1)
    if hist.size == 0:
        raise ValueError("score_history is empty: it must end with the current frame's score")
    n = int(n_frames) if n_frames is not None else hist.size
    if n < hist.size:
        raise ValueError(f"score_history has {hist.size} scores but n_frames is {n}")
    full = np.r_[hist, np.full(n - hist.size, hist[-1])]  # the future is drawn flat, then hidden
    strip = ScoreStrip(full, w, strip_height or max(36, h // 8), threshold=threshold, gt_labels=gt_labels,
                       score_range=score_range)
    if n > hist.size:  # do not draw a future the caller has not given
        strip.hide_future()
    return np.concatenate([out, strip.render(hist.size - 1)], axis=0)


# --- overlay videos ------------------------------------------------------------------


def auto_scale(width: int) -> float:
    """Output scale for an overlay: small videos grow to >= 480 px wide, big ones shrink to <= 960."""
    if width < 480:
        return float(math.ceil(480 / width))
    if width > 960:
        return 960.0 / width
    return 1.0


def map_range(maps: np.ndarray) -> tuple[float, float]:
    """The value range a video's maps are shown in.

    ``(0, 1)`` when the maps lie in it, else robust percentiles (1st, 99.5th) of the
    video's maps.
    """
    m = np.asarray(maps, dtype=np.float32)
    lo, hi = float(m.min()), float(m.max())
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(m, [1.0, 99.5]))
    return lo, hi if hi > lo else lo + 1.0


def _group_rows(rows: np.ndarray, frame_col: int) -> dict[int, np.ndarray]:
    if rows.size == 0:
        return {}
    frames = rows[:, frame_col].astype(np.int64)
    order = np.argsort(frames, kind="stable")
    frames, rows = frames[order], rows[order]
    cuts = np.flatnonzero(np.diff(frames)) + 1
    return {int(chunk_f[0]): chunk for chunk_f, chunk in zip(np.split(frames, cuts), np.split(rows, cuts))}


def _shown_maps(prediction, frame_to_snippet, maps_range: tuple[float, float] | None,
                n: int) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """What :func:`write_overlay_video` shows as heat: ``(maps, frame_to_snippet, lo, hi)``, or None.

    ``maps (T, Gh, Gw)`` float32, ``frame_to_snippet (F,)`` (``F == n``) and the values
    ``lo, hi`` mapped to the heatmap's ends; None when the prediction has no maps.

    Raises:
        ValueError: ``frame_to_snippet`` is missing or does not match the scores or the maps.
    """
    maps = getattr(prediction, "maps", None)
    f2s = frame_to_snippet if frame_to_snippet is not None else getattr(prediction, "frame_to_snippet", None)
    if f2s is not None and hasattr(f2s, "frame_to_snippet"):
        f2s = f2s.frame_to_snippet
    if maps is None:
        return None
    maps = np.asarray(maps, dtype=np.float32)
    if f2s is None:
        raise ValueError("maps without a frame_to_snippet map: pass frame_to_snippet")
    f2s = np.asarray(f2s).reshape(-1)
    if f2s.shape[0] != n:
        raise ValueError(f"frame_to_snippet has {f2s.shape[0]} entries for {n} frame scores")
    if f2s.size and (f2s.min() < 0 or f2s.max() >= maps.shape[0]):
        raise ValueError(f"frame_to_snippet values outside [0, {maps.shape[0]})")
    lo, hi = maps_range if maps_range is not None else map_range(maps)
    return maps, f2s, lo, hi


def write_overlay_video(video_path: str | Path, prediction, gt, out_path: str | Path,
                        frame_to_snippet=None, *, threshold: float | None = None,
                        max_frames: int | None = None, start_frame: int = 0, scale: float | None = None,
                        maps_range: tuple[float, float] | None = None, fps: float | None = None,
                        box_min_score: float | None = None, title: str | None = None) -> Path:
    """Write a test video with its heatmap, boxes and a score strip drawn on (H.264 mp4).

    Args:
        video_path: the test video.
        prediction: a :class:`patchvad.predictions.VideoPrediction` (``frame_scores (F,)``,
            ``boxes (N, 6)`` rows ``frame_id, x1, y1, x2, y2, score``, optional ``maps
            (T, Gh, Gw)`` and ``frame_to_snippet (F,)``) or anything with those attributes.
        gt: the video's :class:`patchvad.data.folder.GroundTruth`, or None (no red
            boxes, no ground-truth band).
        out_path: the mp4 to write (atomically; browsers play it).
        frame_to_snippet: a :class:`~patchvad.features.snippets.SnippetMap` or an ``(F,)``
            int array: which map each frame shows; default ``prediction.frame_to_snippet``.
        threshold: frame-score threshold (the dashed line; the score turns red above it).
        max_frames: write frames ``[start_frame, start_frame + max_frames)`` only
            (default: all frames from ``start_frame``).
        start_frame: the first frame written (default 0).
        scale: output size factor; default :func:`auto_scale` (>= 480 px wide).
        maps_range: values mapped to the heatmap's ends; default :func:`map_range` of
            the video's maps.
        fps: output frame rate; default the input's.
        box_min_score: draw predicted boxes scoring at least this; default ``threshold``
            (every box when ``threshold`` is None).
        title: text for the strip's second line (default ``frame i/F``).

    Returns:
        ``out_path``.

    Raises:
        VideoError: the video cannot be read or written, or its frame count differs
            from the prediction's (nothing is truncated silently).
        ValueError: ``frame_to_snippet`` does not match the scores or the maps.
    """
    video_path, out_path = Path(video_path), Path(out_path)
    scores = np.asarray(prediction.frame_scores, dtype=np.float64)
    n = int(scores.shape[0])
    shown = _shown_maps(prediction, frame_to_snippet, maps_range, n)
    gt_labels = None if gt is None else np.asarray(gt.frame_labels)
    if gt_labels is not None and gt_labels.shape[0] != n:
        raise VideoError(f"ground truth has {gt_labels.shape[0]} frames but the prediction {n}", path=video_path)
    if box_min_score is None:
        box_min_score = -math.inf if threshold is None else float(threshold)
    boxes = np.asarray(prediction.boxes, dtype=np.float64).reshape(-1, 6)
    boxes = boxes[boxes[:, 5] >= box_min_score]
    pred_by_frame = _group_rows(boxes, 0)
    gt_by_frame = {} if gt is None else _group_rows(np.asarray(gt.regions, dtype=np.float64).reshape(-1, 6), 1)

    reader = VideoReader(video_path)
    w0, h0 = reader.width, reader.height
    s = auto_scale(w0) if scale is None else float(scale)
    out_w, out_h = max(2, int(round(w0 * s / 2)) * 2), max(2, int(round(h0 * s / 2)) * 2)
    sx, sy = out_w / w0, out_h / h0
    start = max(0, int(start_frame))
    stop = n if max_frames is None else min(n, start + int(max_frames))
    if start >= stop:
        raise ValueError(f"no frames to write: start_frame {start}, max_frames {max_frames}, {n} frames")
    strip_h = max(40, out_h // 9)
    strip = ScoreStrip(scores, out_w, strip_h, threshold=threshold, gt_labels=gt_labels)
    cached: tuple[int, HeatLayer] | None = None
    writer = VideoWriter(out_path, fps or reader.fps, (out_w, out_h + strip_h))
    index, stopped_early = -1, False
    try:
        for index, frame in enumerate(reader.frames(size=(out_w, out_h))):
            if index >= n:
                raise VideoError(f"the video has more frames than its {n} frame scores", path=video_path)
            if index < start:
                continue
            if index >= stop:
                stopped_early = True
                break
            out = frame
            if shown is not None:
                maps, f2s, lo, hi = shown
                t = int(f2s[index])
                if cached is None or cached[0] != t:
                    m = (maps[t] - lo) / (hi - lo)
                    cached = (t, heat_layer(m, out_h, out_w))
                out = cached[1].apply(out)
            else:
                out = out.copy()
            for row in scale_boxes(pred_by_frame.get(index, np.zeros((0, 6)))[:, 1:5], sx, sy):
                draw_box(out, row, GREEN)
            for row in scale_boxes(gt_by_frame.get(index, np.zeros((0, 6)))[:, 2:6], sx, sy):
                draw_box(out, row, RED)
            label = None if title is None else f"{title}  {index + 1}/{n}"
            writer.write(np.concatenate([out, strip.render(index, label)], axis=0))
        # Stopped early: count the remaining frames without decoding them.
        decoded = probe(video_path).frame_count if stopped_early else index + 1
        if decoded != n:
            raise VideoError(f"the video has {decoded} frames but the prediction {n} frame scores",
                             path=video_path)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return out_path


__all__ = ["GREEN", "RED", "HeatLayer", "ScoreStrip", "auto_scale", "colormap_lut", "draw_box", "draw_overlay",
           "draw_text", "heat_layer", "map_range", "scale_boxes", "upsample", "write_overlay_video"]
