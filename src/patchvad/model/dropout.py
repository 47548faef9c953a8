"""Dropout whose mask costs a third of ``nn.Dropout``'s on a CPU.

``nn.Dropout`` draws one Bernoulli variable per element (``bernoulli_``, about 15 ns
each on one CPU core): in a step of the patch scorer, where every activation is
small and elementwise work dominates, its four masks were a fifth of the whole step
(``benchmarks/profile_demo.py``). :func:`keep_mask` draws 64 random bits per four
elements instead and keeps an element when its 15 bits are at or above
``round(p * 2**15)``: the drop probability is ``p`` to within ``2**-16``, the elements
are independent, and the generator is torch's default one (seeded by
``torch.manual_seed``, so runs stay reproducible). The kept elements are scaled by
``1 / (1 - p_eff)``, so the expectation is exactly the input's.
"""

from __future__ import annotations

import torch
from torch import nn

_BITS = 15
_LEVELS = 1 << _BITS


def drop_threshold(p: float) -> int:
    """The 15-bit level below which an element is dropped (``p_eff = threshold / 2**15``)."""
    return int(round(float(p) * _LEVELS))


def keep_mask(n: int, p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(n,)`` bool: True for kept elements, each dropped with probability ``p`` (to 2**-16).

    Draws ``ceil(n / 4)`` 64-bit integers from the default generator of ``device``.
    """
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_()
    levels = words.view(torch.int16)[:n] & (_LEVELS - 1)     # four 15-bit numbers per word
    return levels >= drop_threshold(p)


def keep_scale(p: float) -> float:
    """``1 / (1 - p_eff)``: the factor on kept elements."""
    return 1.0 / (1.0 - drop_threshold(p) / _LEVELS)


def fast_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """``x * mask / (1 - p_eff)`` with the mask of :func:`keep_mask` (``x`` itself when ``p_eff = 0``).

    Any shape; the mask is drawn in the input's memory order (``x`` made contiguous).
    """
    if drop_threshold(p) == 0:
        return x
    x = x.contiguous()
    scaled = keep_mask(x.numel(), p, x.device).view(x.shape).to(x.dtype).mul_(keep_scale(p))
    return x * scaled


class FastDropout(nn.Module):
    """Inverted dropout with the mask of :func:`keep_mask` (identity in eval mode or for ``p = 0``).

    Input and output: any shape; the mask is drawn in the input's memory order.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """:func:`fast_dropout` in training mode; ``x`` otherwise."""
        return fast_dropout(x, self.p) if self.training else x

    def extra_repr(self) -> str:
        """``p=...`` in the module's repr."""
        return f"p={self.p}"


__all__ = ["FastDropout", "drop_threshold", "fast_dropout", "keep_mask", "keep_scale"]
