"""Agents: how people, cars, cyclists and bags look, move and are drawn.

Every agent holds per-frame arrays (anchor position, pose, scale) for the whole video,
computed before any pixel is drawn; the renderer then pastes one sprite per visible
agent and frame. A sprite is rasterised from a few geometric primitives (capsules
for limbs, rounded rectangles for bodies, circles for heads and wheels) under a
rotation (falls, swerving cars, a runner's lean) and cached per pose, so a walker's
gait cycle is rasterised once and reused.

Anchors: a person's, cyclist's, bag's and side-view car's anchor is where it touches
the ground (bottom centre); a top-view car's anchor is its centre. Agents are drawn
far to near (by anchor row), so nearer agents occlude farther ones.

This module also populates a video with *normal* agents: walkers along the walkway's
one-way flow (alone, in pairs, some carrying bags), an occasional person standing
still, cars in their lanes and cyclists on the road.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from patchvad.data.synth.config import SynthConfig
from patchvad.data.synth.scene import Photometry, View

# Pose modes.
STAND, WALK, RUN, FIGHT = 0, 1, 2, 3
# Views of a person: seen from the side (moving across the image) or from the front/back.
SIDE, FRONT = 0, 1
#: Gait phases per cycle (a cycle is two steps).
PHASES = 16
#: Punch phases per cycle while fighting.
PUNCHES = 8

# --- sprites -----------------------------------------------------------------------


@dataclass(frozen=True)
class Sprite:
    """A rasterised agent: colours and coverage mask cropped to the object's tight box.

    ``ox, oy`` place ``rgb[0, 0]`` relative to the anchor pixel; because the arrays are
    cropped to the mask's bounding box, the unclipped object box is
    ``(ax + ox, ay + oy, ax + ox + w - 1, ay + oy + h - 1)``.
    """

    rgb: np.ndarray
    mask: np.ndarray
    ox: int
    oy: int
    area: int


def _rotate(x: float, y: float, c: float, s: float) -> tuple[float, float]:
    # Positive angles turn the figure clockwise on screen: "up" (0, -1) goes to +x.
    return c * x - s * y, s * x + c * y


@functools.lru_cache(maxsize=8)
def _darkening(outline: float) -> np.ndarray:
    """``(256,)`` uint8 lookup table: each value times ``outline`` in float32, truncated."""
    return (np.arange(256, dtype=np.float32) * outline).astype(np.uint8)


def rasterize(prims: list[tuple], angle_deg: float = 0.0, outline: float = 0.72) -> Sprite:
    """Rasterise primitives (model px, anchor at 0, y down) rotated by ``angle_deg``.

    Primitives, painted in order (later ones cover earlier ones):
    ``("circle", cx, cy, r, rgb)``, ``("ring", cx, cy, r_out, r_in, rgb)``,
    ``("capsule", x0, y0, x1, y1, r, rgb)``, ``("rrect", cx, cy, hx, hy, r, rgb)``
    (a rounded rectangle of half sizes hx, hy and corner radius r).
    The silhouette's one-pixel rim is darkened by ``outline`` so that objects stand
    out from similar-coloured ground as real objects do (shading, shadow edges).
    """
    th = math.radians(angle_deg)
    c, s = math.cos(th), math.sin(th)
    placed = []
    for p in prims:
        kind = p[0]
        if kind in ("circle", "ring"):
            cx, cy = _rotate(p[1], p[2], c, s)
            r = p[3]
            placed.append((kind, (cx - r, cy - r, cx + r, cy + r), (cx, cy) + tuple(p[3:-1]), p[-1]))
        elif kind == "capsule":
            x0, y0 = _rotate(p[1], p[2], c, s)
            x1, y1 = _rotate(p[3], p[4], c, s)
            r = p[5]
            box = (min(x0, x1) - r, min(y0, y1) - r, max(x0, x1) + r, max(y0, y1) + r)
            placed.append((kind, box, (x0, y0, x1, y1, r), p[-1]))
        elif kind == "rrect":
            cx, cy = _rotate(p[1], p[2], c, s)
            hx, hy, r = p[3], p[4], p[5]
            ex, ey = abs(c) * hx + abs(s) * hy, abs(s) * hx + abs(c) * hy
            placed.append((kind, (cx - ex, cy - ey, cx + ex, cy + ey), (cx, cy, hx, hy, r), p[-1]))
        else:  # pragma: no cover - programming error
            raise ValueError(f"unknown primitive {kind}")
    x_lo = math.floor(min(b[1][0] for b in placed)) - 1
    y_lo = math.floor(min(b[1][1] for b in placed)) - 1
    x_hi = math.ceil(max(b[1][2] for b in placed)) + 1
    y_hi = math.ceil(max(b[1][3] for b in placed)) + 1
    h, w = y_hi - y_lo + 1, x_hi - x_lo + 1
    xs = np.arange(x_lo, x_hi + 1, dtype=np.float32)[None, :]
    ys = np.arange(y_lo, y_hi + 1, dtype=np.float32)[:, None]
    # covers[k]: the pixels primitive k paints. Circles and capsules are evaluated together
    # on the whole grid (one numpy call per step for all of them instead of one per
    # primitive; a pixel outside a primitive's box is more than a pixel beyond its radius,
    # so it tests False there as it was never tested before). Each pixel goes through the
    # same float32 operations as before, so every test falls the same way.
    covers = np.zeros((len(placed), h, w), dtype=bool)
    circles: list[tuple[int, float, float, float]] = []               # (k, cx, cy, r * r)
    capsules: list[tuple[int, float, float, float, float, float, float]] = []  # (k, x0, y0, dx, dy, ll, r * r)
    for k, (kind, box, geo, colour) in enumerate(placed):
        c0 = max(math.floor(box[0]) - x_lo, 0)
        r0 = max(math.floor(box[1]) - y_lo, 0)
        c1 = min(math.ceil(box[2]) - x_lo + 1, w)
        r1 = min(math.ceil(box[3]) - y_lo + 1, h)
        if c1 <= c0 or r1 <= r0:
            continue
        if kind == "circle":
            cx, cy, r = geo
            circles.append((k, cx, cy, r * r))
        elif kind == "capsule":
            x0, y0, x1, y1, r = geo
            dx, dy = x1 - x0, y1 - y0
            ll = dx * dx + dy * dy
            if ll < 1e-9:   # a point: the capsule is a circle
                circles.append((k, x0, y0, r * r))
            else:
                capsules.append((k, x0, y0, dx, dy, ll, r * r))
        else:
            X = xs[:, c0:c1]
            Y = ys[r0:r1]
            if kind == "ring":
                cx, cy, r_out, r_in = geo
                d2 = (X - cx) ** 2 + (Y - cy) ** 2
                m = (d2 <= r_out * r_out) & (d2 >= r_in * r_in)
            else:
                cx, cy, hx, hy, r = geo
                u = np.abs(c * (X - cx) + s * (Y - cy)) - (hx - r)
                v = np.abs(-s * (X - cx) + c * (Y - cy)) - (hy - r)
                outside = np.hypot(np.maximum(u, 0), np.maximum(v, 0)) + np.minimum(np.maximum(u, v), 0)
                m = outside <= r
            covers[k, r0:r1, c0:c1] = m
    X3, Y3 = xs[None], ys[None]
    if circles:
        k_, cx_, cy_, rr_ = (np.array(col, dtype=np.float32)[:, None, None] for col in zip(*circles))
        covers[np.array([c[0] for c in circles])] = (X3 - cx_) ** 2 + (Y3 - cy_) ** 2 <= rr_
    if capsules:
        k_, x0_, y0_, dx_, dy_, ll_, rr_ = (np.array(col, dtype=np.float32)[:, None, None] for col in zip(*capsules))
        t = ((X3 - x0_) * dx_ + (Y3 - y0_) * dy_) / ll_
        # Clamp to [0, 1] in place (np.clip's wrapper costs more than the arithmetic here;
        # only the sign of a zero can differ from it, and t enters squared distances).
        np.maximum(t, 0.0, out=t)
        np.minimum(t, 1.0, out=t)
        covers[np.array([c[0] for c in capsules])] = (X3 - x0_ - t * dx_) ** 2 + (Y3 - y0_ - t * dy_) ** 2 <= rr_
    # Later primitives cover earlier ones: each pixel takes the colour of the last one
    # painting it. owner = 1 + that primitive's index, 0 where none paints.
    owner = np.max(covers * np.arange(1, len(placed) + 1, dtype=np.uint16)[:, None, None], axis=0)
    mask = owner > 0
    palette = np.zeros((len(placed) + 1, 3), dtype=np.uint8)
    palette[1:] = [p[3] for p in placed]
    rgb = palette[owner]
    if not mask.any():  # pragma: no cover - degenerate sizes
        mask[h // 2, w // 2] = True
    # The rim: painted pixels with an unpainted 4-neighbour (the grid's outer ring is
    # never painted, so it needs no test).
    rim = mask.copy()
    rim[1:-1, 1:-1] &= ~(mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:])
    rgb[rim] = _darkening(outline)[rgb[rim]]
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    ra, rb, ca, cb = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return Sprite(rgb=np.ascontiguousarray(rgb[ra:rb, ca:cb]), mask=np.ascontiguousarray(mask[ra:rb, ca:cb]),
                  ox=int(ca + x_lo), oy=int(ra + y_lo), area=int(mask.sum()))


# --- looks -------------------------------------------------------------------------

_SHIRTS = [(200, 40, 40), (40, 80, 170), (228, 228, 224), (34, 34, 38), (60, 140, 70), (230, 190, 40),
           (130, 60, 150), (240, 120, 40), (122, 122, 122), (80, 170, 200), (170, 120, 80), (200, 100, 150)]
_TROUSERS = [(40, 40, 60), (30, 30, 32), (70, 70, 80), (50, 60, 110), (110, 90, 70), (150, 150, 150), (60, 50, 40)]
_SKIN = [(240, 200, 170), (225, 180, 140), (190, 140, 100), (150, 100, 70), (110, 75, 50)]
_HAIR = [(30, 25, 20), (70, 45, 25), (140, 100, 50), (200, 170, 110), (120, 120, 120)]
_CARS = [(230, 230, 232), (170, 174, 180), (28, 28, 32), (180, 30, 30), (30, 60, 150), (40, 80, 50),
         (220, 190, 40), (110, 110, 116)]
_BAGS = [(30, 30, 30), (100, 60, 30), (30, 40, 90), (120, 30, 40), (150, 130, 90), (90, 90, 96)]


def _pick(rng: np.random.Generator, palette, photo: Photometry, spread: float = 12.0) -> tuple:
    base = np.asarray(palette[rng.integers(len(palette))], dtype=np.float32)
    return photo.colour(np.clip(base + rng.uniform(-spread, spread, 3), 0, 255))


@dataclass(frozen=True)
class PersonLook:
    """A pedestrian: standing height (px at scale 1), torso width / height, colours."""

    height: float
    build: float
    shirt: tuple
    trousers: tuple
    skin: tuple
    hair: tuple


@dataclass(frozen=True)
class CarLook:
    """A car: length and height (side view; the width in top view), px at scale 1."""

    length: float
    height: float
    body: tuple
    glass: tuple
    tyre: tuple
    front_light: tuple
    rear_light: tuple


@dataclass(frozen=True)
class BagLook:
    """A bag or suitcase: width and height in px at scale 1."""

    width: float
    height: float
    colour: tuple


def person_look(rng: np.random.Generator, config: SynthConfig, photo: Photometry) -> PersonLook:
    """A random pedestrian; normal and anomalous people draw from the same looks."""
    return PersonLook(height=float(rng.uniform(*config.person_height)) * config.object_scale,
                      build=float(rng.uniform(0.26, 0.32)), shirt=_pick(rng, _SHIRTS, photo),
                      trousers=_pick(rng, _TROUSERS, photo), skin=_pick(rng, _SKIN, photo, 8),
                      hair=_pick(rng, _HAIR, photo, 8))


def car_look(rng: np.random.Generator, config: SynthConfig, photo: Photometry) -> CarLook:
    """A random car: size from the preset, a body colour, lights and glass under the video's photometry."""
    (l_lo, l_hi), (h_lo, h_hi) = config.car_size
    return CarLook(length=float(rng.uniform(l_lo, l_hi)) * config.object_scale,
                   height=float(rng.uniform(h_lo, h_hi)) * config.object_scale,
                   body=_pick(rng, _CARS, photo, 8), glass=photo.colour((55, 66, 80)),
                   tyre=photo.colour((24, 24, 24)), front_light=photo.colour((250, 240, 190)),
                   rear_light=photo.colour((200, 30, 30)))


