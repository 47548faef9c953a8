"""Run a trained model on any video: offline or streaming, with events and overlays.

``Detector(ckpt).predict(path)`` scores a whole video (best accuracy: the model sees
the whole video, as in training and testing). ``Detector(ckpt).stream(source)`` works
online, snippet by snippet: each snippet's features are computed as soon as its
frames have arrived, and the model scores a window of the last ``history`` snippets
(the past only); snippet ``t`` is reported once ``t + delay`` has arrived, so the
delay is bounded by ``(delay + 1) * snippet_len`` frames.

Outputs per video, in ``OUT/<stem>/`` (see docs/predict.md):

    events.json        events (start/end time and frame, peak, a box per snippet,
                       a thumbnail), the threshold, and how the input ended
    scores.csv         frame,time,score
    overlay.mp4        heatmap, boxes and a score strip drawn on the video (H.264)
    scores.npy, boxes.csv, maps.npy, frame_to_snippet.npy
                       the predictions layout, so ``patchvad evaluate`` scores it
    thumbs/event_K.png the peak frame of each event, boxed
"""

from __future__ import annotations

import glob
import io
import json
import shutil
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from patchvad.errors import CheckpointError, PatchvadError, VideoError
from patchvad.events import Event, EventBox, EventTracker
from patchvad.features.backbones import PatchFeatureExtractor
from patchvad.features.snippets import SnippetMap, iter_snippets
from patchvad.features.store import VideoFeatures
from patchvad.inference import BoxConfig, box_from_map, patch_scores, predict_video
from patchvad.io.files import atomic_path, atomic_write_json, atomic_write_text
from patchvad.io.video import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    VideoReader,
    VideoWriter,
    clock_times,
    is_live_source,
    is_variable_rate,
)
from patchvad.model.model import load_model
from patchvad.model.selection import snippet_scores
from patchvad.predictions import write_prediction

STRIP_WINDOW = 400   # frames of score history shown in a streaming overlay's strip


@dataclass
class Detection:
    """Everything patchvad found in one video.

    Attributes:
        source: the file, folder or URL.
        stem: output folder name.
        fps, width, height: of the source.
        frame_scores: ``(F,)`` float32 anomaly score per frame.
        snippet_scores: ``(T,)`` float32.
        maps: ``(T, Gh, Gw)`` float32 patch scores.
        boxes: ``(F, 6)`` rows ``frame_id, x1, y1, x2, y2, score`` (the box of the
            frame's snippet, scored by the frame score).
        frame_to_snippet: ``(F,)`` int64.
        events: anomalous events at ``threshold``.
        threshold: frame-score threshold used for events.
        mode: ``"offline"`` or ``"stream"``.
        status: ``"complete"`` or ``"stream_lost"`` (the input ended with an error;
            everything up to that point is kept).
        error: the input error, when ``status`` is ``"stream_lost"``.
        frame_times: ``(F,)`` seconds of each frame (:func:`clock_times`: ``frame /
            fps`` for a constant-rate video, the real clock where it differs).
        variable_rate: the source's timestamps differ from ``frame / fps`` by more than
            half a frame somewhere.
        frames_copy: for a source that cannot be read a second time (a URL, a camera),
            a temporary local copy of its decoded frames, which :func:`write_detection`
            draws the overlay and thumbnails from; removed when the Detection is
            garbage collected (or at exit). None for files and frame folders.
    """

    source: str
    stem: str
    fps: float
    width: int
    height: int
    frame_scores: np.ndarray
    snippet_scores: np.ndarray
    maps: np.ndarray
    boxes: np.ndarray
    frame_to_snippet: np.ndarray
    events: list[Event]
    threshold: float
    mode: str = "offline"
    status: str = "complete"
    error: str | None = None
    seconds: float = 0.0
    frame_times: np.ndarray | None = None
    variable_rate: bool = False
    frames_copy: Path | None = None

    @property
    def frame_count(self) -> int:
        """``F``, frames scored."""
        return int(self.frame_scores.shape[0])

    # The attribute names the overlay writer reads.
    @property
    def scores(self) -> np.ndarray:
        """``(F,)`` frame scores (the name the overlay writer reads)."""
        return self.frame_scores


