"""The selection-rule interface: how a patch map becomes one score.

A rule serves both ends of the model with ONE definition:

* training: :meth:`SelectionRule.select` picks cells of one video's patch map ``M``
  ``(Gh, Gw)`` (the mean of the window's patch scores) and gives the bag score
  ``S(v)``, differentiable in the selected entries only;
* inference: :meth:`SelectionRule.snippet_scores` scores every snippet ``(T, Gh, Gw)``
  -> ``(T,)`` with the same rule applied around each snippet's own peak (vectorised;
  equal to ``select(s[t]).score`` for every ``t``).

Settings travel as one :class:`SelectionConfig`; checkpoints keep them in the run's
``loss`` config and ``inference.json`` records them (:meth:`SelectionConfig.to_record`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch


@dataclass(frozen=True)
class SelectionConfig:
    """Which rule selects cells, and its settings.

    Attributes:
        rule: registered rule name (``gauss``, ``radius``, ``plain``, ...).
        k: cells selected.
        sigma: Gaussian proximity width in cells (``gauss``).
        radius: neighbourhood half-width in cells (``radius``).
    """

    rule: str = "gauss"
    k: int = 4
    sigma: float = 1.0
    radius: int = 1

    def to_record(self) -> dict:
        """The settings as ``inference.json`` stores them."""
        return {"selection": self.rule, "k": self.k, "sigma": self.sigma, "radius": self.radius}

    @classmethod
    def from_record(cls, record: dict) -> SelectionConfig:
        """Inverse of :meth:`to_record` (``KeyError``/``ValueError`` on malformed records)."""
        return cls(rule=str(record["selection"]), k=int(record["k"]), sigma=float(record["sigma"]),
                   radius=int(record["radius"]))


@dataclass
class Selection:
    """The cells a selection picked.

    Attributes:
        score: scalar tensor, ``sum_K w M / sum_K w`` (differentiable in ``M[K]``).
        cells: ``(k, 2)`` long tensor of (row, col), in selection order.
        weights: ``(k,)`` weights used for the selected cells.
        peak: (row, col) of the map's maximum (``None`` for rules without a peak).
    """

    score: torch.Tensor
    cells: torch.Tensor
    weights: torch.Tensor
    peak: tuple[int, int] | None


class SelectionRule:
    """A way to pick ``k`` cells of a patch map and score them.

    Attributes:
        name: registry key (what ``loss.selection`` names).
        needs_peak: the rule is anchored at the map's maximum (the batched bag score
            then finds the peaks of a whole batch with one device-to-host copy).
    """

    name: ClassVar[str] = ""
    needs_peak: ClassVar[bool] = True

    def select(self, m: torch.Tensor, cfg: SelectionConfig, peak: tuple[int, int] | None = None) -> Selection:
        """Select cells of one patch map ``m`` ``(Gh, Gw)``; ``peak`` is its argmax when known."""
        raise NotImplementedError

    def snippet_scores(self, s: torch.Tensor, cfg: SelectionConfig) -> torch.Tensor:
        """Score of each snippet of ``s`` ``(T, Gh, Gw)`` -> ``(T,)``, around each one's own peak."""
        raise NotImplementedError


def clamp_k(k: int, cells: int) -> int:
    """``k`` limited to ``[1, cells]``."""
    return max(1, min(int(k), cells))


def map_peak(m: torch.Tensor) -> tuple[int, int]:
    """``(row, col)`` of the first maximum of a ``(Gh, Gw)`` map."""
    idx = int(torch.argmax(m.detach().reshape(-1)))
    row, col = divmod(idx, m.shape[1])
    return row, col


def cells_of(flat_idx: torch.Tensor, gw: int) -> torch.Tensor:
    """``(k,)`` flat cell indices -> ``(k, 2)`` (row, col)."""
    return torch.stack([flat_idx // gw, flat_idx % gw], dim=1)


def snippet_peaks(flat: torch.Tensor, gw: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column ``(T,)`` of each snippet's peak, from ``flat`` ``(T, Gh * Gw)``."""
    peak = flat.argmax(1)
    return peak // gw, peak % gw


@dataclass
class Anchored:
    """One map prepared for a peak-anchored rule: its flat view ``(Gh * Gw,)``, grid, ``k`` and peak."""

    flat: torch.Tensor
    gh: int
    gw: int
    k: int
    peak: tuple[int, int]

    @classmethod
    def of(cls, m: torch.Tensor, cfg: SelectionConfig, peak: tuple[int, int] | None) -> Anchored:
        """``m`` ``(Gh, Gw)`` anchored at ``peak`` (its first maximum when not given)."""
        gh, gw = m.shape
        return cls(m.reshape(-1), gh, gw, clamp_k(cfg.k, gh * gw), map_peak(m) if peak is None else peak)


@dataclass
class SnippetOffsets:
    """Every snippet's cells relative to its own peak, for the vectorised snippet scores.

    Attributes:
        flat: ``(T, Gh * Gw)`` scores; k: cells selected.
        di, dj: ``(T, Gh, Gw)`` signed row / column offsets of each cell from the peak.
    """

    flat: torch.Tensor
    k: int
    di: torch.Tensor
    dj: torch.Tensor

    @classmethod
    def of(cls, s: torch.Tensor, cfg: SelectionConfig) -> SnippetOffsets:
        """The offsets of ``s`` ``(T, Gh, Gw)``."""
        t, gh, gw = s.shape
        flat = s.reshape(t, -1)
        pi_r, pj = snippet_peaks(flat, gw)
        ii = torch.arange(gh, device=s.device).view(1, -1, 1)
        jj = torch.arange(gw, device=s.device).view(1, 1, -1)
        return cls(flat, clamp_k(cfg.k, gh * gw), ii - pi_r.view(-1, 1, 1), jj - pj.view(-1, 1, 1))


__all__ = ["Anchored", "Selection", "SelectionConfig", "SelectionRule", "SnippetOffsets", "cells_of", "clamp_k",
           "map_peak", "snippet_peaks"]
