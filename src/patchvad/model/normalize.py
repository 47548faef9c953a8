"""Input encoding: raw patch features -> small, scene-relative, standardised inputs.

For one video ``x`` ``(T, Gh, Gw, D)`` (the channel groups of the feature spec):

* ``motion`` (8 channels): kept as they are AND as a scene-relative residual
  (minus each cell's median over the video);
* ``appearance`` / ``appearance_change``: minus each cell's median over the video
  (``relative``; the static scene content that identifies a video goes), then
  projected on their first principal components;
* every channel is standardised with mean / std over the tokens of NORMAL
  training videos only (PCA fitted on the same tokens).

Output channels, in order: ``[prior, motion (8), motion residual (8),
appearance PCs (appearance_dims), change PCs (change_dims), scene PCs (scene_dims),
context (6), memory (1)]`` (context with ``motion_context``, memory with ``memory``);
``scene`` is the cell's median appearance itself (what is static there: road,
walkway, grass), so the model can learn WHERE a motion is unusual. ``prior`` is the
standardised residual of ``prior_channel`` (frame-difference energy by default):
the no-training motion score (docs/method.md, "Methods and baselines") up to a
monotone map. ``memory`` is each token's distance to the nearest of ``cfg.memory``
k-means centroids of normal training tokens (their standardised ``memory_parts``:
motion and its residual by default): a scene-free "unlike anything normal" score (``prior_channel:
memory`` makes it the prior).

The statistics are buffers of :class:`FeatureEncoder`, stored in the checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from patchvad.config import ModelConfig
from patchvad.errors import ConfigError
from patchvad.features.backbones.motion import MOTION_CHANNELS

_MIN_STD = 1e-4
#: the parts a token in the normal memory can be made of (``ModelConfig.memory_parts`` picks).
MEMORY_SOURCES = ("motion", "residual", "appearance", "change")
KMEANS_ITERATIONS = 20


def kmeans(z: torch.Tensor, k: int, seed: int, iterations: int = KMEANS_ITERATIONS) -> torch.Tensor:
    """``k`` centroids ``(k, c)`` of the rows of ``z`` ``(n, c)`` by Lloyd's algorithm.

    Starts from ``k`` distinct rows drawn with ``seed``; an emptied cluster keeps its
    centroid. Fewer rows than ``k``: every row is a centroid, the rest repeat the first
    (a repeated centroid changes no nearest distance).
    """
    g = torch.Generator().manual_seed(int(seed))
    n = z.shape[0]
    c = z[torch.randperm(n, generator=g)[:min(k, n)]].clone()
    for _ in range(iterations):
        assign = torch.cdist(z, c).argmin(1)
        sums = torch.zeros_like(c).index_add_(0, assign, z)
        counts = torch.bincount(assign, minlength=c.shape[0])
        filled = counts > 0
        c[filled] = sums[filled] / counts[filled, None].to(z.dtype)
    if c.shape[0] < k:
        c = torch.cat([c, c[:1].expand(k - c.shape[0], -1)])
    return c


def nearest_distance(z: torch.Tensor, centroids: torch.Tensor, rows: int = 65536) -> torch.Tensor:
    """Euclidean distance of each row of ``z`` ``(n, c)`` to its nearest centroid -> ``(n,)``."""
    out = torch.empty(z.shape[0], dtype=z.dtype, device=z.device)
    for i in range(0, z.shape[0], rows):
        out[i:i + rows] = torch.cdist(z[i:i + rows], centroids).min(1).values
    return out


def cell_median(x: np.ndarray, rows_per_chunk: int = 2) -> np.ndarray:
    """Median over time of each cell and channel: ``(T, Gh, Gw, C) -> (Gh, Gw, C)``.

    Equal to ``np.median(x, axis=0)`` (the mean of the two middle values for even ``T``),
    computed a few grid rows at a time so a long video never needs a float32 copy of all
    its features at once, and by sorting each token's series in place along a contiguous
    last axis (about 2x faster than ``np.median`` along the first axis, whose partition
    walks strided memory).
    """
    t, gh, gw, c = x.shape
    out = np.empty((gh, gw, c), dtype=np.float32)
    for i in range(0, gh, rows_per_chunk):
        rows = np.asarray(x[:, i:i + rows_per_chunk], dtype=np.float32)
        series = np.ascontiguousarray(rows.reshape(t, -1).T)          # (tokens, T)
        series.sort(axis=1)
        mid = series[:, t // 2] if t % 2 else np.mean(series[:, t // 2 - 1:t // 2 + 1], axis=1)
        out[i:i + rows_per_chunk] = mid.reshape(rows.shape[1:])
    return out


CONTEXT_WIDTH = 6
_U, _V, _SPEED, _MOVING = (MOTION_CHANNELS.index(c) for c in ("flow_u", "flow_v", "speed", "moving_fraction"))


def motion_context(mot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The usual motion of a video, per cell and overall.

    Args:
        mot: ``(T, Gh, Gw, 8)`` motion channels.

    Returns:
        ``cell`` ``(Gh, Gw, 4)``: per cell, the flow ``(u, v)`` and speed averaged over
        time with weights ``moving_fraction`` (what usually moves there, and which way),
        and the mean moving fraction (how busy the cell is); ``overall`` ``(2,)``: the
        moving-fraction-weighted mean flow of the whole video (its dominant direction).
    """
    w = mot[..., _MOVING]
    wsum = w.sum(0) + 1e-3
    u = (w * mot[..., _U]).sum(0) / wsum
    v = (w * mot[..., _V]).sum(0) / wsum
    speed = (w * mot[..., _SPEED]).sum(0) / wsum
    cell = np.stack([u, v, speed, w.mean(0)], axis=-1).astype(np.float32)
    tot = w.sum() + 1e-3
    overall = np.array([(w * mot[..., _U]).sum() / tot, (w * mot[..., _V]).sum() / tot], dtype=np.float32)
    return cell, overall