@dataclass
class StreamUpdate:
    """One step of :meth:`Detector.stream`: a snippet was scored.

    Attributes:
        snippet: its index; ``first_frame``/``last_frame`` its real frames.
        score: its anomaly score; ``box`` its box ``(x1, y1, x2, y2)`` in frame pixels.
        map: ``(Gh, Gw)`` patch scores.
        started, ended: events that opened / closed with this snippet.
        frames: the snippet's native frames (for drawing), ``(n, H, W, 3)`` uint8.
        open_event: the event still open after this snippet, if any.
        times: ``(n,)`` seconds of its real frames (:func:`clock_times`).
    """

    snippet: int
    first_frame: int
    last_frame: int
    score: float
    box: tuple[int, int, int, int]
    map: np.ndarray
    started: list[Event] = field(default_factory=list)
    ended: list[Event] = field(default_factory=list)
    frames: np.ndarray | None = None
    open_event: Event | None = None
    times: np.ndarray | None = None


def _stem_of(source: str | Path) -> str:
    text = str(source).rstrip("/")
    if is_live_source(text):
        cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in text.split("://", 1)[-1])
        return cleaned.strip("_")[:80] or "stream"
    return Path(text).stem


def resolve_sources(source: str | Path) -> list[str]:
    """A file, a frame folder, a folder of videos, a glob, or a URL/device -> sources.

    Raises:
        VideoError: nothing matches.
    """
    text = str(source)
    if is_live_source(text):
        return [text]
    path = Path(text)
    if path.is_file():
        return [str(path)]
    if path.is_dir():
        if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir() if p.is_file()):
            return [str(path)]                          # a frame folder is one video
        videos = sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        if not videos:
            raise VideoError("folder holds no video files or frame images", path=path)
        return videos
    matches = sorted(glob.glob(text, recursive=True))
    if matches:
        return matches
    raise VideoError("no such file, folder or glob match", path=text)