def bag_look(rng: np.random.Generator, config: SynthConfig, photo: Photometry, carrier_height: float) -> BagLook:
    """A random bag sized relative to its carrier's height (``carrier_height`` px)."""
    lo, hi = config.bag_size
    return BagLook(width=float(rng.uniform(lo, hi)) * carrier_height,
                   height=float(rng.uniform(lo, hi)) * carrier_height * 0.85,
                   colour=_pick(rng, _BAGS, photo, 10))


def _shade(rgb: tuple, k: float) -> tuple:
    return tuple(int(min(255, max(0, v * k))) for v in rgb)


# --- primitives per kind ------------------------------------------------------------


def person_prims(look: PersonLook, H: float, mode: int, phase: int, view: int, facing: int,
                 punch: int) -> list[tuple]:
    """Primitives of a pedestrian of height ``H`` px in one pose (anchor at the feet)."""
    f = 1 if facing >= 0 else -1
    wb = look.build * H
    leg_r, arm_r = 0.055 * H, 0.042 * H
    hip_y, sh_y = -0.48 * H, -0.77 * H
    head_y, head_r = -0.885 * H, 0.105 * H
    phi = 2.0 * math.pi * phase / PHASES
    moving = mode in (WALK, RUN)
    bob = -0.015 * H * abs(math.cos(phi)) if moving else 0.0
    far_trousers = _shade(look.trousers, 0.82)
    far_shirt = _shade(look.shirt, 0.85)
    prims: list[tuple] = []
    if view == SIDE:
        wt = 0.72 * wb
        sw, lift, asw = {WALK: (0.15, 0.035, 0.09), RUN: (0.27, 0.10, 0.17)}.get(mode, (0.0, 0.0, 0.0))
        sw, lift, asw = sw * H, lift * H, asw * H
        sa = math.sin(phi)
        if mode == FIGHT:
            feet = [(-0.11 * H, 0.0), (0.11 * H, 0.0)]
        else:
            feet = [(sw * sa, -lift * max(0.0, math.cos(phi))), (-sw * sa, -lift * max(0.0, -math.cos(phi)))]
        hip = (0.0, hip_y + bob)
        shoulder = (0.0, sh_y + 0.03 * H + bob)
        if mode == FIGHT:
            e = 0.5 - 0.5 * math.cos(2.0 * math.pi * punch / PUNCHES)
            hands = [(f * (0.08 + 0.26 * e) * H, -0.72 * H), (f * (0.08 + 0.26 * (1.0 - e)) * H, -0.75 * H)]
        elif mode == RUN:
            hands = [(-asw * sa + f * 0.06 * H, -0.60 * H + bob), (asw * sa + f * 0.06 * H, -0.60 * H + bob)]
        else:
            hands = [(-asw * sa, -0.47 * H + bob), (asw * sa, -0.47 * H + bob)]
        prims.append(("capsule", *hip, *feet[1], leg_r, far_trousers))
        prims.append(("capsule", *shoulder, *hands[1], arm_r, far_shirt))
        prims.append(("capsule", *hip, *feet[0], leg_r, look.trousers))
        mid = (hip_y + sh_y) / 2.0 + bob
        prims.append(("rrect", 0.0, mid, wt / 2.0, (hip_y - sh_y) / 2.0 + 0.03 * H, 0.4 * wt, look.shirt))
        prims.append(("capsule", *shoulder, *hands[0], arm_r, look.shirt))
        prims.append(("circle", -f * 0.02 * H, head_y - 0.015 * H + bob, head_r, look.hair))
        prims.append(("circle", f * 0.02 * H, head_y + 0.012 * H + bob, 0.88 * head_r, look.skin))
    else:
        lift = {WALK: 0.05, RUN: 0.10}.get(mode, 0.0) * H
        sa = math.sin(phi)
        feet = [(-0.075 * H, -lift * max(0.0, sa)), (0.075 * H, -lift * max(0.0, -sa))]
        for k, sx in enumerate((-1.0, 1.0)):
            prims.append(("capsule", sx * 0.07 * H, hip_y + bob, *feet[k], leg_r, look.trousers))
        swing = 0.03 * H * sa if moving else 0.0
        for sx in (-1.0, 1.0):
            prims.append(("capsule", sx * (wb / 2.0 - 0.01 * H), sh_y + 0.03 * H + bob,
                          sx * (wb / 2.0 + 0.025 * H), -0.47 * H + bob + sx * swing, arm_r, far_shirt))
        mid = (hip_y + sh_y) / 2.0 + bob
        prims.append(("rrect", 0.0, mid, wb / 2.0, (hip_y - sh_y) / 2.0 + 0.03 * H, 0.35 * wb, look.shirt))
        if f > 0:  # walking towards the camera: the face shows
            prims.append(("circle", 0.0, head_y - 0.02 * H + bob, head_r, look.hair))
            prims.append(("circle", 0.0, head_y + 0.012 * H + bob, 0.9 * head_r, look.skin))
        else:
            prims.append(("circle", 0.0, head_y + bob, head_r, look.hair))
    return prims


