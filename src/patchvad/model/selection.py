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

import torch

from patchvad.errors import ConfigError
from patchvad.model.selections import Selection, SelectionConfig, get_selection, proximity_weights

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


def plain_topk(m: torch.Tensor, k: int) -> Selection:
    """Top-``k`` cells of ``M`` ``(Gh, Gw)`` (no proximity); score = their mean."""
    return get_selection("plain").select(m, SelectionConfig(rule="plain", k=k))


def proximity_topk(m: torch.Tensor, k: int, mode: str = "gauss", sigma: float = 1.0, radius: int = 1,
                   peak: tuple[int, int] | None = None) -> Selection:
    """Select ``k`` cells of a patch map ``M`` ``(Gh, Gw)`` with the rule ``mode`` (model/selections/).

    ``gauss``: ``K`` = top-k of ``pi * M`` with ``pi`` the Gaussian around the peak;
    score ``sum_K pi M / sum_K pi``. ``radius``: ``K`` = top-k of ``M`` inside the
    ``(2r+1)^2`` neighbourhood of the peak; score = their mean. ``plain``: top-k of ``M``.
    ``peak``: the map's argmax when the caller has it already.
    """
    return get_selection(mode).select(m, SelectionConfig(rule=mode, k=k, sigma=sigma, radius=radius), peak=peak)


def map_peaks(maps: list[torch.Tensor]) -> list[tuple[int, int]]:
    """``(row, col)`` of the maximum of each ``(Gh, Gw)`` map (first maximum), with one host copy."""
    if not maps:
        return []
    gw = maps[0].shape[1]
    flat = torch.stack([m.detach().reshape(-1) for m in maps]).argmax(1).tolist()
    return [divmod(int(i), gw) for i in flat]


def bag_score(s: torch.Tensor, sel: SelectionConfig, window: str = "fixed", window_div: int = 16
              ) -> tuple[torch.Tensor, tuple[int, int]]:
    """Bag score ``S(v)`` of one video's patch scores ``s`` ``(T, Gh, Gw)``.

    window (on ``a[t] = max_p s[t, p]``) -> patch map -> the selection rule ``sel``.

    Returns:
        the scalar score and the window ``(start, end)``.
    """
    a = s.detach().flatten(1).amax(1)
    win = find_window(a, window, window_div)
    m = patch_map(s, win)
    return get_selection(sel.rule).select(m, sel).score, win


def bag_scores(s: torch.Tensor, lengths: torch.Tensor | list[int], sel: SelectionConfig, window: str = "fixed",
               window_div: int = 16) -> torch.Tensor:
    """:func:`bag_score` of every video of a padded batch ``(B, T, Gh, Gw)`` -> ``(B,)``.

    The same choices as :func:`bag_score` video by video, made from values copied to the
    host once per batch (the frame proxies, then the maps' peaks) instead of once per
    video and decision: on a GPU each copy waits for the device.
    """
    rule = get_selection(sel.rule)
    lengths = [int(n) for n in lengths]
    proxies = s.detach().flatten(2).amax(2).cpu()                      # (B, T)
    windows = [find_window(proxies[b, :n], window, window_div) for b, n in enumerate(lengths)]
    maps = [patch_map(s[b, :n], windows[b]) for b, n in enumerate(lengths)]
    peaks: list[tuple[int, int] | None] = list(map_peaks(maps)) if rule.needs_peak else [None] * len(maps)
    return torch.stack([rule.select(m, sel, peak=p).score for m, p in zip(maps, peaks, strict=True)])


def snippet_scores(s: torch.Tensor, sel: SelectionConfig) -> torch.Tensor:
    """Inference score of each snippet ``(T, Gh, Gw)`` -> ``(T,)``: the rule around that snippet's own peak.

    Equal to ``bag``-style ``select(s[t]).score`` for every ``t`` (one definition per rule).
    """
    return get_selection(sel.rule).snippet_scores(s, sel)


__all__ = ["Selection", "SelectionConfig", "bag_score", "bag_scores", "find_window", "patch_map", "plain_topk",
           "proximity_topk", "proximity_weights", "snippet_scores", "window_cusum", "window_fixed", "window_length",
           "window_none"]