class Detector:
    """A trained model ready to run on raw video.

    Args:
        ckpt: ``model.safetensors`` from ``patchvad fit``.
        device: torch device for the backbone and the model.
        threshold: frame-score threshold for events; default the checkpoint's
            (chosen on training data).
        box_cfg: how boxes are cut from maps.
        batch_size: snippets per backbone batch (offline).
        pretrained: load the backbone's weights (False only in tests of plumbing).

    Raises:
        CheckpointError: the checkpoint cannot be read, or was trained on features
            this extractor cannot produce (another backbone, grid, snippet length...).
    """

    def __init__(self, ckpt: str | Path, device: str = "cpu", threshold: float | None = None,
                 box_cfg: BoxConfig = BoxConfig(), batch_size: int = 8, pretrained: bool = True):
        self.ckpt = Path(ckpt)
        self.model = load_model(self.ckpt, map_location=device)
        self.model.to(device)
        spec = self.model.spec
        # A model trained on reduced features (features/reduce.py) carries its projection:
        # the backbone makes the raw features, the projection reduces them.
        self.reduction = self.model.reduction
        raw = spec if self.reduction is None else self.reduction.source
        self.extractor = PatchFeatureExtractor(backbone=raw.backbone, grid=raw.grid, input_size=raw.input_size,
                                               snippet_len=raw.snippet_len, stride=raw.stride, passes=raw.passes,
                                               motion=raw.motion, device=device, pretrained=pretrained)
        diff = self.extractor.spec.compatible_with(raw)
        if diff:
            raise CheckpointError(f"this installation cannot reproduce the checkpoint's features (differs in "
                                  f"{diff}); the backbone weights must match", path=self.ckpt)
        self.spec = spec
        self.threshold = float(self.model.threshold if threshold is None else threshold)
        self.box_cfg = box_cfg
        self.batch_size = batch_size
        self.device = device
        # What the last stream() saw, read by the caller once the stream ends.
        self.last_error: str | None = None
        self.last_fps = 0.0
        self.last_size = (0, 0)
        self.last_variable_rate = False
        self.last_events: list = []

    # -- offline --------------------------------------------------------------------
    def features(self, source: str | Path, times: list[float] | None = None,
                 natives: Callable[[np.ndarray], None] | None = None) -> VideoFeatures:
        """Patch features of a whole video (file, frame folder, URL or camera), as the model reads them.

        Extracted with the checkpoint's own feature spec (any frame size and rate: every
        frame is resampled to the spec's input size, so the grid is the model's), in the
        feature store's form (:meth:`_stored`), so they are scored exactly as training and
        testing score stored features. ``record`` holds the source's
        ``frame_count``, ``fps``, ``width`` and ``height``; ``times`` receives every
        frame's presentation time in seconds; ``natives`` every decoded frame at its own
        size (``extract_video``).

        Raises:
            VideoError: missing, empty, undecodable or truncated video.
        """
        from patchvad.features.extract import extract_video

        feats, snippets, facts = extract_video(source, self.extractor, batch_size=self.batch_size, times=times,
                                               natives=natives)
        return VideoFeatures(stem=_stem_of(source), x=self._stored(feats), snippets=snippets, record=facts)

    def predict(self, source: str | Path, min_gap: int | None = None) -> Detection:
        """Score a whole video (file, frame folder, URL or camera) offline."""
        if not is_live_source(source):
            return self._predict(source, min_gap)
        # A URL or camera gives its frames once: keep a copy for the overlay, drawn after scoring.
        copy = _FrameCopy()
        try:
            det = self._predict(source, min_gap, natives=copy.add)
            det.frames_copy = copy.close()
        except BaseException:
            copy.discard()
            raise
        weakref.finalize(det, copy.discard)
        return det

    def _predict(self, source: str | Path, min_gap: int | None,
                 natives: Callable[[np.ndarray], None] | None = None) -> Detection:
        t0 = time.perf_counter()
        presented: list[float] = []
        vf = self.features(source, times=presented, natives=natives)
        snippets, facts = vf.snippets, vf.record
        pred = predict_video(self.model, vf, self.box_cfg)
        # prediction_from_maps sets all three.
        assert pred.snippet_scores is not None and pred.maps is not None and pred.frame_to_snippet is not None
        fps = float(facts["fps"])
        presented = presented[:snippets.frame_count]
        variable_rate = is_variable_rate(presented, fps)
        frame_times = clock_times(presented, fps, real=variable_rate)
        events = self._events(pred.frame_scores, pred.snippet_scores, pred.boxes, snippets, fps, min_gap,
                              frame_times)
        return Detection(source=str(source), stem=vf.stem, fps=fps, width=int(facts["width"]),
                         height=int(facts["height"]), frame_scores=pred.frame_scores,
                         snippet_scores=pred.snippet_scores, maps=pred.maps, boxes=pred.boxes,
                         frame_to_snippet=pred.frame_to_snippet, events=events, threshold=self.threshold,
                         seconds=time.perf_counter() - t0, frame_times=frame_times, variable_rate=variable_rate)

    def _stored(self, feats: np.ndarray) -> np.ndarray:
        """Backbone output as the feature store holds it: float16, projected when the model was trained so."""
        x = feats.astype(np.float16)
        return x if self.reduction is None else self.reduction.apply(x)

    def _events(self, frame_scores, snip_scores, boxes, snippets: SnippetMap, fps: float,
                min_gap: int | None, frame_times: np.ndarray) -> list[Event]:
        tracker = EventTracker(self.threshold, fps, min_gap=min_gap or self.spec.snippet_len)
        for t in range(snippets.num_snippets):
            first, last = snippets.snippet_frames(t)
            for f in range(first, last + 1):
                if f > tracker.last_frame:
                    tracker.update(f, float(frame_scores[f]), float(frame_times[f]))
            row = boxes[first]
            tracker.add_box(EventBox(t, first, int(row[1]), int(row[2]), int(row[3]), int(row[4]),
                                     float(snip_scores[t])))
        tracker.finish("end")
        return tracker.events

    # -- streaming ------------------------------------------------------------------
    def _score_window(self, window: list[np.ndarray], stem: str, width: int, height: int) -> np.ndarray:
        x = np.stack(window)
        snippets = SnippetMap.build(len(window) * self.spec.stride + (self.spec.snippet_len - self.spec.stride),
                                    self.spec.snippet_len, self.spec.stride)
        vf = VideoFeatures(stem=stem, x=x, snippets=snippets, record={"width": width, "height": height})
        return patch_scores(self.model, vf)

    def _snippet_score_box(self, m: np.ndarray, width: int, height: int) -> tuple[float, tuple[int, int, int, int]]:
        if self.model.is_video_level:
            return float(m[0, 0]), (0, 0, width - 1, height - 1)
        score = float(snippet_scores(torch.from_numpy(m[None].astype(np.float32)), self.model.selection)[0])
        return score, box_from_map(m, (width, height), self.box_cfg)

    def _snippets_with_natives(self, reader: VideoReader, width: int, height: int
                               ) -> Iterator[tuple[int, np.ndarray, int, np.ndarray, np.ndarray]]:
        """The snippets of ``reader`` with their native frames and times (see :meth:`stream`).

        Yields ``(start, snippet, n_real, frames, times)``: the snippet's first frame, the
        small frames the extractor takes, how many of its frames are real (not padding),
        the ``(n_real, height, width, 3)`` native frames and their ``(n_real,)`` times.
        Sets :attr:`last_variable_rate` once a frame strays from the nominal clock.
        """
        spec = self.spec
        presented: list[float] = []          # the time of the pair just decoded (emptied each frame)
        pairs = reader.frame_pairs(spec.input_size, times=presented)
        buf_native: list[np.ndarray] = []
        buf_time: list[float] = []

        def smalls() -> Iterator[np.ndarray]:
            for native, small in pairs:
                buf_native.append(native)
                buf_time.append(presented[-1])
                presented.clear()
                yield small

        for s_start, snippet, n_real in iter_snippets(smalls(), spec.snippet_len, spec.stride):
            frames = np.stack(buf_native[:n_real]) if n_real else np.zeros((0, height, width, 3), np.uint8)
            # Nominal times until a frame strays by more than half a frame, the real
            # clock from then on (a live source cannot be looked at in advance).
            if not self.last_variable_rate:
                self.last_variable_rate = is_variable_rate(buf_time[:n_real], reader.fps, first_index=s_start)
            times = clock_times(buf_time[:n_real], reader.fps, first_index=s_start,
                                real=self.last_variable_rate)
            # Keep natives only from the next snippet's start on (stride may be < length).
            del buf_native[:spec.stride]
            del buf_time[:spec.stride]
            yield s_start, snippet, n_real, frames, times

    def stream(self, source: str | Path, delay: int = 1, history: int = 64, min_gap: int | None = None,
               reader_options: dict | None = None, on_error: str = "end") -> Iterator[StreamUpdate]:
        """Online detection: yield a :class:`StreamUpdate` per snippet as it is scored.

        Args:
            source: file, frame folder, URL or camera device.
            delay: snippets of look-ahead (0 = purely causal); the reported delay is at
                most ``(delay + 1) * snippet_len`` frames.
            history: snippets of past context the model sees.
            min_gap: an event stays open across up to ``min_gap - 1`` frames below threshold
                (:class:`EventTracker`); default one snippet.
            reader_options: FFmpeg options for opening the source (:class:`VideoReader`).
            on_error: ``"end"``: an input error (a dropped stream) ends the stream
                cleanly (open events are closed with ``closed_by="stream_lost"`` and
                :attr:`last_error` is set); ``"raise"``: re-raise it after closing.
        """
        spec = self.spec
        reader = VideoReader(source, options=reader_options)
        width, height = reader.width, reader.height
        stem = _stem_of(source)
        tracker = EventTracker(self.threshold, reader.fps, min_gap=min_gap or spec.snippet_len)
        self.last_error = None
        self.last_fps = reader.fps
        self.last_size = (width, height)
        window: deque[np.ndarray] = deque(maxlen=max(history, delay + 1))
        # (start, n_real, frames, their times) awaiting a score
        natives: deque[tuple[int, int, np.ndarray, np.ndarray]] = deque()
        self.last_variable_rate = False
        next_out = 0          # next snippet to report
        received = 0          # snippets received

        def emit(maps_window: np.ndarray, t: int, offset: int) -> StreamUpdate:
            m = maps_window[t - offset]
            score, box = self._snippet_score_box(m, width, height)
            start, n_real, frames, times = natives.popleft()
            started: list[Event] = []
            ended: list[Event] = []
            for f in range(start, start + n_real):
                if f <= tracker.last_frame:
                    continue          # overlapping snippets: a frame is reported once
                for kind, ev in tracker.update(f, score, float(times[f - start])):
                    (started if kind == "start" else ended).append(ev)
            tracker.add_box(EventBox(t, start, *box, score))
            return StreamUpdate(t, start, start + n_real - 1, score, box, m, started, ended, frames,
                                tracker.open_event, times)

        try:
            for s_start, snippet, n_real, frames, times in self._snippets_with_natives(reader, width, height):
                feats = self._stored(self.extractor(snippet[None]))[0]
                window.append(feats)
                natives.append((s_start, n_real, frames, times))
                received += 1
                ready = received - 1 - delay          # newest snippet with enough look-ahead
                if ready >= next_out:
                    maps_window = self._score_window(list(window), stem, width, height)
                    offset = received - len(window)
                    while next_out <= ready:
                        yield emit(maps_window, next_out, offset)
                        next_out += 1
        except VideoError as exc:
            self.last_error = str(exc)
            if on_error == "raise":
                tracker.finish("stream_lost")
                raise
        if next_out < received:
            maps_window = self._score_window(list(window), stem, width, height)
            offset = received - len(window)
            while next_out < received:
                yield emit(maps_window, next_out, offset)
                next_out += 1
        closed = tracker.finish("stream_lost" if self.last_error else "end")
        self.last_events = tracker.events
        if closed is not None:
            yield StreamUpdate(-1, -1, -1, 0.0, (0, 0, 0, 0), np.zeros((0, 0)), [], [closed], None)


