"""Training data: the train / validation split, balanced batches, padding, pooling, encoded videos.

Every video is encoded once (memory-mapped features read one video at a time) and
mean-pooled to at most ``max_snippets`` snippets; :class:`EncodedVideos` keeps them in
memory or in one cache file read per batch. :class:`BalancedSampler` draws half normal,
half anomalous batches; :func:`pad_batch` pads them to one length with a mask.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from patchvad import distributed
from patchvad.data.folder import VideoEntry
from patchvad.errors import ConfigError, FeatureError
from patchvad.features.store import FeatureStore
from patchvad.model.encoding_cache import EncodingCache
from patchvad.model.model import AnomalyModel

#: mixed with ``split_seed`` so that the subset's permutation is not the validation split's.
SUBSET_STREAM = 0x5EB5E7


def subset_train(entries: list[VideoEntry], n: int, seed: int) -> list[VideoEntry]:
    """A nested, label-stratified subset of ``n`` TRAINING videos (``train.train_videos``).

    Each label's videos are permuted once with a generator seeded by ``(SUBSET_STREAM,
    seed)`` (``seed`` is ``train.split_seed``, fixed across training seeds); the subset
    takes the first ``n0 = round(n * N0 / N)`` normal and the first ``n - n0``
    anomalous videos of those permutations (``N0`` of ``N`` videos normal). Both counts
    never decrease as ``n`` grows, so the subset of ``n`` lies inside the subset of any
    larger size: a learning curve adds videos and never swaps them.

    Args:
        entries: the dataset's training videos, in dataset order.
        n: videos to keep; 0 keeps every one.
        seed: the subset's seed (``train.split_seed``).

    Returns:
        The kept videos in dataset order.

    Raises:
        ConfigError: ``n`` is negative or larger than ``len(entries)``.
    """
    if n == 0:
        return list(entries)
    if n < 0 or n > len(entries):
        raise ConfigError(f"train.train_videos = {n} but the dataset holds {len(entries)} training videos: "
                          f"set train.train_videos between 1 and {len(entries)} (0 trains on all of them)")
    rng = np.random.default_rng([SUBSET_STREAM, int(seed)])
    groups = [[e for e in entries if e.label == label] for label in (0, 1)]
    n0 = int(round(n * len(groups[0]) / len(entries)))
    keep: set[str] = set()
    for group, count in zip(groups, (n0, n - n0)):
        order = rng.permutation(len(group))
        keep.update(group[i].stem for i in order[:count])
    return [e for e in entries if e.stem in keep]


def split_train_val(entries: list[VideoEntry], fraction: float, seed: int) -> tuple[list[VideoEntry], list[VideoEntry]]:
    """Stratified split of TRAINING videos: ``fraction`` of each label held out."""
    rng = np.random.default_rng(seed)
    train: list[VideoEntry] = []
    val: list[VideoEntry] = []
    for label in (0, 1):
        group = [e for e in entries if e.label == label]
        order = rng.permutation(len(group))
        n_val = int(round(fraction * len(group)))
        if fraction > 0 and len(group) >= 2:
            n_val = min(max(n_val, 1), len(group) - 1)
        else:
            n_val = 0
        held = set(order[:n_val].tolist())
        for i, e in enumerate(group):
            (val if i in held else train).append(e)
    key = {e.stem: i for i, e in enumerate(entries)}
    return sorted(train, key=lambda e: key[e.stem]), sorted(val, key=lambda e: key[e.stem])


def check_features(store: FeatureStore, entries: list[VideoEntry]) -> None:
    """Raise a FeatureError naming the store when a training video has no features."""
    have = set(store.finished())
    missing = [e.stem for e in entries if e.stem not in have]
    if missing:
        raise FeatureError(f"{len(missing)} training video(s) have no features (first: {missing[:3]}); run "
                           f"`patchvad extract` on this dataset first", path=store.path)


def segment_edges(t: int, max_snippets: int) -> np.ndarray:
    """``(max_snippets + 1,)`` boundaries ``round(linspace(0, t, max_snippets + 1))`` of the pooled segments."""
    return np.round(np.linspace(0, t, max_snippets + 1)).astype(np.int64)


def stretch_index(t: int, max_snippets: int) -> torch.Tensor:
    """``(max_snippets,)`` snippet index of each slot when a ``t``-snippet video is stretched (repeats)."""
    return torch.as_tensor(np.floor(np.linspace(0, t, max_snippets, endpoint=False)).astype(np.int64))


def pool_snippets(x: torch.Tensor, max_snippets: int, upsample_short: bool = False) -> torch.Tensor:
    """Resample a ``(T, ...)`` sequence to ``max_snippets`` along time.

    Longer sequences: mean of ``max_snippets`` contiguous segments (boundaries
    ``round(linspace(0, T, max_snippets + 1))``). Shorter ones: unchanged, or stretched
    by repeating snippets when ``upsample_short``.
    """
    t = x.shape[0]
    if t > max_snippets:
        edges = segment_edges(t, max_snippets)
        csum = torch.cat([torch.zeros_like(x[:1], dtype=torch.float32), torch.cumsum(x.float(), 0)])
        lo, hi = torch.as_tensor(edges[:-1]), torch.as_tensor(edges[1:])
        return ((csum[hi] - csum[lo]) / (hi - lo).view(-1, *([1] * (x.ndim - 1))).float()).to(x.dtype)
    if t < max_snippets and upsample_short:
        return x[stretch_index(t, max_snippets)]
    return x


def pooled_length(t: int, max_snippets: int, upsample_short: bool) -> int:
    """Snippets after :func:`pool_snippets` of a ``t``-snippet video."""
    return max_snippets if t > max_snippets or (t < max_snippets and upsample_short) else t


class BalancedSampler:
    """Balanced batches: per class, a shuffled queue refilled when exhausted.

    Args:
        labels: ``(N,)`` 0/1 label of each video.
        half: videos of each class per batch.
        gen: draws the shuffles (two at construction, one per exhausted queue).

    Attributes:
        perm, pos: each class's current queue and the position in it (the resume
            state saves and restores both).
    """

    def __init__(self, labels: np.ndarray, half: int, gen: torch.Generator):
        self.groups = [np.flatnonzero(labels == c) for c in (0, 1)]
        self.half = half
        self.gen = gen
        self.perm = [self._shuffle(c) for c in (0, 1)]
        self.pos = [0, 0]

    def _shuffle(self, c: int) -> np.ndarray:
        return self.groups[c][torch.randperm(len(self.groups[c]), generator=self.gen).numpy()]

    def next(self) -> np.ndarray:
        """The next batch ``(2 * half,)``: ``half`` normal, then ``half`` anomalous video indices."""
        out = []
        for c in (0, 1):
            for _ in range(self.half):
                if self.pos[c] >= len(self.perm[c]):
                    self.perm[c] = self._shuffle(c)
                    self.pos[c] = 0
                out.append(int(self.perm[c][self.pos[c]]))
                self.pos[c] += 1
        return np.asarray(out)

    def next_share(self, rank: int, world_size: int) -> tuple[np.ndarray, np.ndarray]:
        """The next global batch and this rank's disjoint, balanced share of it.

        Every rank holds an identical sampler (same generator state), so every rank
        draws the same global batch ``idx`` (``half`` normal, then ``half`` anomalous
        videos); rank ``r`` takes positions ``r, r + world_size, ...`` of each half.

        Returns:
            ``(idx, rows)``: the global batch and the positions in it of this rank's share.
        """
        if self.half % world_size:
            raise ConfigError(f"a balanced batch of {self.half} + {self.half} videos cannot be split evenly "
                              f"between {world_size} processes")
        idx = self.next()
        rows = np.concatenate([np.arange(rank, self.half, world_size),
                               self.half + np.arange(rank, self.half, world_size)])
        return idx, rows


def pad_batch(videos: list[torch.Tensor], device: torch.device, tmax: int | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Pad videos ``(T_i, Gh, Gw, C)`` to one length.

    Args:
        videos: the batch's encoded videos (any float dtype).
        device: where the batch goes.
        tmax: padded length (default: the longest video).

    Returns:
        ``x (B, tmax, Gh, Gw, C)`` float32 (zeros after each video's end), ``mask
        (B, tmax)`` bool (True on real snippets) and the lengths ``T_i``.
    """
    lengths = [int(v.shape[0]) for v in videos]
    tmax = max(lengths) if tmax is None else int(tmax)
    x = torch.zeros((len(videos), tmax, *videos[0].shape[1:]), dtype=torch.float32)
    for i, v in enumerate(videos):
        x[i, :lengths[i]] = v.float()
    mask = torch.arange(tmax).view(1, -1) < torch.as_tensor(lengths).view(-1, 1)
    return x.to(device), mask.to(device), lengths


