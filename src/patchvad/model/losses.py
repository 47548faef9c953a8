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
        """The total loss and the per-term means (see the class docstring)."""
        c = self.cfg
        keys = ("pa", "t", "n", "smooth", "tv", "sparse")
        totals: dict = {key: 0.0 for key in keys}
        per_video = []
        n_norm = max(1, int(sum(1 for y in labels if int(y) == 0)))
        n_anom = max(1, int(sum(1 for y in labels if int(y) == 1)))
        bsz = s.shape[0]
        lengths = [int(n) for n in lengths]
        # One host copy for the whole batch's choices (bag_scores), not several per video.
        bag_all = bag_scores(s, lengths, c.selection_config(), c.window, c.window_div)
        for b in range(bsz):
            n = lengths[b]
            y = float(labels[b])
            sb = s[b, :n]
            bag = bag_all[b]
            terms = {"pa": loss_pa(bag, y),
                     "t": loss_t(frame_proxy(sb), y, window_length(n, c.window_div)),
                     "smooth": smoothness(sb), "tv": total_variation(sb)}
            # L_N averages over normal videos, sparsity over anomalous ones.
            terms["n"] = loss_n(sb) * (bsz / n_norm) if y == 0 else sb.sum() * 0.0
            terms["sparse"] = sparsity(sb) * (bsz / n_anom) if y == 1 else sb.sum() * 0.0
            total = (c.w_pa * terms["pa"] + c.w_t * terms["t"] + c.w_n * terms["n"] + c.w_smooth * terms["smooth"]
                     + c.w_tv * terms["tv"] + c.w_sparse * terms["sparse"])
            per_video.append(total)
            for key, v in terms.items():
                # float64 on the device, in the same order: the logged means equal
                # sum(float(term) / B) exactly, read with one copy below.
                totals[key] = totals[key] + v.detach().double() / bsz
        loss = torch.stack(per_video).mean()
        logged = torch.stack([torch.as_tensor(totals[key], dtype=torch.float64, device=s.device) for key in keys]
                             + [loss.detach().double()]).tolist()
        return loss, {**dict(zip(keys, logged[:-1])), "total": logged[-1], "bag": bag_all.detach()}


__all__ = ["EPS", "MILLoss", "bce", "frame_proxy", "loss_n", "loss_pa", "loss_t", "smoothness", "sparsity",
           "sultani_ranking", "total_variation"]