def car_prims(look: CarLook, scale: float, facing: int, top_view: bool) -> list[tuple]:
    """Primitives of a car: side view (anchor at the wheels' contact) or top view (centre)."""
    f = 1 if facing >= 0 else -1
    L, Hc = look.length * scale, look.height * scale
    if not top_view:
        return [
            ("rrect", 0.0, -0.38 * Hc, L / 2.0, 0.21 * Hc, 0.09 * Hc, look.body),
            ("rrect", -f * 0.04 * L, -0.70 * Hc, 0.29 * L, 0.20 * Hc, 0.14 * Hc, _shade(look.body, 0.92)),
            ("rrect", -f * 0.04 * L, -0.69 * Hc, 0.25 * L, 0.13 * Hc, 0.08 * Hc, look.glass),
            ("rrect", -f * 0.04 * L, -0.69 * Hc, max(0.015 * L, 0.6), 0.13 * Hc, 0.3, _shade(look.body, 0.92)),
            ("rrect", f * 0.47 * L, -0.42 * Hc, 0.03 * L, 0.05 * Hc, 0.3, look.front_light),
            ("rrect", -f * 0.47 * L, -0.42 * Hc, 0.03 * L, 0.05 * Hc, 0.3, look.rear_light),
            ("circle", 0.30 * L, -0.15 * Hc, 0.15 * Hc, look.tyre),
            ("circle", -0.30 * L, -0.15 * Hc, 0.15 * Hc, look.tyre),
            ("circle", 0.30 * L, -0.15 * Hc, 0.06 * Hc, (150, 150, 150)),
            ("circle", -0.30 * L, -0.15 * Hc, 0.06 * Hc, (150, 150, 150)),
        ]
    Wc = Hc  # a car seen from above is about as wide as it is tall from the side
    return [
        ("rrect", 0.0, 0.0, Wc / 2.0, L / 2.0, 0.25 * Wc, look.body),
        ("rrect", 0.0, -f * 0.09 * L, 0.40 * Wc, 0.13 * L, 0.15 * Wc, _shade(look.body, 0.85)),
        ("rrect", 0.0, f * 0.12 * L, 0.42 * Wc, 0.08 * L, 0.12 * Wc, look.glass),
        ("rrect", 0.0, -f * 0.30 * L, 0.38 * Wc, 0.05 * L, 0.1 * Wc, look.glass),
        ("rrect", -0.32 * Wc, f * 0.47 * L, 0.08 * Wc, 0.025 * L, 0.3, look.front_light),
        ("rrect", 0.32 * Wc, f * 0.47 * L, 0.08 * Wc, 0.025 * L, 0.3, look.front_light),
    ]


