"""Proximity-Aware Top-k with a hard neighbourhood: top-``k`` inside ``(2r+1)^2`` cells of the peak."""

from __future__ import annotations

import torch

from patchvad.model.selections.base import (
    Selection,
    SelectionConfig,
    SelectionRule,
    cells_of,
    clamp_k,
    map_peak,
    snippet_peaks,
)


class RadiusProximity(SelectionRule):
    """Top-``k`` of ``M`` inside the peak's neighbourhood (fewer when it holds fewer cells); score = their mean."""

    name = "radius"

    def select(self, m: torch.Tensor, cfg: SelectionConfig, peak: tuple[int, int] | None = None) -> Selection:
        """Select around ``peak`` (the argmax of ``m`` ``(Gh, Gw)`` when not given)."""
        gh, gw = m.shape
        k = clamp_k(cfg.k, gh * gw)
        peak = map_peak(m) if peak is None else peak
        flat = m.reshape(-1)
        r = int(cfg.radius)
        i0, i1 = max(0, peak[0] - r), min(gh, peak[0] + r + 1)
        j0, j1 = max(0, peak[1] - r), min(gw, peak[1] + r + 1)
        ii, jj = torch.meshgrid(torch.arange(i0, i1, device=m.device), torch.arange(j0, j1, device=m.device),
                                indexing="ij")
        cand = (ii * gw + jj).reshape(-1)
        kk = min(k, int(cand.shape[0]))
        order = torch.topk(flat[cand].detach(), kk).indices
        idx = cand[order]
        w = torch.ones(kk, dtype=m.dtype, device=m.device)
        return Selection(score=flat[idx].mean(), cells=cells_of(idx, gw), weights=w, peak=peak)

    def snippet_scores(self, s: torch.Tensor, cfg: SelectionConfig) -> torch.Tensor:
        """Vectorised ``select(s[t]).score`` for every snippet: ``(T, Gh, Gw)`` -> ``(T,)``."""
        t, gh, gw = s.shape
        k = clamp_k(cfg.k, gh * gw)
        flat = s.reshape(t, -1)
        pi_r, pj = snippet_peaks(flat, gw)
        ii = torch.arange(gh, device=s.device).view(1, -1, 1)
        jj = torch.arange(gw, device=s.device).view(1, 1, -1)
        di = (ii - pi_r.view(-1, 1, 1)).abs()
        dj = (jj - pj.view(-1, 1, 1)).abs()
        inside = ((di <= cfg.radius) & (dj <= cfg.radius)).reshape(t, -1)
        masked = torch.where(inside, flat, torch.full_like(flat, -1.0))
        vals = torch.topk(masked, k, dim=1).values
        valid = vals >= 0
        return (vals * valid).sum(1) / valid.sum(1).clamp_min(1)
