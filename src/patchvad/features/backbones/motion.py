"""Per-patch motion descriptors computed from the pixels of a snippet.

Appearance features of single frames cannot see speed or direction (running,
walking against the flow); these channels can. They are cheap (a few pooled
products of image gradients) and need no weights.

Channels, per grid cell, over the ``L`` frames of the snippet (grey levels in [0, 1],
computed at ``8 x 8`` motion pixels per cell):

==================  =========================================================
``energy_mean``     mean over frame pairs of the cell's mean |I[t+1] - I[t]|
``energy_max``      max over frame pairs of that cell mean (short bursts)
``energy_std``      std over frame pairs of that cell mean (jitter, fighting)
``energy_peak``     mean over pairs of the cell's max pixel difference (small objects)
``flow_u``          Lucas-Kanade flow in x, motion pixels / frame, moving pixels only
``flow_v``          the same in y
``speed``           ``hypot(flow_u, flow_v)``
``moving_fraction`` fraction of the cell's pixels that change by > 0.04 per frame
==================  =========================================================
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MOTION_CHANNELS = ("energy_mean", "energy_max", "energy_std", "energy_peak", "flow_u", "flow_v", "speed",
                   "moving_fraction")
MOTION_PIXELS_PER_CELL = 8
_MOVING_THRESHOLD = 0.04


_LUMA = (0.299, 0.587, 0.114)          # ITU-R BT.601 weights of R, G, B


def motion_size(grid: tuple[int, int]) -> tuple[int, int]:
    """``(H', W')``: the motion pixels of a grid (:data:`MOTION_PIXELS_PER_CELL` per cell side)."""
    return grid[0] * MOTION_PIXELS_PER_CELL, grid[1] * MOTION_PIXELS_PER_CELL


def snippet_gray(snippets: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Grey levels of RGB snippets at the motion resolution of ``grid``.

    Args:
        snippets: ``(B, L, H, W, 3)`` uint8 RGB.
        grid: ``(Gh, Gw)``.

    Returns:
        ``(B, L, 8 Gh, 8 Gw)`` float32 in [0, 1]: BT.601 luma / 255, resampled like
        :func:`motion_features` resamples (area average down, bilinear up).

    The arithmetic is ``(0.299 R + 0.587 G + 0.114 B) / 255`` in float32, in that order,
    bit for bit (the moving-pixel threshold makes the motion channels sensitive to the
    last bit), done in place on one float plane per colour: arithmetic on the
    interleaved float pixels (a stride of 3) cost 2.3x the CPU time, measured per snippet.
    """
    red, green, blue = (snippets[..., i].float() for i in range(3))     # (B, L, H, W) each
    gray = red.mul_(_LUMA[0]).add_(green.mul_(_LUMA[1])).add_(blue.mul_(_LUMA[2])).div_(255.0)
    return _resample(gray, motion_size(grid))


def _resample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, L, H, W)`` -> ``(B, L, *size)``: area average down, bilinear up."""
    h, w = x.shape[-2:]
    if (h, w) == size:
        return x
    if h >= size[0] and w >= size[1]:
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def motion_features(gray: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Motion descriptors of a batch of snippets.

    Args:
        gray: ``(B, L, H, W)`` float grey levels in [0, 1] (any size; resampled to
            ``8 * Gh x 8 * Gw``, see :func:`snippet_gray`). ``L >= 2``.
        grid: ``(Gh, Gw)``.

    Returns:
        ``(B, Gh, Gw, 8)`` float32, channels in the order of :data:`MOTION_CHANNELS`.
    """
    b, length, h, w = gray.shape
    if length < 2:
        raise ValueError("motion needs at least 2 frames per snippet")
    x = _resample(gray.float(), motion_size(grid))
    k = MOTION_PIXELS_PER_CELL
    diff = x[:, 1:] - x[:, :-1]                       # (B, L-1, H', W') temporal derivative It
    energy = diff.abs()
    cell_energy = F.avg_pool2d(energy, k)             # (B, L-1, Gh, Gw)
    energy_mean = cell_energy.mean(1)
    energy_max = cell_energy.amax(1)
    energy_std = cell_energy.std(1, unbiased=False) if length > 2 else torch.zeros_like(energy_mean)
    energy_peak = F.max_pool2d(energy, k).mean(1)
    moving = (energy > _MOVING_THRESHOLD).to(x.dtype)
    moving_fraction = F.avg_pool2d(moving, k).mean(1)

    # Lucas-Kanade per cell, on the mean image of each frame pair, counting only
    # moving pixels (the static background would pull every estimate towards 0).
    mid = 0.5 * (x[:, 1:] + x[:, :-1])
    # The gradients are masked once: (ix m)(iy m) = ix iy m exactly for m in {0, 1},
    # so the five weighted sums need no product with the mask of their own.
    ix = torch.zeros_like(mid)
    iy = torch.zeros_like(mid)
    torch.sub(mid[..., :, 2:], mid[..., :, :-2], out=ix[..., :, 1:-1])
    torch.sub(mid[..., 2:, :], mid[..., :-2, :], out=iy[..., 1:-1, :])
    ix.mul_(0.5).mul_(moving)
    iy.mul_(0.5).mul_(moving)

    def cell_sum(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, k).sum(1)             # (B, Gh, Gw)

    sxx, sxy, syy = cell_sum(ix * ix), cell_sum(ix * iy), cell_sum(iy * iy)
    sxt, syt = cell_sum(ix * diff), cell_sum(iy * diff)
    ridge = 1e-4
    det = (sxx + ridge) * (syy + ridge) - sxy * sxy
    u = (-(syy + ridge) * sxt + sxy * syt) / det
    v = (sxy * sxt - (sxx + ridge) * syt) / det
    # Beyond a few pixels per frame LK is not meaningful at this scale; clamp outliers.
    u = u.clamp(-4.0, 4.0)
    v = v.clamp(-4.0, 4.0)
    speed = torch.hypot(u, v)
    out = torch.stack([energy_mean, energy_max, energy_std, energy_peak, u, v, speed, moving_fraction], dim=-1)
    return out.float()