def cyclist_prims(look: PersonLook, scale: float, phase: int, facing: int) -> list[tuple]:
    """A rider on a bicycle, side view, anchor between the wheels on the ground."""
    f = 1 if facing >= 0 else -1
    H = look.height * scale
    frame = (60, 60, 66)
    wr = 0.17 * H
    crank = (0.0, -0.2 * H)
    phi = 2.0 * math.pi * phase / PHASES
    pedal = [(crank[0] + 0.09 * H * math.cos(phi), crank[1] + 0.09 * H * math.sin(phi)),
             (crank[0] - 0.09 * H * math.cos(phi), crank[1] - 0.09 * H * math.sin(phi))]
    hip = (-f * 0.06 * H, -0.50 * H)
    shoulder = (f * 0.08 * H, -0.78 * H)
    bar = (f * 0.22 * H, -0.52 * H)
    return [
        ("ring", -0.30 * H, -wr, wr, wr - max(1.0, 0.035 * H), frame),
        ("ring", 0.30 * H, -wr, wr, wr - max(1.0, 0.035 * H), frame),
        ("capsule", -f * 0.30 * H, -wr, *crank, 0.025 * H, frame),
        ("capsule", *crank, *bar, 0.025 * H, frame),
        ("capsule", *crank, *hip, 0.025 * H, frame),
        ("capsule", f * 0.30 * H, -wr, *bar, 0.025 * H, frame),
        ("capsule", *hip, *pedal[1], 0.05 * H, _shade(look.trousers, 0.82)),
        ("capsule", *hip, *shoulder, 0.11 * H, look.shirt),
        ("capsule", *hip, *pedal[0], 0.05 * H, look.trousers),
        ("capsule", *shoulder, *bar, 0.04 * H, look.shirt),
        ("circle", f * 0.13 * H, -0.90 * H, 0.10 * H, look.hair),
        ("circle", f * 0.15 * H, -0.89 * H, 0.085 * H, look.skin),
    ]


