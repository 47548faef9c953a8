"""Random features in the store format, for the benchmarks (shared by train.py and scale.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from patchvad.features.backbones import FeatureSpec
from patchvad.features.snippets import SnippetMap
from patchvad.features.store import FeatureStore

MOTION = 8


def write_random_store(path: Path, n: int, t: int, grid: int, dim: int, seed: int) -> FeatureStore:
    """``n`` videos ``v00000 ...`` of ``(t, grid, grid, dim)`` float16 features (16-frame snippets).

    Channels split like the default extraction (appearance : change = 432 : 112, then the
    8 motion channels, kept small and non-negative as real motion energies are).
    """
    app = max(1, (dim - MOTION) * 432 // 544)
    chg = dim - MOTION - app
    channels = {"appearance": [0, app], "appearance_change": [app, app + chg], "motion": [app + chg, dim]}
    spec = FeatureSpec(backbone="random", weights_hash="none", input_size=(224, 224), grid=(grid, grid),
                       snippet_len=16, stride=16, passes=2, motion=True, channels=channels)
    store = FeatureStore(path, spec)
    rng = np.random.default_rng(seed)
    snip = SnippetMap.build(t * 16, 16)
    for i in range(n):
        x = rng.standard_normal((t, grid, grid, dim), dtype=np.float32).astype(np.float16)
        x[..., app + chg:] = np.abs(x[..., app + chg:]) * 0.05
        store.write(f"v{i:05d}", x, snip, {"frame_count": t * 16, "fps": 30.0, "width": 320, "height": 240})
    return store
