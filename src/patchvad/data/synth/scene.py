"""Scenes: cameras and per-video camera variation.

Cameras are street layouts painted once per preset, or once per video.

A camera is a painted background with a pedestrian walkway (one-way flow: the
dominant direction that defines "wrong way"), a two-lane road beside it, grass, and
static structures (buildings, trees, benches, bollards). Layouts are either
horizontal (walkway and road run left-right, people seen from the side, a far side at
the top) or vertical (they run top-bottom, people walk towards or away from the
camera). Object size grows from the top of the frame to the bottom (a linear ground-
plane perspective scale).

Geometry is kept in *along / cross* coordinates: ``along`` runs with the walkway and
road (x for horizontal, y for vertical layouts), ``cross`` runs across them. Every
video crops the camera's canvas at a small random offset (the camera was re-mounted),
so structures do not sit on the same pixels in every video, and gets its own
brightness gain, offset, colour tint and sensor-noise level.

Fixed cameras (:func:`make_camera`) draw their layout from narrow ranges and paint
with :data:`FIXED_PALETTE`; a video's own camera (:func:`draw_camera`, presets with
``camera_draw``) draws orientation, band positions and widths, horizon, flow and lane
directions, perspective, palette and light from the video's seed, and is painted by
the same code.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field, fields

import numpy as np

from patchvad.data.synth.config import CameraDraw, SynthConfig

#: Canvas border in px on every side; a video's crop moves by up to +-MARGIN.
MARGIN = 6
#: Noise fields per video; each frame takes one at a random offset (cheap, never repeats visibly).
NOISE_BANK = 6
NOISE_PAD = 16


@dataclass(frozen=True)
class Layout:
    """A street layout's geometry (canvas coordinates).

    Attributes:
        orient: ``"h"`` (walkway runs along x) or ``"v"`` (along y).
        flow: +1 or -1, the walkway's one-way direction along its axis.
        walk: painted walkway extent across (lo, hi).
        road: painted road extent across (lo, hi).
        lanes: per lane (anchor position across, driving direction along).
        perspective: scale at the top and at the bottom of the frame.
        buildings: extent across of the facades (horizontal) or the near roofs (vertical).
    """

    orient: str
    flow: int
    walk: tuple[float, float]
    road: tuple[float, float]
    lanes: tuple[tuple[float, int], ...]
    perspective: tuple[float, float]
    buildings: tuple[float, float]


@dataclass(frozen=True)
class Camera(Layout):
    """A street layout and its painted canvas.

    Attributes:
        index: camera number within the preset, or -1 for a video's own camera.
        canvas: float32 ``(H + 2*MARGIN, W + 2*MARGIN, 3)`` background.
    """

    index: int
    canvas: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class View:
    """A camera as one video sees it: geometry in that video's frame coordinates.

    ``reach`` multiplies the margins within which an agent near the frame's border is
    drawn at all: objects in a view are up to about that many times their scale-1
    size (the painted cameras keep 1; real footage, where people can be several times
    the 36 px reference height, sets its largest perspective scale).
    """

    width: int
    height: int
    orient: str
    flow: int
    walk: tuple[float, float]
    feet: tuple[float, float]
    road: tuple[float, float]
    lanes: tuple[tuple[float, int], ...]
    perspective: tuple[float, float]
    reach: float = 1.0

    @property
    def length(self) -> int:
        """Frame extent along the walkway (px)."""
        return self.width if self.orient == "h" else self.height

    def xy(self, along, cross):
        """Frame (x, y) of along/cross coordinates (scalars or arrays)."""
        return (along, cross) if self.orient == "h" else (cross, along)

    def scale_y(self, y):
        """Perspective scale at frame row ``y`` (scalar or array)."""
        top, bottom = self.perspective
        return top + (bottom - top) * np.clip(np.asarray(y, dtype=np.float64) / self.height, 0.0, 1.0)

    def scale_at(self, along, cross):
        """Perspective scale at along/cross coordinates."""
        return self.scale_y(cross if self.orient == "h" else along)

    def road_side(self) -> int:
        """+1 when the road lies at larger cross positions than the walkway, else -1."""
        return 1 if self.road[0] > self.walk[0] else -1

    def near_lane(self) -> int:
        """Index of the lane next to the walkway."""
        dists = [abs(c - (self.walk[1] if self.road_side() > 0 else self.walk[0])) for c, _ in self.lanes]
        return int(np.argmin(dists))


@dataclass(frozen=True)
class Photometry:
    """Per-video camera response: ``out = gain * tint * in + offset`` (8-bit levels)."""

    gain: float
    tint: tuple[float, ...]     # (r, g, b)
    offset: float
    noise_sigma: float

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Float or uint8 RGB -> uint8 RGB under this camera response."""
        scale = self.gain * np.asarray(self.tint, dtype=np.float32)
        out = np.asarray(image, dtype=np.float32) * scale + np.float32(self.offset)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def colour(self, rgb) -> tuple[int, int, int]:
        """One colour under this camera response (sprites get the same response as the ground)."""
        out = self.apply(np.asarray(rgb, dtype=np.float32).reshape(1, 3))
        return int(out[0, 0]), int(out[0, 1]), int(out[0, 2])


