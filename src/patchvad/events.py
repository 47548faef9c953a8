"""Anomalous events: runs of frames whose score passes a threshold.

The same state machine serves offline and streaming use: offline detection feeds it
every frame score of a finished video; streaming feeds it frame by frame as snippets
are scored and reports each event when it opens and when it closes. At the end of a
video (or when a stream drops) :meth:`EventTracker.finish` closes an open event, so
an events file is always complete.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class EventBox:
    """The anomaly's box in one snippet of an event (frame pixels, inclusive xyxy)."""

    snippet: int
    frame: int
    x_min: int
    y_min: int
    x_max: int
    y_max: int
    score: float


@dataclass
class Event:
    """One anomalous event.

    Attributes:
        start_frame, end_frame: inclusive frame range.
        start_time, end_time: the same in seconds: the presentation time of the first
            frame, and that of the last frame plus one average frame duration (``1 /
            fps``). Without timestamps a frame's time is ``frame / fps``.
        peak_score, peak_frame: highest frame score inside the event.
        boxes: one :class:`EventBox` per snippet of the event (when a box was found).
        thumbnail: path of a picture of the peak frame, relative to the output folder.
        closed_by: ``"score"`` (fell below threshold), ``"end"`` (video ended) or
            ``"stream_lost"`` (input dropped).
    """

    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    peak_score: float
    peak_frame: int
    boxes: list[EventBox] = field(default_factory=list)
    thumbnail: str | None = None
    closed_by: str = "score"

    def to_dict(self) -> dict:
        """The event as plain JSON-ready values (boxes as dicts)."""
        return asdict(self)


class EventTracker:
    """Online event detection over a stream of frame scores.

    Args:
        threshold: a frame is anomalous when its score is >= threshold.
        fps: frames per second (for times).
        min_gap: an event stays open across up to ``min_gap - 1`` consecutive frames
            below threshold (one snippet of flicker does not split an event).
        min_length: events shorter than this many frames are dropped.
    """

    def __init__(self, threshold: float, fps: float, min_gap: int = 16, min_length: int = 1):
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.threshold = float(threshold)
        self.fps = float(fps)
        self.min_gap = max(1, int(min_gap))
        self.min_length = max(1, int(min_length))
        self.events: list[Event] = []
        self._open: Event | None = None
        self._last_above = -1
        self._frame = -1

    @property
    def open_event(self) -> Event | None:
        """The event in progress, or None between events."""
        return self._open

    @property
    def last_frame(self) -> int:
        """The last frame fed to :meth:`update` (-1 before the first)."""
        return self._frame

    def update(self, frame: int, score: float, time: float | None = None) -> list[tuple[str, Event]]:
        """Feed one frame's score. Returns ``[("start" | "end", event), ...]`` that happened.

        ``time``: the frame's presentation time in seconds (variable-frame-rate video);
        default ``frame / fps``.
        """
        if frame <= self._frame:
            raise ValueError(f"frames must increase (got {frame} after {self._frame})")
        self._frame = frame
        start = frame / self.fps if time is None else float(time)
        end = start + 1.0 / self.fps
        happened: list[tuple[str, Event]] = []
        above = score >= self.threshold
        if self._open is not None and not above and frame - self._last_above >= self.min_gap:
            closed = self._close("score")
            if closed is not None:
                happened.append(("end", closed))
        if above:
            if self._open is None:
                self._open = Event(start_frame=frame, end_frame=frame, start_time=start, end_time=end,
                                   peak_score=float(score), peak_frame=frame)
                happened.append(("start", self._open))
            self._last_above = frame
            ev = self._open
            ev.end_frame = frame
            ev.end_time = end
            if score > ev.peak_score:
                ev.peak_score, ev.peak_frame = float(score), frame
        return happened

    def add_box(self, box: EventBox) -> None:
        """Attach a snippet's box to the open event (ignored when none is open)."""
        if self._open is not None:
            self._open.boxes.append(box)

    def _close(self, reason: str) -> Event | None:
        ev, self._open = self._open, None
        if ev is None:
            return None
        ev.closed_by = reason
        # Boxes recorded after the last anomalous frame (during the gap) are not part of it.
        ev.boxes = [b for b in ev.boxes if b.frame <= ev.end_frame]
        if ev.end_frame - ev.start_frame + 1 < self.min_length:
            return None
        self.events.append(ev)
        return ev

    def finish(self, reason: str = "end") -> Event | None:
        """Close the open event at the end of the input; returns it (or None)."""
        return self._close(reason)


def events_from_scores(frame_scores, threshold: float, fps: float, min_gap: int = 16,
                       min_length: int = 1, frame_times=None) -> list[Event]:
    """Offline events of a whole video: the online tracker fed every frame.

    ``frame_times``: ``(F,)`` presentation times in seconds (default ``frame / fps``).
    """
    tracker = EventTracker(threshold, fps, min_gap=min_gap, min_length=min_length)
    for f, s in enumerate(frame_scores):
        tracker.update(f, float(s), None if frame_times is None else float(frame_times[f]))
    tracker.finish("end")
    return tracker.events