def bag_prims(look: BagLook, scale: float) -> list[tuple]:
    """Primitives of a bag at ``scale`` (see :func:`rasterize`): body, flap, handle."""
    w, h = look.width * scale, look.height * scale
    r = 0.2 * min(w, h)
    return [
        ("rrect", 0.0, -h / 2.0, w / 2.0, h / 2.0, r, look.colour),
        ("rrect", 0.0, -0.78 * h, w / 2.0 - 0.5, 0.18 * h, r, _shade(look.colour, 0.75)),
        ("capsule", -0.22 * w, -h, 0.22 * w, -h, max(0.7, 0.06 * h), _shade(look.colour, 0.6)),
    ]


# --- agents ------------------------------------------------------------------------


@dataclass
class Agent:
    """One agent's look and per-frame state over the whole video.

    Attributes:
        kind: ``person``, ``car``, ``cyclist`` or ``bag``.
        look: a PersonLook, CarLook or BagLook.
        x, y: anchor position per frame (float px).
        present: frames in which it is drawn at all (near or inside the frame).
        mode, phase, angle, facing, view, punch: pose per frame.
        scale: perspective scale per frame.
        depth: drawing order key per frame (far first); defaults to ``y``.
        anomalous: part of the anomaly; ``event`` marks its anomalous frames.
        track_id: id of its ground-truth track (anomalous agents only).
        role: what it is in the scene, for statistics (``walker``, ``stander``, ...).
    """

    kind: str
    look: Any           # PersonLook, CarLook or BagLook, as ``kind`` says
    x: np.ndarray
    y: np.ndarray
    present: np.ndarray
    mode: np.ndarray
    phase: np.ndarray
    angle: np.ndarray
    facing: np.ndarray
    view: np.ndarray
    punch: np.ndarray
    scale: np.ndarray
    depth: np.ndarray | None = None
    top_view: bool = False
    anomalous: bool = False
    event: np.ndarray | None = None
    track_id: int = 0
    role: str = "walker"
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def empty(cls, kind: str, look: Any, n: int) -> "Agent":
        """An agent of ``n`` frames, absent everywhere, in the default pose."""
        return cls(kind=kind, look=look, x=np.zeros(n), y=np.zeros(n), present=np.zeros(n, dtype=bool),
                   mode=np.full(n, WALK, dtype=np.int8), phase=np.zeros(n, dtype=np.int16),
                   angle=np.zeros(n, dtype=np.float32), facing=np.ones(n, dtype=np.int8),
                   view=np.zeros(n, dtype=np.int8), punch=np.zeros(n, dtype=np.int8),
                   scale=np.ones(n, dtype=np.float32), event=np.zeros(n, dtype=bool))

    @property
    def n_frames(self) -> int:
        """Frames of the video the agent lives in."""
        return int(self.x.shape[0])

    def depth_at(self, t: int) -> float:
        """Drawing order key at frame ``t`` (``y`` unless a depth is set)."""
        return float(self.y[t] if self.depth is None else self.depth[t])

    def sprite(self, t: int) -> Sprite:
        """The agent's sprite at frame ``t`` (rasterised once per distinct pose)."""
        # Scale in steps of 1/25 (about 1 px of a person's height): fine enough to look
        # continuous, coarse enough that a walker's sprites repeat.
        sq = int(round(float(self.scale[t]) * 25.0))
        ang = int(round(float(self.angle[t]) / 3.0))
        key = (int(self.mode[t]), int(self.phase[t]), ang, int(self.facing[t]), int(self.view[t]),
               int(self.punch[t]), sq)
        sprite = self._cache.get(key)
        if sprite is None:
            scale = sq / 25.0
            if self.kind == "person":
                prims = person_prims(self.look, self.look.height * scale, *key[:2], key[4], key[3], key[5])
            elif self.kind == "car":
                prims = car_prims(self.look, scale, key[3], self.top_view)
            elif self.kind == "cyclist":
                prims = cyclist_prims(self.look, scale, key[1], key[3])
            else:
                prims = bag_prims(self.look, scale)
            sprite = rasterize(prims, ang * 3.0)
            self._cache[key] = sprite
        return sprite


def _ffill(values: np.ndarray, valid: np.ndarray, default) -> np.ndarray:
    """Carry the last valid value forward (and the first one backward)."""
    n = values.shape[0]
    if not valid.any():
        return np.full(n, default, dtype=values.dtype)
    idx = np.where(valid, np.arange(n), -1)
    idx = np.maximum.accumulate(idx)
    first = int(np.flatnonzero(valid)[0])
    idx[idx < 0] = first
    return values[idx]


def in_view(view: View, x: np.ndarray, y: np.ndarray, margin: float) -> np.ndarray:
    """Frames whose anchor lies within ``margin`` px of the frame (drawing candidates)."""
    return (x > -margin) & (x < view.width + margin) & (y > -margin) & (y < view.height + margin)


