"""A synthetic dataset made directly as feature arrays (no video, no extraction).

Every video is a scene (a random appearance vector per cell) with normal walkers:
objects that move one cell every few snippets and raise the motion channels of their
cell (frame-difference energy included: normal walking also moves). Anomalous videos
add, during a span of snippets, an object at a fixed cell with a distinct motion
signature (fast, jittery: high speed and energy_std, a little more energy). The
motion floor (energy residual) sees both walkers and anomaly; a learned model can
tell them apart.

``make_toy_dataset(root, feats, ...)`` writes a generic dataset folder (manifest with
frames/fps/width/height, empty placeholder video files, tracks of the anomalous TEST
videos) and a FeatureStore; it returns the FeatureSpec.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from patchvad.data.folder import write_frame_labels, write_manifest, write_tracks
from patchvad.features.backbones import FeatureSpec
from patchvad.features.snippets import SnippetMap
from patchvad.features.store import FeatureStore

APP, CHG, MOT = 16, 8, 8


def toy_spec(grid: tuple[int, int] = (8, 8)) -> FeatureSpec:
    return FeatureSpec(backbone="toy", weights_hash="none", input_size=(128, 128), grid=grid, snippet_len=16,
                       stride=16, passes=2, motion=True,
                       channels={"appearance": [0, APP], "appearance_change": [APP, APP + CHG],
                                 "motion": [APP + CHG, APP + CHG + MOT]})


def toy_video(rng: np.random.Generator, grid: tuple[int, int], n_snippets: int, anomalous: bool,
              n_walkers: int = 2) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """Features ``(T, Gh, Gw, D)`` and the anomaly ``(t0, t1, i, j)`` (None if normal)."""
    gh, gw = grid
    d = APP + CHG + MOT
    x = np.zeros((n_snippets, gh, gw, d), dtype=np.float32)
    scene = rng.normal(0, 1, (gh, gw, APP))
    x[..., :APP] = scene + rng.normal(0, 0.1, (n_snippets, gh, gw, APP))
    x[..., APP:APP + CHG] = np.abs(rng.normal(0, 0.05, (n_snippets, gh, gw, CHG)))
    m = APP + CHG
    # background motion noise: energy_mean, energy_max, energy_std, energy_peak, u, v, speed, moving
    base = np.abs(rng.normal(0, 0.005, (n_snippets, gh, gw)))
    x[..., m + 0] = base
    x[..., m + 1] = base * 1.5
    x[..., m + 2] = base * 0.3
    x[..., m + 3] = base * 4
    x[..., m + 6] = np.abs(rng.normal(0, 0.05, (n_snippets, gh, gw)))
    obj = rng.normal(0, 1, APP)
    for _ in range(n_walkers):
        i, j = rng.integers(0, gh), rng.integers(0, gw)
        di, dj = rng.choice([-1, 0, 1]), rng.choice([-1, 1])
        for t in range(n_snippets):
            if t % 2 == 1:
                i, j = int(np.clip(i + di, 0, gh - 1)), (j + dj) % gw
            e = 0.05 + rng.normal(0, 0.005)
            x[t, i, j, m:m + 8] += [e, e * 1.4, e * 0.2, e * 3, dj * 1.0, di * 0.5, 1.1, 0.2]
            x[t, i, j, :APP] += 0.5 * obj
            x[t, i, j, APP:APP + CHG] += 0.3
    event = None
    if anomalous:
        span = max(2, n_snippets // 4)
        t0 = int(rng.integers(0, n_snippets - span + 1))
        i, j = int(rng.integers(1, gh - 1)), int(rng.integers(1, gw - 1))
        for t in range(t0, t0 + span):
            e = 0.06 + rng.normal(0, 0.005)
            x[t, i, j, m:m + 8] += [e, e * 3.0, e * 1.5, e * 3, rng.normal(0, 3), rng.normal(0, 3), 3.5, 0.3]
            x[t, i, j, APP:APP + CHG] += 0.6
        event = (t0, t0 + span, i, j)
    return x, event


def make_toy_dataset(root: Path, feats: Path, n_train: int = 60, n_test: int = 20, grid: tuple[int, int] = (8, 8),
                     seed: int = 0, snippets: tuple[int, int] = (12, 20), oracle_dir: Path | None = None) -> FeatureSpec:
    """Write the dataset folder ``root`` and the feature store ``feats``; half the videos are anomalous.

    ``oracle_dir``: also write the TRAINING videos' ground truth there (the layout of
    ``patchvad synth --oracle-labels``), for the supervised oracle; never under ``root``.
    """
    rng = np.random.default_rng(seed)
    spec = toy_spec(grid)
    store = FeatureStore(feats, spec)
    root = Path(root)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    width, height = spec.input_size
    gh, gw = grid
    rows = []
    for split, count in (("train", n_train), ("test", n_test)):
        for k in range(count):
            label = k % 2
            stem = f"{split}_{k:03d}"
            n = int(rng.integers(snippets[0], snippets[1] + 1))
            x, event = toy_video(rng, grid, n, bool(label))
            frames = n * 16 - int(rng.integers(0, 8))
            snip = SnippetMap.build(frames, 16)
            assert snip.num_snippets == n
            store.write(stem, x, snip, {"frame_count": frames, "fps": 25.0, "width": width, "height": height})
            (root / "videos" / f"{stem}.mp4").write_bytes(b"")
            rows.append({"video": f"videos/{stem}.mp4", "split": split, "label": label, "class": "toy",
                         "frames": frames, "fps": 25, "width": width, "height": height})
            regions = []
            if event is not None:
                t0, t1, i, j = event
                cw, ch = width / gw, height / gh
                for f in range(t0 * 16, min(t1 * 16, frames)):
                    # the object: the middle half of its cell
                    regions.append((0, f, int(j * cw + cw / 4), int(i * ch + ch / 4), int(j * cw + 3 * cw / 4) - 1,
                                    int(i * ch + 3 * ch / 4) - 1))
            if split == "test" and regions:
                write_tracks(root, stem, regions)
            if split == "train" and oracle_dir is not None:
                labels = np.zeros(frames, dtype=np.uint8)
                labels[[r[1] for r in regions]] = 1
                write_frame_labels(oracle_dir, stem, labels)
                if regions:
                    write_tracks(oracle_dir, stem, regions)
    write_manifest(root, rows)
    store.write_index()
    return spec
