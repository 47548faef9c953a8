"""``sultani``: the ranking MIL of Sultani et al. (2018) on pooled patch features."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from patchvad.model.baselines import sultani_loss
from patchvad.model.methods.base import VideoMILMethod

if TYPE_CHECKING:
    from patchvad.model.model import AnomalyModel


class Sultani(VideoMILMethod):
    """Hinge ranking of the anomalous bag's max over the normal bag's, plus smoothness and sparsity."""

    name = "sultani"
    description = "Sultani et al. ranking MIL on pooled features (whole-frame boxes)"

    def video_loss(self, model: AnomalyModel, a: torch.Tensor, lengths: list[int], labels: list[int]
                   ) -> torch.Tensor:
        """Ranking loss averaged over anomalous x normal pairs."""
        return sultani_loss(a, lengths, labels, model.config.loss.sultani_lambda)