def pad_targets(targets: list[torch.Tensor], tmax: int, device: torch.device) -> torch.Tensor:
    """Cell targets ``(T_i, Gh, Gw)`` padded with zeros to ``(B, tmax, Gh, Gw)`` float32, like :func:`pad_batch`."""
    out = torch.zeros((len(targets), int(tmax), *targets[0].shape[1:]), dtype=torch.float32)
    for i, y in enumerate(targets):
        out[i, :y.shape[0]] = y.float()
    return out.to(device)


class EncodedVideos:
    """Encoded, pooled training / validation videos: ``videos[i]`` -> ``(T_i, Gh, Gw, C)`` float16.

    ``memory``: a list of tensors. ``disk``: one cache file, each video read back with a
    plain positioned read (``np.fromfile``) when a batch needs it, so neither the cache
    nor the features it came from count towards the process's resident memory (the
    OS page cache still keeps hot videos fast). The file is removed by :meth:`close`.
    """

    def __init__(self, path: Path | None = None):
        self.path = path
        self._mem: list[torch.Tensor] = []
        self._index: list[tuple[int, tuple[int, ...]]] = []
        self._fh = open(path, "wb") if path is not None else None
        self._offset = 0
        self.nbytes = 0

    def append(self, x: torch.Tensor) -> None:
        """Add the next video ``(T, Gh, Gw, C)`` (stored as float16)."""
        x = x.to(torch.float16).contiguous()
        self.nbytes += x.numel() * 2
        if self._fh is None:
            self._mem.append(x)
            return
        data = x.numpy().tobytes()
        self._fh.write(data)
        self._index.append((self._offset, tuple(x.shape)))
        self._offset += len(data)

    def finish(self) -> "EncodedVideos":
        """Close the cache file for writing; returns self."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        return self

    def __len__(self) -> int:
        return len(self._mem) if self.path is None else len(self._index)

    def length(self, i: int) -> int:
        """Snippets of video ``i`` (without reading it)."""
        return int(self._mem[i].shape[0]) if self.path is None else int(self._index[i][1][0])

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.path is None:
            return self._mem[i]
        offset, shape = self._index[i]
        arr = np.fromfile(self.path, dtype=np.float16, count=int(np.prod(shape)), offset=offset)
        return torch.from_numpy(arr.reshape(shape))

    def close(self) -> None:
        """Release the videos (and remove the cache file)."""
        self.finish()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class ShardedVideos:
    """The videos of a list of which this rank holds only some (distributed validation).

    ``len`` is the length of the whole list; ``videos[i]`` works for held indices only.
    """

    def __init__(self, total: int, held: list[int], videos: EncodedVideos):
        self.total = total
        self.slot = {g: k for k, g in enumerate(held)}
        self.videos = videos

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.videos[self.slot[i]]

    def close(self) -> None:
        """Release the held videos."""
        self.videos.close()


def encoded_size(store: FeatureStore, entries: list, channels: int, max_snippets: int) -> int:
    """Bytes the encoded, pooled float16 videos will take (from the stored shapes)."""
    total = 0
    for e in entries:
        t, gh, gw, _ = store.record(e.stem)["shape"]
        total += min(int(t), max_snippets) * gh * gw * channels * 2
    return total


def encode_videos(model: AnomalyModel, store: FeatureStore, entries: list, max_snippets: int,
                  upsample_short: bool, log: Callable[[str], None] | None = None,
                  cache_file: Path | None = None, ctx: distributed.Context = distributed.SINGLE,
                  shared: EncodingCache | None = None) -> EncodedVideos:
    """Encode each video once (memory-mapped read) and pool to ``max_snippets``.

    Returns an :class:`EncodedVideos` in memory, or backed by ``cache_file``.
    ``shared``: an encoding cache the encoded videos are read from or added to.
    Distributed (``ctx``): every rank gets every video; in each round of
    ``world_size`` videos each rank encodes one and broadcasts it to the others.
    """
    if ctx.distributed:
        return _encode_shared(model, store, entries, max_snippets, upsample_short, log, cache_file, ctx)
    out = EncodedVideos(cache_file)
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        digest = None if shared is None else stack.enter_context(shared.encoding(model.encoder))
        try:
            for i, e in enumerate(entries):
                feats = store.load(e.stem, mmap=True)
                enc = (model.encoder.encode(feats.x) if shared is None
                       else shared.encode(model.encoder, feats, digest))
                out.append(pool_snippets(enc.cpu(), max_snippets, upsample_short))
                del feats, enc
                if log and (i + 1) % 200 == 0:
                    log(f"encoded {i + 1}/{len(entries)} videos ({time.perf_counter() - t0:.1f}s)")
        except BaseException:
            out.close()
            raise
    return out.finish()


def _encode_shared(model: AnomalyModel, store: FeatureStore, entries: list, max_snippets: int,
                   upsample_short: bool, log: Callable[[str], None] | None, cache_file: Path | None,
                   ctx: distributed.Context) -> EncodedVideos:
    out = EncodedVideos(cache_file)
    gh, gw = store.spec.grid
    width = model.encoder.out_dim
    t0 = time.perf_counter()
    try:
        for start in range(0, len(entries), ctx.world_size):
            mine = start + ctx.rank
            own = None
            if mine < len(entries):
                feats = store.load(entries[mine].stem, mmap=True)
                enc = model.encoder.encode(feats.x)
                own = pool_snippets(enc.cpu(), max_snippets, upsample_short).to(torch.float16).contiguous()
                del feats, enc
            for j in range(start, min(len(entries), start + ctx.world_size)):
                if j == mine:
                    assert own is not None      # encoded above: mine < len(entries) here
                    x = own
                else:
                    t = pooled_length(int(store.record(entries[j].stem)["shape"][0]), max_snippets, upsample_short)
                    x = torch.empty((t, gh, gw, width), dtype=torch.float16)
                out.append(ctx.broadcast_(x, src=j - start))
            if log and (start // ctx.world_size + 1) % 100 == 0:
                log(f"encoded {min(len(entries), start + ctx.world_size)}/{len(entries)} videos "
                    f"({time.perf_counter() - t0:.1f}s, {ctx.world_size} processes)")
    except BaseException:
        out.close()
        raise
    return out.finish()


__all__ = ["BalancedSampler", "EncodedVideos", "ShardedVideos", "check_features", "encode_videos", "encoded_size",
           "pad_batch", "pool_snippets", "pooled_length", "split_train_val", "subset_train"]