def integrate_along(view: View, t_key: int, a_key: float, cross: np.ndarray, vel: np.ndarray) -> np.ndarray:
    """Along positions from a key frame, integrating a per-frame signed speed.

    ``vel[t]`` is the speed (px/frame at perspective scale 1) of the step from t to
    t+1; the step in px is scaled by the perspective at the current position, so
    objects far away move fewer px. ``t_key`` may lie outside the video.
    """
    n = cross.shape[0]
    along = np.empty(n, dtype=np.float64)
    if view.orient == "h":
        # The scale depends only on the row (= cross): integrate in closed form.
        step = vel * view.scale_y(cross)
        cum = np.concatenate([[0.0], np.cumsum(step[:-1])])
        if 0 <= t_key < n:
            ref = cum[t_key]
        elif t_key >= n:
            ref = cum[-1] + step[-1] * (t_key - n + 1)
        else:
            ref = -step[0] * (-t_key)
        return a_key + cum - ref
    # Vertical layouts: along is the row, so the scale changes on the way.
    top, bottom = view.perspective
    k = (bottom - top) / view.height

    def sc(a: float) -> float:
        return top + k * min(max(a, 0.0), view.height)

    t0 = min(max(t_key, 0), n - 1)
    a = a_key
    if t_key > n - 1:
        for _ in range(t_key - (n - 1)):
            a -= vel[-1] * sc(a)
    elif t_key < 0:
        for _ in range(-t_key):
            a += vel[0] * sc(a)
    along[t0] = a
    vl = vel.tolist()
    for t in range(t0, n - 1):
        along[t + 1] = along[t] + vl[t] * sc(along[t])
    for t in range(t0 - 1, -1, -1):
        along[t] = along[t + 1] - vl[t] * sc(along[t + 1])
    return along


def finish_person(agent: Agent, view: View, phase0: float) -> Agent:
    """Derive scale, view, facing, gait phase and stand/walk from the anchor path.

    Callers set x, y and mode (WALK, RUN, FIGHT, STAND) first and may override the
    result afterwards (fights face the opponent, falls set angles).
    """
    x, y = agent.x, agent.y
    agent.scale = view.scale_y(y).astype(np.float32)
    dx = np.diff(x, append=x[-1] if x.size < 2 else 2 * x[-1] - x[-2])
    dy = np.diff(y, append=y[-1] if y.size < 2 else 2 * y[-1] - y[-2])
    speed = np.hypot(dx, dy)
    moving = speed > 0.05
    side = np.abs(dx) >= np.abs(dy)
    default_view = SIDE if view.orient == "h" else FRONT
    views = np.where(side, SIDE, FRONT).astype(np.int8)
    fixed = agent.mode == FIGHT
    agent.view = np.where(fixed, SIDE, _ffill(views, moving & ~fixed, default_view)).astype(np.int8)
    facing = np.where(side, np.sign(dx), np.sign(dy)).astype(np.int8)
    facing[facing == 0] = 1
    agent.facing = _ffill(facing, moving & ~fixed, 1).astype(np.int8)
    agent.mode = np.where((agent.mode == WALK) & ~moving, STAND, agent.mode).astype(np.int8)
    height = agent.look.height * agent.scale
    cycle = np.where(agent.mode == RUN, 1.5, 0.9) * height
    steps = np.where(agent.mode == STAND, 0.0, speed / np.maximum(cycle, 1e-6))
    phase = phase0 + np.concatenate([[0.0], np.cumsum(steps[:-1])])
    agent.phase = (np.floor(phase * PHASES).astype(np.int64) % PHASES).astype(np.int16)
    agent.present = in_view(view, x, y, 1.3 * agent.look.height * view.reach + 4)
    return agent


def person_on_path(view: View, look: PersonLook, along: np.ndarray, cross: np.ndarray, mode: np.ndarray,
                   phase0: float, role: str = "walker") -> Agent:
    """A pedestrian following along/cross paths with the given per-frame modes."""
    n = along.shape[0]
    agent = Agent.empty("person", look, n)
    x, y = view.xy(along, cross)
    agent.x = np.asarray(x, dtype=np.float64).copy()
    agent.y = np.asarray(y, dtype=np.float64).copy()
    agent.mode = np.asarray(mode, dtype=np.int8).copy()
    agent.role = role
    return finish_person(agent, view, phase0)


def walker(view: View, look: PersonLook, n: int, t_key: int, a_key: float, cross: float, speed: float,
           direction: int, phase0: float, role: str = "walker") -> Agent:
    """A pedestrian walking at constant speed in one lane, at ``a_key`` on frame ``t_key``."""
    cross_arr = np.full(n, float(cross))
    along = integrate_along(view, t_key, a_key, cross_arr, np.full(n, direction * speed))
    return person_on_path(view, look, along, cross_arr, np.full(n, WALK, dtype=np.int8), phase0, role)


def hand_point(agent: Agent, t: int) -> tuple[float, float]:
    """Where a person's hand holds a bag at frame t (frame coordinates)."""
    H = agent.look.height * float(agent.scale[t])
    if agent.view[t] == SIDE:
        dx = agent.facing[t] * 0.05 * H
    else:
        dx = agent.look.build * H / 2.0 + 0.03 * H
    return float(agent.x[t] + dx), float(agent.y[t] - 0.46 * H)


