"""Event detection from frame scores (offline and online share one state machine)."""

from __future__ import annotations

import numpy as np
import pytest

from patchvad.events import EventBox, EventTracker, events_from_scores


def test_two_events_split_by_a_long_gap() -> None:
    scores = np.zeros(100)
    scores[10:20] = 0.9
    scores[15] = 0.95
    scores[60:70] = 0.8
    events = events_from_scores(scores, threshold=0.5, fps=10, min_gap=5)
    assert [(e.start_frame, e.end_frame) for e in events] == [(10, 19), (60, 69)]
    assert events[0].peak_frame == 15 and events[0].peak_score == pytest.approx(0.95)
    # times: frame / fps; the end is the end of the last frame
    assert (events[0].start_time, events[0].end_time) == (1.0, 2.0)


def test_short_gap_does_not_split() -> None:
    scores = np.zeros(50)
    scores[10:20] = 1.0
    scores[23:30] = 1.0            # 3 frames below threshold < min_gap 5
    events = events_from_scores(scores, 0.5, 25, min_gap=5)
    assert [(e.start_frame, e.end_frame) for e in events] == [(10, 29)]


def test_event_open_at_the_end_is_closed() -> None:
    scores = np.zeros(30)
    scores[25:] = 0.7
    (event,) = events_from_scores(scores, 0.5, 25)
    assert (event.start_frame, event.end_frame, event.closed_by) == (25, 29, "end")


def test_min_length_drops_blips() -> None:
    scores = np.zeros(30)
    scores[5] = 0.9
    assert events_from_scores(scores, 0.5, 25, min_length=2) == []


def test_online_reports_start_then_end_and_boxes() -> None:
    tracker = EventTracker(0.5, fps=25, min_gap=3)
    log = []
    tracker.add_box(EventBox(9, 0, 1, 2, 3, 4, 0.6))            # no event open yet: ignored
    for f, s in enumerate([0, 0.6, 0.7, 0.2, 0.1, 0.1, 0.0]):
        for kind, ev in tracker.update(f, s):
            log.append((f, kind, ev.start_frame, ev.end_frame))
        if f in (1, 2, 4):          # a box per "snippet"; the one at frame 4 lies in the gap
            tracker.add_box(EventBox(f - 1, f, 1, 2, 3, 4, s))
    assert log == [(1, "start", 1, 1), (5, "end", 1, 2)]
    assert [b.snippet for b in tracker.events[0].boxes] == [0, 1]


def test_stream_lost_closes_cleanly() -> None:
    tracker = EventTracker(0.5, fps=25)
    tracker.update(0, 0.9)
    ev = tracker.finish("stream_lost")
    assert ev is not None and ev.closed_by == "stream_lost" and tracker.events == [ev]
    with pytest.raises(ValueError):
        tracker.update(0, 0.1)


def test_times_follow_presentation_times_when_given() -> None:
    # 25 fps nominal, but the camera stalled 2 s before frame 3.
    times = [0.0, 0.04, 0.08, 2.12, 2.16, 2.2]
    scores = [0.0, 0.0, 0.0, 0.9, 0.9, 0.0]
    (event,) = events_from_scores(scores, 0.5, 25, min_gap=1, frame_times=times)
    assert (event.start_frame, event.end_frame) == (3, 4)
    # start: when frame 3 was shown; end: frame 4's time plus one average frame (1 / 25 s)
    assert event.start_time == pytest.approx(2.12) and event.end_time == pytest.approx(2.2)
    (nominal,) = events_from_scores(scores, 0.5, 25, min_gap=1)
    assert (nominal.start_time, nominal.end_time) == (3 / 25, 5 / 25)
