"""``oracle``: the supervised upper bound: the proximity model's scorer trained on ground-truth cells.

Not a weakly supervised method: it reads the boxes of the TRAINING videos, which a
weak dataset root never holds (``patchvad synth ROOT --oracle-labels DIR`` writes them
outside it; ``patchvad fit --method oracle --oracle-labels DIR`` reads them; no other
method accepts the option). Everything else is the proximity model's: encoder,
scorer, inference, selection, metrics; so ``weak / oracle`` per metric says how much
of what the features allow the weak model reaches.

Targets: a cell of a snippet is positive when a ground-truth box covers at least 25%
of it in one of the snippet's frames (the patch metrics' cell labels,
docs/metrics.md), pooled like the inputs (a pooled segment is positive when any of
its snippets is). Loss: class-balanced BCE, the mean of ``-log s`` over positive
cells plus the mean of ``-log(1 - s)`` over negative cells (0.5% of cells are
positive; an unbalanced BCE learns "nothing is anomalous").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from patchvad.model.losses import EPS
from patchvad.model.methods.base import LossOutput, PatchMILMethod
from patchvad.model.selection import bag_scores

if TYPE_CHECKING:
    from patchvad.model.model import AnomalyModel


def balanced_cell_bce(s: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Class-balanced BCE of patch scores against cell labels.

    Args:
        s: ``(B, T, Gh, Gw)`` scores in (0, 1).
        targets: ``(B, T, Gh, Gw)`` 0/1 cell labels.
        mask: ``(B, T)`` True on real snippets.

    Returns:
        ``mean_pos(-log s) + mean_neg(-log(1 - s))`` (a class without cells adds 0)
        and the two terms as floats.
    """
    valid = mask.to(s.dtype)[..., None, None].expand_as(s)
    pos = targets.to(s.dtype) * valid
    neg = (1.0 - targets.to(s.dtype)) * valid
    p = s.clamp(EPS, 1.0 - EPS)
    l_pos = -(torch.log(p) * pos).sum() / pos.sum().clamp_min(1.0)
    l_neg = -(torch.log1p(-p) * neg).sum() / neg.sum().clamp_min(1.0)
    return l_pos + l_neg, {"pos": float(l_pos.detach()), "neg": float(l_neg.detach())}


class Oracle(PatchMILMethod):
    """Patch scorer trained with cell labels from the training videos' boxes (upper bound)."""

    name = "oracle"
    description = "supervised upper bound: the same scorer trained on ground-truth cells (needs --oracle-labels)"
    needs_cell_targets = True

    def loss(self, model: AnomalyModel, x: torch.Tensor, mask: torch.Tensor, lengths: list[int],
             labels: list[int], net: nn.Module | None = None, targets: torch.Tensor | None = None) -> LossOutput:
        """:func:`balanced_cell_bce`; bag scores by the model's window and selection (for validation)."""
        if targets is None:
            raise ValueError("the oracle is trained on cell targets; none were given")
        s = model.scores(x, mask) if net is None else net(x, mask)
        loss, terms = balanced_cell_bce(s, targets, mask)
        lc = model.config.loss
        bags = bag_scores(s.detach(), lengths, lc.selection_config(), lc.window, lc.window_div)
        return loss, {**terms, "total": float(loss.detach())}, bags
