"""Proximity-Aware Top-k with a hard neighbourhood: top-``k`` inside ``(2r+1)^2`` cells of the peak."""

from __future__ import annotations

import torch

from patchvad.model.selections.base import Anchored, Selection, SelectionConfig, SelectionRule, SnippetOffsets, cells_of


class RadiusProximity(SelectionRule):
    """Top-``k`` of ``M`` inside the peak's neighbourhood (fewer when it holds fewer cells); score = their mean."""

    name = "radius"

    def select(self, m: torch.Tensor, cfg: SelectionConfig, peak: tuple[int, int] | None = None) -> Selection:
        """Select around ``peak`` (the argmax of ``m`` ``(Gh, Gw)`` when not given)."""
        a = Anchored.of(m, cfg, peak)
        r = int(cfg.radius)
        i0, i1 = max(0, a.peak[0] - r), min(a.gh, a.peak[0] + r + 1)
        j0, j1 = max(0, a.peak[1] - r), min(a.gw, a.peak[1] + r + 1)
        ii, jj = torch.meshgrid(torch.arange(i0, i1, device=m.device), torch.arange(j0, j1, device=m.device),
                                indexing="ij")
        cand = (ii * a.gw + jj).reshape(-1)
        kk = min(a.k, int(cand.shape[0]))
        order = torch.topk(a.flat[cand].detach(), kk).indices
        idx = cand[order]
        w = torch.ones(kk, dtype=m.dtype, device=m.device)
        return Selection(score=a.flat[idx].mean(), cells=cells_of(idx, a.gw), weights=w, peak=a.peak)

    def snippet_scores(self, s: torch.Tensor, cfg: SelectionConfig) -> torch.Tensor:
        """Vectorised ``select(s[t]).score`` for every snippet: ``(T, Gh, Gw)`` -> ``(T,)``."""
        o = SnippetOffsets.of(s, cfg)
        inside = ((o.di.abs() <= cfg.radius) & (o.dj.abs() <= cfg.radius)).reshape(s.shape[0], -1)
        masked = torch.where(inside, o.flat, torch.full_like(o.flat, -1.0))
        vals = torch.topk(masked, o.k, dim=1).values
        valid = vals >= 0
        return (vals * valid).sum(1) / valid.sum(1).clamp_min(1)
