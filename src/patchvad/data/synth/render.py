"""One synthetic video: its plan (:class:`VideoSpec`), its scene, its frames and its tracks.

Everything about a video follows from its spec: the spec's seed is split into
independent random streams for the camera variation, the event, the normal crowd,
the sensor noise and (presets with per-video cameras) the camera itself, so
removing the anomalous agents (``frames(without_anomaly=True)``) changes nothing
else in the picture. That makes the ground truth testable
pixel by pixel: the frames with and without the anomaly differ only inside its boxes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from patchvad.data.synth.agents import (
    Agent,
    Occupancy,
    Sprite,
    add_stander,
    add_walker_group,
    populate_road,
    populate_walkway,
)
from patchvad.data.synth.anomalies import Context, Event, build_event
from patchvad.data.synth.config import SynthConfig
from patchvad.data.synth.scene import (
    MARGIN,
    NOISE_BANK,
    NOISE_PAD,
    Camera,
    Photometry,
    View,
    background,
    draw_camera,
    draw_photometry,
    make_camera,
    make_view,
    noise_bank,
)
from patchvad.io.video import VideoWriter, rgb_planes_to_yuv420p

#: A track row is written for a frame only when at least this share of the object's
#: area lies inside the frame (a sliver at the border is not a detectable region).
MIN_VISIBLE = 0.25
#: Normal pedestrians that must be in view throughout the event window, in anomalous
#: and normal videos alike (motion alone must not mean anomaly).
MIN_COMPANY = 2


@dataclass(frozen=True)
class VideoSpec:
    """The plan of one video.

    Attributes:
        stem: unique file stem (``train_0007``).
        split: ``train`` or ``test``.
        index: position within its split.
        label: 1 anomalous, 0 normal.
        kind: the anomaly type; for normal videos the type whose normal counterpart
            is staged (never written anywhere for training videos).
        frames: frame count.
        camera: fixed camera index, or -1 when the video draws its own camera
            (presets with ``camera_draw``).
        seed: entropy of the video's random streams.
    """

    stem: str
    split: str
    index: int
    label: int
    kind: str
    frames: int
    camera: int
    seed: tuple[int, ...]


_CAMERAS: dict[tuple, Camera] = {}


def get_camera(config: SynthConfig, index: int) -> Camera:
    """Camera ``index`` of a config, painted once per process."""
    key = (config.scene_seed, config.width, config.height, index)
    camera = _CAMERAS.get(key)
    if camera is None:
        if len(_CAMERAS) > 64:
            _CAMERAS.clear()
        camera = _CAMERAS[key] = make_camera(config, index)
    return camera


def _anchor(v: float) -> int:
    return int(math.floor(v + 0.5))


def _clip(sprite: Sprite, ax: int, ay: int, width: int, height: int):
    """Frame rectangle and sprite sub-slices of a sprite anchored at (ax, ay); None if outside."""
    x0, y0 = ax + sprite.ox, ay + sprite.oy
    h, w = sprite.mask.shape
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    return (cx0, cy0, cx1, cy1), (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0)), (x0, y0, w, h)


def visible_box(sprite: Sprite, ax: int, ay: int, width: int,
                height: int) -> tuple[tuple[int, int, int, int], int] | None:
    """Tight inclusive xyxy box of the sprite's pixels inside the frame, and their count."""
    clipped = _clip(sprite, ax, ay, width, height)
    if clipped is None:
        return None
    (cx0, cy0, cx1, cy1), sub, (x0, y0, w, h) = clipped
    if cx0 == x0 and cy0 == y0 and cx1 == x0 + w and cy1 == y0 + h:
        return (x0, y0, x0 + w - 1, y0 + h - 1), sprite.area
    m = sprite.mask[sub]
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(axis=0))
    return (cx0 + int(cols[0]), cy0 + int(rows[0]), cx0 + int(cols[-1]), cy0 + int(rows[-1])), int(m.sum())


