"""Training augmentation (mirroring, input noise) and dropout masks shared out between ranks.

Under ``torchrun`` each rank trains on its share of one global batch. The draws of
:func:`augment` and the dropout masks of :class:`BatchShare` are made for the WHOLE
global batch from generators in the same state on every rank, and each rank applies
its rows, so every video gets the flip, noise and dropout it gets in one process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import overload

import numpy as np
import torch

from patchvad.model.dropout import FastDropout, fast_dropout, keep_mask, keep_scale


@overload
def augment(x: torch.Tensor, mask: torch.Tensor, hflip: float, noise: float, signs: torch.Tensor,
            gen: torch.Generator, rows: np.ndarray | None = None, batch: int | None = None,
            targets: None = None) -> torch.Tensor: ...


@overload
def augment(x: torch.Tensor, mask: torch.Tensor, hflip: float, noise: float, signs: torch.Tensor,
            gen: torch.Generator, rows: np.ndarray | None = None, batch: int | None = None, *,
            targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def augment(x: torch.Tensor, mask: torch.Tensor, hflip: float, noise: float, signs: torch.Tensor,
            gen: torch.Generator, rows: np.ndarray | None = None, batch: int | None = None,
            targets: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Training augmentation of a padded batch ``(B, T, Gh, Gw, C)``.

    ``hflip``: each video mirrored left-right with that probability (grid axis and the
    horizontal-flow channels, ``signs``). ``noise``: Gaussian noise on every channel
    but the prior (channel 0), on real snippets only. Draws from ``gen`` only when
    enabled, so with both off the generator's stream (and every draw after) is untouched.

    ``rows``, ``batch`` (distributed training): ``x`` holds rows ``rows`` of a global
    batch of ``batch`` videos padded to the same length; the draws are made for the
    whole global batch (as in one process) and this share's rows are applied, so
    every rank's generator stays in step and each video gets the augmentation it would
    get in a single-process run.

    ``targets`` ``(B, T, Gh, Gw)`` (cell labels of the supervised oracle): mirrored with
    their videos and returned beside ``x``; the draws are the same with or without them.
    """
    full = x.shape[0]
    pick: torch.Tensor | None = None
    if rows is not None:
        assert batch is not None        # a share comes with the size of its global batch
        full, pick = int(batch), torch.as_tensor(rows, dtype=torch.long)
    if hflip > 0:
        flip = torch.rand(full, generator=gen) < hflip
        flip = (flip if pick is None else flip[pick]).to(x.device)
        if bool(flip.any()):
            x = torch.where(flip.view(-1, 1, 1, 1, 1), x.flip(3) * signs, x)
            if targets is not None:
                targets = torch.where(flip.view(-1, 1, 1, 1), targets.flip(3), targets)
    if noise > 0:
        eps = torch.randn((full, *x.shape[1:]), generator=gen)
        eps = (eps if pick is None else eps[pick]).to(x.device) * noise
        eps[..., 0] = 0.0
        x = x + eps * mask.to(x.dtype).view(*mask.shape, 1, 1, 1)
    return x if targets is None else (x, targets)


class BatchShare:
    """Dropout of a rank's share as it would be in the whole global batch.

    :meth:`install` swaps every ``nn.Dropout`` and
    :class:`~patchvad.model.dropout.FastDropout` of a module for one that draws the mask
    of the WHOLE global batch from the default generator (exactly the draws the
    replaced layer makes on the full batch in one process) and applies this rank's rows
    of it. Every rank holds the same generator state, so the ranks' masks are disjoint
    parts of one global mask and each video gets the mask it gets in a single-process
    run. Needs the batch dimension outermost in memory (true of every scorer here);
    anything else falls back to plain dropout of the share.
    """

    def __init__(self) -> None:
        self.rows: torch.Tensor | None = None
        self.batch = 0

    def set(self, rows: np.ndarray, batch: int) -> None:
        """The next forward pass computes rows ``rows`` of a global batch of ``batch`` videos."""
        self.rows = torch.as_tensor(rows, dtype=torch.long)
        self.batch = int(batch)

    def install(self, module: torch.nn.Module) -> Callable[[], None]:
        """Swap the dropout layers of ``module``; returns the function that swaps them back."""
        swapped = []
        for parent in list(module.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is torch.nn.Dropout or type(child) is FastDropout:
                    fast = isinstance(child, FastDropout)
                    setattr(parent, name, _SharedDropout(float(child.p), self, fast=fast))
                    swapped.append((parent, name, child))

        def restore() -> None:
            for parent, name, child in swapped:
                setattr(parent, name, child)
        return restore


class _SharedDropout(torch.nn.Module):
    def __init__(self, p: float, share: BatchShare, fast: bool = False):
        super().__init__()
        self.p = float(p)
        self.share = share
        self.fast = fast            # the mask of FastDropout (keep_mask), else nn.Dropout's Bernoulli draws

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.share.rows
        if not self.training or self.p == 0.0:
            return x
        strides = x.stride()
        order = sorted(range(x.dim()), key=lambda i: -strides[i])   # memory order, as empty_like lays it out
        xm = x.permute(order)
        if rows is None or order[0] != 0 or not xm.is_contiguous() or x.shape[0] % len(rows):
            return fast_dropout(x, self.p) if self.fast else torch.nn.functional.dropout(x, self.p, True)
        per = xm.numel() // len(rows)
        if self.fast:
            noise = keep_mask(self.share.batch * per, self.p, x.device).to(x.dtype)
        else:
            noise = torch.empty(self.share.batch * per, dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p)
        noise = noise.view(self.share.batch, per)[rows.to(x.device)].view(xm.shape)
        if self.fast:
            noise.mul_(keep_scale(self.p))
        else:
            noise.div_(1.0 - self.p)
        return (xm * noise).permute(np.argsort(order).tolist())


__all__ = ["BatchShare", "augment"]