def context_tokens(mot: np.ndarray, cell: np.ndarray, overall: np.ndarray) -> np.ndarray:
    """Per token: the cell's usual motion and the token's flow along the usual directions.

    ``(T, Gh, Gw, 6)``: the cell's usual motion (4, ``cell``) and the token's flow
    projected on the cell's usual direction and on the video's dominant direction
    ``overall`` (2). A walker against a one-way flow projects negatively; one along it positively.
    """
    u, v = mot[..., _U], mot[..., _V]
    cu, cv = cell[..., 0], cell[..., 1]
    along_cell = (u * cu + v * cv) / (np.sqrt(cu ** 2 + cv ** 2) + 1e-2)
    ou, ov = float(overall[0]), float(overall[1])
    along_all = (u * ou + v * ov) / (np.hypot(ou, ov) + 1e-2)
    n = mot.shape[0]
    return np.concatenate([np.broadcast_to(cell, (n, *cell.shape)), along_cell[..., None], along_all[..., None]],
                          axis=-1).astype(np.float32)


class FeatureEncoder(nn.Module):
    """Maps raw features ``(T, Gh, Gw, D)`` to encoded inputs ``(T, Gh, Gw, C)``.

    Args:
        channels: the feature spec's channel groups ``name -> [start, end)``.
        cfg: model configuration (relative, appearance/change/scene dims, prior_channel).

    Parts, in output order (``C`` = 1 + sum of their widths):

    ========== ======================= ===================================== =========
    part       source group            transform                             width
    ========== ======================= ===================================== =========
    motion     motion                  as is                                 8
    residual   motion                  minus the cell's median over time     8
    appearance appearance              minus the cell median (``relative``)  PCA dims
    change     appearance_change       minus the cell median (``relative``)  PCA dims
    scene      appearance              the cell median itself (static scene) PCA dims
    context    motion                  the cell's usual flow / speed /       6
                                       activity over the video, and the
                                       token's flow along the cell's and
                                       the video's usual direction
    memory     the standardised        distance to the nearest centroid of   1
               ``memory_parts``        the normal memory (``memory``)
    ========== ======================= ===================================== =========

    Each part is standardised (``<part>_mean``, ``<part>_std`` buffers) and PCA parts
    projected (``<part>_pcs``, unit variance per component); channel 0 is the prior,
    a copy of the standardised residual of ``prior_channel`` (or of the memory part).
    ``memory_centroids`` holds the normal memory. ``prior_scale`` holds
    ``(a0, b0)``, the logistic map that turns the prior into a (0, 1) floor score.
    All buffers are filled by :meth:`fit` and saved with the model.
    """

    prior_scale: torch.Tensor       # buffers, registered in __init__ (the parts' under f-string names)
    residual_mean: torch.Tensor
    residual_std: torch.Tensor
    memory_centroids: torch.Tensor  # with cfg.memory only
    memory_mean: torch.Tensor
    memory_std: torch.Tensor

    def __init__(self, channels: dict[str, list[int]], cfg: ModelConfig):
        super().__init__()
        if "motion" not in channels:
            raise ConfigError("the model needs the 'motion' channel group in the features "
                              "(extract with motion enabled)")
        self.cfg = cfg
        self.channels = {k: (int(v[0]), int(v[1])) for k, v in channels.items()}
        self.prior_index = None if cfg.prior_channel == "memory" else MOTION_CHANNELS.index(cfg.prior_channel)
        n_mot = self.channels["motion"][1] - self.channels["motion"][0]
        self.n_motion = n_mot
        has_app = "appearance" in channels
        # part -> (source group, PCA dims or None)
        self.parts: dict[str, tuple[str, int | None]] = {"motion": ("motion", None), "residual": ("motion", None)}
        if has_app and cfg.appearance_dims:
            self.parts["appearance"] = ("appearance", cfg.appearance_dims)
        if "appearance_change" in channels and cfg.change_dims:
            self.parts["change"] = ("appearance_change", cfg.change_dims)
        if has_app and cfg.relative and cfg.scene_dims:
            self.parts["scene"] = ("appearance", cfg.scene_dims)
        if cfg.motion_context:
            self.parts["context"] = ("motion", None)
        self.memory_sources: tuple[str, ...] = ()
        if cfg.memory:
            self.parts["memory"] = ("motion", None)
            self.memory_sources = tuple(p for p in MEMORY_SOURCES if p in cfg.memory_parts and p in self.parts)
            if not self.memory_sources:
                raise ConfigError(f"model.memory_parts {list(cfg.memory_parts)}: none of them is in this encoding "
                                  f"(parts {list(self.parts)})")
            width = sum(self._width(p) for p in self.memory_sources)
            self.register_buffer("memory_centroids", torch.zeros(cfg.memory, width))
        for part, (group, dims) in self.parts.items():
            own = part in ("context", "memory")         # widths not of a feature group
            size = self._width(part) if own else self.channels[group][1] - self.channels[group][0]
            self.register_buffer(f"{part}_mean", torch.zeros(size))
            self.register_buffer(f"{part}_std", torch.ones(size))
            if dims is not None:
                self.register_buffer(f"{part}_pcs", torch.zeros(size, dims))
        self.register_buffer("prior_scale", torch.tensor([1.0, 0.0]))

    @property
    def out_dim(self) -> int:
        """``C``, the encoded width: the prior channel plus every part's width."""
        return 1 + sum(self._width(p) for p in self.parts)

    def _width(self, part: str) -> int:
        group, dims = self.parts[part]
        if part == "context":
            return CONTEXT_WIDTH
        if part == "memory":
            return 1
        return dims if dims is not None else self.channels[group][1] - self.channels[group][0]

    def part_offsets(self) -> dict[str, int]:
        """First encoded channel of each part (channel 0 is the prior)."""
        out, k = {}, 1
        for part in self.parts:
            out[part] = k
            k += self._width(part)
        return out

    def hflip_signs(self) -> torch.Tensor:
        """``(C,)`` signs that make a left-right flip of the grid consistent.

        Flipping the grid mirrors horizontal motion: every channel that holds a
        horizontal flow (``flow_u`` raw and residual, the cell's usual ``u``) changes
        sign; projections on the usual directions do not.
        """
        signs = torch.ones(self.out_dim)
        off = self.part_offsets()
        for part in ("motion", "residual"):
            signs[off[part] + _U] = -1.0
        if "context" in off:
            signs[off["context"]] = -1.0
        return signs

    def _slice(self, name: str) -> slice:
        a, b = self.channels[name]
        return slice(a, b)

    # -- the transform ----------------------------------------------------------------
    def _medians(self, x: np.ndarray) -> dict[str, np.ndarray]:
        mot = np.asarray(x[..., self._slice("motion")], dtype=np.float32)
        med = {"motion": np.median(mot, axis=0)}
        if "context" in self.parts:
            med["context_cell"], med["context_overall"] = motion_context(mot)
        for part in ("appearance", "change", "scene"):
            if part in self.parts and (self.cfg.relative or part == "scene"):
                group = self.parts[part][0]
                if group not in med:
                    med[group] = cell_median(x[..., self._slice(group)])
        return med

    def iter_parts(self, x: np.ndarray, chunk: int = 64):
        """Unstandardised parts of one video, ``chunk`` snippets at a time.

        Yields ``(t0, parts)``; each part ``(n, Gh, Gw, c)`` float32 except ``scene``,
        which is ``(Gh, Gw, c)`` (one static token per cell, the same for every chunk).
        Bounded memory for long videos: only ``chunk`` snippets are converted to
        float32 at once.
        """
        med = self._medians(x)
        for t0 in range(0, x.shape[0], chunk):
            xc = x[t0:t0 + chunk]
            mot = np.asarray(xc[..., self._slice("motion")], dtype=np.float32)
            parts = {"motion": mot, "residual": mot - med["motion"][None]}
            for part in ("appearance", "change"):
                if part not in self.parts:
                    continue
                group = self.parts[part][0]
                v = np.asarray(xc[..., self._slice(group)], dtype=np.float32)
                parts[part] = v - med[group][None] if self.cfg.relative else v
            if "scene" in self.parts:
                parts["scene"] = med["appearance"]
            if "context" in self.parts:
                parts["context"] = context_tokens(mot, med["context_cell"], med["context_overall"])
            yield t0, parts

    def _standardise(self, part: str, v: torch.Tensor) -> torch.Tensor:
        z = (v - getattr(self, f"{part}_mean")) / getattr(self, f"{part}_std")
        if self.parts[part][1] is not None:
            z = z @ getattr(self, f"{part}_pcs")
        return z

    @torch.no_grad()
    def encode(self, x: np.ndarray, chunk: int = 64) -> torch.Tensor:
        """Encode one video: ``(T, Gh, Gw, D)`` -> ``(T, Gh, Gw, C)`` float32 tensor."""
        t_len, gh, gw, _ = x.shape
        dev = self.prior_scale.device
        out = torch.empty((t_len, gh, gw, self.out_dim), dtype=torch.float32, device=dev)
        scene = None
        for t0, parts in self.iter_parts(x, chunk):
            n = parts["motion"].shape[0]
            pieces = []
            for part in self.parts:
                if part == "scene":
                    if scene is None:
                        scene = self._standardise(part, torch.from_numpy(np.ascontiguousarray(parts[part])).to(dev))
                    pieces.append(scene.expand(n, *scene.shape))
                elif part == "memory":
                    named = dict(zip(self.parts, pieces))
                    pieces.append(self.memory_part(torch.cat([named[p] for p in self.memory_sources], -1)))
                else:
                    pieces.append(self._standardise(part, torch.from_numpy(np.ascontiguousarray(parts[part])).to(dev)))
            prior = pieces[-1] if self.prior_index is None else pieces[1][..., self.prior_index:self.prior_index + 1]
            out[t0:t0 + n] = torch.cat([prior, *pieces], dim=-1)
        return out

    def memory_part(self, sources: torch.Tensor) -> torch.Tensor:
        """Standardised nearest-centroid distance ``(..., 1)`` of standardised source parts ``(..., c)``."""
        d = nearest_distance(sources.reshape(-1, sources.shape[-1]), self.memory_centroids)
        return ((d - self.memory_mean) / self.memory_std).reshape(*sources.shape[:-1], 1)

    def floor_scores(self, encoded: torch.Tensor) -> torch.Tensor:
        """The untrained floor as (0, 1) patch scores: ``sigmoid(a0 * (prior - b0))``.

        The motion floor, or the normal memory when ``prior_channel`` is ``memory``.
        """
        a0, b0 = float(self.prior_scale[0]), float(self.prior_scale[1])
        return torch.sigmoid(a0 * (encoded[..., 0] - b0))

    # -- fitting ----------------------------------------------------------------------
    @torch.no_grad()
    def fit(self, videos: Iterable[np.ndarray], seed: int = 0, max_videos_hint: int = 1) -> "FeatureEncoder":
        """Fit mean / std / PCA on the tokens of NORMAL training videos.

        Mean and std use every token; the PCA (and the prior scale) a random sample of
        about ``cfg.pca_samples`` tokens (``scene``: every cell of every video).

        Args:
            videos: the raw feature arrays of normal training videos (memory-mapped).
            seed: sampling seed for the PCA tokens.
            max_videos_hint: number of videos (sets the tokens sampled per video).
        """
        rng = np.random.default_rng(seed)
        per_video = max(16, self.cfg.pca_samples // max(1, max_videos_hint))
        sums: dict[str, list] = {}
        samples: dict[str, list] = {}
        n_videos = 0

        def add(part: str, flat: torch.Tensor, pick: torch.Tensor | None) -> None:
            s = sums.setdefault(part, [0.0, 0.0, 0])
            s[0] = s[0] + flat.sum(0).double()
            s[1] = s[1] + (flat * flat).sum(0).double()
            s[2] += flat.shape[0]
            samples.setdefault(part, []).append(flat.clone() if pick is None else flat[pick].clone())

        for x in videos:
            n_videos += 1
            n_tok = int(np.prod(x.shape[:3]))
            pick = np.sort(rng.choice(n_tok, size=min(per_video, n_tok), replace=False))
            for t0, parts in self.iter_parts(x):
                n_chunk = int(np.prod(parts["motion"].shape[:3]))
                lo = t0 * x.shape[1] * x.shape[2]
                local = torch.from_numpy(pick[(pick >= lo) & (pick < lo + n_chunk)] - lo)
                for part, v in parts.items():
                    if part == "scene":
                        if t0 == 0:
                            add(part, torch.from_numpy(v.reshape(-1, v.shape[-1])), None)
                    else:
                        add(part, torch.from_numpy(v.reshape(n_chunk, -1)), local)
        if n_videos == 0:
            raise ConfigError("no normal training videos to fit the feature normaliser on")
        for part, (s1, s2, n) in sums.items():
            mean = s1 / n
            std = (s2 / n - mean ** 2).clamp_min(0.0).sqrt()
            std = torch.where(std < _MIN_STD, torch.ones_like(std), std)
            getattr(self, f"{part}_mean").copy_(mean.float())
            getattr(self, f"{part}_std").copy_(std.float())
            dims = self.parts[part][1]
            if dims is None:
                continue
            z = (torch.cat(samples[part]) - mean.float()) / std.float()
            dims_eff = min(dims, z.shape[1], z.shape[0])
            zc = (z - z.mean(0)).double()
            evals, evecs = torch.linalg.eigh(zc.T @ zc / max(1, z.shape[0] - 1))
            order = torch.argsort(evals, descending=True)[:dims_eff]
            pcs = torch.zeros(z.shape[1], dims)
            pcs[:, :dims_eff] = evecs[:, order].float()
            # Scale each component to unit variance on the normal tokens.
            proj_std = (z @ pcs).std(0).clamp_min(_MIN_STD)
            getattr(self, f"{part}_pcs").copy_(pcs / proj_std)
        if "memory" in self.parts:
            self._fit_memory(samples, seed)
        # Prior scale: normal tokens' 99th percentile maps to 0.5, the 99.9th to ~0.88.
        if self.prior_index is None:
            z = self.memory_part(self._memory_sources(samples))[..., 0]
        else:
            res = torch.cat(samples["residual"])[:, self.prior_index]
            z = (res - self.residual_mean[self.prior_index]) / self.residual_std[self.prior_index]
        q99, q999 = torch.quantile(z.double(), torch.tensor([0.99, 0.999], dtype=torch.float64)).tolist()
        a0 = 2.0 / max(q999 - q99, 1e-3)
        self.prior_scale.copy_(torch.tensor([a0, q99], dtype=torch.float32))
        return self

    def _memory_sources(self, samples: dict[str, list]) -> torch.Tensor:
        """The sampled tokens' standardised memory sources ``(n, c)`` (every source part is sampled alike)."""
        return torch.cat([self._standardise(p, torch.cat(samples[p])) for p in self.memory_sources], -1)

    def _fit_memory(self, samples: dict[str, list], seed: int) -> None:
        """Centroids of the sampled normal tokens; the distances' mean / std standardise the part.

        The centroids are fitted on the same normal tokens whose distances they then
        measure; with a few hundred centroids over tens of thousands of tokens from
        many videos, each centroid averages many videos, so one video's own tokens pull
        its distances down only a little (docs/model.md, "A normal memory").
        """
        z = self._memory_sources(samples)
        self.memory_centroids.copy_(kmeans(z, self.cfg.memory, seed))
        d = nearest_distance(z, self.memory_centroids)
        self.memory_mean.copy_(d.mean().reshape(1))
        self.memory_std.copy_(d.std().clamp_min(_MIN_STD).reshape(1))


__all__ = ["MEMORY_SOURCES", "FeatureEncoder", "cell_median", "kmeans", "nearest_distance"]