def carried_bag(view: View, look: BagLook, carrier: Agent) -> Agent:
    """A bag held by ``carrier`` in every frame (normal carriers)."""
    n = carrier.n_frames
    bag = Agent.empty("bag", look, n)
    bag.role = "bag"
    attach_bag(bag, carrier, range(n))
    bag.present = carrier.present.copy()
    return bag


def attach_bag(bag: Agent, carrier: Agent, frames) -> None:
    """Place ``bag`` in ``carrier``'s hand for the given frames (drawn just in front of them)."""
    if bag.depth is None:
        bag.depth = bag.y.copy()
    for t in frames:
        hx, hy = hand_point(carrier, t)
        s = float(carrier.scale[t])
        bag.x[t], bag.y[t] = hx, hy + 0.92 * bag.look.height * s
        bag.scale[t] = s
        bag.depth[t] = carrier.y[t] + 0.5


# --- normal agents -------------------------------------------------------------------


@dataclass
class Occupancy:
    """Who uses which space when, so that new normal agents keep clear of it.

    ``walk``: walkway exclusions ``(t_lo, t_hi, cross_lo, cross_hi)``; a walker whose
    lane lies in the cross range and who is in view during the time range is not added.
    ``lanes``: per road lane, the occupants' ``(along per frame, active mask, half length)``.
    """

    walk: list[tuple[int, int, float, float]] = field(default_factory=list)
    lanes: dict[int, list[tuple[np.ndarray, np.ndarray, float]]] = field(default_factory=dict)

    def walk_free(self, cross: float, present: np.ndarray) -> bool:
        """No walkway exclusion covers ``cross`` at a frame where the walker is ``present``."""
        for t_lo, t_hi, c_lo, c_hi in self.walk:
            if c_lo <= cross <= c_hi and present[max(t_lo, 0):t_hi + 1].any():
                return False
        return True

    def lane_free(self, lane: int, along: np.ndarray, active: np.ndarray, half: float, gap: float = 6.0) -> bool:
        """A vehicle of half length ``half`` keeps ``gap`` px from every occupant of ``lane`` while both are active."""
        for other, other_active, other_half in self.lanes.get(lane, []):
            both = active & other_active
            if both.any() and (np.abs(along[both] - other[both]) < half + other_half + gap).any():
                return False
        return True

    def add_lane(self, lane: int, along: np.ndarray, active: np.ndarray, half: float) -> None:
        """Record a vehicle on ``lane``: position per frame, active mask, half length."""
        self.lanes.setdefault(lane, []).append((along, active, half))


def _lane_candidates(rng: np.random.Generator, view: View, tries: int = 8) -> list[float]:
    lo, hi = view.feet
    return [float(v) for v in rng.uniform(lo, hi, tries)]


def add_walker_group(rng: np.random.Generator, view: View, config: SynthConfig, photo: Photometry, n: int,
                     t_key: int, a_key: float, occupancy: Occupancy, kind: str | None = None,
                     speed: float | None = None) -> list[Agent]:
    """One normal walker, pair or bag carrier walking with the flow; [] if no free lane.

    ``kind`` is ``single``, ``pair`` or ``carrier`` (drawn from the config's shares when
    None). The group is at along position ``a_key`` on frame ``t_key``.
    """
    if kind is None:
        u = rng.random()
        kind = "pair" if u < config.pair_fraction else (
            "carrier" if u < config.pair_fraction + config.carrier_fraction else "single")
    if speed is None:
        speed = float(rng.uniform(*config.walk_speed)) * config.object_scale * config.speed_scale
    d = view.flow
    for cross in _lane_candidates(rng, view):
        look = person_look(rng, config, photo)
        first = walker(view, look, n, t_key, a_key, cross, speed, d, float(rng.random()))
        if not first.present.any() or not occupancy.walk_free(cross, first.present):
            continue
        group = [first]
        if kind == "pair":
            look2 = person_look(rng, config, photo)
            gap = 0.55 * max(look.height, look2.height) * float(view.scale_at(a_key, cross))
            if view.orient == "h":
                c2, a2 = cross + float(rng.uniform(2.0, 5.0)), a_key - d * gap
            else:
                c2, a2 = cross + gap, a_key
            if not (view.feet[0] <= c2 <= view.feet[1]):
                c2 = cross - (c2 - cross)
            second = walker(view, look2, n, t_key, a2, c2, speed, d, float(rng.random()))
            if not occupancy.walk_free(c2, second.present):
                continue
            group.append(second)
        if kind == "carrier":
            group.append(carried_bag(view, bag_look(rng, config, photo, look.height), first))
        return group
    return []


def populate_walkway(rng: np.random.Generator, view: View, config: SynthConfig, photo: Photometry, n: int,
                     occupancy: Occupancy) -> list[Agent]:
    """Normal walkers: some in view from the start, more entering at the upstream edge.

    Arrivals are a Poisson process whose rate keeps ``walkers_visible`` people in view
    on average (a crowd level drawn per video).
    """
    agents: list[Agent] = []
    L = view.length
    visible = float(rng.uniform(*config.walkers_visible))
    mean_speed = (float(np.mean(config.walk_speed)) * config.object_scale * config.speed_scale
                  * float(np.mean(view.perspective)))
    crossing = L / max(mean_speed, 1e-3)
    rate = visible / crossing
    for _ in range(int(rng.poisson(visible))):
        agents += add_walker_group(rng, view, config, photo, n, 0, float(rng.uniform(0, L)), occupancy)
    # Enter from fully outside the frame. Along a vertical layout people stand up from
    # their feet, so entering at the bottom needs a body height more room.
    below = 1.2 * config.person_height[1] * config.object_scale * view.perspective[1] if view.orient == "v" else 0.0
    entry = -12.0 if view.flow > 0 else L + 12.0 + below
    t = float(rng.exponential(1.0 / rate))
    while t < n:
        agents += add_walker_group(rng, view, config, photo, n, int(t), entry, occupancy)
        t += float(rng.exponential(1.0 / rate))
    return agents


