"""``video_mil``: video-level top-k MIL on pooled patch features (RTFM / VadCLIP style)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from patchvad.model.baselines import video_topk_loss
from patchvad.model.methods.base import VideoMILMethod

if TYPE_CHECKING:
    from patchvad.model.model import AnomalyModel


class VideoMIL(VideoMILMethod):
    """``BCE(mean of the top-k snippet scores, y)``, ``k = floor(T/16) + 1``."""

    name = "video_mil"
    description = "video-level top-k MIL on pooled features (whole-frame boxes)"

    def video_loss(self, model: AnomalyModel, a: torch.Tensor, lengths: list[int], labels: list[int]
                   ) -> torch.Tensor:
        """Top-k BCE over the batch."""
        return video_topk_loss(a, lengths, labels, model.config.loss.window_div)