# -- writing outputs ------------------------------------------------------------------


class _FrameCopy:
    """A temporary local H.264 copy of the frames of a source that cannot be read twice.

    Frames are added from the decoding thread (:func:`extract_video`'s ``natives``).
    The copy is near-lossless (crf 12): the overlay drawn from it is encoded once more.
    Its rate is nominal; only the frames are read back, in order.
    """

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="patchvad-frames-"))
        self.path = self.folder / "frames.mp4"
        self._writer: VideoWriter | None = None
        self._lock = threading.Lock()
        self._done = False

    def add(self, frame: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame."""
        with self._lock:
            if self._done:
                return
            if self._writer is None:
                self._writer = VideoWriter(self.path, 25.0, (frame.shape[1], frame.shape[0]), crf=12)
            self._writer.write(frame)

    def close(self) -> Path:
        """Finish the file; returns its path."""
        with self._lock:
            self._done = True
            if self._writer is None:
                raise VideoError("no frames were decoded", path=self.path)
            self._writer.close()
        return self.path

    def discard(self) -> None:
        """Drop the copy (and a half-written one)."""
        with self._lock:
            self._done = True
            if self._writer is not None:
                self._writer.abort()
        shutil.rmtree(self.folder, ignore_errors=True)


class _OverlaySink:
    """Draws and writes overlay frames as they come; grabs event thumbnails."""

    def __init__(self, path: Path, fps: float, threshold: float, n_frames: int | None):
        from patchvad.viz.overlay import draw_overlay

        self._draw = draw_overlay
        self.path = path
        self.fps = fps
        self.threshold = threshold
        self.n_frames = n_frames
        self.writer: VideoWriter | None = None
        self.history: list[float] = []

    def add(self, frame: np.ndarray, heat: np.ndarray | None, box, score: float) -> np.ndarray:
        self.history.append(float(score))
        if self.n_frames is None:
            hist = self.history[-STRIP_WINDOW:]
            n_total = max(len(hist), STRIP_WINDOW)
        else:
            hist, n_total = self.history, self.n_frames
        boxes = [(*box, score)] if box is not None and score >= self.threshold else None
        img = self._draw(frame, heatmap=heat, pred_boxes=boxes, score_history=np.asarray(hist),
                         threshold=self.threshold, n_frames=n_total)
        if self.writer is None:
            self.writer = VideoWriter(self.path, self.fps, (img.shape[1], img.shape[0]))
        self.writer.write(img)
        return img

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _thumbnail(path: Path, frame: np.ndarray, heat: np.ndarray | None, box, score: float) -> None:
    from PIL import Image

    from patchvad.viz.overlay import draw_overlay

    img = draw_overlay(frame, heatmap=heat, pred_boxes=[(*box, score)] if box is not None else None)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def _scores_csv(det: Detection) -> str:
    times = det.frame_times if det.frame_times is not None else np.arange(det.frame_count) / det.fps
    lines = ["frame,time,score"]
    lines += [f"{f},{t:.4f},{float(s):.6f}" for f, (t, s) in enumerate(zip(times, det.frame_scores))]
    return "\n".join(lines) + "\n"


def write_detection(det: Detection, out: Path, overlay: bool = True, thumbnails: bool = True,
                    run: dict | None = None) -> Path:
    """Write one offline detection's outputs to ``out/<stem>/`` (see module docstring).

    ``events.json`` is written last: its presence marks the folder complete. ``run``
    (checkpoint, settings, source facts) is recorded in it, so that a rerun of
    ``patchvad predict`` can tell a finished video from one to redo.
    """
    folder = write_prediction(out, det.stem, det.frame_scores, det.boxes, det.maps, det.frame_to_snippet)
    atomic_write_text(folder / "scores.csv", _scores_csv(det))
    peak_frames = {ev.peak_frame: k for k, ev in enumerate(det.events)}
    # A URL or camera cannot be read again: its frames come from the copy made while scoring.
    frames_from = det.frames_copy or (None if is_live_source(det.source) else det.source)
    if (overlay or thumbnails) and frames_from is not None:
        sink = _OverlaySink(folder / "overlay.mp4", det.fps, det.threshold, det.frame_count) if overlay else None
        reader = VideoReader(frames_from)
        f2s = det.frame_to_snippet
        try:
            for f, frame in enumerate(reader.frames()):
                if f >= det.frame_count:
                    raise VideoError(f"decodes to more frames than were scored ({det.frame_count})",
                                     path=det.source)
                t = int(f2s[f])
                box = tuple(int(v) for v in det.boxes[f, 1:5])
                heat = det.maps[t]
                if sink is not None:
                    sink.add(frame, heat, box, float(det.frame_scores[f]))
                if thumbnails and f in peak_frames:
                    k = peak_frames[f]
                    _thumbnail(folder / "thumbs" / f"event_{k}.png", frame, heat, box, float(det.frame_scores[f]))
                    det.events[k].thumbnail = f"thumbs/event_{k}.png"
        except BaseException:
            if sink is not None and sink.writer is not None:
                sink.writer.abort()
            raise
        if sink is not None:
            sink.close()
    _write_events(folder, det, run)
    return folder


EVENTS = "events.json"


def _write_events(folder: Path, det: Detection, run: dict | None = None) -> None:
    record: dict[str, Any] = {
        "source": det.source, "stem": det.stem, "mode": det.mode, "status": det.status, "error": det.error,
        "fps": det.fps, "variable_frame_rate": det.variable_rate, "frame_count": det.frame_count,
        "width": det.width, "height": det.height,
        "threshold": det.threshold, "events": [ev.to_dict() for ev in det.events],
    }
    if run is not None:
        record["run"] = run
    atomic_write_json(folder / EVENTS, record)


def stream_to_folder(detector: Detector, source: str, out: Path, delay: int = 1, history: int = 64,
                     overlay: bool = True, echo: Callable[[str], None] | None = None,
                     reader_options: dict | None = None, run: dict | None = None) -> Detection:
    """Run :meth:`Detector.stream` and write every output as it goes.

    Events are printed when they open and close; the overlay is drawn from the
    frames of the stream itself (a live source cannot be read twice). When the input
    drops, what was received is scored, open events are closed with
    ``closed_by="stream_lost"``, and every file is still written completely.
    """
    stem = _stem_of(source)
    folder = Path(out) / stem
    folder.mkdir(parents=True, exist_ok=True)
    sink: _OverlaySink | None = None
    scores: list[float] = []
    snippet_scores: list[float] = []
    maps: list[np.ndarray] = []
    boxes_per_frame: list[tuple] = []
    f2s: list[int] = []
    frame_times: list[float] = []
    best_frame: dict[int, tuple] = {}      # id(event) -> (score, frame, heat, box)
    t0 = time.perf_counter()
    echo = echo or (lambda m: print(m, file=sys.stderr))
    gen = detector.stream(source, delay=delay, history=history, reader_options=reader_options)
    try:
        for upd in gen:
            if upd.snippet >= 0:
                if sink is None and overlay:
                    sink = _OverlaySink(folder / "overlay.mp4", detector.last_fps, detector.threshold, None)
                snippet_scores.append(upd.score)
                maps.append(upd.map.astype(np.float32))
                frames: np.ndarray | list[np.ndarray] = upd.frames if upd.frames is not None else []
                for i, frame in enumerate(frames):
                    f = upd.first_frame + i
                    if f < len(scores):
                        continue          # already reported by an overlapping snippet
                    scores.append(upd.score)
                    frame_times.append(float(upd.times[i]) if upd.times is not None else f / detector.last_fps)
                    boxes_per_frame.append((f, *upd.box, upd.score))
                    f2s.append(upd.snippet)
                    if sink is not None:
                        sink.add(frame, upd.map, upd.box, upd.score)
                # Remember the best frame of the open event for its thumbnail.
                ev = upd.open_event
                if ev is not None and len(frames):
                    cur = best_frame.get(id(ev))
                    if cur is None or upd.score > cur[0]:
                        best_frame[id(ev)] = (upd.score, upd.first_frame, frames[0].copy(), upd.map, upd.box, ev)
                for ev in upd.started:
                    echo(f"[{stem}] event start at {ev.start_time:.2f}s (frame {ev.start_frame}), "
                         f"score {upd.score:.3f}")
            for ev in upd.ended:
                echo(f"[{stem}] event end at {ev.end_time:.2f}s (frame {ev.end_frame}), peak {ev.peak_score:.3f}, "
                     f"closed by {ev.closed_by}")
    finally:
        if sink is not None:
            sink.close()
    events = detector.last_events
    for k, ev in enumerate(events):
        best = best_frame.get(id(ev))
        if best is not None:
            _, _, frame, heat, box, _ = best
            _thumbnail(folder / "thumbs" / f"event_{k}.png", frame, heat, box, ev.peak_score)
            ev.thumbnail = f"thumbs/event_{k}.png"
    n = len(scores)
    det = Detection(source=str(source), stem=stem, fps=float(detector.last_fps), width=detector.last_size[0],
                    height=detector.last_size[1], frame_scores=np.asarray(scores, np.float32),
                    snippet_scores=np.asarray(snippet_scores, np.float32),
                    maps=np.stack(maps) if maps else np.zeros((0, *detector.spec.grid), np.float32),
                    boxes=np.asarray(boxes_per_frame, np.float64).reshape(n, 6),
                    frame_to_snippet=np.asarray(f2s, np.int64), events=list(events), threshold=detector.threshold,
                    mode="stream", status="stream_lost" if detector.last_error else "complete",
                    error=detector.last_error, seconds=time.perf_counter() - t0,
                    frame_times=np.asarray(frame_times, np.float64),
                    variable_rate=detector.last_variable_rate)
    if n:
        write_prediction(out, stem, det.frame_scores, det.boxes, det.maps, det.frame_to_snippet)
    atomic_write_text(folder / "scores.csv", _scores_csv(det))
    _write_events(folder, det, run)
    return det


@dataclass
class PredictReport:
    """What a ``patchvad predict`` run did.

    Attributes:
        done: detections made by this run.
        skipped: stems whose outputs a previous run finished with the same checkpoint,
            settings and source (not recomputed).
        failed: source -> one-line error.
    """

    done: list[Detection] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def _source_facts(src: str) -> dict:
    """Size and modification time of a local source: a changed file is predicted again."""
    try:
        st = Path(src).stat()
    except OSError:
        return {}
    return {"source_bytes": st.st_size, "source_mtime_ns": st.st_mtime_ns}


def _is_finished(folder: Path, src: str, run: dict, overlay: bool) -> bool:
    """True when ``folder`` holds complete outputs of ``src`` made with the same ``run``."""
    try:
        record = json.loads((folder / EVENTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("status") != "complete" or record.get("source") != str(src):
        return False
    if record.get("run") != run or not (folder / "scores.npy").is_file():
        return False
    return not overlay or (folder / "overlay.mp4").is_file()


def _start_over(folder: Path) -> None:
    """Before (re)computing a video: drop its completion marker, old outputs and temporary files.

    ``events.json`` goes first, so a run killed half-way never leaves a folder that
    looks complete; temporary files a killed run left are removed with it.
    """
    if not folder.is_dir():
        return
    (folder / EVENTS).unlink(missing_ok=True)
    for old in [folder / "overlay.mp4", *folder.glob(".*.tmp*"), *(folder / "thumbs").glob("*.png"),
                *(folder / "thumbs").glob(".*.tmp*")]:
        if old.is_file():
            old.unlink(missing_ok=True)


def predict_command(source: str, ckpt: Path, out: Path, stream: bool = False, threshold: float | None = None,
                    device: str = "cpu", delay: int = 1, history: int = 64, overlay: bool = True,
                    echo: Callable[[str], None] = print, force: bool = False,
                    report_page: bool = False) -> PredictReport:
    """``patchvad predict``: every source in turn; a failing one is reported, the rest go on.

    Outputs of a finished video are written before the next one starts, so a later
    failure never loses them. A rerun skips every video whose outputs a previous run
    finished with the same checkpoint, threshold, mode and overlay setting from an
    unchanged source file (``events.json`` is the completion record; ``force``
    recomputes them). Two sources with the same stem would share an output folder:
    the second one fails. With ``report_page``, ``out/report.html`` shows every video
    of the run, predicted or skipped (:func:`patchvad.viz.footage.write_predict_report`).
    """
    from patchvad.io.files import sha256_file

    detector = Detector(ckpt, device=device, threshold=threshold)
    report = PredictReport()
    sources = resolve_sources(source)
    settings = {"checkpoint_sha256": sha256_file(ckpt), "threshold": detector.threshold,
                "mode": "stream" if stream else "offline", "overlay": bool(overlay)}
    if stream:
        settings.update(delay=int(delay), history=int(history))
    stems: dict[str, str] = {}
    for src in sources:
        stem = _stem_of(src)
        if stem in stems:
            report.failed[src] = (f"{src}: has the stem '{stem}' of {stems[stem]}, whose outputs are in "
                                  f"{Path(out) / stem}; rename one of them")
            echo(f"FAILED {report.failed[src]}")
            continue
        stems[stem] = src
        folder = Path(out) / stem
        run = {**settings, **({} if is_live_source(src) else _source_facts(src))}
        if not force and not is_live_source(src) and _is_finished(folder, src, run, overlay):
            report.skipped.append(stem)
            echo(f"{stem}: already predicted with this checkpoint and settings (skipped)")
            continue
        try:
            _start_over(folder)
            if stream:
                det = stream_to_folder(detector, src, out, delay=delay, history=history, overlay=overlay, run=run)
            else:
                det = detector.predict(src)
                write_detection(det, out, overlay=overlay, run=run)
        except PatchvadError as exc:
            report.failed[src] = str(exc)
            echo(f"FAILED {src}: {exc}")
            continue
        except Exception as exc:  # one bad input must not stop the batch
            report.failed[src] = f"{src}: {type(exc).__name__}: {exc}"
            echo(f"FAILED {report.failed[src]}")
            continue
        report.done.append(det)
        status = "" if det.status == "complete" else f" (input ended early: {det.error})"
        echo(f"{det.stem}: {det.frame_count} frames, {len(det.events)} event(s) at threshold {det.threshold:.3f}"
             + "".join(f"\n  {ev.start_time:7.2f}s - {ev.end_time:7.2f}s  peak {ev.peak_score:.3f}"
                       for ev in det.events) + status)
    # Every video with outputs from this run or an earlier one, in source order.
    finished = {d.stem for d in report.done} | set(report.skipped)
    shown = [stem for stem in stems if stem in finished]
    skipped = f", skipped {len(report.skipped)} already predicted" if report.skipped else ""
    echo(f"predicted {len(report.done)} video(s) into {out}{skipped}; {len(report.failed)} failed")
    for src, why in report.failed.items():
        echo(f"  FAILED {why}" if why.startswith(src) else f"  FAILED {src}: {why}")
    summary = {"checkpoint": str(ckpt), "threshold": detector.threshold, "mode": "stream" if stream else "offline",
               "videos": shown, "skipped": report.skipped,
               "failed": report.failed}
    atomic_write_text(Path(out) / "predict.json", json.dumps(summary, indent=2) + "\n")
    if report_page:
        from patchvad.viz.footage import write_predict_report

        page = write_predict_report(out, shown, report.failed,
                                    run={k: summary[k] for k in ("checkpoint", "threshold", "mode")})
        echo(f"report: {page}")
    return report
