"""PatchScorer: encoded patch features -> patch anomaly scores s[t, i, j] in (0, 1).

Shapes (B videos, T snippets, Gh x Gw grid, C encoded channels, d = width):

    x     (B, T, Gh, Gw, C)   encoded inputs (model/normalize.py); channel 0 = prior
    mask  (B, T) bool         True on real snippets, False on padding (optional)
    out   (B, T, Gh, Gw)      scores in (0, 1); padded snippets are 0

Layers (every weight is shared across cells and snippets, so any grid and any T work):

1. ``h = GELU(LayerNorm(Linear(C -> d)(x))) + pos(cell centre)``; ``pos`` is a linear
   map of sinusoids of the cell centre's normalised (y, x), so it is defined for any grid.
   No temporal position: the score depends on what happens, not on when.
2. Temporal context per cell: one residual ``Conv1d(d, d, 3, dilation)`` block per
   dilation (default 1, 2).
3. Spatial context per snippet: ``spatial_layers`` residual ``Conv2d(d, d, 3x3)`` blocks,
   each adding a global scene token ``Linear(mean over cells of h)`` to every cell.
   (A cheap stand-in for Transformer layers over the cells: it trains thousands of
   steps on a CPU; docs/method.md, "Departures from the starting specification".)
4. Head ``correction = MLP(LayerNorm(h))``, last layer initialised to 0.
5. ``logit = softplus(alpha) * (x[..., 0] - beta) + correction`` with ``softplus(alpha)
   = a0`` and ``beta = b0`` at initialisation (the encoder's prior scale): an untrained
   scorer reproduces the motion floor and training learns a correction on top of it.
   Without the prior: ``logit = correction`` (head bias starts at -2).

Padding: activations are multiplied by the mask before every temporal block, which makes
the zero-padded temporal convolution see exactly what it would see on the unpadded video
(the other layers work within one snippet); padded snippets' scores are set to 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from patchvad.config import ModelConfig
from patchvad.model.dropout import FastDropout


def _inv_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y)) if y < 20 else y


class CellPosition(nn.Module):
    """Position encoding of cell centres, defined for any ``(Gh, Gw)``."""

    def __init__(self, width: int, freqs: int = 4):
        super().__init__()
        self.freqs = freqs
        self.proj = nn.Linear(4 * freqs, width)
        nn.init.normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    def forward(self, gh: int, gw: int, device: torch.device) -> torch.Tensor:
        """``(Gh, Gw, d)`` encodings of the cell centres of a ``gh`` x ``gw`` grid."""
        yy = (torch.arange(gh, device=device, dtype=torch.float32) + 0.5) / gh
        xx = (torch.arange(gw, device=device, dtype=torch.float32) + 0.5) / gw
        y, x = torch.meshgrid(yy, xx, indexing="ij")
        k = (2.0 ** torch.arange(self.freqs, device=device, dtype=torch.float32)) * math.pi
        feats = torch.cat([torch.sin(y[..., None] * k), torch.cos(y[..., None] * k),
                           torch.sin(x[..., None] * k), torch.cos(x[..., None] * k)], dim=-1)
        return self.proj(feats)                                   # (Gh, Gw, d)


class IsotropicConv2d(nn.Module):
    """3x3 convolution whose kernel depends only on the distance to the centre.

    ``out[p] = W_c h[p] + W_e sum_{4-neighbours} h[q] + W_k sum_{diagonal} h[q] + b``
    (zero padding). A rotation- and reflection-symmetric kernel cannot move evidence
    in one direction: the response to a single anomalous cell is symmetric around it,
    so the map's peak stays on it instead of drifting to an arbitrary neighbour (a free
    3x3 kernel can learn such a shift under MIL, which only asks that SOME cell fires).
    Input and output ``(N, Gh, Gw, d)`` (channels last).
    """

    def __init__(self, width: int):
        super().__init__()
        self.center = nn.Linear(width, width)
        self.edge = nn.Linear(width, width, bias=False)
        self.corner = nn.Linear(width, width, bias=False)
        for lin in (self.edge, self.corner):
            nn.init.normal_(lin.weight, std=0.5 / math.sqrt(width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        p = F.pad(h, (0, 0, 1, 1, 1, 1))                         # pad Gw and Gh by 1
        edge = p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:]
        corner = p[:, :-2, :-2] + p[:, :-2, 2:] + p[:, 2:, :-2] + p[:, 2:, 2:]
        return self.center(h) + self.edge(edge) + self.corner(corner)


class PatchScorer(nn.Module):
    """See the module docstring.

    Args:
        in_dim: ``C``, channels of the encoded input.
        cfg: model configuration.
        prior_init: ``(a0, b0)`` of the prior's logistic map (from the encoder).
    """

    def __init__(self, in_dim: int, cfg: ModelConfig, prior_init: tuple[float, float] = (1.0, 0.0)):
        super().__init__()
        d = cfg.width
        self.cfg = cfg
        self.in_proj = nn.Linear(in_dim, d)
        self.in_norm = nn.LayerNorm(d)
        self.pos = CellPosition(d) if cfg.position else None
        self.temporal = nn.ModuleList(nn.Conv1d(d, d, 3, padding=int(dil), dilation=int(dil))
                                      for dil in cfg.temporal_dilations)
        if cfg.spatial == "conv":
            self.spatial = nn.ModuleList(nn.Conv2d(d, d, 3, padding=1) for _ in range(cfg.spatial_layers))
        elif cfg.spatial == "isotropic":
            self.spatial = nn.ModuleList(IsotropicConv2d(d) for _ in range(cfg.spatial_layers))
        else:
            self.spatial = nn.ModuleList(nn.Linear(d, d) for _ in range(cfg.spatial_layers))
        self.scene = nn.ModuleList(nn.Linear(d, d) for _ in range(cfg.spatial_layers)) if cfg.scene_token else None
        self.drop = FastDropout(cfg.dropout)
        self.out_norm = nn.LayerNorm(d)
        hidden, last = nn.Linear(d, d), nn.Linear(d, 1)
        self.head = nn.Sequential(hidden, nn.GELU(), last)
        nn.init.zeros_(last.weight)
        nn.init.constant_(last.bias, 0.0 if cfg.motion_prior else -2.0)
        a0, b0 = prior_init
        self.alpha = nn.Parameter(torch.tensor(_inv_softplus(max(float(a0), 1e-3))))
        self.beta = nn.Parameter(torch.tensor(float(b0)))

    def logits(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pre-sigmoid scores ``(B, T, Gh, Gw)``."""
        b, t, gh, gw, _ = x.shape
        # Padded snippets must be zero where a temporal convolution reads them; nothing else
        # mixes snippets (the spatial blocks and the scene token work within one snippet),
        # so the mask is applied before each temporal block only, and not at all when the
        # batch has no padding. Real snippets get exactly the same values either way.
        m = None if mask is None or bool(mask.all()) else mask.to(x.dtype).view(b, t, 1, 1, 1)
        h = F.gelu(self.in_norm(self.in_proj(x)))
        if self.pos is not None:
            h = h + self.pos(gh, gw, x.device)
        d = h.shape[-1]
        for conv in self.temporal:
            if m is not None:
                h = h * m
            z = h.permute(0, 2, 3, 4, 1).reshape(b * gh * gw, d, t)
            z = self.drop(F.gelu(conv(z))).reshape(b, gh, gw, d, t).permute(0, 4, 1, 2, 3)
            h = h + z
        for i, conv in enumerate(self.spatial):
            if isinstance(conv, nn.Conv2d):
                z = h.reshape(b * t, gh, gw, d).permute(0, 3, 1, 2)
                z = conv(z).permute(0, 2, 3, 1).reshape(b, t, gh, gw, d)
            elif isinstance(conv, IsotropicConv2d):
                z = conv(h.reshape(b * t, gh, gw, d)).reshape(b, t, gh, gw, d)
            else:                                   # "none": per-cell layer, context from the scene token only
                z = conv(h)
            if self.scene is not None:
                z = z + self.scene[i](h.mean(dim=(2, 3), keepdim=True))
            h = h + self.drop(F.gelu(z))
        corr = self.head(self.out_norm(h)).squeeze(-1)
        if self.cfg.motion_prior:
            bound = self.cfg.correction_bound
            if bound > 0:
                corr = bound * torch.tanh(corr / bound)
            return F.softplus(self.alpha) * (x[..., 0] - self.beta) + corr
        return corr

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Patch scores ``(B, T, Gh, Gw)`` in (0, 1), 0 where ``mask`` ``(B, T)`` is 0."""
        s = torch.sigmoid(self.logits(x, mask))
        if mask is not None:
            s = s * mask.to(s.dtype).view(*mask.shape, 1, 1)
        return s


__all__ = ["CellPosition", "PatchScorer"]
