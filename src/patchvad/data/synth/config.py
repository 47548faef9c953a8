"""Parameters of the synthetic surveillance benchmark and its named presets.

A :class:`SynthConfig` fixes everything about a benchmark except its seed and its
video counts: frame size and rate, video lengths, the cameras (scene layouts), object
sizes and speeds, crowd density, the anomaly types and their share of a video's time.
Sizes are in pixels at perspective scale 1 (the middle-to-near part of the frame); the
measured distributions per preset are in docs/synthetic.md.

Cameras come in two kinds. By default a preset has ``n_cameras`` fixed layouts and
every video films one of them. With ``camera_draw`` set (the ``newcam`` presets)
every video draws its own camera from its seed, within the ranges of a
:class:`CameraDraw`, so no two videos share a street, a palette or a perspective.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from patchvad.errors import ConfigError

#: Every anomaly type the generator knows, in a fixed order (it seeds type assignment).
ANOMALY_TYPES: tuple[str, ...] = (
    "running",             # a pedestrian runs along the flow at 3-4x walking speed
    "wrong_way",           # a pedestrian walks against the walkway's one-way flow
    "vehicle_in_zone",     # a car leaves the road and drives along the pedestrian walkway
    "fighting",            # two pedestrians stop and fight (one track per fighter)
    "fall",                # a pedestrian falls over, lies still, gets up again
    "left_object",         # a pedestrian drops a bag and walks on; the bag is the anomaly
    "pedestrian_on_road",  # a pedestrian leaves the walkway and walks on the road
)

Range = tuple[float, float]


@dataclass(frozen=True)
class CameraDraw:
    """Ranges from which every video draws its own camera (``SynthConfig.camera_draw``).

    Fractions are of the frame extent across the bands (the height for horizontal
    layouts, the width for vertical ones).

    Attributes:
        vertical: probability of a vertical layout (walkway and road run top-bottom).
        horizon: horizontal layouts: the row where the ground begins below the
            buildings and sky, as a fraction of the height (clipped so the bands fit).
        lead: grass between that row and the first band, as a fraction.
        walk_width, road_width: widths of the walkway and the two-lane road.
        gap: width of the kerb strip between walkway and road.
        perspective_top, perspective_bottom: object scale at the top and bottom row
            (the sprite scale gradient).
        tint: per-channel colour gain of the camera response (white balance).
        light_gradient: largest illumination slope across the frame (0.08 means
            +-8% from one side to the other); drawn along or across the bands.
    """

    vertical: float = 0.35
    horizon: Range = (0.04, 0.34)
    lead: Range = (0.0, 0.08)
    walk_width: Range = (0.22, 0.36)
    road_width: Range = (0.17, 0.28)
    gap: Range = (0.02, 0.07)
    perspective_top: Range = (0.5, 0.85)
    perspective_bottom: Range = (0.95, 1.3)
    tint: Range = (0.88, 1.12)
    light_gradient: float = 0.2

    def validate(self, preset: str) -> None:
        """Check ranges and that the widest bands fit into the frame.

        Raises:
            ConfigError: a value out of its range, naming the field.
        """
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"synthetic preset '{preset}': camera_draw.{name} {why}")

        for name in ("horizon", "lead", "walk_width", "road_width", "gap", "perspective_top",
                     "perspective_bottom", "tint"):
            a, b = getattr(self, name)
            if not (0 <= a <= b):
                raise bad(name, f"must be a range 0 <= min <= max, got {(a, b)}")
        if not 0.0 <= self.vertical <= 1.0:
            raise bad("vertical", "must be a probability in [0, 1]")
        if self.walk_width[0] < 0.15 or self.road_width[0] < 0.12:
            raise bad("walk_width / road_width", "must be at least 0.15 / 0.12 of the frame: people, "
                                                 "cars and the events between them need the room")
        if self.walk_width[1] + self.gap[1] + self.road_width[1] > 0.84:
            raise bad("widths", "walkway, gap and road max must leave 8% of the frame on either side "
                                "of a vertical layout (sum at most 0.84)")
        widest = self.horizon[0] + self.lead[1] + self.walk_width[1] + self.gap[1] + self.road_width[1]
        if widest > 0.96:
            raise bad("widths", f"horizon min + lead, walkway, gap and road max must leave the bands "
                                f"inside the frame (at most 0.96), got {widest:.2f}")
        if self.perspective_top[0] < 0.3 or self.perspective_top[1] > self.perspective_bottom[0] \
                or self.perspective_bottom[1] > 1.6:
            raise bad("perspective_top / perspective_bottom", "must satisfy 0.3 <= top <= bottom <= 1.6 (objects "
                                                              "grow towards the camera)")
        if not 0.0 <= self.light_gradient <= 0.4:
            raise bad("light_gradient", f"must lie in [0, 0.4], got {self.light_gradient}")


@dataclass(frozen=True)
class SynthConfig:
    """Everything that defines a synthetic benchmark except seed and counts.

    Attributes:
        name: preset name (recorded in synth.json).
        width, height, fps: frame size and rate of every video.
        frames: inclusive range of video lengths in frames.
        event_fraction: the anomaly's share of its video's frames (range); some types
            shorten it when the object would leave the frame (see docs/synthetic.md).
        person_height: standing pedestrian height in px at perspective scale 1.
        object_scale: multiplies every object size and speed (``large`` uses < 1).
        speed_scale: multiplies every speed on top of ``object_scale``. Speeds are
            given per frame at 25 fps; footage at another frame rate sets it to
            ``25 / fps`` so that people move as fast per second (docs/synthetic.md).
        walk_speed: walking speed in px/frame at scale 1 (before ``object_scale``).
        run_factor: running speed as a multiple of the runner's walking speed.
        car_speed: road speed of cars in px/frame at scale 1.
        car_size: car length and height (side view) in px at scale 1, as ranges.
        bag_size: bag side length as a fraction of the carrier's height.
        walkers_visible: mean number of walkers in view (drawn per video).
        cars_visible: mean number of cars in view per lane (drawn per video).
        cyclists: probability that a video has cyclists on the road.
        stander: probability that a video has one person standing still all along.
        carrier_fraction, pair_fraction: shares of walkers carrying a bag / walking in pairs.
        noise_sigma: per-frame sensor noise (std of 8-bit levels), drawn per video.
        gain, offset: per-video brightness gain and offset (camera variation).
        n_cameras: number of fixed scene layouts; each video picks one.
        scene_seed: seeds the cameras. Kept apart from the video seed on purpose: a
            development set generated with another ``seed`` films the same streets,
            like a second recording from the same cameras.
        camera_draw: None (fixed cameras), or the ranges from which every video
            draws its own camera from its own seed; then ``n_cameras`` and
            ``scene_seed`` play no part.
        anomalous_fraction: share of anomalous videos in each split.
        anomaly_types: the types drawn from (a subset of :data:`ANOMALY_TYPES`).
        crf, encoder_preset: x264 quality and speed.
        default_train, default_test: video counts when the caller gives none.
    """

    name: str = "default"
    width: int = 320
    height: int = 240
    fps: float = 25.0
    frames: tuple[int, int] = (160, 224)
    event_fraction: Range = (0.2, 0.45)
    person_height: Range = (32.0, 40.0)
    object_scale: float = 1.0
    speed_scale: float = 1.0
    walk_speed: Range = (0.8, 1.2)
    run_factor: Range = (3.0, 4.0)
    car_speed: Range = (3.0, 5.0)
    car_size: tuple[Range, Range] = ((58.0, 72.0), (27.0, 33.0))
    bag_size: Range = (0.34, 0.52)
    walkers_visible: Range = (3.0, 6.0)
    cars_visible: Range = (0.3, 1.0)
    cyclists: float = 0.4
    stander: float = 0.35
    carrier_fraction: float = 0.15
    pair_fraction: float = 0.15
    noise_sigma: Range = (1.0, 3.0)
    gain: Range = (0.85, 1.15)
    offset: Range = (-10.0, 10.0)
    n_cameras: int = 6
    scene_seed: int = 0
    anomalous_fraction: float = 0.5
    anomaly_types: tuple[str, ...] = ANOMALY_TYPES
    crf: int = 23
    encoder_preset: str = "veryfast"
    default_train: int = 240
    default_test: int = 60
    camera_draw: CameraDraw | None = None

    def validate(self) -> "SynthConfig":
        """Check ranges; return self.

        Raises:
            ConfigError: a value out of its range, naming the field.
        """
        self._check_frames()
        self._check_objects()
        self._check_videos()
        if self.camera_draw is not None:
            self.camera_draw.validate(self.name)
        return self

    def _bad(self, field: str, why: str) -> ConfigError:
        return ConfigError(f"synthetic preset '{self.name}': {field} {why}")

    def _check_frames(self) -> None:
        """Frame size, frame rate, video length and event length."""
        bad = self._bad
        if self.width < 160 or self.height < 120:
            raise bad("width x height", f"must be at least 160x120, got {self.width}x{self.height}")
        if not self.fps > 0:
            raise bad("fps", f"must be positive, got {self.fps}")
        lo, hi = self.frames
        if not (48 <= lo <= hi):
            raise bad("frames", f"must be a range with 48 <= min <= max, got {self.frames}")
        elo, ehi = self.event_fraction
        if lo * ehi < 36:
            raise bad("frames", f"min {lo} x event_fraction max {ehi} must give at least 36 frames: "
                                f"falls, swerving cars and people stepping onto the road need that long")
        if not (0.05 <= elo <= ehi <= 0.5):
            raise bad("event_fraction", f"must satisfy 0.05 <= min <= max <= 0.5 (anomalies are a "
                                        f"minority of a video's time), got {self.event_fraction}")

    def _check_objects(self) -> None:
        """The ranges of sizes, speeds, counts and photometry, and the scales."""
        bad = self._bad
        for name in ("person_height", "walk_speed", "run_factor", "car_speed", "bag_size",
                     "walkers_visible", "cars_visible", "noise_sigma", "gain"):
            a, b = getattr(self, name)
            if not (0 <= a <= b):
                raise bad(name, f"must be a range 0 <= min <= max, got {(a, b)}")
        if not 0.3 <= self.object_scale <= 2.0:
            raise bad("object_scale", f"must lie in [0.3, 2], got {self.object_scale}")
        if not 0.1 <= self.speed_scale <= 10.0:
            raise bad("speed_scale", f"must lie in [0.1, 10], got {self.speed_scale}")
        if self.run_factor[0] < 2.0:
            raise bad("run_factor", "must be at least 2 (running must differ from walking)")

    def _check_videos(self) -> None:
        """The anomalous share and types, cameras, encoder quality and the probabilities."""
        bad = self._bad
        if not (0.0 < self.anomalous_fraction < 1.0):
            raise bad("anomalous_fraction", f"must lie in (0, 1), got {self.anomalous_fraction}")
        unknown = [t for t in self.anomaly_types if t not in ANOMALY_TYPES]
        if unknown or not self.anomaly_types or len(set(self.anomaly_types)) != len(self.anomaly_types):
            raise bad("anomaly_types", f"must be distinct names out of {list(ANOMALY_TYPES)}, "
                                       f"got {list(self.anomaly_types)}")
        if self.n_cameras < 1:
            raise bad("n_cameras", "must be at least 1")
        if not 0 <= self.crf <= 51:
            raise bad("crf", f"must lie in [0, 51], got {self.crf}")
        for name in ("cyclists", "stander", "carrier_fraction", "pair_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name, "must be a probability in [0, 1]")

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists).

        ``camera_draw`` only when set, so a fixed-camera preset's record keeps its keys.
        """
        out = json_ready(dataclasses.asdict(self))
        if self.camera_draw is None:
            del out["camera_draw"]
        return out