@dataclass
class AgentScene:
    """A video's agents with their whole-video paths, and its ground truth.

    What a video is apart from the pixels under its agents: the painted street of
    :class:`VideoScene`, or real footage (:mod:`patchvad.data.synth.footage`).

    Attributes:
        spec, config: what it was built from.
        view: the camera geometry in frame coordinates.
        photo: the video's camera response (sprite colours go through it).
        agents: every agent (anomalous ones flagged).
        event: the staged event (the anomaly, or the normal counterpart).
    """

    spec: VideoSpec
    config: SynthConfig
    view: View
    photo: Photometry
    agents: list[Agent]
    event: Event

    @property
    def n_frames(self) -> int:
        """Frames of the video."""
        return self.spec.frames

    def _order(self, t: int, skip_anomaly: bool) -> list[Agent]:
        items = [(a.depth_at(t), k, a) for k, a in enumerate(self.agents)
                 if a.present[t] and not (skip_anomaly and a.anomalous)]
        items.sort(key=lambda it: (it[0], it[1]))
        return [a for _, _, a in items]

    def draw_agents(self, canvas: np.ndarray, t: int, without_anomaly: bool = False) -> np.ndarray:
        """Paste every agent present at frame ``t`` onto ``canvas`` (far to near), in place.

        Args:
            canvas: ``(H, W, 3)`` uint8 RGB frame of the config's size.
            t: frame index.
            without_anomaly: leave out the anomalous agents.

        Returns:
            ``canvas``.
        """
        return self._paste(canvas, t, without_anomaly, planar=False)

    def _paste(self, canvas: np.ndarray, t: int, without_anomaly: bool, planar: bool) -> np.ndarray:
        """:meth:`draw_agents` onto an ``(H, W, 3)`` canvas, or with ``planar`` a ``(3, H, W)`` one."""
        W, H = self.config.width, self.config.height
        for agent in self._order(t, without_anomaly):
            sprite = agent.sprite(t)
            clipped = _clip(sprite, _anchor(agent.x[t]), _anchor(agent.y[t]), W, H)
            if clipped is None:
                continue
            (cx0, cy0, cx1, cy1), sub, _ = clipped
            if planar:
                np.copyto(canvas[:, cy0:cy1, cx0:cx1], sprite.rgb[sub].transpose(2, 0, 1), where=sprite.mask[sub])
            else:
                np.copyto(canvas[cy0:cy1, cx0:cx1], sprite.rgb[sub], where=sprite.mask[sub][:, :, None])
        return canvas

    def object_box(self, agent: Agent, t: int) -> tuple[tuple[int, int, int, int], int, int] | None:
        """An agent's tight inclusive xyxy box inside frame ``t``, or None when it is not in the frame.

        Returns:
            ``(box, visible pixel count, whole area in pixels)``, or None.
        """
        sprite = agent.sprite(t)
        got = visible_box(sprite, _anchor(agent.x[t]), _anchor(agent.y[t]), self.config.width, self.config.height)
        return None if got is None else (got[0], got[1], sprite.area)

    def tracks(self) -> np.ndarray:
        """Ground-truth rows ``(R, 6)`` int64: track_id, frame_id, x_min, y_min, x_max, y_max.

        One row per anomalous agent and event frame in which at least
        :data:`MIN_VISIBLE` of it is inside the frame; sorted by frame, then track.
        """
        rows = []
        for agent in self.agents:
            if not agent.anomalous:
                continue
            for t in np.flatnonzero(agent.event & agent.present):
                got = self.object_box(agent, int(t))
                if got is None or got[1] < MIN_VISIBLE * got[2]:
                    continue
                rows.append((agent.track_id, int(t), *got[0]))
        out = np.asarray(rows, dtype=np.int64).reshape(-1, 6)
        return out[np.lexsort((out[:, 0], out[:, 1]))] if out.size else out

    def frame_labels(self, rows: np.ndarray | None = None) -> np.ndarray:
        """``(F,)`` uint8: 1 exactly on frames that have a track row."""
        rows = self.tracks() if rows is None else rows
        labels = np.zeros(self.n_frames, dtype=np.uint8)
        if rows.size:
            labels[np.unique(rows[:, 1])] = 1
        return labels

    def persons_in_view(self, t: int, normal_only: bool = True) -> int:
        """Pedestrians whose feet are inside frame ``t``."""
        W, H = self.config.width, self.config.height
        return sum(1 for a in self.agents if a.kind == "person" and (not normal_only or not a.anomalous)
                   and a.present[t] and 0 <= a.x[t] < W and 0 <= a.y[t] < H)



