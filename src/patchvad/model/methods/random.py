"""``random``: uniform random patch scores, the chance level of every metric."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from patchvad.model.baselines import RandomScorer
from patchvad.model.methods.base import Method

if TYPE_CHECKING:
    from patchvad.model.model import AnomalyModel


class Random(Method):
    """Scores drawn per (seed, video), independent of the input."""

    name = "random"
    description = "uniform random scores (chance level)"
    uses_encoder = False

    def input_free_scores(self, model: AnomalyModel, stem: str, shape: tuple[int, int, int]) -> np.ndarray | None:
        """Reproducible uniform scores for the checkpoint's seed and the video's stem."""
        return RandomScorer(int(model.meta.get("seed", 0)))(stem, shape)