def add_stander(rng: np.random.Generator, view: View, config: SynthConfig, photo: Photometry, n: int,
                occupancy: Occupancy) -> list[Agent]:
    """A person standing still at the walkway's edge away from the road, all video long."""
    lo, hi = view.feet
    cross = lo + 2.0 if view.road_side() > 0 else hi - 2.0
    along = float(rng.uniform(0.1, 0.9) * view.length)
    look = person_look(rng, config, photo)
    agent = person_on_path(view, look, np.full(n, along), np.full(n, cross), np.full(n, STAND, dtype=np.int8),
                           0.0, role="stander")
    agent.view[:] = SIDE if rng.random() < 0.5 else FRONT
    agent.facing[:] = 1 if rng.random() < 0.5 else -1
    occupancy.walk.append((0, n - 1, cross - 9.0, cross + 9.0))
    return [agent]


def car_on_lane(view: View, look: CarLook, n: int, t_key: int, a_key: float, lane: int, speed: float) -> Agent:
    """A car driving in ``lane`` at constant speed, at ``a_key`` on frame ``t_key``."""
    cross, direction = view.lanes[lane]
    cross_arr = np.full(n, float(cross))
    along = integrate_along(view, t_key, a_key, cross_arr, np.full(n, direction * speed))
    return vehicle_on_path(view, look, along, cross_arr, direction)


def vehicle_on_path(view: View, look: CarLook, along: np.ndarray, cross: np.ndarray, direction: int) -> Agent:
    """A car following along/cross paths; top-view cars turn with their path."""
    n = along.shape[0]
    agent = Agent.empty("car", look, n)
    agent.role = "car"
    x, y = view.xy(along, cross)
    agent.x = np.asarray(x, dtype=np.float64).copy()
    agent.y = np.asarray(y, dtype=np.float64).copy()
    agent.scale = view.scale_y(agent.y).astype(np.float32)
    agent.mode[:] = STAND
    agent.facing[:] = direction
    agent.top_view = view.orient == "v"
    if agent.top_view:
        # Heading follows the path: a swerving car turns (angle 0 = driving along y).
        dx = np.gradient(agent.x) if n > 1 else np.zeros(n)
        dy = np.gradient(agent.y) if n > 1 else np.ones(n)
        # (Capped: a swerve covers the lane offset in a dozen frames, which would
        # otherwise read as an implausibly sharp turn.)
        angle = np.degrees(np.arctan2(-direction * dx, np.abs(dy) + 1e-6))
        agent.angle = np.clip(angle, -40.0, 40.0).astype(np.float32)
    agent.present = in_view(view, agent.x, agent.y, 0.6 * look.length * view.reach + 4)
    return agent


def populate_road(rng: np.random.Generator, view: View, config: SynthConfig, photo: Photometry, n: int,
                  occupancy: Occupancy, lane_speeds: list[float]) -> list[Agent]:
    """Cars in both lanes (Poisson arrivals, no overlaps in a lane) and sometimes cyclists."""
    agents: list[Agent] = []
    L = view.length
    if view.orient == "h" and rng.random() < config.cyclists:
        lane = 1 - view.near_lane()
        cross, direction = view.lanes[lane]
        for _ in range(int(rng.integers(1, 3))):
            look = person_look(rng, config, photo)
            speed = float(rng.uniform(1.8, 2.8)) * config.object_scale * config.speed_scale
            t_key = int(rng.integers(0, n))
            cross_arr = np.full(n, float(cross))
            along = integrate_along(view, t_key, float(rng.uniform(0, L)), cross_arr, np.full(n, direction * speed))
            agent = Agent.empty("cyclist", look, n)
            agent.role = "cyclist"
            agent.x, agent.y = along, cross_arr
            agent.mode[:] = WALK              # WALK advances the phase: the pedals turn
            finish_person(agent, view, float(rng.random()))
            active = agent.present.copy()
            if occupancy.lane_free(lane, along, active, 0.35 * look.height):
                occupancy.add_lane(lane, along, active, 0.35 * look.height)
                agents.append(agent)
    for lane, (cross, direction) in enumerate(view.lanes):
        speed = lane_speeds[lane]
        visible = float(rng.uniform(*config.cars_visible))
        scale = float(view.scale_at(L / 2, cross))
        crossing = (L + 70.0) / max(speed * scale, 1e-3)
        rate = visible / crossing
        keys = [(0, float(rng.uniform(0, L))) for _ in range(int(rng.poisson(visible)))]
        t = float(rng.exponential(1.0 / rate))
        while t < n:
            keys.append((int(t), -45.0 if direction > 0 else L + 45.0))
            t += float(rng.exponential(1.0 / rate))
        for t_key, a_key in keys:
            car_lk = car_look(rng, config, photo)
            car = car_on_lane(view, car_lk, n, t_key, a_key, lane, speed)
            along = car.x if view.orient == "h" else car.y
            if car.present.any() and occupancy.lane_free(lane, along, car.present, car_lk.length / 2.0):
                occupancy.add_lane(lane, along, car.present, car_lk.length / 2.0)
                agents.append(car)
    return agents
