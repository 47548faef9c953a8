"""The method interface: what one WSVAD method builds, scores and optimises.

A method is a stateless object registered by name (model/methods/__init__.py). The
:class:`~patchvad.model.model.AnomalyModel` holds the encoder and the network the method
built, and asks the method for scores and for the training loss:

* ``build_net(in_dim, cfg)``: the network (``None`` for methods without weights);
* ``scores(model, x, mask)``: encoded inputs ``(B, T, Gh, Gw, C)`` -> patch scores
  ``(B, T, Gh, Gw)`` in (0, 1); video-level methods broadcast their snippet score
  over the grid (their spatial output is the whole frame);
* ``loss(model, x, mask, lengths, labels, net)``: the training objective of a padded
  batch -> ``(loss, logged terms, bag scores (B,))``; the bag scores rank validation
  videos for checkpoint selection and the threshold;
* ``configure(cfg)``: the method's switches applied to a run configuration.

Two families cover the built-in trained methods: :class:`PatchMILMethod` (the patch
scorer and the Proximity-Aware Top-k MIL loss) and :class:`VideoMILMethod` (snippet
scores from pooled features, video-level MIL).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from torch import nn

from patchvad.config import ModelConfig, RunConfig
from patchvad.model.baselines import VideoMILScorer
from patchvad.model.losses import MILLoss
from patchvad.model.scorer import PatchScorer
from patchvad.model.selection import window_length

if TYPE_CHECKING:
    from patchvad.model.model import AnomalyModel

LossOutput = tuple[torch.Tensor, dict, torch.Tensor]
"""``(loss, logged terms {name: float}, detached bag scores (B,))``."""


class Method:
    """One method: its network, its scores and its training loss.

    Attributes:
        name: registry key (``--method``, ``method:`` in configs and checkpoints).
        description: one line for ``--help`` and tables.
        trained: its network is fitted by optimisation steps (False: the checkpoint
            holds the normaliser only).
        video_level: outputs snippet scores (whole-frame boxes) instead of patch maps.
        uses_encoder: fits the feature normaliser on normal training videos (False for
            methods whose scores do not depend on the input).
        seeded: its output depends on the seed (False: one seed says everything, so
            harnesses run it once).
        needs_cell_targets: trained on ground-truth cells of the training videos (the
            supervised oracle); training then reads ``--oracle-labels`` and passes the
            batch's ``(B, T, Gh, Gw)`` cell targets to :meth:`loss`. Weak methods never
            receive them.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    trained: ClassVar[bool] = False
    video_level: ClassVar[bool] = False
    uses_encoder: ClassVar[bool] = True
    seeded: ClassVar[bool] = True
    needs_cell_targets: ClassVar[bool] = False

    def configure(self, cfg: RunConfig) -> RunConfig:
        """The method's switches applied to ``cfg`` (default: none)."""
        return cfg

    def build_net(self, in_dim: int, cfg: ModelConfig) -> nn.Module | None:
        """The network scoring ``in_dim``-channel encoded inputs (None: no weights)."""
        return None

    def scores(self, model: AnomalyModel, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Patch scores ``(B, T, Gh, Gw)`` of encoded inputs ``x`` ``(B, T, Gh, Gw, C)``."""
        raise NotImplementedError(f"method '{self.name}' has no input-dependent scores")

    def input_free_scores(self, model: AnomalyModel, stem: str, shape: tuple[int, int, int]) -> np.ndarray | None:
        """Scores ``shape`` ``(T, Gh, Gw)`` that do not depend on the input (None: use :meth:`scores`)."""
        return None

    def loss(self, model: AnomalyModel, x: torch.Tensor, mask: torch.Tensor, lengths: list[int],
             labels: list[int], net: nn.Module | None = None, targets: torch.Tensor | None = None) -> LossOutput:
        """Loss of a padded batch (``net``: the module to call instead of ``model.net``; ``targets``: cell labels).

        Default: :class:`~patchvad.model.losses.MILLoss` of the patch scores. Untrained
        methods are scored with it too: their validation bag scores set the threshold.
        """
        s = model.scores(x, mask) if net is None else net(x, mask)
        loss, terms = MILLoss(model.config.loss)(s, lengths, labels)
        bags = terms.pop("bag")
        return loss, terms, bags


class PatchMILMethod(Method):
    """Patch scorer (motion prior + learned correction) trained with the MIL loss of docs/method.md."""

    trained = True

    def build_net(self, in_dim: int, cfg: ModelConfig) -> nn.Module | None:
        """A :class:`~patchvad.model.scorer.PatchScorer`."""
        return PatchScorer(in_dim, cfg)

    def scores(self, model: AnomalyModel, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The scorer's patch scores."""
        assert model.net is not None
        return model.net(x, mask)


class VideoMILMethod(Method):
    """Snippet scores from patch features pooled per snippet; a video-level MIL objective."""

    trained = True
    video_level = True

    def build_net(self, in_dim: int, cfg: ModelConfig) -> nn.Module | None:
        """A :class:`~patchvad.model.baselines.VideoMILScorer`."""
        return VideoMILScorer(in_dim, cfg)

    def scores(self, model: AnomalyModel, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Snippet scores broadcast over the grid: ``(B, T)`` -> ``(B, T, Gh, Gw)``."""
        assert model.net is not None
        a = model.net(x, mask)
        return a[..., None, None].expand(*a.shape, x.shape[2], x.shape[3])

    def video_loss(self, model: AnomalyModel, a: torch.Tensor, lengths: list[int], labels: list[int]
                   ) -> torch.Tensor:
        """The objective on snippet scores ``a`` ``(B, T)``."""
        raise NotImplementedError

    def loss(self, model: AnomalyModel, x: torch.Tensor, mask: torch.Tensor, lengths: list[int],
             labels: list[int], net: nn.Module | None = None, targets: torch.Tensor | None = None) -> LossOutput:
        """:meth:`video_loss`; bag score = mean of the top-``w`` snippet scores, ``w = floor(T/16) + 1``."""
        assert model.net is not None
        a = model.net(x, mask) if net is None else net(x, mask)
        loss = self.video_loss(model, a, lengths, labels)
        div = model.config.loss.window_div
        bags = torch.stack([torch.topk(a[b, :n], window_length(n, div)).values.mean()
                            for b, n in enumerate(lengths)]).detach()
        return loss, {"total": float(loss.detach())}, bags


__all__ = ["LossOutput", "Method", "PatchMILMethod", "VideoMILMethod"]