@dataclass
class VideoScene(AgentScene):
    """A built video of a painted street: background and sensor noise besides the agents.

    Attributes:
        background: ``(H, W, 3)`` uint8 clean background.
        noise: ``(NOISE_BANK, H + pad, W + pad)`` int16 noise fields.
        noise_pick: ``(F, 3)`` per frame (field, dy, dx).
        camera: the camera filmed (a fixed one shared with other videos, or the
            video's own, index -1); its canvas is the background before crop and response.
    """

    background: np.ndarray
    noise: np.ndarray
    noise_pick: np.ndarray
    camera: Camera

    def clean_frame(self, t: int, without_anomaly: bool = False, out: np.ndarray | None = None) -> np.ndarray:
        """Frame ``t`` before sensor noise (uint8 RGB), drawn into ``out`` when given."""
        if out is None:
            canvas = self.background.copy()
        else:
            # Reusing one buffer saves a fresh allocation (and its page faults) per frame.
            canvas = out
            np.copyto(canvas, self.background)
        return self.draw_agents(canvas, t, without_anomaly)

    def frames(self, without_anomaly: bool = False) -> Iterator[np.ndarray]:
        """Every frame as ``(H, W, 3)`` uint8 RGB, sensor noise included.

        Args:
            without_anomaly: leave out the anomalous agents (everything else, noise
                included, stays identical), for checking the ground truth.
        """
        for planes in self._noisy_planes(without_anomaly):
            yield np.ascontiguousarray(planes.transpose(1, 2, 0), dtype=np.uint8)

    def yuv_frames(self) -> Iterator[np.ndarray]:
        """Every frame as yuv420p ``(H * 3 // 2, W)`` uint8, ready for the encoder.

        The bytes :func:`~patchvad.io.video.rgb_to_yuv420p` makes of :meth:`frames`,
        without the round trip through interleaved uint8 RGB. Needs an even frame size.
        """
        for planes in self._noisy_planes(False):
            yield rgb_planes_to_yuv420p(planes)

    def _noisy_planes(self, without_anomaly: bool) -> Iterator[np.ndarray]:
        """Every frame as planar ``(3, H, W)`` int16 RGB in [0, 255], sensor noise included.

        One buffer is reused: each yielded array is overwritten by the next frame.
        """
        H, W = self.config.height, self.config.width
        planes = np.empty((3, H, W), dtype=np.int16)
        # Drawn planar (the colour conversion reads planes): the background is de-interleaved
        # once per video, and every whole-frame step below reads contiguous memory.
        background = np.ascontiguousarray(self.background.transpose(2, 0, 1))
        canvas = np.empty_like(background)
        for t in range(self.n_frames):
            np.copyto(canvas, background)
            self._paste(canvas, t, without_anomaly, planar=True)
            k, dy, dx = (int(v) for v in self.noise_pick[t])
            # The grey noise field is added to each channel.
            np.add(canvas, self.noise[k, dy:dy + H, dx:dx + W], out=planes, dtype=np.int16)
            np.clip(planes, 0, 255, out=planes)
            yield planes


def _company(rng: np.random.Generator, ctx: Context, agents: list[Agent], event: Event) -> list[Agent]:
    """Add normal walkers until MIN_COMPANY are in view throughout the event window.

    Checked every 8 frames and at the window's last frame; a walker added at the
    middle of a gap walks through most of it at normal speed.
    """
    view, n = ctx.view, ctx.n
    W, H = view.width, view.height
    added: list[Agent] = []
    t0, t1 = max(event.t0, 0), min(event.t1, n)
    for t in sorted(set(range(t0, t1, 8)) | {t1 - 1}):
        for _ in range(6):
            count = sum(1 for a in agents + added if a.kind == "person" and not a.anomalous
                        and a.present[t] and 0 <= a.x[t] < W and 0 <= a.y[t] < H)
            if count >= MIN_COMPANY:
                break
            a_key = float(rng.uniform(0.1, 0.9) * view.length)
            added += add_walker_group(rng, view, ctx.config, ctx.photo, n, t, a_key, ctx.occupancy, kind="single")
    return added


