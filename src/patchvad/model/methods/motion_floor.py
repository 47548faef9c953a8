"""``motion_floor``: the no-training floor: each cell's motion energy relative to its usual motion."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from patchvad.config import ModelConfig, RunConfig
from patchvad.model.methods.base import Method

if TYPE_CHECKING:
    from patchvad.model.model import AnomalyModel


class MotionFloor(Method):
    """Squashed scene-relative motion residual of the prior channel; nothing is trained."""

    name = "motion_floor"
    description = "no training: scene-relative motion energy (the floor every method must beat)"
    seeded = False

    def configure(self, cfg: RunConfig) -> RunConfig:
        """A motion prior even when the configuration makes the normal memory the prior.

        ``compare`` runs every method under one configuration; with ``prior_channel:
        memory`` the floor would otherwise be the memory itself (``normal_memory``), and
        "above the floor" would no longer mean above the motion floor.
        """
        if cfg.model.prior_channel != "memory":
            return cfg
        default = ModelConfig()
        return dataclasses.replace(cfg, model=dataclasses.replace(
            cfg.model, prior_channel=default.prior_channel, memory=default.memory))

    def scores(self, model: AnomalyModel, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's floor scores, zero on padding."""
        s = model.encoder.floor_scores(x)
        return s if mask is None else s * mask.to(s.dtype).view(*mask.shape, 1, 1)
