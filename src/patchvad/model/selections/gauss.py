"""Proximity-Aware Top-k with a Gaussian proximity prior (the method's default rule).

``pi[p] = exp(-|p - peak|^2 / (2 sigma^2))`` in grid cells; ``K`` = top-``k`` of
``pi * M``; score ``sum_K pi M / sum_K pi``. Cells near the peak are preferred, so the
selected evidence stays one object instead of ``k`` scattered maxima.
"""

from __future__ import annotations

import torch

from patchvad.model.selections.base import Anchored, Selection, SelectionConfig, SelectionRule, SnippetOffsets, cells_of


def proximity_weights(shape: tuple[int, int], peak: tuple[int, int], sigma: float,
                      device: torch.device | None = None) -> torch.Tensor:
    """``pi[p] = exp(-|p - peak|^2 / (2 sigma^2))`` in grid cells -> ``(Gh, Gw)``."""
    gh, gw = shape
    ii = torch.arange(gh, device=device, dtype=torch.float32).view(-1, 1)
    jj = torch.arange(gw, device=device, dtype=torch.float32).view(1, -1)
    d2 = (ii - peak[0]) ** 2 + (jj - peak[1]) ** 2
    return torch.exp(-d2 / (2.0 * sigma * sigma))


class GaussianProximity(SelectionRule):
    """Top-``k`` of the proximity-weighted map around the peak."""

    name = "gauss"

    def select(self, m: torch.Tensor, cfg: SelectionConfig, peak: tuple[int, int] | None = None) -> Selection:
        """Select around ``peak`` (the argmax of ``m`` ``(Gh, Gw)`` when not given)."""
        a = Anchored.of(m, cfg, peak)
        pi = proximity_weights((a.gh, a.gw), a.peak, cfg.sigma, device=m.device).to(m.dtype).reshape(-1)
        idx = torch.topk((pi * a.flat).detach(), a.k).indices
        w = pi[idx]
        score = (w * a.flat[idx]).sum() / w.sum()
        return Selection(score=score, cells=cells_of(idx, a.gw), weights=w, peak=a.peak)

    def snippet_scores(self, s: torch.Tensor, cfg: SelectionConfig) -> torch.Tensor:
        """Vectorised ``select(s[t]).score`` for every snippet: ``(T, Gh, Gw)`` -> ``(T,)``."""
        o = SnippetOffsets.of(s, cfg)
        d2 = (o.di ** 2 + o.dj ** 2).to(s.dtype).reshape(s.shape[0], -1)
        pi = torch.exp(-d2 / (2.0 * cfg.sigma * cfg.sigma))
        idx = torch.topk(pi * o.flat, o.k, dim=1).indices
        w = torch.gather(pi, 1, idx)
        return (w * torch.gather(o.flat, 1, idx)).sum(1) / w.sum(1)