# --- painting ----------------------------------------------------------------------

_GRASS = [(78, 122, 58), (92, 132, 66), (118, 128, 76), (104, 118, 70)]
_PAVING = [(176, 172, 164), (188, 176, 152), (160, 102, 86), (196, 186, 160), (150, 150, 152)]
_FACADE = [(182, 170, 150), (150, 92, 72), (200, 198, 192), (122, 126, 138), (170, 150, 120)]
_ROOF = [(120, 70, 60), (96, 96, 104), (140, 132, 120), (80, 84, 92)]


@dataclass(frozen=True)
class Palette:
    """The colours and light a camera is painted with (defaults: the fixed cameras').

    Attributes:
        grass, paving, facade, roof: candidate base colours (each camera picks one per
            surface, per building or per roof).
        sky: sky level at the top and at the building line (horizontal layouts).
        sky_tint: per-channel factors of the sky.
        road_grey: range of the asphalt's grey level.
        strip: kerb strip colour; tree: crown colour.
        light_gradient: largest illumination slope (+-) across the canvas.
        light_across: the slope runs across the bands (else along them).
    """

    grass: tuple = tuple(_GRASS)
    paving: tuple = tuple(_PAVING)
    facade: tuple = tuple(_FACADE)
    roof: tuple = tuple(_ROOF)
    sky: tuple[float, float] = (200.0, 170.0)
    sky_tint: tuple[float, float, float] = (0.85, 0.92, 1.0)
    road_grey: tuple[float, float] = (68.0, 92.0)
    strip: tuple = (150, 150, 146)
    tree: tuple = (52, 98, 46)
    light_gradient: float = 0.08
    light_across: bool = False


