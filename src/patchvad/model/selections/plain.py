"""Plain top-k: the ``k`` highest cells of the map, without proximity (the ablation)."""

from __future__ import annotations

import torch

from patchvad.model.selections.base import Selection, SelectionConfig, SelectionRule, cells_of, clamp_k


class PlainTopK(SelectionRule):
    """Score = mean of the top-``k`` cells of ``M``."""

    name = "plain"
    needs_peak = False

    def select(self, m: torch.Tensor, cfg: SelectionConfig, peak: tuple[int, int] | None = None) -> Selection:
        """Top-``k`` cells of ``m`` ``(Gh, Gw)``; ``peak`` is ignored."""
        gh, gw = m.shape
        k = clamp_k(cfg.k, gh * gw)
        flat = m.reshape(-1)
        idx = torch.topk(flat.detach(), k).indices
        weights = torch.ones(k, dtype=m.dtype, device=m.device)
        return Selection(score=flat[idx].mean(), cells=cells_of(idx, gw), weights=weights, peak=None)

    def snippet_scores(self, s: torch.Tensor, cfg: SelectionConfig) -> torch.Tensor:
        """Mean of each snippet's top-``k`` cells: ``(T, Gh, Gw)`` -> ``(T,)``."""
        t, gh, gw = s.shape
        return torch.topk(s.reshape(t, -1), clamp_k(cfg.k, gh * gw), dim=1).values.mean(1)
