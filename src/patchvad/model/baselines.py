"""Baselines run through the same harness as the patch model.

* :class:`VideoMILScorer`: video-level MIL on patch features mean-pooled per snippet
  (RTFM / VadCLIP style top-k BCE, or the Sultani ranking loss). One score per
  snippet; its spatial output is the whole frame.
* :class:`RandomScorer`: uniform random patch scores (the floor of every metric),
  seeded per video so a run is reproducible.
* :func:`motion_floor_scores`: the no-training motion score (docs/method.md, "Methods
  and baselines"), each cell's frame-difference energy minus its median over the video.
* :func:`video_topk_loss` / :func:`sultani_loss`: the two video-level objectives.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from patchvad.config import ModelConfig
from patchvad.features.backbones.motion import MOTION_CHANNELS
from patchvad.model.dropout import FastDropout
from patchvad.model.losses import bce, sultani_ranking
from patchvad.model.selection import window_length


def motion_floor_scores(features: np.ndarray, motion: slice, channel: str = "energy_mean") -> np.ndarray:
    """No-training motion score ``(T, Gh, Gw)`` float32 of raw features ``(T, Gh, Gw, D)``.

    ``motion`` is ``store.channel_slice('motion')``. Each cell's ``channel``
    (frame-difference energy) minus that cell's median over the video.
    """
    idx = motion.start + MOTION_CHANNELS.index(channel)
    e = np.asarray(features[..., idx], dtype=np.float32)
    return e - np.median(e, axis=0, keepdims=True)


class VideoMILScorer(nn.Module):
    """Snippet scores from mean-pooled patch features.

    ``(B, T, Gh, Gw, C)`` -> mean over cells -> ``Linear(C, d)`` -> residual temporal
    Conv1d blocks -> ``Linear(d, 1)`` -> sigmoid: ``(B, T)``.
    """

    def __init__(self, in_dim: int, cfg: ModelConfig):
        super().__init__()
        d = cfg.width
        self.in_proj = nn.Linear(in_dim, d)
        self.in_norm = nn.LayerNorm(d)
        self.temporal = nn.ModuleList(nn.Conv1d(d, d, 3, padding=int(dil), dilation=int(dil))
                                      for dil in cfg.temporal_dilations)
        self.drop = FastDropout(cfg.dropout)
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Linear(d, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, Gh, Gw, C)`` encoded inputs -> ``(B, T)`` snippet scores, 0 where ``mask`` ``(B, T)`` is 0."""
        b, t = x.shape[:2]
        pooled = x.mean(dim=(2, 3))                                   # (B, T, C)
        h = F.gelu(self.in_norm(self.in_proj(pooled)))
        m = None if mask is None else mask.to(h.dtype).unsqueeze(-1)
        if m is not None:
            h = h * m
        for conv in self.temporal:
            z = self.drop(F.gelu(conv(h.transpose(1, 2)))).transpose(1, 2)
            h = h + z
            if m is not None:
                h = h * m
        s = torch.sigmoid(self.head(h).squeeze(-1))
        return s if mask is None else s * mask.to(s.dtype)


class RandomScorer:
    """Uniform random patch scores, reproducible per (seed, video stem)."""

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def __call__(self, stem: str, shape: tuple[int, int, int]) -> np.ndarray:
        """``shape`` = ``(T, Gh, Gw)`` float32 scores in [0, 1) of the video ``stem``."""
        rng = np.random.default_rng([self.seed, zlib.crc32(stem.encode("utf-8"))])
        return rng.random(shape, dtype=np.float32)


def video_topk_loss(a: torch.Tensor, lengths, labels, window_div: int = 16) -> torch.Tensor:
    """Top-k MIL BCE on snippet scores: ``BCE(mean of top-k a[t], y)``, k = floor(T/16)+1.

    Args:
        a: ``(B, T)`` padded snippet scores.
        lengths: ``(B,)`` valid snippets of each video.
        labels: ``(B,)`` 0/1 video labels.
        window_div: k = floor(T / window_div) + 1.
    """
    losses = []
    for b in range(a.shape[0]):
        n = int(lengths[b])
        k = window_length(n, window_div)
        losses.append(bce(torch.topk(a[b, :n], k).values.mean(), float(labels[b])))
    return torch.stack(losses).mean()


def sultani_loss(a: torch.Tensor, lengths, labels, lam: float = 8e-5) -> torch.Tensor:
    """Sultani ranking loss averaged over anomalous x normal pairs of the batch."""
    anom = [a[b, :int(lengths[b])] for b in range(a.shape[0]) if int(labels[b]) == 1]
    norm = [a[b, :int(lengths[b])] for b in range(a.shape[0]) if int(labels[b]) == 0]
    if not anom or not norm:
        return a.sum() * 0.0
    pairs = [sultani_ranking(x, n, lam) for x in anom for n in norm]
    return torch.stack(pairs).mean()


__all__ = ["RandomScorer", "VideoMILScorer", "motion_floor_scores", "sultani_loss", "video_topk_loss"]
