"""Synthetic anomalies in a user's own footage (``patchvad synth --background FOOTAGE``).

The painted streets of the built-in benchmark are replaced by clips of a real video:
the sprites, agents and anomaly scripts of :mod:`patchvad.data.synth` are drawn onto
the footage's frames, and the clips are written in the generic dataset folder layout
with the same weak-supervision rules (docs/synthetic.md, "Your own footage").

What the generator needs to know about the camera comes from the footage's own
moving objects (:func:`estimate_geometry`): a median background, the connected
components of what differs from it, and among them the person-shaped ones (taller
than wide, clear of the border). Their height as a linear function of their foot row,
fitted robustly, is the perspective; the rows where their feet are is the zone people
walk in; their tracks' net displacement gives the dominant flow direction that
defines "against the flow". A user who knows better (or whose footage shows no
motion) gives the person height with ``scale``.

Time split: the footage's first ``n_train / (n_train + n_test)`` of its frames give
the training clips, the rest the test clips, so no footage frame is in both splits;
within a split the clips are spread evenly (they overlap when the part holds fewer
than ``count x clip`` frames). The frame ranges are recorded in ``synth.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from patchvad.data.adapters.common import mask_boxes
from patchvad.data.synth.config import PRESETS, SynthConfig
from patchvad.data.synth.generate import (
    CONVENTIONS,
    RECORD,
    RECORD_FORMAT,
    RECORD_VERSION,
    annotate,
    plan_benchmark,
    prepare_folder,
    run_jobs,
    split_counts,
    video_path,
    write_dataset_manifest,
    write_ground_truth,
)
from patchvad.data.synth.render import AgentScene, VideoSpec, open_writer, stage_agents
from patchvad.data.synth.scene import View, draw_photometry
from patchvad.errors import ConfigError, VideoError
from patchvad.geometry import link_frame_boxes
from patchvad.io.files import atomic_write_json, sha256_file
from patchvad.io.video import VideoReader, probe

__all__ = [
    "FOOTAGE_TYPES", "Footage", "FootagePlan", "Geometry", "build_footage_scene", "estimate_geometry",
    "footage_command", "generate_from_footage", "parse_scale", "plan_footage", "read_clip", "scan_footage",
]

#: The anomaly types staged on footage: the painted benchmark's, except a pedestrian
#: on the road (the footage's roads are not known).
FOOTAGE_TYPES: tuple[str, ...] = ("running", "wrong_way", "vehicle_in_zone", "fighting", "fall", "left_object")
#: Standing height in px of a person at perspective scale 1 (the middle of the
#: presets' ``person_height``); the footage's perspective is expressed in it.
REFERENCE_HEIGHT = 36.0
#: Motion is analysed on frames at most this wide.
ANALYSIS_WIDTH = 320
#: At most this many frames are analysed (every round(fps / 6)-th, from the start).
MAX_ANALYSED = 4000
#: Person-shaped moving objects (over all analysed frames) needed to fit the perspective.
MIN_PEOPLE = 30
#: Tracks of moving people needed to tell the dominant flow direction.
MIN_TRACKS = 3
#: Shortest clip: an event spans up to 45% of a clip, and falls, swerving cars and
#: fights need 36 frames.
MIN_CLIP = 80
#: Smallest output frame (the synthetic config's limit).
MIN_WIDTH = 160
DEFAULT_TRAIN, DEFAULT_TEST = 20, 10


@dataclass(frozen=True)
class Footage:
    """The background video: its path, decoded frame count, rate and native size."""

    path: str
    frames: int
    fps: float
    width: int
    height: int


@dataclass(frozen=True)
class Geometry:
    """Where and how big people are in the footage, in its pixels.

    Attributes:
        width, height: frame size these numbers refer to.
        top, bottom: standing person height in px with the feet on row 0 / on row
            ``height``; linear in between.
        orient: ``"h"`` people mostly move along x, ``"v"`` along y.
        flow: +1 or -1, the dominant direction along that axis.
        band: ``(lo, hi)`` rows (``h``) or columns (``v``) of the moving people's feet.
        source: ``"motion"`` (all estimated) or ``"scale"`` (heights given).
        stats: what the estimate rests on (counts, fit residual, flow share).
    """

    width: int
    height: int
    top: float
    bottom: float
    orient: str
    flow: int
    band: tuple[float, float]
    source: str
    stats: dict

    def height_at(self, row):
        """Standing person height in px with the feet on ``row`` (scalar or array)."""
        return self.top + (self.bottom - self.top) * np.asarray(row, dtype=np.float64) / self.height

    def resized(self, width: int, height: int) -> Geometry:
        """The same geometry for the frame resized to ``width x height``."""
        sx, sy = width / self.width, height / self.height
        cross = sy if self.orient == "h" else sx
        return dataclasses.replace(self, width=width, height=height, top=self.top * sy, bottom=self.bottom * sy,
                                   band=(self.band[0] * cross, self.band[1] * cross))

    def to_dict(self) -> dict:
        """The geometry as recorded in ``synth.json`` (lengths rounded)."""
        return {"frame": [self.width, self.height], "person_height_top_row": round(self.top, 2),
                "person_height_bottom_row": round(self.bottom, 2), "orient": self.orient, "flow": self.flow,
                "feet_band": [round(self.band[0], 1), round(self.band[1], 1)], "source": self.source,
                "stats": self.stats}


@dataclass(frozen=True)
class FootagePlan:
    """Everything decided before a pixel is written.

    Attributes:
        footage: the background video.
        geometry: its geometry in its own pixels.
        config: the synthetic config of the clips (output size, rate, clip length).
        view: the geometry in output pixels, as the agent builders use it.
        size: output ``(width, height)``, or None when it is the footage's own.
        specs: every clip (test clips first, like :func:`plan_benchmark`).
        starts: per stem, the footage frame of the clip's first frame.
        ranges: per split, ``(first, last)`` footage frames (inclusive) clips come from.
    """

    footage: Footage
    geometry: Geometry
    config: SynthConfig
    view: View
    size: tuple[int, int] | None
    specs: list[VideoSpec]
    starts: dict[str, int]
    ranges: dict[str, tuple[int, int]]


# --- reading the footage -----------------------------------------------------------------


def scan_footage(path: str | Path) -> tuple[Footage, np.ndarray]:
    """Decode the whole footage once: its true frame count, and grey frames for motion analysis.

    Returns:
        The footage, and ``(A, h, w)`` uint8 grey frames (at most
        :data:`ANALYSIS_WIDTH` wide), every ``stride``-th frame (about 6 per second),
        at most :data:`MAX_ANALYSED` of them.

    Raises:
        VideoError: missing, empty, not a video, or corrupt (names the file).
    """
    info = probe(path)
    aw = min(ANALYSIS_WIDTH, info.width)
    ah = max(8, int(round(info.height * aw / info.width)))
    size = None if (aw, ah) == (info.width, info.height) else (aw, ah)
    stride = max(1, int(round(info.fps / 6.0)))
    kept: list[np.ndarray] = []
    count = 0
    for k, grey in enumerate(VideoReader(path).frames(size=size, gray=True)):
        if k % stride == 0 and len(kept) < MAX_ANALYSED:
            kept.append(grey)
        count += 1
    footage = Footage(path=str(path), frames=count, fps=float(info.fps), width=int(info.width),
                      height=int(info.height))
    return footage, np.stack(kept)


def moving_objects(grey: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Boxes of what moves: connected components of the difference to the median frame.

    Args:
        grey: ``(A, h, w)`` uint8 frames in time order.

    Returns:
        Per frame index ``(a, boxes (n, 4))``, inclusive xyxy in the frames' pixels.
    """
    step = max(1, grey.shape[0] // 100)
    background = np.median(grey[::step], axis=0).astype(np.int16)
    h, w = grey.shape[1:]
    min_area = max(12, int(3e-4 * h * w))
    out = []
    for a in range(grey.shape[0]):
        diff = np.abs(grey[a].astype(np.int16) - background)
        # Sensor noise differs between cameras: the threshold follows the frame's typical difference.
        fg = diff > max(20.0, 6.0 * float(np.median(diff[::4, ::4])))
        # Specks off (opening, 2x2), a body's parts joined (closing, 5 rows x 3 columns).
        out.append((a, mask_boxes(_closing(_opening(fg), 2, 1), min_area=min_area)))
    return out


def _opening(mask: np.ndarray) -> np.ndarray:
    """Binary opening with a 2x2 square: the union of the 2x2 squares inside ``mask``."""
    eroded = np.zeros_like(mask)
    eroded[:-1, :-1] = mask[:-1, :-1] & mask[1:, :-1] & mask[:-1, 1:] & mask[1:, 1:]
    out = eroded.copy()
    out[1:] |= eroded[:-1]
    out[:, 1:] |= out[:, :-1].copy()
    return out


def _spread_along(mask: np.ndarray, radius: int, axis: int, op) -> np.ndarray:
    """Dilation (``op`` = or) or erosion (and) along one axis by ``radius`` px each way.

    Shifted slices instead of scipy.ndimage's binary morphology: the same result away
    from the border and about 20x faster, which matters for every analysed frame.
    """
    out = mask.copy()
    a = np.moveaxis(mask, axis, 0)
    b = np.moveaxis(out, axis, 0)
    for d in range(1, radius + 1):
        op(b[d:], a[:-d], out=b[d:])
        op(b[:-d], a[d:], out=b[:-d])
    return out


def _closing(mask: np.ndarray, ry: int, rx: int) -> np.ndarray:
    """Binary closing with a ``(2 ry + 1) x (2 rx + 1)`` rectangle (nothing eroded from the border)."""
    grown = _spread_along(_spread_along(mask, ry, 0, np.logical_or), rx, 1, np.logical_or)
    return _spread_along(_spread_along(grown, ry, 0, np.logical_and), rx, 1, np.logical_and)


def _person_shaped(boxes: np.ndarray, w: int, h: int) -> np.ndarray:
    """Standing people: taller than 1.5x their width, at least 6 px tall, clear of the border."""
    bw = boxes[:, 2] - boxes[:, 0] + 1
    bh = boxes[:, 3] - boxes[:, 1] + 1
    return ((bh >= 1.5 * bw) & (bh >= 6) & (boxes[:, 0] > 0) & (boxes[:, 1] > 0) & (boxes[:, 2] < w - 1)
            & (boxes[:, 3] < h - 1))


def _robust_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """``y ~ a + b x`` by least squares refitted on the points within 2.5 robust sigmas.

    Returns ``(a, b, sigma)`` with sigma the residuals' scaled median absolute deviation.
    """
    keep = np.ones(x.shape[0], dtype=bool)
    a = b = sigma = 0.0
    for _ in range(5):
        A = np.stack([np.ones(int(keep.sum())), x[keep]], axis=1)
        (a, b), *_ = np.linalg.lstsq(A, y[keep], rcond=None)
        r = y - (a + b * x)
        sigma = 1.4826 * float(np.median(np.abs(r[keep])))
        new = np.abs(r) <= 2.5 * max(sigma, 0.5)
        if (new == keep).all():
            break
        keep = new
    return float(a), float(b), sigma


def parse_scale(text: str | float | tuple) -> tuple[float, float]:
    """``"H"`` or ``"TOP,BOTTOM"`` person heights in px -> ``(top, bottom)``.

    Raises:
        ConfigError: not one or two positive numbers.
    """
    if isinstance(text, (int, float)):
        parts = [float(text)]
    elif isinstance(text, tuple):
        parts = [float(v) for v in text]
    else:
        try:
            parts = [float(v) for v in str(text).split(",")]
        except ValueError:
            parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(math.isfinite(v) and v > 0 for v in parts):
        raise ConfigError(f"--scale must be a person height in px (H) or the heights with the feet on the top "
                          f"and on the bottom row (TOP,BOTTOM), positive numbers; got {text!r}")
    return parts[0], parts[1]


def estimate_geometry(footage: Footage, grey: np.ndarray, scale: tuple[float, float] | None = None) -> Geometry:
    """The footage's perspective, walking zone and dominant flow, from its moving people.

    Args:
        footage: the footage (its native size is the geometry's frame).
        grey: its analysed grey frames (:func:`scan_footage`).
        scale: person heights ``(top, bottom)`` in native px, replacing the
            perspective estimate (the zone and flow still come from the motion when
            there is enough, else every row a person fits in and left to right).

    Raises:
        VideoError: too little motion to estimate the perspective and no ``scale``
            (names the file and says to pass ``--scale``).
    """
    h, w = grey.shape[1:]
    per_frame = moving_objects(grey)
    people = [(a, b[_person_shaped(b, w, h)]) for a, b in per_frame]
    boxes = np.concatenate([b for _, b in people]) if people else np.zeros((0, 4), dtype=np.int64)
    f = footage.width / w           # analysis px -> footage px
    stats: dict = {"analysed_frames": int(grey.shape[0]), "moving_people": int(boxes.shape[0])}
    feet = boxes[:, 3].astype(np.float64) + 1.0          # the row below the lowest pixel: the ground line
    heights = (boxes[:, 3] - boxes[:, 1] + 1).astype(np.float64)
    if scale is None:
        if boxes.shape[0] < MIN_PEOPLE:
            raise VideoError(f"cannot estimate how big people are: only {boxes.shape[0]} detections of moving "
                             f"person-shaped objects in {grey.shape[0]} analysed frames (need {MIN_PEOPLE}); pass "
                             f"--scale H (a standing person's height in px) or --scale TOP,BOTTOM (with the "
                             f"feet on the top / bottom row)", path=footage.path)
        if np.percentile(feet, 90) - np.percentile(feet, 10) < 0.1 * h:
            # Everyone walks at about one distance: the slope is not observable.
            a, b = float(np.median(heights)), 0.0
            sigma = 1.4826 * float(np.median(np.abs(heights - a)))
        else:
            a, b, sigma = _robust_line(feet, heights)
            if b < 0:
                # People higher up the image cannot be nearer: a degenerate fit, keep the typical size.
                a, b = float(np.median(heights)), 0.0
        top, bottom = a * f, (a + b * h) * f
        stats.update({"fit_residual_px": round(sigma * f, 2), "source_rows": [round(float(feet.min()) * f, 1),
                                                                              round(float(feet.max()) * f, 1)]})
        source = "motion"
    else:
        top, bottom = scale
        source = "scale"
    orient, flow, share, n_tracks = _flow(people)
    stats.update({"tracks": n_tracks, "flow_share": None if share is None else round(share, 3)})
    if orient is None or boxes.shape[0] < MIN_PEOPLE:
        orient, flow = "h", 1
        rows = np.arange(footage.height, dtype=np.float64)
        fits = rows - (top + (bottom - top) * rows / footage.height) >= 2
        lo = float(rows[fits][0]) if fits.any() else 0.0
        band = (lo, float(footage.height - 3))
        stats["zone"] = "assumed: every row a standing person fits in; flow assumed left to right"
    else:
        mid = (boxes[:, 0] + boxes[:, 2] + 1) / 2.0
        cross, along = (feet, mid) if orient == "h" else (mid, feet)
        lo, hi = _zone(cross, along, h if orient == "h" else w, w if orient == "h" else h)
        band = (lo * f, hi * f)
        stats["zone"] = "rows" if orient == "h" else "columns"
        stats["zone"] += " where the feet of moving people were seen along at least half the frame"
    return Geometry(width=footage.width, height=footage.height, top=float(top), bottom=float(bottom),
                    orient=orient, flow=int(flow), band=band, source=source, stats=stats)


def _zone(cross: np.ndarray, along: np.ndarray, cross_n: int, along_n: int) -> tuple[float, float]:
    """The cross range (rows of a horizontal zone) where people walk through the frame.

    Feet are counted in square bins of 1/32 of the frame's length; a cross bin is full
    when feet were seen (twice or more) in at least half of its along bins (with no
    bin that full: at least half as many as in the fullest). Gaps of up to three bins
    between full bins are bridged (people walking in separate lanes still walk in one
    zone); the zone is the run holding the most feet.
    """
    size = max(2.0, along_n / 32.0)
    nc, na = int(math.ceil(cross_n / size)), int(math.ceil(along_n / size))
    counts = np.zeros((nc, na), dtype=np.int64)
    np.add.at(counts, (np.clip((cross / size).astype(np.int64), 0, nc - 1),
                       np.clip((along / size).astype(np.int64), 0, na - 1)), 1)
    coverage = (counts >= 2).mean(axis=1)
    full = coverage >= min(0.5, 0.5 * float(coverage.max()))
    idx = np.flatnonzero(full)
    for a, b in zip(idx[:-1], idx[1:]):
        if b - a <= 4:
            full[a:b] = True
    best, best_feet, k = (0, 0), -1, 0
    while k < nc:
        if not full[k]:
            k += 1
            continue
        j = k
        while j + 1 < nc and full[j + 1]:
            j += 1
        feet = int(counts[k:j + 1].sum())
        if feet > best_feet:
            best, best_feet = (k, j), feet
        k = j + 1
    return best[0] * size, min((best[1] + 1) * size, float(cross_n))


def _flow(people: list[tuple[int, np.ndarray]]) -> tuple[str | None, int, float | None, int]:
    """Dominant motion axis and direction of the people's tracks.

    Returns ``(orient, flow, share, tracks)``: the axis with the larger summed foot
    displacement, the sign of the summed net displacement along it, the share of the
    tracks' net travel that goes that way, and the number of tracks that moved; orient
    is None with fewer than :data:`MIN_TRACKS` moving tracks.
    """
    rows = link_frame_boxes(people)
    nets = []
    for k in np.unique(rows[:, 0]) if rows.size else []:
        r = rows[rows[:, 0] == k]
        if r.shape[0] < 3:
            continue
        x = (r[:, 2] + r[:, 4]) / 2.0
        y = r[:, 5].astype(np.float64)
        size = float(np.median(r[:, 5] - r[:, 3] + 1))
        dx, dy = float(x[-1] - x[0]), float(y[-1] - y[0])
        if math.hypot(dx, dy) >= 0.5 * size:          # moved at least half a body height
            nets.append((dx, dy))
    if len(nets) < MIN_TRACKS:
        return None, 1, None, len(nets)
    d = np.asarray(nets)
    axis = 0 if np.abs(d[:, 0]).sum() >= np.abs(d[:, 1]).sum() else 1
    along = d[:, axis]
    flow = 1 if along.sum() >= 0 else -1
    share = float(np.abs(along[np.sign(along) == flow]).sum() / max(np.abs(along).sum(), 1e-9))
    return ("h" if axis == 0 else "v"), flow, share, len(nets)


# --- the clips' geometry and config -------------------------------------------------------


def footage_config(footage: Footage, width: int, height: int, clip_frames: int) -> SynthConfig:
    """The synthetic config of clips of ``footage`` written at ``width x height``.

    Speeds are the presets' (given per frame at 25 fps) converted to the footage's
    frame rate; a few synthetic walkers walk with the flow in every clip so that a
    drawn person is not itself the anomaly; no painted-street extras (a person
    standing still, road traffic, sensor noise: the footage has its own).
    """
    return dataclasses.replace(
        PRESETS["default"], name="footage", width=int(width), height=int(height), fps=float(footage.fps),
        frames=(int(clip_frames), int(clip_frames)), speed_scale=25.0 / float(footage.fps),
        walkers_visible=(1.0, 3.0), cars_visible=(0.0, 0.0), cyclists=0.0, stander=0.0, noise_sigma=(0.0, 0.0),
        n_cameras=1, anomaly_types=FOOTAGE_TYPES, default_train=DEFAULT_TRAIN, default_test=DEFAULT_TEST,
    ).validate()


def footage_view(geometry: Geometry) -> View:
    """The agent builders' view of footage of this geometry (output pixels).

    The feet zone is the estimated band, narrowed so that a standing person's head
    stays inside the frame. The cars of ``vehicle_in_zone`` swerve in from a lane
    beside the zone (outside it, on the side with more room); the footage's own roads
    are not known.
    """
    W, H = geometry.width, geometry.height
    top, bottom = geometry.top / REFERENCE_HEIGHT, geometry.bottom / REFERENCE_HEIGHT
    lo, hi = geometry.band
    if geometry.orient == "h":
        rows = np.arange(H, dtype=np.float64)
        fits = (rows - 1.05 * geometry.height_at(rows) >= 1) & (geometry.height_at(rows) >= 6)
        first = float(rows[fits][0]) if fits.any() else 0.6 * H
        lo, hi = max(lo, first), min(hi, H - 3.0)
        size = float(geometry.height_at(hi))
        cross_n = H
    else:
        size = float(geometry.height_at(H))
        lo, hi = max(lo, 0.25 * size), min(hi, W - 0.25 * size)
        cross_n = W
    if hi - lo < 4:
        mid = (lo + hi) / 2.0
        lo, hi = mid - 2.0, mid + 2.0
    # A road about 1.5 person heights wide lies a little off the zone, on the side with
    # more room; above a horizontal zone only where people are not much smaller (far
    # rows can lie beyond the horizon, where the fitted heights go to zero).
    far = float(geometry.height_at(lo)) if geometry.orient == "h" else size
    above = (lo - 0.1 * far - 1.5 * far, lo - 0.1 * far)
    below = (hi + 0.1 * size, hi + 1.6 * size)
    use_above = lo >= cross_n - hi
    if use_above and geometry.orient == "h":
        use_above = float(geometry.height_at(max(above[0] + 0.9 * (above[1] - above[0]), 0.0))) >= 0.6 * far
    road = above if use_above else below
    rw = road[1] - road[0]
    lanes = ((road[0] + 0.45 * rw, 1), (road[0] + 0.90 * rw, -1)) if geometry.orient == "h" else (
        (road[0] + 0.28 * rw, 1), (road[0] + 0.72 * rw, -1))
    return View(width=W, height=H, orient=geometry.orient, flow=geometry.flow, walk=(lo, hi), feet=(lo, hi),
                road=road, lanes=lanes, perspective=(top, bottom), reach=max(1.0, top, bottom))


def _even(v: float) -> int:
    return max(2, int(round(v / 2.0)) * 2)


def output_size(footage: Footage, width: int | None) -> tuple[int, int]:
    """Output frame size ``(width, height)``, both even (H.264 4:2:0).

    ``width`` defaults to the footage's; the height keeps the aspect ratio.
    """
    w = footage.width if width is None else int(width)
    if w < MIN_WIDTH:
        raise ConfigError(f"--width must be at least {MIN_WIDTH} px, got {w}")
    ow = _even(w) if w % 2 else w
    oh = _even(footage.height * ow / footage.width)
    if oh < 120:
        raise ConfigError(f"clips of {footage.path} at width {ow} would be {oh} px high; at least 120 are needed")
    return ow, oh


def clip_ranges(footage: Footage, n_train: int, n_test: int, clip: int) -> dict[str, tuple[int, int]]:
    """Footage frames ``(first, last)`` (inclusive) per split.

    The first ``n_train / (n_train + n_test)`` of the frames for training, the rest
    for testing.

    Raises:
        VideoError: a split with clips gets fewer frames than one clip (names the file).
    """
    total = n_train + n_test
    cut = int(round(footage.frames * n_train / total)) if total else 0
    ranges = {"train": (0, cut - 1), "test": (cut, footage.frames - 1)}
    for split, count in (("train", n_train), ("test", n_test)):
        first, last = ranges[split]
        if count and last - first + 1 < clip:
            raise VideoError(f"too short: {footage.frames} frames; the {split} part (frames {first}-{last}, "
                             f"{max(last - first + 1, 0)} frames) is shorter than one clip of {clip} frames. Use "
                             f"longer footage, a shorter clip (--clip-frames, at least {MIN_CLIP}) or other "
                             f"train/test counts", path=footage.path)
    return ranges


def _spread(first: int, last: int, count: int, clip: int) -> list[int]:
    """``count`` clip starts spread evenly over frames first..last (clips stay inside)."""
    room = last - first + 1 - clip
    if count == 1:
        return [first + room // 2]
    return [first + int(round(k * room / (count - 1))) for k in range(count)]


def plan_footage(footage: str | Path, n_train: int = DEFAULT_TRAIN, n_test: int = DEFAULT_TEST, seed: int = 0,
                 clip_frames: int | None = None, width: int | None = None,
                 scale: str | float | tuple | None = None, scanned: tuple[Footage, np.ndarray] | None = None
                 ) -> FootagePlan:
    """Read the footage, estimate its geometry and plan every clip; writes nothing.

    Args:
        footage: the background video (any resolution and frame rate PyAV reads).
        n_train: training clips.
        n_test: test clips.
        seed: seeds every clip's anomaly, walkers and colours.
        clip_frames: frames per clip (default: 8 seconds, at least :data:`MIN_CLIP`).
        width: output width (default the footage's); the height keeps the aspect.
        scale: person height(s) in footage px (see :func:`parse_scale`) instead of the estimate.
        scanned: a :func:`scan_footage` result to reuse.

    Raises:
        VideoError: unreadable, too short, or too little motion without ``scale``.
        ConfigError: invalid counts, clip length, width or scale.
    """
    given = None if scale is None else parse_scale(scale)
    if clip_frames is not None and int(clip_frames) < MIN_CLIP:
        raise ConfigError(f"--clip-frames must be at least {MIN_CLIP} (an event spans up to 45% of a clip and "
                          f"needs 36 frames), got {clip_frames}")
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise ConfigError(f"need a non-negative number of training and test clips, and at least one in all; got "
                          f"train={n_train}, test={n_test}")
    footage_info, grey = scanned if scanned is not None else scan_footage(footage)
    if not 2.5 <= footage_info.fps <= 250:
        raise VideoError(f"frame rate {footage_info.fps:g} fps is outside 2.5-250 fps", path=footage_info.path)
    clip = int(clip_frames) if clip_frames is not None else max(MIN_CLIP, int(round(8.0 * footage_info.fps)))
    ranges = clip_ranges(footage_info, n_train, n_test, clip)
    ow, oh = output_size(footage_info, width)
    geometry = estimate_geometry(footage_info, grey, given)
    config = footage_config(footage_info, ow, oh, clip)
    view = footage_view(geometry.resized(ow, oh))
    specs = plan_benchmark(n_train, n_test, seed, config)
    starts: dict[str, int] = {}
    for split in ("train", "test"):
        mine = [s for s in specs if s.split == split]
        if mine:
            for spec, start in zip(sorted(mine, key=lambda s: s.index), _spread(*ranges[split], len(mine), clip)):
                starts[spec.stem] = start
    size = None if (ow, oh) == (footage_info.width, footage_info.height) else (ow, oh)
    return FootagePlan(footage=footage_info, geometry=geometry, config=config, view=view, size=size, specs=specs,
                       starts=starts, ranges=ranges)


# --- clips ---------------------------------------------------------------------------------


def build_footage_scene(spec: VideoSpec, config: SynthConfig, view: View) -> AgentScene:
    """A clip's agents (the event, synthetic walkers with the flow, company); deterministic in the spec.

    The spec's seed is split into the same streams as a painted video's (camera
    response, event, crowd); the footage supplies the pixels under them.
    """
    streams = np.random.SeedSequence(list(spec.seed)).spawn(4)
    r_scene, r_event, r_crowd, _ = (np.random.default_rng(s) for s in streams)
    photo = draw_photometry(r_scene, config)
    lane_speeds = [float(r_scene.uniform(*config.car_speed)) * config.object_scale * config.speed_scale
                   for _ in view.lanes]
    event, agents = stage_agents(spec, config, view, photo, lane_speeds, r_event, r_crowd, road=False)
    return AgentScene(spec=spec, config=config, view=view, photo=photo, agents=agents, event=event)


def read_clip(plan: FootagePlan, stem: str) -> np.ndarray:
    """The footage frames under clip ``stem``: ``(F, H, W, 3)`` uint8 at the output size."""
    start = plan.starts[stem]
    clip = plan.config.frames[0]
    frames = []
    for k, frame in enumerate(VideoReader(plan.footage.path).frames(size=plan.size)):
        if k >= start:
            frames.append(frame)
        if k == start + clip - 1:
            break
    if len(frames) < clip:
        raise VideoError(f"ended after {start + len(frames)} frames, inside clip {stem}", path=plan.footage.path)
    return np.stack(frames)


def _clip_jobs(plan: FootagePlan, root: Path, order: list[VideoSpec]) -> Iterator[tuple]:
    """One decode of the footage; a job (with its frames) as soon as a clip's last frame is read.

    ``order`` holds the specs by start frame; only the last clip's worth of frames is kept.
    """
    clip = plan.config.frames[0]
    buffer: deque = deque(maxlen=clip)
    k = 0
    read = 0
    for i, frame in enumerate(VideoReader(plan.footage.path).frames(size=plan.size)):
        buffer.append(frame)
        read = i + 1
        while k < len(order) and plan.starts[order[k].stem] + clip - 1 == i:
            yield order[k], plan.config, plan.view, np.stack(buffer), str(root)
            k += 1
        if k == len(order):
            return
    raise VideoError(f"ended after {read} frames while the first read gave {plan.footage.frames}",
                     path=plan.footage.path)


def _produce_clip(job: tuple[VideoSpec, SynthConfig, View, np.ndarray, str]) -> dict:
    """Draw a clip's agents onto its footage frames, encode it and (test clips) annotate it."""
    spec, config, view, frames, root = job
    scene = build_footage_scene(spec, config, view)
    writer = open_writer(Path(root) / video_path(spec), config)
    try:
        for t in range(frames.shape[0]):
            writer.write(scene.draw_agents(frames[t], t))
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return annotate(spec, scene, writer.frame_count)


def generate_from_footage(footage: str | Path, root: str | Path, n_train: int = DEFAULT_TRAIN,
                          n_test: int = DEFAULT_TEST, seed: int = 0, clip_frames: int | None = None,
                          width: int | None = None, scale: str | float | tuple | None = None, workers: int = 1,
                          overwrite: bool = False, progress=None) -> Path:
    """Inject synthetic anomalies into clips of real footage; write a dataset folder.

    The folder has the layout of :func:`~patchvad.data.synth.generate_benchmark`
    (manifest, videos, test tracks and frame labels, ``synth.json``) and its weak
    supervision: training clips carry only their video-level label. Everything about
    the footage is read and checked before the folder is touched; the manifest is
    written last.

    Args:
        footage: the background video.
        root: output folder (empty, new, or an earlier synthetic set with ``overwrite``).
        n_train: training clips (this and the next five: see :func:`plan_footage`).
        n_test: test clips.
        seed: the seed of every clip's anomaly, walkers and colours.
        clip_frames: frames per clip.
        width: output width.
        scale: person height(s) in footage px, instead of the estimate.
        workers: processes drawing and encoding clips (the output does not depend on it).
        overwrite: replace an earlier synthetic set in ``root``.
        progress: optional callable ``(done, total)`` called after each clip.

    Raises:
        VideoError: unreadable or too short footage, or too little motion without ``scale``.
        ConfigError: invalid counts, clip length, width or scale.
        DatasetError: ``root`` is not usable.
    """
    plan = plan_footage(footage, n_train, n_test, seed, clip_frames, width, scale)
    root = Path(root)
    prepare_folder(root, overwrite)
    order = sorted(plan.specs, key=lambda s: (plan.starts[s.stem], s.split != "train", s.index))
    done = run_jobs(_clip_jobs(plan, root, order), len(order), max(1, int(workers)), progress,
                    produce=_produce_clip)
    by_stem = {spec.stem: result for spec, result in zip(order, done)}
    specs = sorted(plan.specs, key=lambda s: (s.split != "train", s.index))
    results = [by_stem[s.stem] for s in specs]
    clip = plan.config.frames[0]
    test_records = write_ground_truth(root, specs, results, lambda spec: {
        "footage_frames": [plan.starts[spec.stem], plan.starts[spec.stem] + clip - 1]})
    f = plan.footage
    atomic_write_json(root / RECORD, {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "seed": int(seed),
        "preset": "footage",
        "footage": {"path": str(Path(f.path).resolve()), "sha256": sha256_file(f.path), "frames": f.frames,
                    "fps": f.fps, "width": f.width, "height": f.height},
        "splits": {split: {"footage_frames": list(plan.ranges[split]),
                           "clip_starts": [plan.starts[s.stem] for s in specs if s.split == split]}
                   for split in ("train", "test")},
        "geometry": plan.geometry.to_dict(),
        "parameters": plan.config.to_dict(),
        "counts": split_counts(specs),
        "conventions": {
            **CONVENTIONS,
            "footage_split": "training clips come from the footage's first n_train / (n_train + n_test) of its "
                             "frames, test clips from the rest; clips of one split are spread evenly over its "
                             "part (footage_frames are inclusive; clip_starts in clip index order)",
            "vehicle_in_zone": "the car swerves into the zone of the footage's walking people from a lane "
                               "beside it and back; labelled while it is in the zone",
        },
        "test_videos": test_records,
    })
    write_dataset_manifest(root, specs, results, plan.config)
    return root


def footage_command(footage: str | Path, root: str | Path, train: int | None = None, test: int | None = None,
                    seed: int = 0, clip_frames: int | None = None, width: int | None = None,
                    scale: str | None = None, workers: int | None = None, overwrite: bool = False) -> int:
    """``patchvad synth --background FOOTAGE --out ROOT [--train N --test M --seed S ...]``.

    Prints a summary (footage frame ranges, estimated person height, flow); returns 0.
    """
    n_train = DEFAULT_TRAIN if train is None else int(train)
    n_test = DEFAULT_TEST if test is None else int(test)
    workers = max(1, multiprocessing.cpu_count()) if workers is None else workers
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\rsynth: {done}/{total} clips", end="" if done < total else "\n", file=sys.stderr)

    out = generate_from_footage(footage, root, n_train, n_test, seed, clip_frames, width, scale, workers, overwrite,
                                progress)
    seconds = time.perf_counter() - started
    record = json.loads((Path(out) / RECORD).read_text())
    geo, splits = record["geometry"], record["splits"]
    direction = {("h", 1): "left to right", ("h", -1): "right to left", ("v", 1): "downwards",
                 ("v", -1): "upwards"}[(geo["orient"], geo["flow"])]
    share = geo["stats"].get("flow_share")
    print(f"synth: wrote {n_train} training and {n_test} test clips of {record['parameters']['frames'][0]} frames "
          f"from {footage} (training from footage frames {splits['train']['footage_frames']}, test from "
          f"{splits['test']['footage_frames']}) to {out} in {seconds:.1f} s; person height "
          f"{geo['person_height_top_row']:.0f} px (top row) to {geo['person_height_bottom_row']:.0f} px (bottom "
          f"row, {geo['source']}), dominant flow {direction}"
          + (f" ({100 * share:.0f}% of the motion)" if share is not None else " (assumed)"))
    return 0