FIXED_PALETTE = Palette()


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    """HSV in [0, 1] (hue wraps) -> RGB in 8-bit levels."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return 255.0 * r, 255.0 * g, 255.0 * b


def draw_palette(rng: np.random.Generator, draw: CameraDraw) -> Palette:
    """A camera's own palette: ground, paving, buildings, sky and light.

    Ground is green to dry-yellow grass, or (a quarter of the cameras) sand or gravel;
    paving any hue at low saturation; facades and roofs any hue; the sky clear,
    overcast or low sun; asphalt from dark to pale grey.
    """
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731 - one-line shorthand for the palette below
    if rng.random() < 0.25:
        grass = [_hsv(u(0.06, 0.13), u(0.10, 0.35), u(0.45, 0.72)) for _ in range(2)]
    else:
        hue = u(0.14, 0.36)
        grass = [_hsv(hue + u(-0.02, 0.02), u(0.30, 0.60), u(0.36, 0.58)) for _ in range(2)]
    paving = [_hsv(u(0.0, 1.0), u(0.0, 0.25), u(0.50, 0.85)) for _ in range(2)]
    facade = [_hsv(u(0.0, 1.0), u(0.05, 0.50), u(0.40, 0.85)) for _ in range(5)]
    roof = [_hsv(u(0.0, 1.0), u(0.05, 0.45), u(0.28, 0.62)) for _ in range(4)]
    sky_kind = int(rng.integers(3))
    sky_tint = [(0.78, 0.88, 1.0), (0.96, 0.97, 1.0), (1.0, 0.84, 0.70)][sky_kind]
    top = u(170.0, 235.0)
    grey = u(52.0, 118.0)
    return Palette(grass=tuple(grass), paving=tuple(paving), facade=tuple(facade), roof=tuple(roof),
                   sky=(top, top - u(0.0, 45.0)), sky_tint=sky_tint, road_grey=(grey, grey + 8.0),
                   strip=_hsv(u(0.0, 1.0), u(0.0, 0.15), u(0.45, 0.75)),
                   tree=_hsv(u(0.05, 0.36), u(0.40, 0.70), u(0.25, 0.45)),
                   light_gradient=float(draw.light_gradient), light_across=bool(rng.random() < 0.5))


def _value_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Smooth noise in [-1, 1]: a random lattice with spacing ``cell`` px, bilinearly upsampled."""
    h, w = shape
    gh, gw = int(h / cell) + 2, int(w / cell) + 2
    grid = rng.uniform(-1.0, 1.0, (gh, gw)).astype(np.float32)
    ys = np.arange(h, dtype=np.float32) / cell
    xs = np.arange(w, dtype=np.float32) / cell
    y0 = ys.astype(np.int64)
    x0 = xs.astype(np.int64)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    a = grid[y0][:, x0]
    b = grid[y0][:, x0 + 1]
    c = grid[y0 + 1][:, x0]
    d = grid[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _jitter(rng: np.random.Generator, rgb, amount: float = 10.0) -> np.ndarray:
    return np.clip(np.asarray(rgb, dtype=np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def _texture(rng, shape, base, coarse: float, fine: float) -> np.ndarray:
    """A base colour with coarse and fine luminance variation, ``(h, w, 3)`` float32."""
    lum = coarse * _value_noise(rng, shape, 22.0) + 0.5 * coarse * _value_noise(rng, shape, 7.0)
    lum += fine * rng.standard_normal(shape).astype(np.float32)
    return np.asarray(base, dtype=np.float32)[None, None, :] + lum[:, :, None]


def _paint_walkway(rng, img, lo: float, hi: float, palette: Palette) -> None:
    """Paving: tiles with darker joints and a little per-tile shade (texture for the model)."""
    c, n = img.shape[:2]
    base = _jitter(rng, palette.paving[rng.integers(len(palette.paving))], 8)
    tex = _texture(rng, (c, n), base, 6.0, 3.0)
    tile = int(rng.integers(10, 16))
    a, b = int(round(lo)), int(round(hi))
    rows = np.arange(c)[:, None]
    cols = np.arange(n)[None, :]
    shade = rng.uniform(-5, 5, (c // tile + 2, n // tile + 2)).astype(np.float32)
    tex += shade[(rows // tile), (cols // tile)][:, :, None]
    joints = ((rows - a) % tile == 0) | (cols % tile == 0)
    tex[np.broadcast_to(joints, (c, n))] *= 0.82
    img[a:b] = tex[a:b]
    img[a:a + 2] *= 0.7   # kerb shadow lines make the walkway edges visible
    img[b - 2:b] *= 0.7


def _paint_road(rng, img, lo: float, hi: float, palette: Palette) -> None:
    """Asphalt with patches, white edge lines and a dashed centre line."""
    c, n = img.shape[:2]
    grey = float(rng.uniform(*palette.road_grey))
    tex = _texture(rng, (c, n), (grey, grey, grey + 3), 5.0, 4.0)
    a, b = int(round(lo)), int(round(hi))
    img[a:b] = tex[a:b]
    img[a:a + 3] = 168.0           # kerb stones
    img[b - 3:b] = 168.0
    img[a + 5:a + 6] = 225.0       # edge lines
    img[b - 6:b - 5] = 225.0
    mid = (a + b) // 2
    dash, gap = int(rng.integers(10, 16)), int(rng.integers(8, 14))
    start = int(rng.integers(0, dash + gap))
    for s in range(-start, n, dash + gap):
        img[mid - 1:mid + 1, max(s, 0):max(s + dash, 0)] = (230.0, 226.0, 200.0)


def _paint_buildings_side(rng, img, lo: float, hi: float, palette: Palette) -> None:
    """Building facades with window grids standing on the far edge (horizontal layouts)."""
    n = img.shape[1]
    a, b = int(round(lo)), int(round(hi))
    sky = np.linspace(*palette.sky, max(b - a, 1), dtype=np.float32)[:, None]
    img[a:b] = np.concatenate([sky * f for f in palette.sky_tint], axis=1)[:, None, :]
    x = -int(rng.integers(0, 30))
    while x < n:
        bw = int(rng.integers(40, 110))
        top = a + int(rng.integers(0, max(1, int(0.45 * (b - a)))))
        colour = _jitter(rng, palette.facade[rng.integers(len(palette.facade))], 10)
        x0, x1 = max(x, 0), min(x + bw, n)
        if x1 > x0:
            img[top:b, x0:x1] = _texture(rng, (b - top, x1 - x0), colour, 4.0, 2.0)
            img[top:top + 3, x0:x1] *= 0.7
            win_w, win_h = int(rng.integers(5, 8)), int(rng.integers(6, 9))
            pitch_x, pitch_y = win_w + int(rng.integers(5, 9)), win_h + int(rng.integers(5, 8))
            glass = _jitter(rng, (70, 84, 100), 8)
            for wy in range(top + 6, b - win_h - 8, pitch_y):
                for wx in range(x + 5, x + bw - win_w - 3, pitch_x):
                    wx0, wx1 = max(wx, 0), min(wx + win_w, n)
                    if wx1 > wx0:
                        lit = 1.5 if rng.random() < 0.12 else 1.0
                        img[wy:wy + win_h, wx0:wx1] = glass * lit
            door = x + bw // 2
            d0, d1 = max(door - 4, 0), min(door + 4, n)
            if d1 > d0:
                img[b - 12:b, d0:d1] = colour * 0.45
            img[top:b, x0:min(x0 + 1, n)] *= 0.75
        x += bw + int(rng.integers(0, 12))


def _paint_roofs(rng, img, lo: float, hi: float, palette: Palette) -> None:
    """Roofs seen from above (vertical layouts): rectangles with a ridge line and a shadow."""
    n = img.shape[1]
    a, b = int(round(lo)), int(round(hi))
    if b - a < 12:
        return
    y = -int(rng.integers(0, 20))
    while y < n:
        length = int(rng.integers(40, 90))
        inset = int(rng.integers(2, 8))
        colour = _jitter(rng, palette.roof[rng.integers(len(palette.roof))], 10)
        y0, y1 = max(y, 0), min(y + length, n)
        r0, r1 = a + inset, b - inset
        if y1 > y0 and r1 > r0 + 4:
            img[r0:r1, y0:y1] = _texture(rng, (r1 - r0, y1 - y0), colour, 4.0, 2.0)
            mid = (r0 + r1) // 2
            img[mid:mid + 1, y0:y1] *= 0.7
            img[r1:min(r1 + 3, b), y0:y1] *= 0.7
        y += length + int(rng.integers(4, 14))


def _stamp_disc(img, cy: float, cx: float, r: float, colour, shade: float = 0.0) -> None:
    c, n = img.shape[:2]
    y0, y1 = max(int(cy - r - 1), 0), min(int(cy + r + 2), c)
    x0, x1 = max(int(cx - r - 1), 0), min(int(cx + r + 2), n)
    if y1 <= y0 or x1 <= x0:
        return
    yy = np.arange(y0, y1)[:, None] - cy
    xx = np.arange(x0, x1)[None, :] - cx
    d2 = (yy ** 2 + xx ** 2) / (r * r)
    m = d2 <= 1.0
    region = img[y0:y1, x0:x1]
    col = np.asarray(colour, dtype=np.float32)
    region[m] = col * (1.0 + shade * (0.5 - d2[m]))[:, None]


def _free_spots(rng, zones: list[tuple[float, float]], n_along: int, count: int, r: float):
    """Random (cross, along) points inside the given cross zones, at least r from their edges."""
    spots = []
    usable = [(lo + r, hi - r) for lo, hi in zones if hi - lo > 2 * r + 2]
    for _ in range(count):
        if not usable:
            break
        lo, hi = usable[rng.integers(len(usable))]
        spots.append((float(rng.uniform(lo, hi)), float(rng.uniform(0, n_along))))
    return spots


def _lanes(orient: str, road: tuple[float, float], first_dir: int) -> tuple[tuple[float, int], ...]:
    rw = road[1] - road[0]
    if orient == "h":
        # Side view: a car's anchor is where its wheels touch the road.
        pos = (road[0] + 0.45 * rw, road[0] + 0.90 * rw)
    else:
        # Top view: a car's anchor is its centre.
        pos = (road[0] + 0.28 * rw, road[0] + 0.72 * rw)
    return (pos[0], first_dir), (pos[1], -first_dir)


def _fixed_layout(rng: np.random.Generator, config: SynthConfig, orient: str) -> Layout:
    """The geometry of a fixed camera (narrow ranges: the presets' six to ten streets)."""
    C = float(config.height if orient == "h" else config.width)
    m = float(MARGIN)
    frac = lambda lo, hi: float(rng.uniform(lo, hi)) * C  # noqa: E731 - one-line shorthand for the layout below
    if orient == "h":
        road_far = bool(rng.random() < 0.5)
        top = frac(0.16, 0.22)
        if road_far:
            r0 = top + frac(0.0, 0.03)
            r1 = r0 + frac(0.20, 0.25)
            w0 = r1 + frac(0.03, 0.05)
            w1 = w0 + frac(0.27, 0.33)
        else:
            w0 = top + frac(0.02, 0.05)
            w1 = w0 + frac(0.27, 0.33)
            r0 = w1 + frac(0.03, 0.05)
            r1 = r0 + frac(0.20, 0.25)
        walk, road = (w0 + m, w1 + m), (r0 + m, r1 + m)
        buildings = (0.0, top + m)
    else:
        ww, g, rw = frac(0.25, 0.31), frac(0.02, 0.04), frac(0.20, 0.25)
        walk, road = _vertical_bands(rng, C, ww, g, rw)
        buildings = (0.0, min(walk[0], road[0]) - 14.0)
    flow = 1 if rng.random() < 0.5 else -1
    first_dir = 1 if rng.random() < 0.5 else -1
    perspective = (float(rng.uniform(0.74, 0.84)), float(rng.uniform(1.04, 1.14)))
    return Layout(orient, flow, walk, road, _lanes(orient, road, first_dir), perspective, buildings)


def _vertical_bands(rng: np.random.Generator, C: float, ww: float, g: float, rw: float):
    """Walkway and road extents of a vertical layout, somewhere across the frame."""
    m = float(MARGIN)
    span = ww + g + rw
    left = float(rng.uniform(0.08 * C, C - span - 0.08 * C))
    road_right = bool(rng.random() < 0.5)
    if road_right:
        walk = (left + m, left + ww + m)
        road = (walk[1] + g, walk[1] + g + rw)
    else:
        road = (left + m, left + rw + m)
        walk = (road[1] + g, road[1] + g + ww)
    return walk, road


def _drawn_layout(rng: np.random.Generator, config: SynthConfig, draw: CameraDraw) -> Layout:
    """A video's own geometry, all within ``draw``'s ranges.

    Orientation, band order, positions and widths, flow and lane directions, perspective.
    """
    orient = "v" if rng.random() < draw.vertical else "h"
    C = float(config.height if orient == "h" else config.width)
    m = float(MARGIN)
    frac = lambda rg: float(rng.uniform(*rg)) * C  # noqa: E731 - one-line shorthand for the layout below
    ww, g, rw = frac(draw.walk_width), frac(draw.gap), frac(draw.road_width)
    if orient == "h":
        lead = frac(draw.lead)
        # The horizon comes down only as far as the bands leave room (4% kept below them).
        room = 0.96 * C - (lead + ww + g + rw)
        top = float(rng.uniform(draw.horizon[0] * C, max(draw.horizon[0] * C, min(draw.horizon[1] * C, room))))
        first = top + lead
        if rng.random() < 0.5:       # road on the far side
            road = (first + m, first + rw + m)
            walk = (road[1] + g, road[1] + g + ww)
        else:
            walk = (first + m, first + ww + m)
            road = (walk[1] + g, walk[1] + g + rw)
        buildings = (0.0, top + m)
    else:
        walk, road = _vertical_bands(rng, C, ww, g, rw)
        buildings = (0.0, min(walk[0], road[0]) - 14.0)
    flow = 1 if rng.random() < 0.5 else -1
    first_dir = 1 if rng.random() < 0.5 else -1
    perspective = (float(rng.uniform(*draw.perspective_top)), float(rng.uniform(*draw.perspective_bottom)))
    return Layout(orient, flow, walk, road, _lanes(orient, road, first_dir), perspective, buildings)


def make_camera(config: SynthConfig, index: int) -> Camera:
    """Paint fixed camera ``index`` of a preset (deterministic in ``config.scene_seed`` and index).

    Cameras 2, 5, 8, ... are vertical layouts, the others horizontal, so every preset
    with three or more cameras has both kinds.
    """
    rng = np.random.default_rng([config.scene_seed, 7919, index])
    layout = _fixed_layout(rng, config, "v" if index % 3 == 2 else "h")
    return _paint_camera(rng, config, index, layout, FIXED_PALETTE)


def draw_camera(rng: np.random.Generator, config: SynthConfig) -> Camera:
    """Paint a video's own camera from its random stream (``config.camera_draw`` set).

    Layout, palette, light and perspective are all drawn from ``rng``; the camera's
    index is -1 (it belongs to one video).
    """
    draw = config.camera_draw
    if draw is None:  # pragma: no cover - programming error
        raise ValueError(f"preset '{config.name}' has fixed cameras")
    layout = _drawn_layout(rng, config, draw)
    return _paint_camera(rng, config, -1, layout, draw_palette(rng, draw))


def _paint_camera(rng: np.random.Generator, config: SynthConfig, index: int, layout: Layout,
                  palette: Palette) -> Camera:
    """Paint the canvas of a layout: ground, road, walkway, kerb strip, buildings, trees, light."""
    orient, walk, road, buildings = layout.orient, layout.walk, layout.road, layout.buildings
    H, W = config.height + 2 * MARGIN, config.width + 2 * MARGIN
    cross_n, along_n = (H, W) if orient == "h" else (W, H)
    grass = palette.grass[rng.integers(len(palette.grass))]
    img = _texture(rng, (cross_n, along_n), _jitter(rng, grass, 10), 12.0, 5.0)
    # A second, darker grass species in patches.
    patches = _value_noise(rng, (cross_n, along_n), 30.0)
    img *= (1.0 - 0.08 * (patches > 0.3))[:, :, None]
    _paint_road(rng, img, *road, palette)
    _paint_walkway(rng, img, *walk, palette)
    strip = (min(walk[1], road[1]), max(walk[0], road[0]))
    if strip[1] - strip[0] >= 3:
        img[int(round(strip[0])):int(round(strip[1]))] = _texture(
            rng, (int(round(strip[1])) - int(round(strip[0])), along_n), palette.strip, 3.0, 3.0)
        # Bollards on the strip between road and walkway.
        step = int(rng.integers(28, 48))
        for s in range(int(rng.integers(0, step)), along_n, step):
            _stamp_disc(img, (strip[0] + strip[1]) / 2, s, 1.6, (60, 60, 64))
    if orient == "h":
        _paint_buildings_side(rng, img, *buildings, palette)
    else:
        _paint_roofs(rng, img, *buildings, palette)
        far = (max(walk[1], road[1]) + 14.0, float(cross_n))
        _paint_roofs(rng, img, *far, palette)
    # Trees and benches only where grass is, so no agent ever walks "through" them.
    lo_edge = min(walk[0], road[0])
    hi_edge = max(walk[1], road[1])
    # (Top views let trees overhang roofs; side views keep them on the open grass.)
    first = 0.0 if orient == "v" else buildings[1] + 2
    grass_zones = [(first, lo_edge - 2), (hi_edge + 2, float(cross_n))]
    for cy, cx in _free_spots(rng, grass_zones, along_n, int(rng.integers(3, 8)), 9.0):
        r = float(rng.uniform(5, 9))
        _stamp_disc(img, cy + 2, cx + 2, r, (40, 60, 35))           # shadow
        _stamp_disc(img, cy, cx, r, _jitter(rng, palette.tree, 12), shade=0.5)
    for cy, cx in _free_spots(rng, grass_zones, along_n, int(rng.integers(0, 3)), 4.0):
        a0, b0 = int(cy) - 2, int(cy) + 2
        img[a0:b0, int(cx):int(cx) + 14] = (112, 82, 56)
    # A gentle illumination gradient (sun from one side).
    slope = float(rng.uniform(-palette.light_gradient, palette.light_gradient))
    if palette.light_across:
        img *= (1.0 + slope * np.linspace(-1, 1, cross_n, dtype=np.float32))[:, None, None]
    else:
        img *= (1.0 + slope * np.linspace(-1, 1, along_n, dtype=np.float32))[None, :, None]
    img = np.clip(img, 0, 255).astype(np.float32)
    canvas = img if orient == "h" else np.ascontiguousarray(img.transpose(1, 0, 2))
    return Camera(**{f.name: getattr(layout, f.name) for f in fields(Layout)}, index=index, canvas=canvas)


def make_view(camera: Camera, config: SynthConfig, dx: int, dy: int) -> View:
    """The camera seen through a crop at offset ``(dx, dy)`` in ``[0, 2*MARGIN]``."""
    shift = dy if camera.orient == "h" else dx
    walk = (camera.walk[0] - shift, camera.walk[1] - shift)
    road = (camera.road[0] - shift, camera.road[1] - shift)
    lanes = tuple((c - shift, d) for c, d in camera.lanes)
    # Feet stay a few px inside the painted walkway; on horizontal layouts the far
    # edge needs more room because the body stands up from the feet.
    feet = (walk[0] + 5.0, walk[1] - 4.0)
    return View(width=config.width, height=config.height, orient=camera.orient, flow=camera.flow,
                walk=walk, feet=feet, road=road, lanes=lanes, perspective=camera.perspective)


def draw_photometry(rng: np.random.Generator, config: SynthConfig) -> Photometry:
    """Per-video camera response (brightness, contrast-like gain, tint, noise)."""
    tint = (0.95, 1.05) if config.camera_draw is None else config.camera_draw.tint
    return Photometry(gain=float(rng.uniform(*config.gain)),
                      tint=tuple(float(v) for v in rng.uniform(*tint, 3)),
                      offset=float(rng.uniform(*config.offset)),
                      noise_sigma=float(rng.uniform(*config.noise_sigma)))


def background(camera: Camera, config: SynthConfig, photo: Photometry, dx: int, dy: int) -> np.ndarray:
    """The video's clean background: the canvas cropped at (dx, dy) under its photometry.

    Returns:
        ``(H, W, 3)`` uint8, C-contiguous.
    """
    crop = camera.canvas[dy:dy + config.height, dx:dx + config.width]
    # photo.apply keeps the canvas's memory order, which for some layouts is column-major;
    # every frame starts as a copy of this array into a row-major buffer, and copying
    # across memory orders cost ~1 ms a frame (as much as encoding it).
    return np.ascontiguousarray(photo.apply(crop))


def noise_bank(rng: np.random.Generator, config: SynthConfig, sigma: float) -> np.ndarray:
    """``(NOISE_BANK, H + pad, W + pad)`` int16 luminance noise fields for one video."""
    shape = (NOISE_BANK, config.height + NOISE_PAD, config.width + NOISE_PAD)
    return np.rint(rng.standard_normal(shape, dtype=np.float32) * sigma).astype(np.int16)
