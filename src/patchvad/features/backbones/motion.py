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


def motion_features(gray: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Motion descriptors of a batch of snippets.

    Args:
        gray: ``(B, L, H, W)`` float grey levels in [0, 1] (any size; resampled to
            ``8 * Gh x 8 * Gw``). ``L >= 2``.
        grid: ``(Gh, Gw)``.

    Returns:
        ``(B, Gh, Gw, 8)`` float32, channels in the order of :data:`MOTION_CHANNELS`.
    """
    gh, gw = grid
    b, length, h, w = gray.shape
    if length < 2:
        raise ValueError("motion needs at least 2 frames per snippet")
    size = (gh * MOTION_PIXELS_PER_CELL, gw * MOTION_PIXELS_PER_CELL)
    x = gray.float()
    if (h, w) != size:
        x = F.interpolate(x, size=size, mode="area" if h >= size[0] and w >= size[1] else "bilinear",
                          **({} if h >= size[0] and w >= size[1] else {"align_corners": False}))
    k = MOTION_PIXELS_PER_CELL
    diff = x[:, 1:] - x[:, :-1]                       # (B, L-1, H', W') temporal derivative It
    energy = diff.abs()
    cell_energy = F.avg_pool2d(energy, k)             # (B, L-1, Gh, Gw)
    energy_mean = cell_energy.mean(1)
    energy_max = cell_energy.amax(1)
    energy_std = cell_energy.std(1, unbiased=False) if length > 2 else torch.zeros_like(energy_mean)
    energy_peak = F.max_pool2d(energy, k).mean(1)
    moving = (energy > _MOVING_THRESHOLD).float()
    moving_fraction = F.avg_pool2d(moving, k).mean(1)

    # Lucas-Kanade per cell, on the mean image of each frame pair, counting only
    # moving pixels (the static background would pull every estimate towards 0).
    mid = 0.5 * (x[:, 1:] + x[:, :-1])
    ix = torch.zeros_like(mid)
    iy = torch.zeros_like(mid)
    ix[..., :, 1:-1] = 0.5 * (mid[..., :, 2:] - mid[..., :, :-2])
    iy[..., 1:-1, :] = 0.5 * (mid[..., 2:, :] - mid[..., :-2, :])
    wgt = moving

    def cell_sum(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t * wgt, k).sum(1)       # (B, Gh, Gw)

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