def stage_agents(spec: VideoSpec, config: SynthConfig, view: View, photo: Photometry, lane_speeds: list[float],
                 r_event: np.random.Generator, r_crowd: np.random.Generator,
                 road: bool = True) -> tuple[Event, list[Agent]]:
    """The staged event and every agent of a video, from its event and crowd streams.

    The event (the anomaly, or its normal counterpart) first, then a person standing
    still (with probability ``config.stander``), walkers along the flow, road traffic
    (when ``road``) and the company that keeps normal people in view during the event.
    """
    ctx = Context(view=view, config=config, photo=photo, n=spec.frames, occupancy=Occupancy(),
                  lane_speeds=lane_speeds)
    event = build_event(spec.kind, spec.label == 1, r_event, ctx)
    agents = list(event.agents)
    if r_crowd.random() < config.stander:
        agents += add_stander(r_crowd, view, config, photo, spec.frames, ctx.occupancy)
    agents += populate_walkway(r_crowd, view, config, photo, spec.frames, ctx.occupancy)
    if road:
        agents += populate_road(r_crowd, view, config, photo, spec.frames, ctx.occupancy, lane_speeds)
    agents += _company(r_crowd, ctx, agents, event)
    return event, agents


def build_scene(spec: VideoSpec, config: SynthConfig) -> VideoScene:
    """Build a video's scene from its spec (deterministic: same spec, same scene)."""
    # A child stream depends only on its index, so the fifth (the camera's) leaves
    # the first four, and with them every fixed-camera video, as they were.
    streams = np.random.SeedSequence(list(spec.seed)).spawn(5)
    r_scene, r_event, r_crowd, r_noise, r_camera = (np.random.default_rng(s) for s in streams)
    camera = get_camera(config, spec.camera) if config.camera_draw is None else draw_camera(r_camera, config)
    dx, dy = (int(v) for v in r_scene.integers(0, 2 * MARGIN + 1, 2))
    photo = draw_photometry(r_scene, config)
    view = make_view(camera, config, dx, dy)
    lane_speeds = [float(r_scene.uniform(*config.car_speed)) * config.object_scale * config.speed_scale
                   for _ in view.lanes]
    n = spec.frames
    event, agents = stage_agents(spec, config, view, photo, lane_speeds, r_event, r_crowd)
    noise = noise_bank(r_noise, config, photo.noise_sigma)
    pick = np.stack([r_noise.integers(0, NOISE_BANK, n), r_noise.integers(0, NOISE_PAD + 1, n),
                     r_noise.integers(0, NOISE_PAD + 1, n)], axis=1)
    return VideoScene(spec=spec, config=config, view=view, photo=photo, agents=agents, event=event,
                      background=background(camera, config, photo, dx, dy), noise=noise, noise_pick=pick,
                      camera=camera)


def open_writer(path: str | Path, config: SynthConfig) -> VideoWriter:
    """An H.264 writer whose output bytes depend only on the frames.

    x264 picks its thread count from the machine's cores, and different thread
    counts give different (equally valid) bitstreams; one thread makes the file
    byte-identical across runs and machines with the same library versions.
    """
    return VideoWriter(path, config.fps, (config.width, config.height), crf=config.crf,
                       preset=config.encoder_preset, threads=1)


def write_scene(scene: VideoScene, path: str | Path) -> int:
    """Render and encode a scene to an mp4; returns the frame count."""
    writer = open_writer(path, scene.config)
    even = scene.config.width % 2 == 0 and scene.config.height % 2 == 0
    try:
        if even:
            for planes in scene.yuv_frames():
                writer.write_yuv420p(planes)
        else:   # the writer pads odd sizes, which needs RGB frames
            for frame in scene.frames():
                writer.write(frame)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return writer.frame_count
