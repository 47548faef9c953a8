"""Proximity-Aware Top-k selection: window -> patch map -> proximity top-k -> bag score.

All functions work on ONE video (tensors without a batch axis) so that videos of
different lengths never share padding; :func:`bag_scores` does a padded batch.
Indices (window, peak, selected cells) are chosen on detached values; the returned
scores are differentiable functions of the selected entries only, so gradients flow
through the selected cells and nowhere else.

Shapes: ``s`` is ``(T, Gh, Gw)`` patch scores in (0, 1); ``a`` is ``(T,)`` frame
proxies ``a[t] = max_p s[t, p]``; a patch map ``M`` is ``(Gh, Gw)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from patchvad.errors import ConfigError


# --- optimal window -------------------------------------------------------------------


def window_length(num_snippets: int, div: int = 16) -> int:
    """``w = floor(T / div) + 1``, at most ``T``."""
    return max(1, min(num_snippets, num_snippets // div + 1))


def window_fixed(a: torch.Tensor, w: int) -> tuple[int, int]:
    """Window ``[start, end)`` of length ``w`` with the highest mean of ``a``.

    Ties go to the earliest start.
    """
    a = a.detach().reshape(-1).float()
    t = a.shape[0]
    if t == 0:
        raise ValueError("empty score sequence")
    w = max(1, min(int(w), t))
    csum = torch.cat([a.new_zeros(1), torch.cumsum(a, 0)])
    means = (csum[w:] - csum[:-w]) / w                # (T - w + 1,)
    start = int(torch.argmax(means))                  # first maximum
    return start, start + w


def window_cusum(a: torch.Tensor) -> tuple[int, int]:
    """CUSUM window: ``S[t] = max(0, S[t-1] + a[t] - mean(a))``.

    The window ends at ``argmax S`` (inclusive) and starts right after the last zero
    of ``S`` before it. When ``S`` never rises above zero (a constant sequence) the
    window is the single snippet with the largest ``a``.
    """
    a = a.detach().reshape(-1).double()
    if a.shape[0] == 0:
        raise ValueError("empty score sequence")
    mu = float(a.mean())
    s = 0.0
    values = []
    for v in a.tolist():
        s = max(0.0, s + v - mu)
        values.append(s)
    svals = torch.tensor(values)
    end = int(torch.argmax(svals))
    if values[end] <= 0.0:
        peak = int(torch.argmax(a))
        return peak, peak + 1
    start = 0
    for t in range(end - 1, -1, -1):
        if values[t] <= 0.0:
            start = t + 1
            break
    return start, end + 1


def window_none(a: torch.Tensor) -> tuple[int, int]:
    """The whole video."""
    return 0, int(a.reshape(-1).shape[0])


def find_window(a: torch.Tensor, mode: str, div: int = 16) -> tuple[int, int]:
    """Dispatch to :func:`window_fixed` / :func:`window_cusum` / :func:`window_none`."""
    if mode == "fixed":
        return window_fixed(a, window_length(int(a.shape[0]), div))
    if mode == "cusum":
        return window_cusum(a)
    if mode == "none":
        return window_none(a)
    raise ConfigError(f"unknown window mode '{mode}' (fixed, cusum, none)")


# --- patch map and selection -------------------------------------------------------------


def patch_map(s: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """``M[p] = mean over t in [start, end) of s[t, p]`` -> ``(Gh, Gw)``."""
    start, end = window
    if not 0 <= start < end <= s.shape[0]:
        raise ValueError(f"window {window} outside 0..{s.shape[0]}")
    return s[start:end].mean(0)


@dataclass
class Selection:
    """The cells a selection picked.

    Attributes:
        score: scalar tensor, ``sum_K w M / sum_K w`` (differentiable in ``M[K]``).
        cells: ``(k, 2)`` long tensor of (row, col), in selection order.
        weights: ``(k,)`` weights used for the selected cells.
        peak: (row, col) of the map's maximum (``None`` for plain top-k).
    """

    score: torch.Tensor
    cells: torch.Tensor
    weights: torch.Tensor
    peak: tuple[int, int] | None


def proximity_weights(shape: tuple[int, int], peak: tuple[int, int], sigma: float,
                      device: torch.device | None = None) -> torch.Tensor:
    """``pi[p] = exp(-|p - peak|^2 / (2 sigma^2))`` in grid cells -> ``(Gh, Gw)``."""
    gh, gw = shape
    ii = torch.arange(gh, device=device, dtype=torch.float32).view(-1, 1)
    jj = torch.arange(gw, device=device, dtype=torch.float32).view(1, -1)
    d2 = (ii - peak[0]) ** 2 + (jj - peak[1]) ** 2
    return torch.exp(-d2 / (2.0 * sigma * sigma))


def _peak(m: torch.Tensor) -> tuple[int, int]:
    idx = int(torch.argmax(m.detach().reshape(-1)))
    return divmod(idx, m.shape[1])


def _cells(flat_idx: torch.Tensor, gw: int) -> torch.Tensor:
    return torch.stack([flat_idx // gw, flat_idx % gw], dim=1)


def plain_topk(m: torch.Tensor, k: int) -> Selection:
    """Top-``k`` cells of ``M`` (no proximity); score = their mean."""
    gh, gw = m.shape
    k = max(1, min(int(k), gh * gw))
    flat = m.reshape(-1)
    idx = torch.topk(flat.detach(), k).indices
    weights = torch.ones(k, dtype=m.dtype, device=m.device)
    return Selection(score=flat[idx].mean(), cells=_cells(idx, gw), weights=weights, peak=None)


def proximity_topk(m: torch.Tensor, k: int, mode: str = "gauss", sigma: float = 1.0, radius: int = 1,
                   peak: tuple[int, int] | None = None) -> Selection:
    """Proximity-aware top-``k`` of a patch map ``M`` ``(Gh, Gw)``.

    ``gauss``: ``K`` = top-k of ``pi * M`` with ``pi`` the Gaussian around the peak;
    score ``sum_K pi M / sum_K pi``. ``radius``: ``K`` = top-k of ``M`` inside the
    ``(2r+1)^2`` neighbourhood of the peak (fewer when the neighbourhood is smaller);
    score = their mean. ``peak``: the map's argmax when the caller has it already
    (:func:`map_peaks` finds those of a whole batch with one device-to-host copy).
    """
    if mode == "plain":
        return plain_topk(m, k)
    gh, gw = m.shape
    k = max(1, min(int(k), gh * gw))
    peak = _peak(m) if peak is None else peak
    flat = m.reshape(-1)
    if mode == "gauss":
        pi = proximity_weights((gh, gw), peak, sigma, device=m.device).to(m.dtype).reshape(-1)
        idx = torch.topk((pi * flat).detach(), k).indices
        w = pi[idx]
        score = (w * flat[idx]).sum() / w.sum()
        return Selection(score=score, cells=_cells(idx, gw), weights=w, peak=peak)
    if mode == "radius":
        r = int(radius)
        i0, i1 = max(0, peak[0] - r), min(gh, peak[0] + r + 1)
        j0, j1 = max(0, peak[1] - r), min(gw, peak[1] + r + 1)
        ii, jj = torch.meshgrid(torch.arange(i0, i1, device=m.device), torch.arange(j0, j1, device=m.device),
                                indexing="ij")
        cand = (ii * gw + jj).reshape(-1)
        kk = min(k, int(cand.shape[0]))
        order = torch.topk(flat[cand].detach(), kk).indices
        idx = cand[order]
        w = torch.ones(kk, dtype=m.dtype, device=m.device)
        return Selection(score=flat[idx].mean(), cells=_cells(idx, gw), weights=w, peak=peak)
    raise ConfigError(f"unknown selection mode '{mode}' (gauss, radius, plain)")


def map_peaks(maps: list[torch.Tensor]) -> list[tuple[int, int]]:
    """``(row, col)`` of the maximum of each ``(Gh, Gw)`` map (first maximum), with one host copy."""
    if not maps:
        return []
    gw = maps[0].shape[1]
    flat = torch.stack([m.detach().reshape(-1) for m in maps]).argmax(1).tolist()
    return [divmod(int(i), gw) for i in flat]


def bag_score(s: torch.Tensor, window: str = "fixed", selection: str = "gauss", k: int = 4,
              sigma: float = 1.0, radius: int = 1, window_div: int = 16) -> tuple[torch.Tensor, tuple[int, int]]:
    """Bag score ``S(v)`` of one video's patch scores ``s`` ``(T, Gh, Gw)``.

    window (on ``a[t] = max_p s[t, p]``) -> patch map -> selection.

    Returns:
        the scalar score and the window ``(start, end)``.
    """
    a = s.detach().flatten(1).amax(1)
    win = find_window(a, window, window_div)
    m = patch_map(s, win)
    sel = proximity_topk(m, k, mode=selection, sigma=sigma, radius=radius)
    return sel.score, win


def bag_scores(s: torch.Tensor, lengths: torch.Tensor | list[int], window: str = "fixed",
               selection: str = "gauss", k: int = 4, sigma: float = 1.0, radius: int = 1,
               window_div: int = 16) -> torch.Tensor:
    """:func:`bag_score` of every video of a padded batch ``(B, T, Gh, Gw)`` -> ``(B,)``.

    The same choices as :func:`bag_score` video by video, made from values copied to the
    host once per batch (the frame proxies, then the maps' peaks) instead of once per
    video and decision: on a GPU each copy waits for the device.
    """
    lengths = [int(n) for n in lengths]
    proxies = s.detach().flatten(2).amax(2).cpu()                      # (B, T)
    windows = [find_window(proxies[b, :n], window, window_div) for b, n in enumerate(lengths)]
    maps = [patch_map(s[b, :n], windows[b]) for b, n in enumerate(lengths)]
    peaks = map_peaks(maps) if selection in ("gauss", "radius") else [None] * len(maps)
    return torch.stack([proximity_topk(m, k, mode=selection, sigma=sigma, radius=radius, peak=p).score
                        for m, p in zip(maps, peaks)])


def snippet_scores(s: torch.Tensor, selection: str = "gauss", k: int = 4, sigma: float = 1.0,
                   radius: int = 1) -> torch.Tensor:
    """Inference score of each snippet: the selection around that snippet's own peak.

    Args:
        s: ``(T, Gh, Gw)``.

    Returns:
        ``(T,)``; vectorised equivalent of ``proximity_topk(s[t], ...).score`` per ``t``.
    """
    t, gh, gw = s.shape
    k = max(1, min(int(k), gh * gw))
    flat = s.reshape(t, -1)
    if selection == "plain":
        return torch.topk(flat, k, dim=1).values.mean(1)
    peak = flat.argmax(1)
    pi_r, pj = peak // gw, peak % gw
    ii = torch.arange(gh, device=s.device).view(1, -1, 1)
    jj = torch.arange(gw, device=s.device).view(1, 1, -1)
    d2 = ((ii - pi_r.view(-1, 1, 1)) ** 2 + (jj - pj.view(-1, 1, 1)) ** 2).to(s.dtype).reshape(t, -1)
    if selection == "gauss":
        pi = torch.exp(-d2 / (2.0 * sigma * sigma))
        idx = torch.topk(pi * flat, k, dim=1).indices
        w = torch.gather(pi, 1, idx)
        return (w * torch.gather(flat, 1, idx)).sum(1) / w.sum(1)
    if selection == "radius":
        di = (ii - pi_r.view(-1, 1, 1)).abs()
        dj = (jj - pj.view(-1, 1, 1)).abs()
        inside = ((di <= radius) & (dj <= radius)).reshape(t, -1)
        masked = torch.where(inside, flat, torch.full_like(flat, -1.0))
        vals = torch.topk(masked, k, dim=1).values
        valid = vals >= 0
        return (vals * valid).sum(1) / valid.sum(1).clamp_min(1)
    raise ConfigError(f"unknown selection mode '{selection}' (gauss, radius, plain)")


__all__ = ["Selection", "bag_score", "bag_scores", "find_window", "patch_map", "plain_topk", "proximity_topk",
           "proximity_weights", "snippet_scores", "window_cusum", "window_fixed", "window_length", "window_none"]
