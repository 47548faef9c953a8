"""Proximity-Aware Top-k with a Gaussian proximity prior (the method's default rule).

``pi[p] = exp(-|p - peak|^2 / (2 sigma^2))`` in grid cells; ``K`` = top-``k`` of
``pi * M``; score ``sum_K pi M / sum_K pi``. Cells near the peak are preferred, so the
selected evidence stays one object instead of ``k`` scattered maxima.
"""

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
        gh, gw = m.shape
        k = clamp_k(cfg.k, gh * gw)
        peak = map_peak(m) if peak is None else peak
        flat = m.reshape(-1)
        pi = proximity_weights((gh, gw), peak, cfg.sigma, device=m.device).to(m.dtype).reshape(-1)
        idx = torch.topk((pi * flat).detach(), k).indices
        w = pi[idx]
        score = (w * flat[idx]).sum() / w.sum()
        return Selection(score=score, cells=cells_of(idx, gw), weights=w, peak=peak)

    def snippet_scores(self, s: torch.Tensor, cfg: SelectionConfig) -> torch.Tensor:
        """Vectorised ``select(s[t]).score`` for every snippet: ``(T, Gh, Gw)`` -> ``(T,)``."""
        t, gh, gw = s.shape
        k = clamp_k(cfg.k, gh * gw)
        flat = s.reshape(t, -1)
        pi_r, pj = snippet_peaks(flat, gw)
        ii = torch.arange(gh, device=s.device).view(1, -1, 1)
        jj = torch.arange(gw, device=s.device).view(1, 1, -1)
        d2 = ((ii - pi_r.view(-1, 1, 1)) ** 2 + (jj - pj.view(-1, 1, 1)) ** 2).to(s.dtype).reshape(t, -1)
        pi = torch.exp(-d2 / (2.0 * cfg.sigma * cfg.sigma))
        idx = torch.topk(pi * flat, k, dim=1).indices
        w = torch.gather(pi, 1, idx)
        return (w * torch.gather(flat, 1, idx)).sum(1) / w.sum(1)
