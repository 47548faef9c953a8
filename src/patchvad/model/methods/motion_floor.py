"""``motion_floor``: the no-training floor: each cell's motion energy relative to its usual motion."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from patchvad.model.methods.base import Method

if TYPE_CHECKING:
    from patchvad.model.model import AnomalyModel


class MotionFloor(Method):
    """Squashed scene-relative motion residual of the prior channel; nothing is trained."""

    name = "motion_floor"
    description = "no training: scene-relative motion energy (the floor every method must beat)"
    seeded = False

    def scores(self, model: AnomalyModel, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's floor scores, zero on padding."""
        s = model.encoder.floor_scores(x)
        return s if mask is None else s * mask.to(s.dtype).view(*mask.shape, 1, 1)
