"""The MIL loss terms (docs/method.md, "MIL losses") as separate functions, and their composition.

Every term takes ONE video's patch scores ``s`` ``(T, Gh, Gw)`` (or values derived
from them) so padded batches never leak padding into a loss; :class:`MILLoss`
averages over the videos of a padded batch. BCE clamps probabilities to
``[eps, 1 - eps]`` (eps = 1e-6).
"""

from __future__ import annotations

import torch
from torch import nn

from patchvad.config import LossConfig
from patchvad.model.selection import bag_scores, window_length

EPS = 1e-6


def bce(p: torch.Tensor, y: float | torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy ``-(y log p + (1 - y) log(1 - p))`` (mean over elements)."""
    p = p.clamp(EPS, 1.0 - EPS)
    y = torch.as_tensor(y, dtype=p.dtype, device=p.device)
    return -(y * torch.log(p) + (1.0 - y) * torch.log1p(-p)).mean()


def frame_proxy(s: torch.Tensor) -> torch.Tensor:
    """``a[t] = max_p s[t, p]`` -> ``(T,)``."""
    return s.flatten(1).amax(1)


def loss_pa(bag: torch.Tensor, y: float) -> torch.Tensor:
    """``L_PA = BCE(S(v), y)`` for normal and anomalous videos alike."""
    return bce(bag, y)


def loss_t(a: torch.Tensor, y: float, w: int) -> torch.Tensor:
    """``L_T = BCE(mean of the top-w a[t], y)``."""
    w = max(1, min(int(w), a.shape[0]))
    return bce(torch.topk(a, w).values.mean(), y)


def loss_n(s: torch.Tensor) -> torch.Tensor:
    """``L_N = mean over t, p of -log(1 - s[t, p])`` (apply to normal videos only)."""
    return -torch.log1p(-s.clamp(0.0, 1.0 - EPS)).mean()


def smoothness(s: torch.Tensor) -> torch.Tensor:
    """Temporal smoothness ``mean (s[t+1, p] - s[t, p])^2`` (0 for one snippet)."""
    if s.shape[0] < 2:
        return s.sum() * 0.0
    return ((s[1:] - s[:-1]) ** 2).mean()


def total_variation(s: torch.Tensor) -> torch.Tensor:
    """Spatial total variation: mean ``|s[p] - s[q]|`` over all 4-neighbour pairs."""
    parts = []
    if s.shape[-2] > 1:
        parts.append((s[..., 1:, :] - s[..., :-1, :]).abs().flatten())
    if s.shape[-1] > 1:
        parts.append((s[..., :, 1:] - s[..., :, :-1]).abs().flatten())
    if not parts:
        return s.sum() * 0.0
    return torch.cat(parts).mean()


def sparsity(s: torch.Tensor) -> torch.Tensor:
    """``mean s`` (apply to anomalous videos only)."""
    return s.mean()


def sultani_ranking(a_anom: torch.Tensor, a_norm: torch.Tensor, lam: float = 8e-5) -> torch.Tensor:
    """Sultani et al. (2018) ranking loss of one anomalous / normal pair of ``(T,)`` scores.

    ``max(0, 1 - max a_anom + max a_norm) + lam * sum (a[t+1]-a[t])^2 + lam * sum a``
    (the smoothness and sparsity on the anomalous bag).
    """
    hinge = torch.relu(1.0 - a_anom.max() + a_norm.max())
    smooth = ((a_anom[1:] - a_anom[:-1]) ** 2).sum() if a_anom.shape[0] > 1 else a_anom.sum() * 0.0
    return hinge + lam * smooth + lam * a_anom.sum()


class MILLoss(nn.Module):
    """``w_pa L_PA + w_t L_T + w_n L_N + w_smooth smooth + w_tv TV + w_sparse sparsity``.

    ``forward(s, lengths, labels)`` with ``s`` ``(B, T, Gh, Gw)`` padded scores,
    ``lengths`` ``(B,)`` valid snippets, ``labels`` ``(B,)`` 0/1. Returns the total
    (mean over videos) and a dict of the mean of each term (floats, for logging) and
    ``bag`` ``(B,)`` detached bag scores.
    """

    def __init__(self, cfg: LossConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, s: torch.Tensor, lengths, labels) -> tuple[torch.Tensor, dict]:
        """The total loss and the per-term means (see the class docstring).

        Every term is computed for all videos at once on the padded batch, masked to each
        video's own snippets: the same values as the per-video functions above (up to the
        order of float additions), without a Python loop of small operations per video,
        which cost more than the terms themselves on a CPU.
        """
        c = self.cfg
        keys = ("pa", "t", "n", "smooth", "tv", "sparse")
        bsz, t_max, gh, gw = s.shape
        lengths = [int(n) for n in lengths]
        ys = [float(y) for y in labels]
        n_norm = max(1, sum(1 for y in ys if y == 0))
        n_anom = max(1, sum(1 for y in ys if y == 1))
        dev, dt = s.device, s.dtype
        # One host copy for the whole batch's choices (bag_scores), not several per video.
        bag_all = bag_scores(s, lengths, c.selection_config(), c.window, c.window_div)
        y = torch.tensor(ys, dtype=dt, device=dev)
        n = torch.tensor(lengths, dtype=dt, device=dev)
        valid = torch.arange(t_max, device=dev)[None, :] < torch.tensor(lengths, device=dev)[:, None]   # (B, T)
        sm = s * valid.to(dt)[:, :, None, None]                 # padding exactly 0
        per_cell = n * (gh * gw)

        def bce_each(p: torch.Tensor) -> torch.Tensor:
            p = p.clamp(EPS, 1.0 - EPS)
            return -(y * torch.log(p) + (1.0 - y) * torch.log1p(-p))

        # L_T: BCE of the mean of the top-w frame proxies, w = window_length(n) <= n.
        proxies = sm.flatten(2).amax(2).masked_fill(~valid, float("-inf"))          # (B, T)
        w = torch.tensor([window_length(k, c.window_div) for k in lengths], device=dev)
        top = torch.topk(proxies, int(w.max()), dim=1).values
        chosen = torch.arange(top.shape[1], device=dev)[None, :] < w[:, None]
        top_mean = torch.where(chosen, top, torch.zeros_like(top)).sum(1) / w.to(dt)
        # Smoothness over consecutive real snippets; TV over all 4-neighbour pairs.
        both = (valid[:, 1:] & valid[:, :-1]).to(dt)[:, :, None, None]
        steps = ((sm[:, 1:] - sm[:, :-1]) ** 2 * both).sum((1, 2, 3))
        smooth = torch.where(n > 1, steps / ((n - 1).clamp_min(1) * gh * gw), torch.zeros_like(n))
        pairs = n * (gh * (gw - 1) + (gh - 1) * gw)
        tv_sum = sm.new_zeros(bsz)
        if gw > 1:
            tv_sum = tv_sum + (sm[..., :, 1:] - sm[..., :, :-1]).abs().sum((1, 2, 3))
        if gh > 1:
            tv_sum = tv_sum + (sm[..., 1:, :] - sm[..., :-1, :]).abs().sum((1, 2, 3))
        tv = torch.where(pairs > 0, tv_sum / pairs.clamp_min(1), torch.zeros_like(n))
        # L_N averages over normal videos, sparsity over anomalous ones.
        l_n = -torch.log1p(-sm.clamp(0.0, 1.0 - EPS)).sum((1, 2, 3)) / per_cell
        sparse = sm.sum((1, 2, 3)) / per_cell
        terms = {"pa": bce_each(bag_all), "t": bce_each(top_mean),
                 "n": torch.where(y == 0, l_n * (bsz / n_norm), torch.zeros_like(l_n)),
                 "smooth": smooth, "tv": tv,
                 "sparse": torch.where(y == 1, sparse * (bsz / n_anom), torch.zeros_like(sparse))}
        total = (c.w_pa * terms["pa"] + c.w_t * terms["t"] + c.w_n * terms["n"] + c.w_smooth * terms["smooth"]
                 + c.w_tv * terms["tv"] + c.w_sparse * terms["sparse"])
        loss = total.mean()
        # The logged means: sum over videos of term / B in video order, from one host copy.
        table = torch.stack([terms[key].detach().double() for key in keys]
                            + [loss.detach().double().expand(bsz)]).tolist()
        logged = {key: sum((v / bsz for v in row), 0.0) for key, row in zip(keys, table)}
        return loss, {**logged, "total": table[-1][0], "bag": bag_all.detach()}


__all__ = ["EPS", "MILLoss", "bce", "frame_proxy", "loss_n", "loss_pa", "loss_t", "smoothness", "sparsity",
           "sultani_ranking", "total_variation"]
