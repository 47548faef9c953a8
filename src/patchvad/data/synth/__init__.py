"""The built-in synthetic surveillance benchmark (docs/synthetic.md).

Procedurally generated street scenes (a one-way pedestrian walkway, a two-lane road,
grass, buildings; a few fixed cameras, or with the ``newcam`` presets a camera of its
own for every video; per-video camera response and sensor noise) with normal walkers,
bag carriers, pairs, a person standing still, cars and cyclists, and in anomalous
videos one localized anomaly of seven types, with exact per-frame boxes. Written in
the generic dataset folder layout as H.264 mp4 files, deterministic by seed.

    from patchvad.data.synth import generate_benchmark
    root = generate_benchmark("data/synth", n_train=240, n_test=60, seed=0, workers=2)

The same agents and anomalies drawn into a user's own footage instead of painted
streets: :mod:`patchvad.data.synth.footage` (``patchvad synth --background FOOTAGE``).
"""

from patchvad.data.synth.config import ANOMALY_TYPES, PRESETS, CameraDraw, SynthConfig, resolve_preset
from patchvad.data.synth.generate import generate_benchmark, plan_benchmark, synth_command
from patchvad.data.synth.render import VideoScene, VideoSpec, build_scene

__all__ = [
    "ANOMALY_TYPES", "PRESETS", "CameraDraw", "SynthConfig", "VideoScene", "VideoSpec", "build_scene",
    "generate_benchmark", "plan_benchmark", "resolve_preset", "synth_command",
]
