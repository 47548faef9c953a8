"""The HTML page of a ``patchvad predict`` run on footage (docs/report.md, "A predict run").

``patchvad predict SOURCE --ckpt CKPT --out DIR --report`` ends with ``DIR/report.html``:
the same page style and pieces as the benchmark report (:func:`patchvad.viz.report.html_page`,
:func:`~patchvad.viz.plots.timeline_png`, :func:`~patchvad.viz.report.video_figure`), made
from what ``predict`` wrote in ``DIR/<stem>/`` and nothing else, so a page can be made again
from a finished run (:func:`build_predict_report`). There is no ground truth: per video
the page shows the score timeline with the threshold and the events shaded, one card per
event (times, frames, peak score, the boxed peak-frame thumbnail embedded), and the
overlay video linked in place (``<stem>/overlay.mp4`` beside the page).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from patchvad.errors import PredictionError
from patchvad.io.files import atomic_write_text
from patchvad.viz.plots import EVENT_SHADE, Series, encode_image, timeline_png
from patchvad.viz.report import CSS, OverlayVideo, _e, _img, _place_overlay, html_page, video_figure

EVENTS = "events.json"          # the completion record of one video (patchvad.predict.EVENTS)
SCORE_COLOR = "#364fc7"
THRESHOLD_COLOR = "#c92a2a"
THUMB_WIDTH = 640               # embedded thumbnails are shrunk to this width at most (page size)

FOOTAGE_CSS = CSS + """
table.results td.name{font-weight:560}
.grid.events{grid-template-columns:repeat(auto-fill,minmax(260px,1fr))}
.video h3{margin:18px 0 8px;font-size:15px;font-weight:620}
.nothumb{display:flex;align-items:center;justify-content:center;aspect-ratio:4/3;border:1px dashed var(--line);
border-radius:8px;color:#adb5bd;font-size:13px}
.none{color:var(--muted);font-size:14px;margin:0}
"""


@dataclass(frozen=True)
class FootageVideo:
    """What ``patchvad predict`` wrote for one video, as the page reads it.

    Attributes:
        stem: the output folder's name.
        folder: ``DIR/<stem>``.
        record: the content of ``events.json`` (source, fps, threshold, events, ...).
        times: ``(F,)`` seconds of each frame (``scores.csv``).
        scores: ``(F,)`` frame scores (``scores.csv``).
    """

    stem: str
    folder: Path
    record: dict[str, Any]
    times: np.ndarray
    scores: np.ndarray

    @classmethod
    def load(cls, folder: str | Path) -> "FootageVideo":
        """Read ``folder/events.json`` and ``folder/scores.csv``.

        Raises:
            PredictionError: a file is missing or unreadable (the folder is not a finished
                ``patchvad predict`` output; run predict on its source again).
        """
        folder = Path(folder)
        try:
            record = json.loads((folder / EVENTS).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PredictionError(f"cannot read the video's events ({exc}); run patchvad predict on its source "
                                  f"again", path=folder / EVENTS) from exc
        if not isinstance(record, dict) or not isinstance(record.get("events"), list):
            raise PredictionError("not an events file of patchvad predict (no 'events' list)", path=folder / EVENTS)
        try:
            table = np.loadtxt(folder / "scores.csv", delimiter=",", skiprows=1, ndmin=2, dtype=np.float64)
        except (OSError, ValueError) as exc:
            raise PredictionError(f"cannot read the frame scores ({exc}); run patchvad predict on its source again",
                                  path=folder / "scores.csv") from exc
        table = table.reshape(-1, 3)
        return cls(stem=folder.name, folder=folder, record=record, times=table[:, 1], scores=table[:, 2])

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events as ``events.json`` holds them (start/end time and frame, peak, boxes, thumbnail)."""
        return list(self.record["events"])

    @property
    def threshold(self) -> float:
        """The frame-score threshold the events were found at."""
        return float(self.record["threshold"])

    @property
    def duration(self) -> float:
        """Seconds covered: the last frame's time plus one average frame."""
        if self.times.size == 0:
            return 0.0
        fps = float(self.record.get("fps") or 0.0)
        return float(self.times[-1]) + (1.0 / fps if fps > 0 else 0.0)


def timeline_figure(video: FootageVideo) -> bytes:
    """The video's frame scores against time (seconds), the threshold dashed, its events shaded, as PNG."""
    spans = [(float(ev["start_time"]), float(ev["end_time"])) for ev in video.events]
    series = [Series("frame score", video.times, video.scores, SCORE_COLOR, 1.6)]
    # fps=1.0: x is already in seconds (the real clock, also for a variable-rate video).
    return timeline_png(series, None, [(video.threshold, THRESHOLD_COLOR)], title=video.stem, fps=1.0,
                        spans=spans, x_end=max(video.duration, 1e-3))


def thumbnail_jpeg(path: Path, max_width: int = THUMB_WIDTH) -> bytes:
    """An event's thumbnail (the boxed peak frame ``predict`` wrote), at most ``max_width`` wide, as JPEG."""
    from PIL import Image

    with Image.open(path) as opened:
        rgb = opened.convert("RGB")
    if rgb.width > max_width:
        rgb = rgb.resize((max_width, max(1, round(rgb.height * max_width / rgb.width))), Image.Resampling.LANCZOS)
    return encode_image(np.asarray(rgb), "jpeg")


def _event_card(video: FootageVideo, k: int, ev: Mapping[str, Any]) -> str:
    """One event: its thumbnail (or a note), times, frames and peak."""
    thumb = ev.get("thumbnail")
    path = video.folder / thumb if thumb else None
    alt = f"{video.stem} event {k + 1}, peak frame {ev['peak_frame']}"
    if path is not None and path.is_file():
        picture = _img(thumbnail_jpeg(path), "image/jpeg", alt, "thumb")
    else:
        picture = '<div class="nothumb">no thumbnail (the frames could not be read again)</div>'
    n_boxes = len(ev.get("boxes") or [])
    peak_time = (float(video.times[int(ev["peak_frame"])]) if 0 <= int(ev["peak_frame"]) < video.times.size
                 else None)
    at = "" if peak_time is None else f" at {peak_time:.2f} s"
    closed = {"end": "video ended", "stream_lost": "input lost"}.get(str(ev.get("closed_by")), "")
    return (f'<figure class="event" data-event="{k}" data-start="{float(ev["start_time"])!r}" '
            f'data-end="{float(ev["end_time"])!r}" data-peak="{float(ev["peak_score"])!r}">{picture}'
            f'<figcaption><b>Event {k + 1}</b> · {float(ev["start_time"]):.2f} s – {float(ev["end_time"]):.2f} s'
            f'{" (" + _e(closed) + ")" if closed else ""}<br><span class="sub">frames {int(ev["start_frame"])}–'
            f'{int(ev["end_frame"])} · peak {float(ev["peak_score"]):.3f}{at} (frame {int(ev["peak_frame"])}) · '
            f'{n_boxes} box{"es" if n_boxes != 1 else ""}</span></figcaption></figure>')


def _video_section(index: int, video: FootageVideo, overlay_src: str | None) -> str:
    """Everything about one video: facts, timeline, events, overlay."""
    rec = video.record
    status = "" if rec.get("status", "complete") == "complete" else \
        f' <span class="tag gt">input ended early: {_e(rec.get("error") or rec.get("status"))}</span>'
    facts = (f'{_e(rec.get("source", video.stem))} · {int(rec.get("width", 0))}×{int(rec.get("height", 0))} · '
             f'{video.scores.size} frames · {video.duration:.2f} s · {_e(rec.get("mode", "offline"))}')
    timeline = (_img(timeline_figure(video), "image/png", f"scores of {video.stem}", "timeline")
                if video.scores.size else '<p class="none">no frame was scored.</p>')
    events = video.events
    if events:
        cards = "".join(_event_card(video, k, ev) for k, ev in enumerate(events))
        events_html = f'<div class="grid events">{cards}</div>'
    else:
        events_html = f'<p class="none">No event: no frame scored at or above {video.threshold:.3f}.</p>'
    if overlay_src is not None:
        overlay = video_figure(overlay_src, OverlayVideo(video.folder / "overlay.mp4", title=video.stem,
                                                         caption="heatmap, boxes and the score strip"))
    else:
        overlay = '<p class="none">No overlay video (predict ran with --no-overlay).</p>'
    return (f'<section id="video-{index}" class="video" data-stem="{_e(video.stem)}" data-events="{len(events)}">'
            f'<h2>{_e(video.stem)}{status}</h2><p class="lead">{facts}</p>'
            f'<figure>{timeline}</figure>'
            f'<h3>Events ({len(events)})</h3>{events_html}'
            f'<h3>Overlay video</h3><div class="grid videos">{overlay}</div></section>')


def _summary_table(videos: Sequence[FootageVideo], failed: Mapping[str, str]) -> str:
    rows = []
    for i, v in enumerate(videos):
        peak = f"{float(v.scores.max()):.3f}" if v.scores.size else "—"
        rows.append(f'<tr data-stem="{_e(v.stem)}"><td class="name"><a href="#video-{i}">{_e(v.stem)}</a></td>'
                    f'<td class="num">{v.scores.size}</td><td class="num">{v.duration:.2f}</td>'
                    f'<td class="num">{len(v.events)}</td><td class="num">{peak}</td>'
                    f'<td>{_e(v.record.get("status", "complete"))}</td></tr>')
    for src, why in failed.items():
        rows.append(f'<tr class="ceiling" data-failed="{_e(src)}"><td class="name">{_e(src)}</td>'
                    f'<td colspan="5">failed: {_e(why)}</td></tr>')
    return ('<div class="table-wrap"><table id="videos" class="results"><thead><tr><th scope="col">Video</th>'
            '<th scope="col" class="num">Frames</th><th scope="col" class="num">Seconds</th>'
            '<th scope="col" class="num">Events</th><th scope="col" class="num">Peak score</th>'
            f'<th scope="col">Status</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def _help_section() -> str:
    return f"""<section id="help"><h2>How to read this page</h2>
<dl class="help">
<dt>Timeline</dt><dd>The frame score over time (seconds, the video's own clock) in blue; the dashed red line
is the threshold; <span class="key" style="background:{EVENT_SHADE};opacity:.5"></span>shaded spans are the
events: runs of frames at or above the threshold (a gap shorter than one snippet does not split one).</dd>
<dt>Events</dt><dd>Start and end time, frames, the peak score and where it is. The picture is the peak frame
with the patch-score heatmap and the predicted box (green) of that frame's snippet; <code>events.json</code>
holds one box per snippet of the event.</dd>
<dt>Overlay video</dt><dd>The whole video with the heatmap and boxes drawn on it; the strip under the frame is
the score so far (yellow), the rest of the video (grey), the threshold (dashed) and the current frame (white
line).</dd>
<dt>No ground truth</dt><dd>This is footage: nothing here says whether an event is a true anomaly.</dd>
</dl></section>"""


def render_predict_report(videos: Sequence[FootageVideo], overlay_srcs: Sequence[str | None],
                          failed: Mapping[str, str] | None = None, run: Mapping[str, Any] | None = None,
                          title: str = "patchvad predict") -> str:
    """The page as one HTML string; ``overlay_srcs[i]`` is video ``i``'s overlay relative to the page, or None."""
    failed = dict(failed or {})
    run = dict(run or {})
    n_events = sum(len(v.events) for v in videos)
    nav = [("summary", "Videos")]
    lead = (f"{len(videos)} video{'s' if len(videos) != 1 else ''}, {n_events} event{'s' if n_events != 1 else ''}"
            + (f", {len(failed)} failed" if failed else "") + ". Click a name to jump to it.")
    parts = [f'<section id="summary"><h2>Videos</h2><p class="lead">{_e(lead)}</p>'
             f'{_summary_table(videos, failed)}</section>']
    for i, (v, src) in enumerate(zip(videos, overlay_srcs)):
        nav.append((f"video-{i}", v.stem))
        parts.append(_video_section(i, v, src))
    nav.append(("help", "How to read"))
    parts.append(_help_section())
    chips = []
    if run.get("checkpoint"):
        chips.append(f"checkpoint {Path(str(run['checkpoint'])).name}")
    thresholds = sorted({v.threshold for v in videos})
    if thresholds:
        chips.append("threshold " + " / ".join(f"{t:.3f}" for t in thresholds))
    if run.get("mode"):
        chips.append(str(run["mode"]))
    chips.append(f"{len(videos)} video{'s' if len(videos) != 1 else ''}")
    chips.append(f"{n_events} event{'s' if n_events != 1 else ''}")
    data = {"run": run, "failed": failed,
            "videos": [{"stem": v.stem, "source": v.record.get("source"), "frame_count": int(v.scores.size),
                        "threshold": v.threshold, "overlay": src, "events": v.events}
                       for v, src in zip(videos, overlay_srcs)]}
    return html_page(title, "When and where the model found anomalies in your footage.", chips, nav, parts,
                     "The events of this page are embedded below as JSON", "patchvad-predict", data,
                     css=FOOTAGE_CSS)


def write_predict_report(out_dir: str | Path, stems: Sequence[str], failed: Mapping[str, str] | None = None,
                         run: Mapping[str, Any] | None = None, filename: str = "report.html",
                         title: str = "patchvad predict") -> Path:
    """Write ``out_dir/report.html`` (atomically) from the outputs of ``stems`` in ``out_dir``.

    Args:
        out_dir: the ``--out`` folder of ``patchvad predict``; ``out_dir/<stem>/`` holds
            each video's ``events.json``, ``scores.csv``, thumbnails and overlay.
        stems: the videos shown, in this order.
        failed: ``{source: why}`` listed as failed.
        run: facts of the run shown as chips and embedded (``checkpoint``, ``mode``, ...).
        filename: the page's file name in ``out_dir``.
        title: the page's title.

    Raises:
        PredictionError: a video's ``events.json`` or ``scores.csv`` is missing or unreadable.
    """
    out = Path(out_dir)
    videos = [FootageVideo.load(out / stem) for stem in stems]
    # The overlay already lies beside the page (DIR/<stem>/overlay.mp4): linked there, not copied.
    srcs = [_place_overlay(out, OverlayVideo(v.folder / "overlay.mp4")) if (v.folder / "overlay.mp4").is_file()
            else None for v in videos]
    target = out / filename
    atomic_write_text(target, render_predict_report(videos, srcs, failed, run, title=title))
    return target


def build_predict_report(out_dir: str | Path, filename: str = "report.html") -> Path:
    """The page of a finished ``patchvad predict`` run, from its ``predict.json`` and folders.

    Raises:
        PredictionError: ``out_dir/predict.json`` is missing (run ``patchvad predict`` first)
            or a listed video's outputs are.
    """
    out = Path(out_dir)
    try:
        summary = json.loads((out / "predict.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PredictionError(f"cannot read the run's summary ({exc}); run patchvad predict with --out {out}",
                              path=out / "predict.json") from exc
    run = {k: summary[k] for k in ("checkpoint", "threshold", "mode") if k in summary}
    return write_predict_report(out, list(summary.get("videos") or []), summary.get("failed") or {}, run,
                                filename=filename)


__all__ = ["FootageVideo", "build_predict_report", "render_predict_report", "thumbnail_jpeg", "timeline_figure",
           "write_predict_report"]