def json_ready(value):
    """Tuples to lists, recursively (json would do it, but sorted comparisons need it)."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


_DEFAULT = SynthConfig()

_QUICK = dataclasses.replace(_DEFAULT, name="quick", frames=(112, 144))

_NEWCAM = dataclasses.replace(
    _DEFAULT, name="newcam", camera_draw=CameraDraw(), gain=(0.7, 1.25), offset=(-18.0, 14.0),
    noise_sigma=(1.0, 4.0))

#: Named presets. ``default`` is sized so that generating a set of the demo's size takes
#: minutes on 2 CPU cores; ``quick`` (alias ``demo``) has its cameras, objects and events
#: in shorter videos (112-144 frames: what ``make demo`` generates); ``large`` is a harder,
#: longer, denser street scene with smaller objects; ``tiny`` is for smoke tests only.
#: The ``newcam`` presets film every video with its own camera (like UCF-Crime, unlike
#: the fixed cameras of the others): ``newcam`` has the default's videos and counts,
#: ``newcam-large`` the same videos at the field's scale (960 + 240), ``newcam-tiny``
#: is for smoke tests only.
PRESETS: dict[str, SynthConfig] = {
    "default": _DEFAULT,
    "large": dataclasses.replace(
        _DEFAULT, name="large", frames=(288, 400), object_scale=0.72, walkers_visible=(6.0, 12.0),
        cars_visible=(0.5, 1.5), n_cameras=10, default_train=600, default_test=150),
    "quick": _QUICK,
    "demo": _QUICK,
    "tiny": dataclasses.replace(
        _DEFAULT, name="tiny", frames=(80, 112), n_cameras=3, default_train=16, default_test=8),
    "newcam": _NEWCAM,
    "newcam-large": dataclasses.replace(_NEWCAM, name="newcam-large", default_train=960, default_test=240),
    "newcam-tiny": dataclasses.replace(_NEWCAM, name="newcam-tiny", frames=(80, 112), default_train=16,
                                       default_test=8),
}


def resolve_preset(preset: str | SynthConfig) -> SynthConfig:
    """A preset name or a config object -> a validated config.

    Raises:
        ConfigError: unknown preset name (lists the known ones) or invalid values.
    """
    if isinstance(preset, SynthConfig):
        return preset.validate()
    if preset not in PRESETS:
        raise ConfigError(f"unknown synthetic preset '{preset}'; choose one of {sorted(PRESETS)}")
    return PRESETS[preset].validate()
