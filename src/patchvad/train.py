"""Training: ``fit(data_root, features, out, method, seed, config)`` -> RUN folder.

    RUN/model.safetensors        the selected checkpoint (model/model.py)
    RUN/config.yaml              the run's full configuration (method, model, loss, train)
    RUN/train_state.safetensors  last weights + AdamW state + step + sampler/RNG (resume)
    RUN/train_log.jsonl          one JSON line per logged step / validation (loss curves)
    RUN/split.json               which training videos were held out for validation

Data flow: the training videos of ``DatasetFolder(data_root).train_set()`` only
(video-level labels; no frame labels or boxes are reachable) -> a stratified
validation split of those TRAINING videos -> the feature encoder fitted on the NORMAL
videos of the training part -> every video encoded once (memory-mapped features are
read one video at a time) and mean-pooled to at most ``max_snippets`` snippets ->
balanced batches (half normal, half anomalous) -> AdamW. Every ``eval_every`` steps the
validation videos are scored (video-level ROC-AUC of bag scores; the training videos
have no frame labels) and the best checkpoint is kept. Everything is written atomically.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the scorer is wrapped in DistributedDataParallel
(gloo on CPU, nccl on CUDA). Every rank draws the same global balanced batch from the
same sampler and trains on its own disjoint share (``batch_size / 2 / world_size``
normal and as many anomalous videos), so the effective batch, the augmentation draws,
the dropout masks and the averaged gradient are those of the single-process run (up to
float summation order). The normaliser is fitted on rank 0; encoding is sharded
(each rank encodes every ``world_size``-th training video and the ranks exchange them),
validation batches are shared out between ranks and their bag scores merged exactly,
so every rank takes the same checkpoint decision; only rank 0 writes files.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from patchvad import distributed
from patchvad.config import RunConfig
from patchvad.data.folder import DatasetFolder, TrainSet, VideoEntry
from patchvad.errors import CheckpointError, ConfigError, FeatureError
from patchvad.features.store import FeatureStore
from patchvad.io.files import atomic_path, atomic_write_text
from patchvad.model.methods import get_method
from patchvad.model.model import AnomalyModel

MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.safetensors"
CONFIG_FILE = "config.yaml"
LOG_FILE = "train_log.jsonl"
CHECKPOINT_DIR = "checkpoints"
VAL_BATCH = 16


@dataclass
class FitResult:
    """Outcome of :func:`fit`.

    Attributes:
        run_dir: the RUN folder; checkpoint: ``RUN/model.safetensors``.
        method, seed: what was trained.
        best_step: step of the selected checkpoint (0 for untrained methods).
        val_auc: validation video AUC of the selected checkpoint (None without validation).
        steps: steps run in total; seconds: wall time of this call.
        threshold: bag-score threshold chosen on the validation videos (Youden J).
        history: validation records ``{"step", "val_auc", "val_loss"}``.
        world_size: processes that trained (1 without torchrun).
        batch_size: effective videos per optimisation step, all processes together.
        timings: seconds spent (on rank 0) in ``normaliser`` (fitting the encoder),
            ``encode`` (encoding and pooling every video), ``steps`` (the optimisation
            steps alone) and ``validation``.
    """

    run_dir: Path
    checkpoint: Path
    method: str
    seed: int
    best_step: int
    val_auc: float | None
    steps: int
    seconds: float
    threshold: float
    history: list[dict] = field(default_factory=list)
    world_size: int = 1
    batch_size: int = 0
    timings: dict = field(default_factory=dict)


# --- data ------------------------------------------------------------------------------


def split_train_val(entries: list[VideoEntry], fraction: float, seed: int) -> tuple[list[VideoEntry], list[VideoEntry]]:
    """Stratified split of TRAINING videos: ``fraction`` of each label held out."""
    rng = np.random.default_rng(seed)
    train, val = [], []
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


def pool_snippets(x: torch.Tensor, max_snippets: int, upsample_short: bool = False) -> torch.Tensor:
    """Resample a ``(T, ...)`` sequence to ``max_snippets`` along time.

    Longer sequences: mean of ``max_snippets`` contiguous segments (boundaries
    ``round(linspace(0, T, max_snippets + 1))``). Shorter ones: unchanged, or stretched
    by repeating snippets when ``upsample_short``.
    """
    t = x.shape[0]
    if t > max_snippets:
        edges = np.round(np.linspace(0, t, max_snippets + 1)).astype(np.int64)
        csum = torch.cat([torch.zeros_like(x[:1], dtype=torch.float32), torch.cumsum(x.float(), 0)])
        lo, hi = torch.as_tensor(edges[:-1]), torch.as_tensor(edges[1:])
        return ((csum[hi] - csum[lo]) / (hi - lo).view(-1, *([1] * (x.ndim - 1))).float()).to(x.dtype)
    if t < max_snippets and upsample_short:
        idx = torch.as_tensor(np.floor(np.linspace(0, t, max_snippets, endpoint=False)).astype(np.int64))
        return x[idx]
    return x


def _check_store(store: FeatureStore, entries: list[VideoEntry]) -> None:
    have = set(store.finished())
    missing = [e.stem for e in entries if e.stem not in have]
    if missing:
        raise FeatureError(f"{len(missing)} training video(s) have no features (first: {missing[:3]}); run "
                           f"`patchvad extract` on this dataset first", path=store.path)


class _Sampler:
    """Balanced batches: per class, a shuffled queue refilled when exhausted."""

    def __init__(self, labels: np.ndarray, half: int, gen: torch.Generator):
        self.groups = [np.flatnonzero(labels == c) for c in (0, 1)]
        self.half = half
        self.gen = gen
        self.perm = [self._shuffle(c) for c in (0, 1)]
        self.pos = [0, 0]

    def _shuffle(self, c: int) -> np.ndarray:
        return self.groups[c][torch.randperm(len(self.groups[c]), generator=self.gen).numpy()]

    def next(self) -> np.ndarray:
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


def _pad_batch(videos: list[torch.Tensor], device: torch.device, tmax: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    lengths = [int(v.shape[0]) for v in videos]
    tmax = max(lengths) if tmax is None else int(tmax)
    x = torch.zeros((len(videos), tmax, *videos[0].shape[1:]), dtype=torch.float32)
    for i, v in enumerate(videos):
        x[i, :lengths[i]] = v.float()
    mask = torch.arange(tmax).view(1, -1) < torch.as_tensor(lengths).view(-1, 1)
    return x.to(device), mask.to(device), lengths


def augment(x: torch.Tensor, mask: torch.Tensor, hflip: float, noise: float, signs: torch.Tensor,
            gen: torch.Generator, rows: np.ndarray | None = None, batch: int | None = None) -> torch.Tensor:
    """Training augmentation of a padded batch ``(B, T, Gh, Gw, C)``.

    ``hflip``: each video mirrored left-right with that probability (grid axis and the
    horizontal-flow channels, ``signs``). ``noise``: Gaussian noise on every channel
    but the prior (channel 0), on real snippets only. Draws from ``gen`` only when
    enabled, so with both off the generator's stream (and every draw after) is untouched.

    ``rows``, ``batch`` (distributed training): ``x`` holds rows ``rows`` of a global
    batch of ``batch`` videos padded to the same length; the draws are made for the
    whole global batch (as in one process) and this share's rows are applied, so
    every rank's generator stays in step and each video gets the augmentation it would
    get in a single-process run.
    """
    full = x.shape[0] if rows is None else int(batch)
    pick = None if rows is None else torch.as_tensor(rows, dtype=torch.long)
    if hflip > 0:
        flip = torch.rand(full, generator=gen) < hflip
        flip = (flip if pick is None else flip[pick]).to(x.device)
        if bool(flip.any()):
            x = torch.where(flip.view(-1, 1, 1, 1, 1), x.flip(3) * signs, x)
    if noise > 0:
        eps = torch.randn((full, *x.shape[1:]), generator=gen)
        eps = (eps if pick is None else eps[pick]).to(x.device) * noise
        eps[..., 0] = 0.0
        x = x + eps * mask.to(x.dtype).view(*mask.shape, 1, 1, 1)
    return x


class BatchShare:
    """Dropout of a rank's share as it would be in the whole global batch.

    :meth:`install` swaps every ``nn.Dropout`` of a module for one that draws the mask
    of the WHOLE global batch from the default generator (exactly the draws
    ``nn.Dropout`` makes on the full batch in one process) and applies this rank's rows
    of it. Every rank holds the same generator state, so the ranks' masks are disjoint
    parts of one global mask and each video gets the mask it gets in a single-process
    run. Needs the batch dimension outermost in memory (true of every scorer here);
    anything else falls back to plain dropout of the share.
    """

    def __init__(self) -> None:
        self.rows: torch.Tensor | None = None
        self.batch = 0

    def set(self, rows: np.ndarray, batch: int) -> None:
        self.rows = torch.as_tensor(rows, dtype=torch.long)
        self.batch = int(batch)

    def install(self, module: torch.nn.Module) -> Callable[[], None]:
        """Swap the dropout layers of ``module``; returns the function that swaps them back."""
        swapped = []
        for parent in list(module.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is torch.nn.Dropout:
                    setattr(parent, name, _SharedDropout(child.p, self))
                    swapped.append((parent, name, child))

        def restore() -> None:
            for parent, name, child in swapped:
                setattr(parent, name, child)
        return restore


class _SharedDropout(torch.nn.Module):
    def __init__(self, p: float, share: BatchShare):
        super().__init__()
        self.p = float(p)
        self.share = share

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.share.rows
        if not self.training or self.p == 0.0:
            return x
        order = sorted(range(x.dim()), key=lambda i: -x.stride(i))   # memory order, as empty_like lays it out
        xm = x.permute(order)
        if rows is None or order[0] != 0 or not xm.is_contiguous() or x.shape[0] % len(rows):
            return torch.nn.functional.dropout(x, self.p, True)
        per = xm.numel() // len(rows)
        noise = torch.empty(self.share.batch * per, dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p)
        noise = noise.view(self.share.batch, per)[rows.to(x.device)].view(xm.shape)
        noise.div_(1.0 - self.p)
        return (xm * noise).permute(np.argsort(order).tolist())


# --- objective ----------------------------------------------------------------------------


def batch_loss(model: AnomalyModel, x: torch.Tensor, mask: torch.Tensor, lengths: list[int], labels: list[int],
               net: torch.nn.Module | None = None) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """Loss of one padded batch for the model's method -> ``(loss, terms, bag scores (B,))``.

    ``net``: the module to call instead of ``model.net`` (its DistributedDataParallel
    wrapper during distributed training).
    """
    return model.impl.loss(model, x, mask, lengths, labels, net)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC-AUC with ties counted half (None when one class is absent)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def youden_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Threshold maximising TPR - FPR (midpoint between neighbouring scores)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if labels.all() or (~labels).all():
        return float(np.median(scores)) if len(scores) else 0.5
    cand = np.unique(scores)
    mids = np.concatenate([[cand[0] - 1e-6], 0.5 * (cand[1:] + cand[:-1]), [cand[-1] + 1e-6]])
    best, best_j = 0.5, -np.inf
    for thr in mids:
        pred = scores >= thr
        j = pred[labels].mean() - pred[~labels].mean()
        if j > best_j:
            best, best_j = float(thr), j
    return best


def val_batch_owner(batch_index: int, ctx: distributed.Context) -> int:
    """Rank that scores validation batch ``batch_index`` (round robin)."""
    return batch_index % ctx.world_size


@torch.no_grad()
def evaluate_bags(model: AnomalyModel, videos, labels: list[int],
                  device: torch.device, batch_size: int = VAL_BATCH,
                  ctx: distributed.Context = distributed.SINGLE) -> dict:
    """Bag scores, video AUC and mean loss over videos.

    Distributed (``ctx``): the batches are shared out round robin between the ranks
    (``videos`` needs to hold only this rank's), each rank scores its batches exactly
    as one process would, and the bag scores and batch losses are merged exactly, so
    every rank returns the same numbers, equal to a single process's on the same weights.
    """
    model.eval()
    n = len(videos)
    starts = list(range(0, n, batch_size))
    bags = torch.zeros(n, dtype=torch.float32)
    losses = torch.zeros(len(starts), dtype=torch.float64)
    for k, i in enumerate(starts):
        if val_batch_owner(k, ctx) != ctx.rank:
            continue
        x, mask, lengths = _pad_batch([videos[j] for j in range(i, min(n, i + batch_size))], device)
        loss, _, b = batch_loss(model, x, mask, lengths, labels[i:i + batch_size])
        bags[i:i + len(lengths)] = b.cpu()
        losses[k] = float(loss) * len(lengths)
    model.train()
    if ctx.distributed:
        bags = ctx.merge_owned(bags).to(torch.float32)      # float32 values round-trip exactly
        losses = ctx.merge_owned(losses)
    scores = bags.numpy()
    return {"bags": scores, "val_auc": roc_auc(scores, np.asarray(labels)),
            "val_loss": float(sum(losses.tolist()) / max(1, n))}


# --- resume state ----------------------------------------------------------------------------


def _log_step(line: str) -> int:
    """Step of a train_log.jsonl line (0 for records without one, e.g. setup)."""
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, TypeError, AttributeError):
        return 0


def _save_state(path: Path, model: AnomalyModel, opt: torch.optim.Optimizer, gen: torch.Generator,
                sampler: _Sampler, info: dict) -> None:
    tensors = {f"model.{k}": v for k, v in model.tensors().items()}
    sd = opt.state_dict()
    for idx, st in sd["state"].items():
        for key, val in st.items():
            tensors[f"opt.{idx}.{key}"] = torch.as_tensor(val).detach().cpu().contiguous()
    tensors["rng.torch"] = gen.get_state().clone()
    tensors["rng.global"] = torch.get_rng_state().clone()          # dropout (the same on every rank)
    for c in (0, 1):
        tensors[f"sampler.perm{c}"] = torch.as_tensor(sampler.perm[c], dtype=torch.int64).contiguous()
    meta = {"format": "patchvad-train-state/1", "param_groups": json.dumps(sd["param_groups"]),
            "sampler_pos": json.dumps(sampler.pos), "info": json.dumps(info)}
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for I/O failures
        raise CheckpointError(f"cannot write the training state ({exc})", path=path) from exc


def _load_state(path: Path, model: AnomalyModel, opt: torch.optim.Optimizer, gen: torch.Generator,
                sampler: _Sampler) -> dict:
    from safetensors.torch import load_file
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"cannot read the training state ({exc})", path=path) from None
    if meta.get("format") != "patchvad-train-state/1":
        raise CheckpointError("not a patchvad training state", path=path)
    model.load_tensors({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, source=path)
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    gen.set_state(tensors["rng.torch"])
    if "rng.global" in tensors:
        torch.set_rng_state(tensors["rng.global"])
    sampler.perm = [tensors[f"sampler.perm{c}"].numpy() for c in (0, 1)]
    sampler.pos = json.loads(meta["sampler_pos"])
    return json.loads(meta["info"])


# --- fit ----------------------------------------------------------------------------------------


def _default_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _resolve_config(method: str, config: RunConfig | str | Path | None) -> RunConfig:
    if config is None:
        base = RunConfig()
    elif isinstance(config, RunConfig):
        base = config
    else:
        base = RunConfig.load(config)
    return RunConfig.for_method(method, base)


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
        self.videos.close()


def pooled_length(t: int, max_snippets: int, upsample_short: bool) -> int:
    """Snippets after :func:`pool_snippets` of a ``t``-snippet video."""
    return max_snippets if t > max_snippets or (t < max_snippets and upsample_short) else t


def encoded_size(store: FeatureStore, entries: list, channels: int, max_snippets: int) -> int:
    """Bytes the encoded, pooled float16 videos will take (from the stored shapes)."""
    total = 0
    for e in entries:
        t, gh, gw, _ = store.record(e.stem)["shape"]
        total += min(int(t), max_snippets) * gh * gw * channels * 2
    return total


def encode_videos(model: AnomalyModel, store: FeatureStore, entries: list, max_snippets: int,
                  upsample_short: bool, log: Callable[[str], None] | None = None,
                  cache_file: Path | None = None, ctx: distributed.Context = distributed.SINGLE) -> EncodedVideos:
    """Encode each video once (memory-mapped read) and pool to ``max_snippets``.

    Returns an :class:`EncodedVideos` in memory, or backed by ``cache_file``.
    Distributed (``ctx``): every rank gets every video; in each round of
    ``world_size`` videos each rank encodes one and broadcasts it to the others.
    """
    if ctx.distributed:
        return _encode_shared(model, store, entries, max_snippets, upsample_short, log, cache_file, ctx)
    out = EncodedVideos(cache_file)
    t0 = time.perf_counter()
    try:
        for i, e in enumerate(entries):
            feats = store.load(e.stem, mmap=True)
            enc = model.encoder.encode(feats.x)
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


def fit(data_root: str | Path, features: str | Path, out: str | Path, method: str = "proximity", seed: int = 0,
        config: RunConfig | str | Path | None = None, resume: bool = False,
        log: Callable[[str], None] | None = _default_log) -> FitResult:
    """Train ``method`` on the training videos of ``data_root`` and write ``out``.

    Args:
        data_root: generic dataset folder (only ``train_set()`` is used).
        features: feature store of that dataset.
        out: RUN folder (created).
        method: proximity, plain_topk, video_mil, sultani (trained) or motion_floor,
            random (no training: the checkpoint holds the normaliser only).
        seed: seeds model init, batch sampling and dropout.
        config: a RunConfig, a YAML path, or None for the defaults.
        resume: continue from ``RUN/train_state.safetensors`` (the config must match).
        log: progress sink (None: silent).

    Returns:
        :class:`FitResult`.
    """
    start_time = time.perf_counter()
    log = log or (lambda _msg: None)
    cfg = _resolve_config(method, config)
    tc = cfg.train
    device = torch.device("cuda" if tc.device == "cuda" or (tc.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    with distributed.session(device) as ctx:
        if ctx.distributed:
            if device.type == "cuda":
                device = torch.device("cuda", ctx.local_rank)
            if not ctx.is_main:
                log = lambda _msg: None  # noqa: E731 - rank 0 reports
        return _fit(data_root, features, Path(out), cfg, seed, resume, log, start_time, device, ctx)


def _fit(data_root: str | Path, features: str | Path, run: Path, cfg: RunConfig, seed: int, resume: bool,
         log: Callable[[str], None], start_time: float, device: torch.device,
         ctx: distributed.Context) -> FitResult:
    tc = cfg.train
    run.mkdir(parents=True, exist_ok=True)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    elif ctx.distributed and device.type == "cpu":
        torch.set_num_threads(distributed.threads_per_process())
    torch.manual_seed(seed)
    np.random.seed(seed)
    if (ctx.distributed and get_method(cfg.method).trained and tc.steps > 0 and not tc.batch_per_rank
            and (tc.batch_size // 2) % ctx.world_size):
        raise ConfigError(f"train.batch_size = {tc.batch_size} does not split into {ctx.world_size} processes: half "
                          f"the batch ({tc.batch_size // 2} normal videos) must be a multiple of the number of "
                          f"processes (or set train.batch_per_rank: true)")

    if resume and (run / CONFIG_FILE).exists():
        saved = RunConfig.load(run / CONFIG_FILE).to_dict()
        now = cfg.to_dict()
        saved["train"].pop("steps")
        now["train"].pop("steps")
        if saved != now:
            raise ConfigError("cannot resume: the configuration differs from the one this run was started "
                              "with (only train.steps may change; see config.yaml)", path=run / CONFIG_FILE)
    ctx.barrier()                       # every rank compared the saved config before rank 0 rewrites it
    ctx.write_text(run / CONFIG_FILE, cfg.to_yaml())

    trainset: TrainSet = DatasetFolder(data_root, check_files=False).train_set()
    entries = list(trainset)
    if not entries:
        raise ConfigError("the dataset has no training videos", path=data_root)
    store = FeatureStore(features)
    _check_store(store, entries)
    tr, va = split_train_val(entries, tc.val_fraction, tc.split_seed)
    ctx.write_json(run / "split.json", {"train": [e.stem for e in tr], "val": [e.stem for e in va],
                                        "split_seed": tc.split_seed})
    if not any(e.label == 0 for e in tr):
        raise ConfigError("the training videos hold no normal video (needed for the normaliser and L_N)",
                          path=data_root)
    n_anom = sum(e.label == 1 for e in tr)
    log(f"fit {cfg.method} seed={seed}: {len(tr)} training videos ({n_anom} anomalous), {len(va)} validation, "
        f"device {device}" + (f", {ctx.world_size} processes ({ctx.backend})" if ctx.distributed else ""))

    model = AnomalyModel(cfg, store.spec)
    from patchvad.features.reduce import load_reduction
    model.reduction = load_reduction(store)     # reduced features: the checkpoint carries the projection
    timings = {"normaliser": 0.0, "encode": 0.0, "steps": 0.0, "validation": 0.0}
    t_norm = time.perf_counter()
    if model.impl.uses_encoder:
        if ctx.is_main:
            normals = [e for e in tr if e.label == 0]
            if len(normals) > cfg.model.norm_videos:
                keep = np.unique(np.linspace(0, len(normals) - 1, cfg.model.norm_videos).round().astype(int))
                normals = [normals[i] for i in keep]
            model.encoder.fit((store.load(e.stem).x for e in normals), seed=seed, max_videos_hint=len(normals))
            model.init_prior()
        if ctx.distributed:             # rank 0 fitted the normaliser; the others take it
            for t in model.encoder.state_dict().values():
                ctx.broadcast_(t, src=0)
            if model.net is not None:
                for t in model.net.state_dict().values():
                    ctx.broadcast_(t, src=0)
    timings["normaliser"] = time.perf_counter() - t_norm
    model.to(device)
    trained = model.impl.trained and tc.steps > 0
    val_videos: EncodedVideos | ShardedVideos | list = []
    train_videos: EncodedVideos | list = []
    if model.impl.uses_encoder:
        t_enc = time.perf_counter()
        size = encoded_size(store, (tr if trained else []) + va, model.encoder.out_dim, tc.max_snippets)
        on_disk = tc.cache == "disk" or (tc.cache == "auto" and size > tc.cache_limit_mb * 2 ** 20)
        tag = f".rank{ctx.rank}" if ctx.distributed else ""
        cache = (lambda name: run / f".{name}{tag}.encoded.cache") if on_disk else (lambda name: None)
        train_videos = (encode_videos(model, store, tr, tc.max_snippets, tc.upsample_short, log, cache("train"),
                                      ctx=ctx)
                        if trained else [])
        if ctx.distributed:             # each rank encodes the validation batches it scores
            held = [j for k, i in enumerate(range(0, len(va), VAL_BATCH)) if val_batch_owner(k, ctx) == ctx.rank
                    for j in range(i, min(len(va), i + VAL_BATCH))]
            val_videos = ShardedVideos(len(va), held, encode_videos(
                model, store, [va[j] for j in held], tc.max_snippets, tc.upsample_short, None, cache("val")))
        else:
            val_videos = encode_videos(model, store, va, tc.max_snippets, tc.upsample_short, log, cache("val"))
        timings["encode"] = time.perf_counter() - t_enc
        log(f"encoded {len(train_videos) + len(val_videos)} videos in {timings['encode']:.1f}s "
            f"({model.encoder.out_dim} channels, {size / 2 ** 20:.0f} MB {'on disk' if on_disk else 'in memory'})")
    try:
        return _train(cfg, run, model, store, tr, va, train_videos, val_videos, trained, resume, seed, device,
                      log, start_time, ctx, timings)
    finally:
        for cached in (train_videos, val_videos):
            if isinstance(cached, (EncodedVideos, ShardedVideos)):
                cached.close()


def _train(cfg: RunConfig, run: Path, model: AnomalyModel, store: FeatureStore, tr: list, va: list,
           train_videos, val_videos, trained: bool, resume: bool, seed: int, device: torch.device,
           log: Callable[[str], None], start_time: float,
           ctx: distributed.Context = distributed.SINGLE, timings: dict | None = None) -> FitResult:
    tc = cfg.train
    timings = {"normaliser": 0.0, "encode": 0.0, "steps": 0.0, "validation": 0.0} if timings is None else timings
    n_anom = sum(e.label == 1 for e in tr)
    history: list[dict] = []
    log_path = run / LOG_FILE
    world = ctx.world_size
    half = tc.batch_size // 2 * (world if tc.batch_per_rank else 1)     # per class, all ranks together

    def write_log(record: dict) -> None:
        if ctx.is_main:
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    val_labels = [e.label for e in va]
    best_step, best_score, step = 0, -math.inf, 0
    threshold = 0.5

    if trained:
        labels = np.asarray([e.label for e in tr])
        if n_anom == 0:
            raise ConfigError("the training part holds no anomalous video", path=run / "split.json")
        gen = torch.Generator().manual_seed(seed)
        sampler = _Sampler(labels, half, gen)
        opt = torch.optim.AdamW(model.net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        flip_signs = model.encoder.hflip_signs().to(device)
        net = None
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel
            share = BatchShare()
            restore_dropout = share.install(model.net)
            net = DistributedDataParallel(model.net, device_ids=[device.index] if device.type == "cuda" else None)
            lengths_of = train_videos.length
        if resume and (run / STATE_FILE).exists():
            info = _load_state(run / STATE_FILE, model, opt, gen, sampler)
            step, best_step, best_score = info["step"], info["best_step"], info["best_score"]
            history = info.get("history", [])
            log(f"resumed at step {step} (best step {best_step}, score {best_score:.4f})")
            if ctx.is_main and log_path.exists():
                # A killed run may have logged steps after its last saved state: keep the
                # log up to the resumed step only, so every step appears once.
                kept = [line for line in log_path.read_text(encoding="utf-8").splitlines()
                        if line.strip() and _log_step(line) <= step]
                atomic_write_text(log_path, "".join(line + "\n" for line in kept))
        elif log_path.exists() and ctx.is_main:
            log_path.unlink()           # a fresh start (or --resume without a saved state)
        if ctx.distributed:             # one dropout stream, rank 0's (= the single-process one), everywhere
            torch.set_rng_state(ctx.broadcast_(torch.get_rng_state(), src=0))
            if device.type == "cuda":
                torch.cuda.set_rng_state(ctx.broadcast_(torch.cuda.get_rng_state(device), src=0), device)
        ctx.barrier()                   # nobody appends to the log before rank 0 removed an old one
        keep = tc.keep_checkpoints or tc.select == "val_auc_smooth"
        ckpt_dir = run / CHECKPOINT_DIR
        log(f"effective batch {2 * half} videos per step ({half} normal + {half} anomalous)"
            + (f" = {world} processes x {2 * half // world}" if ctx.distributed else ""))
        if ctx.distributed and step == 0:
            write_log({"kind": "setup", "world_size": world, "backend": ctx.backend, "batch_size": 2 * half,
                       "per_rank_batch": 2 * half // world})

        def keep_checkpoint(at: int, rec: dict) -> None:
            if keep and ctx.is_main:
                model.save(ckpt_dir / f"step_{at:06d}.safetensors", {"seed": seed, "step": at,
                                                                      "val_auc": rec["val_auc"]})

        if step == 0 and val_videos:
            t_val = time.perf_counter()
            ev = evaluate_bags(model, val_videos, val_labels, device, ctx=ctx)
            timings["validation"] += time.perf_counter() - t_val
            rec = {"step": 0, "val_auc": ev["val_auc"], "val_loss": ev["val_loss"]}
            history.append(rec)
            write_log({"kind": "val", **rec})
            keep_checkpoint(0, rec)
            log(f"step 0: val AUC {ev['val_auc']}, val loss {ev['val_loss']:.4f}")
        model.train()
        t_steps, first_step = time.perf_counter(), step
        running: dict[str, float] = {}
        n_running = 0
        while step < tc.steps:
            t_step = time.perf_counter()
            if ctx.distributed:
                batch_idx, rows = sampler.next_share(ctx.rank, world)
                idx = batch_idx[rows]
                tmax = max(lengths_of(int(i)) for i in batch_idx)     # padded as the whole batch would be
                x, mask, lengths = _pad_batch([train_videos[i] for i in idx], device, tmax=tmax)
                x = augment(x, mask, tc.hflip, tc.input_noise, flip_signs, gen, rows=rows, batch=len(batch_idx))
                share.set(rows, len(batch_idx))
            else:
                idx = sampler.next()
                x, mask, lengths = _pad_batch([train_videos[i] for i in idx], device)
                x = augment(x, mask, tc.hflip, tc.input_noise, flip_signs, gen)
            y = [int(labels[i]) for i in idx]
            loss, terms, _ = batch_loss(model, x, mask, lengths, y, net=net)
            opt.zero_grad(set_to_none=True)
            loss.backward()                 # DDP: gradients averaged over the ranks' equal shares here
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.net.parameters(), tc.grad_clip)
            opt.step()
            step += 1
            for k, v in terms.items():
                running[k] = running.get(k, 0.0) + float(v)
            n_running += 1
            timings["steps"] += time.perf_counter() - t_step
            if step % tc.log_every == 0 or step == tc.steps:
                avg = {k: v / n_running for k, v in running.items()}
                if ctx.distributed:         # mean over the ranks' equal shares = the global batch's terms
                    keys = sorted(avg)
                    avg = dict(zip(keys, ctx.all_reduce_mean([avg[k] for k in keys])))
                    avg = {k: avg[k] for k in running}
                rate = (step - first_step) / max(1e-9, time.perf_counter() - t_steps)
                write_log({"kind": "train", "step": step, **avg})
                log(f"step {step}/{tc.steps} loss {avg['total']:.4f} ({rate:.1f} steps/s)")
                running, n_running = {}, 0
            if step % tc.eval_every == 0 or step == tc.steps:
                if val_videos:
                    t_val = time.perf_counter()
                    ev = evaluate_bags(model, val_videos, val_labels, device, ctx=ctx)
                    timings["validation"] += time.perf_counter() - t_val
                    rec = {"step": step, "val_auc": ev["val_auc"], "val_loss": ev["val_loss"]}
                else:
                    rec = {"step": step, "val_auc": None, "val_loss": None}
                history.append(rec)
                write_log({"kind": "val", **rec})
                keep_checkpoint(step, rec)
                score = _selection_score(tc.select, rec, step)
                if score >= best_score:
                    best_score, best_step = score, step
                    if ctx.is_main:
                        model.save(run / MODEL_FILE, {"seed": seed, "step": step, "val_auc": rec["val_auc"],
                                                     "val_videos": len(val_videos)})
                log(f"step {step}: val AUC {rec['val_auc']}, val loss {rec['val_loss']} (best step {best_step})")
                if ctx.is_main:
                    _save_state(run / STATE_FILE, model, opt, gen, sampler,
                                {"step": step, "best_step": best_step, "best_score": best_score,
                                 "history": history})
        if ctx.distributed:
            restore_dropout()
        from patchvad.model.model import load_model
        if ctx.is_main:
            if tc.select == "val_auc_smooth" and history:
                best_step = smoothed_best(history, tc.smooth_window)
                best = load_model(ckpt_dir / f"step_{best_step:06d}.safetensors", store.spec)
                log(f"selected step {best_step} (best mean validation AUC over {tc.smooth_window} evaluations)")
            else:
                # Reload the selected weights for the threshold.
                best = load_model(run / MODEL_FILE, store.spec)
            model.load_tensors(best.tensors())
            model.to(device)
        if ctx.distributed:             # every rank continues with rank 0's selection
            for t in model.net.state_dict().values():
                ctx.broadcast_(t, src=0)
            best_step = int(ctx.broadcast_(torch.tensor([best_step], dtype=torch.int64), src=0)[0])

    val_auc = None
    if val_videos:
        ev = evaluate_bags(model, val_videos, val_labels, device, ctx=ctx)
        val_auc = ev["val_auc"]
        threshold = youden_threshold(ev["bags"], np.asarray(val_labels))
    model.threshold = threshold
    if ctx.is_main:
        model.cpu().save(run / MODEL_FILE, {"seed": seed, "step": best_step, "val_auc": val_auc,
                                             "val_videos": len(val_videos)})
    ctx.barrier()                       # the checkpoint exists before any rank returns
    seconds = time.perf_counter() - start_time
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log(f"done: {run / MODEL_FILE} (step {best_step}, val AUC {val_auc}, threshold {threshold:.4f}, "
        f"{seconds:.1f}s, peak RSS {peak_mb:.0f} MB)")
    return FitResult(run_dir=run, checkpoint=run / MODEL_FILE, method=cfg.method, seed=seed, best_step=best_step,
                     val_auc=val_auc, steps=step, seconds=seconds, threshold=threshold, history=history,
                     world_size=world, batch_size=2 * half if trained else 0, timings=timings)


def smoothed_best(history: list[dict], window: int = 3) -> int:
    """Step whose validation AUC, averaged with its neighbours, is highest.

    The mean runs over ``window`` consecutive evaluations centred on each one (clipped
    at the ends); ties go to the later step. One evaluation on a few dozen videos swings
    by several AUC points; the average picks a stretch of training that is good, not
    one lucky evaluation. Evaluations without an AUC count as 0.5.
    """
    aucs = np.array([0.5 if h["val_auc"] is None else float(h["val_auc"]) for h in history])
    half = window // 2
    best, best_i = -np.inf, 0
    for i in range(len(aucs)):
        m = aucs[max(0, i - half):i + half + 1].mean()
        if m >= best - 1e-12:
            best, best_i = m, i
    return int(history[best_i]["step"])


def _selection_score(rule: str, rec: dict, step: int) -> float:
    if rule == "last" or rec["val_auc"] is None and rule in ("val_auc", "val_auc_smooth"):
        return float(step)
    if rule == "val_loss":
        return -float(rec["val_loss"]) if rec["val_loss"] is not None else float(step)
    return float(rec["val_auc"])


# --- command line ---------------------------------------------------------------------------------


def fit_command(data: str | Path | argparse.Namespace, features: str | Path | None = None,
                out: str | Path | None = None, method: str = "proximity", seed: int = 0,
                config: RunConfig | str | Path | None = None, resume: bool = False, quiet: bool = False) -> FitResult:
    """Body of ``patchvad fit``: train, print one summary line, return the FitResult.

    Accepts the paths directly (``fit_command(data, features, out, method=..., ...)``)
    or an ``argparse.Namespace`` with those names. Errors propagate as
    :class:`~patchvad.errors.PatchvadError`.
    """
    if isinstance(data, argparse.Namespace):
        a = data
        data, features, out, method, seed = a.data, a.features, a.out, a.method, a.seed
        config, resume, quiet = a.config, a.resume, getattr(a, "quiet", False)
    res = fit(data, features, out, method=method, seed=seed, config=config, resume=resume,
              log=None if quiet else _default_log)
    val = "n/a" if res.val_auc is None else f"{res.val_auc:.4f}"
    procs = f", {res.world_size} processes" if res.world_size > 1 else ""
    procs += f", effective batch {res.batch_size}" if res.world_size > 1 and res.batch_size else ""
    if distributed.env_layout()[0] == 0:          # under torchrun, rank 0 reports
        print(f"{res.checkpoint}  (method {res.method}, seed {res.seed}, step {res.best_step}, validation video AUC "
              f"{val}, {res.seconds:.0f} s{procs})")
    return res


__all__ = ["BatchShare", "EncodedVideos", "FitResult", "ShardedVideos", "batch_loss",
           "encode_videos", "evaluate_bags", "fit", "fit_command",
           "pool_snippets", "roc_auc", "split_train_val", "youden_threshold"]
