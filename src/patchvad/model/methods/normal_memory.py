"""``normal_memory``: no training: how unlike every normal training patch a patch is."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from patchvad.config import RunConfig
from patchvad.model.methods.base import Method

if TYPE_CHECKING:
    from patchvad.model.model import AnomalyModel

#: centroids of the memory when the configuration does not set ``model.memory``.
DEFAULT_MEMORY = 256


class NormalMemory(Method):
    """Distance to the nearest centroid of the encoder's normal memory, squashed; nothing is trained.

    The memory is fitted with the normaliser on tokens of normal training videos only
    (video labels, no boxes), so this is a weakly supervised, training-free floor. Unlike
    the motion floor it does not compare a patch with its own video's usual motion but
    with what normal patches of every training video look like, which carries over to
    a camera never seen (docs/model.md, "A normal memory").
    """

    name = "normal_memory"
    description = "no training: distance to a memory of normal training patches (k-means centroids)"
    seeded = False

    def configure(self, cfg: RunConfig) -> RunConfig:
        """The memory as the prior channel (``model.memory`` kept when set, else :data:`DEFAULT_MEMORY`)."""
        return dataclasses.replace(cfg, model=dataclasses.replace(
            cfg.model, memory=cfg.model.memory or DEFAULT_MEMORY, prior_channel="memory"))

    def scores(self, model: AnomalyModel, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's floor scores of the memory prior, zero on padding."""
        s = model.encoder.floor_scores(x)
        return s if mask is None else s * mask.to(s.dtype).view(*mask.shape, 1, 1)
