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

The steps of one fit, in order: set-up (seeds, config, split), the normaliser, encoding,
the optimisation steps with validation and checkpointing (:class:`_Loop`), the final
selection, and the bag-score threshold of the selected weights.

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
import dataclasses
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

from patchvad import distributed
from patchvad.config import RunConfig
from patchvad.data.folder import DatasetFolder
from patchvad.errors import ConfigError
from patchvad.features.reduce import load_reduction
from patchvad.features.store import FeatureStore
from patchvad.io.files import sha256_file
from patchvad.metrics.frame import UndefinedMetricError, frame_auc, youden_threshold
from patchvad.model.encoding_cache import EncodingCache, maybe_cache
from patchvad.model.methods import get_method
from patchvad.model.model import AnomalyModel, load_model
from patchvad.training.augment import BatchShare, augment
from patchvad.training.data import (
    BalancedSampler,
    EncodedVideos,
    ShardedVideos,
    check_features,
    encode_videos,
    encoded_size,
    pad_batch,
    pad_targets,
    split_train_val,
    subset_train,
)
from patchvad.training.state import STATE_FILE, load_state, save_state, trim_log
from patchvad.training.targets import oracle_targets

#: checkpoint metadata key: "false" on the best-so-far weights a running fit keeps,
#: "true" once the fit has ended (selected weights, threshold); a fit killed in between
#: leaves "false", so a harness resumes it instead of taking it for finished.
FIT_COMPLETE = "fit_complete"

MODEL_FILE = "model.safetensors"
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


# --- validation and checkpoint selection ------------------------------------------------------


def val_batch_owner(batch_index: int, ctx: distributed.Context) -> int:
    """Rank that scores validation batch ``batch_index`` (round robin)."""
    return batch_index % ctx.world_size


def video_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC-AUC of ``(N,)`` bag scores against ``(N,)`` 0/1 video labels, ties counted half.

    The correctly rounded Mann-Whitney value (``frame_auc(..., exact=True)``): checkpoint
    ties are decided on it. None when one class is absent.
    """
    try:
        return frame_auc(labels, scores, exact=True)
    except UndefinedMetricError:
        return None


def bag_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Alert threshold on ``(N,)`` bag scores: Youden J, midway between neighbouring scores.

    With one class of ``(N,)`` 0/1 labels only, J is undefined: the median score then
    (0.5 without any score).
    """
    labels = np.asarray(labels).astype(bool)
    if labels.all() or (~labels).all():
        return float(np.median(np.asarray(scores, dtype=np.float64))) if len(scores) else 0.5
    return youden_threshold(labels, scores, midpoints=True)


@torch.no_grad()
def evaluate_bags(model: AnomalyModel, videos, labels: list[int],
                  device: torch.device, batch_size: int = VAL_BATCH,
                  ctx: distributed.Context = distributed.SINGLE, targets: list | None = None) -> dict:
    """Bag scores, video AUC and mean loss over videos.

    Distributed (``ctx``): the batches are shared out round robin between the ranks
    (``videos`` needs to hold only this rank's), each rank scores its batches exactly
    as one process would, and the bag scores and batch losses are merged exactly, so
    every rank returns the same numbers, equal to a single process's on the same weights.
    ``targets``: the videos' ``(T, Gh, Gw)`` cell targets (the oracle's validation loss).

    Returns:
        ``{"bags": (N,) float32, "val_auc": float | None, "val_loss": float}``.

    Raises:
        ConfigError: a bag score is NaN or infinite (the training diverged).
    """
    model.eval()
    n = len(videos)
    starts = list(range(0, n, batch_size))
    bags = torch.zeros(n, dtype=torch.float32)
    losses = torch.zeros(len(starts), dtype=torch.float64)
    for k, i in enumerate(starts):
        if val_batch_owner(k, ctx) != ctx.rank:
            continue
        rows = range(i, min(n, i + batch_size))
        x, mask, lengths = pad_batch([videos[j] for j in rows], device)
        extra = {} if targets is None else {"targets": pad_targets([targets[j] for j in rows], x.shape[1], device)}
        loss, _, b = model.impl.loss(model, x, mask, lengths, labels[i:i + batch_size], None, **extra)
        bags[i:i + len(lengths)] = b.cpu()
        losses[k] = float(loss) * len(lengths)
    model.train()
    if ctx.distributed:
        bags = ctx.merge_owned(bags).to(torch.float32)      # float32 values round-trip exactly
        losses = ctx.merge_owned(losses)
    scores = bags.numpy()
    if not np.isfinite(scores).all():
        raise ConfigError("the validation videos' bag scores hold NaN or inf: the training diverged; "
                          "lower train.lr (and keep train.grad_clip above 0)")
    return {"bags": scores, "val_auc": video_auc(scores, np.asarray(labels)),
            "val_loss": float(sum(losses.tolist()) / max(1, n))}


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


# --- one fit ------------------------------------------------------------------------------------


@dataclass
class _Job:
    """What the steps of one fit share: its settings, then its data and model as they are made."""

    cfg: RunConfig
    run: Path
    seed: int
    device: torch.device
    ctx: distributed.Context
    log: Callable[[str], None]
    start_time: float
    timings: dict = field(default_factory=lambda: {"normaliser": 0.0, "encode": 0.0, "steps": 0.0,
                                                   "validation": 0.0})
    store: FeatureStore = field(init=False, repr=False)     # set by _load_split
    tr: list = field(default_factory=list)
    va: list = field(default_factory=list)
    model: AnomalyModel = field(init=False, repr=False)     # set by _fit_normaliser
    oracle_labels: Path | None = None
    cache: EncodingCache | None = None
    train_targets: list | None = None
    val_targets: list | None = None

    def write_log(self, record: dict) -> None:
        """Append one record to ``RUN/train_log.jsonl`` (rank 0 only)."""
        if self.ctx.is_main:
            with open(self.run / LOG_FILE, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    def evaluate(self, videos) -> dict:
        """:func:`evaluate_bags` of the validation videos with this job's model."""
        return evaluate_bags(self.model, videos, [e.label for e in self.va], self.device, ctx=self.ctx,
                             targets=self.val_targets)


class _Loop:
    """The optimisation of one fit: sampler, optimiser, steps, validation, best checkpoint so far.

    Constructing it draws the sampler's first shuffles from the seeded generator;
    :meth:`start` resumes (or starts afresh) and validates step 0, :meth:`run` takes
    the steps, :meth:`select_final` loads the selected weights.
    """

    def __init__(self, job: _Job, videos: EncodedVideos, val_videos, half: int):
        tc, model = job.cfg.train, job.model
        self.job, self.videos, self.val_videos, self.half = job, videos, val_videos, half
        self.labels = np.asarray([e.label for e in job.tr])
        if not (self.labels == 1).any():
            raise ConfigError("the training part holds no anomalous video", path=job.run / "split.json")
        self.gen = torch.Generator().manual_seed(job.seed)
        self.sampler = BalancedSampler(self.labels, half, self.gen)
        assert model.net is not None        # a trained method has a scorer
        self.opt = torch.optim.AdamW(model.net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        self.flip_signs = model.encoder.hflip_signs().to(job.device)
        self.net: torch.nn.Module | None = None
        self.share: BatchShare | None = None
        self.restore_dropout: Callable[[], None] | None = None
        if job.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel
            self.share = BatchShare()
            self.restore_dropout = self.share.install(model.net)
            self.net = DistributedDataParallel(model.net,
                                               device_ids=[job.device.index] if job.device.type == "cuda" else None)
        self.step, self.best_step, self.best_score = 0, 0, -math.inf
        self.history: list[dict] = []
        self.keep = tc.keep_checkpoints or tc.select == "val_auc_smooth"
        self.running: dict[str, float] = {}
        self.n_running = 0
        self._t_steps, self._first_step = 0.0, 0

    def start(self, resume: bool) -> None:
        """Resume from the saved state (or clear an old log), align the ranks, validate step 0."""
        job, ctx = self.job, self.job.ctx
        log_path, state = job.run / LOG_FILE, job.run / STATE_FILE
        if resume and state.exists():
            info = load_state(state, job.model, self.opt, self.gen, self.sampler)
            self.step, self.best_step, self.best_score = info["step"], info["best_step"], info["best_score"]
            self.history = info.get("history", [])
            job.log(f"resumed at step {self.step} (best step {self.best_step}, score {self.best_score:.4f})")
            if ctx.is_main and log_path.exists():
                trim_log(log_path, self.step)
        elif log_path.exists() and ctx.is_main:
            log_path.unlink()           # a fresh start (or --resume without a saved state)
        if ctx.distributed:             # one dropout stream, rank 0's (= the single-process one), everywhere
            torch.set_rng_state(ctx.broadcast_(torch.get_rng_state(), src=0))
            if job.device.type == "cuda":
                torch.cuda.set_rng_state(ctx.broadcast_(torch.cuda.get_rng_state(job.device), src=0), job.device)
        ctx.barrier()                   # nobody appends to the log before rank 0 removed an old one
        half, world = self.half, ctx.world_size
        job.log(f"effective batch {2 * half} videos per step ({half} normal + {half} anomalous)"
                + (f" = {world} processes x {2 * half // world}" if ctx.distributed else ""))
        if ctx.distributed and self.step == 0:
            job.write_log({"kind": "setup", "world_size": world, "backend": ctx.backend, "batch_size": 2 * half,
                           "per_rank_batch": 2 * half // world})
        if self.step == 0 and self.val_videos:
            rec = self._validation_record()
            job.log(f"step 0: val AUC {rec['val_auc']}, val loss {rec['val_loss']:.4f}")

    def run(self) -> None:
        """Take the steps up to ``train.steps``, logging and validating on schedule."""
        tc = self.job.cfg.train
        self.job.model.train()
        self._t_steps, self._first_step = time.perf_counter(), self.step
        while self.step < tc.steps:
            t_step = time.perf_counter()
            self._step()
            self.job.timings["steps"] += time.perf_counter() - t_step
            if self.step % tc.log_every == 0 or self.step == tc.steps:
                self._log_terms()
            if self.step % tc.eval_every == 0 or self.step == tc.steps:
                self._checkpoint()

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, list[int], np.ndarray, torch.Tensor | None]:
        """The next (share of a) balanced batch, padded and augmented, its video indices and cell targets."""
        job, tc, ctx = self.job, self.job.cfg.train, self.job.ctx
        rows = batch = None
        if not ctx.distributed:
            idx = self.sampler.next()
            x, mask, lengths = pad_batch([self.videos[i] for i in idx], job.device)
        else:
            batch_idx, rows = self.sampler.next_share(ctx.rank, ctx.world_size)
            idx, batch = batch_idx[rows], len(batch_idx)
            tmax = max(self.videos.length(int(i)) for i in batch_idx)     # padded as the whole batch would be
            x, mask, lengths = pad_batch([self.videos[i] for i in idx], job.device, tmax=tmax)
            assert self.share is not None       # installed in __init__ when distributed
            self.share.set(rows, batch)
        if job.train_targets is None:
            x = augment(x, mask, tc.hflip, tc.input_noise, self.flip_signs, self.gen, rows=rows, batch=batch)
            return x, mask, lengths, idx, None
        y = pad_targets([job.train_targets[i] for i in idx], x.shape[1], job.device)
        x, y = augment(x, mask, tc.hflip, tc.input_noise, self.flip_signs, self.gen, rows=rows, batch=batch, targets=y)
        return x, mask, lengths, idx, y

    def _step(self) -> None:
        """One AdamW step; its loss terms join the running means."""
        model, tc = self.job.model, self.job.cfg.train
        x, mask, lengths, idx, targets = self._batch()
        y = [int(self.labels[i]) for i in idx]
        extra = {} if targets is None else {"targets": targets}
        loss, terms, _ = model.impl.loss(model, x, mask, lengths, y, self.net, **extra)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()                 # DDP: gradients averaged over the ranks' equal shares here
        if tc.grad_clip > 0:
            assert model.net is not None
            torch.nn.utils.clip_grad_norm_(model.net.parameters(), tc.grad_clip)
        self.opt.step()
        self.step += 1
        for k, v in terms.items():
            self.running[k] = self.running.get(k, 0.0) + float(v)
        self.n_running += 1

    def _log_terms(self) -> None:
        """Write the loss terms averaged since the last record."""
        job, ctx = self.job, self.job.ctx
        avg = {k: v / self.n_running for k, v in self.running.items()}
        if ctx.distributed:             # mean over the ranks' equal shares = the global batch's terms
            keys = sorted(avg)
            avg = dict(zip(keys, ctx.all_reduce_mean([avg[k] for k in keys])))
            avg = {k: avg[k] for k in self.running}
        rate = (self.step - self._first_step) / max(1e-9, time.perf_counter() - self._t_steps)
        job.write_log({"kind": "train", "step": self.step, **avg})
        job.log(f"step {self.step}/{job.cfg.train.steps} loss {avg['total']:.4f} ({rate:.1f} steps/s)")
        self.running, self.n_running = {}, 0

    def _validation_record(self) -> dict:
        """Validate the current weights (if there are validation videos); log and keep the record."""
        job = self.job
        rec = {"step": self.step, "val_auc": None, "val_loss": None}
        if self.val_videos:
            t_val = time.perf_counter()
            ev = job.evaluate(self.val_videos)
            job.timings["validation"] += time.perf_counter() - t_val
            rec = {"step": self.step, "val_auc": ev["val_auc"], "val_loss": ev["val_loss"]}
        self.history.append(rec)
        job.write_log({"kind": "val", **rec})
        if self.keep and job.ctx.is_main:
            job.model.save(job.run / CHECKPOINT_DIR / f"step_{self.step:06d}.safetensors",
                           {"seed": job.seed, "step": self.step, "val_auc": rec["val_auc"]})
        return rec

    def _checkpoint(self) -> None:
        """Validate, keep the weights when they are the best so far, save the resume state."""
        job, main = self.job, self.job.ctx.is_main
        rec = self._validation_record()
        score = _selection_score(job.cfg.train.select, rec, self.step)
        if score >= self.best_score:
            self.best_score, self.best_step = score, self.step
            if main:
                job.model.save(job.run / MODEL_FILE, {"seed": job.seed, "step": self.step, "val_auc": rec["val_auc"],
                                                      "val_videos": len(self.val_videos), FIT_COMPLETE: "false"})
        job.log(f"step {self.step}: val AUC {rec['val_auc']}, val loss {rec['val_loss']} "
                f"(best step {self.best_step})")
        if main:
            save_state(job.run / STATE_FILE, job.model, self.opt, self.gen, self.sampler,
                       {"step": self.step, "best_step": self.best_step, "best_score": self.best_score,
                        "history": self.history})

    def select_final(self) -> int:
        """Load the selected weights on every rank; returns their step."""
        job, ctx, tc, model = self.job, self.job.ctx, self.job.cfg.train, self.job.model
        if ctx.distributed:
            assert self.restore_dropout is not None     # installed in __init__ when distributed
            self.restore_dropout()
        if ctx.is_main:
            if tc.select == "val_auc_smooth" and self.history:
                self.best_step = smoothed_best(self.history, tc.smooth_window)
                best = load_model(job.run / CHECKPOINT_DIR / f"step_{self.best_step:06d}.safetensors", job.store.spec)
                job.log(f"selected step {self.best_step} (best mean validation AUC over {tc.smooth_window} "
                        f"evaluations)")
            else:
                best = load_model(job.run / MODEL_FILE, job.store.spec)    # the selected weights, for the threshold
            model.load_tensors(best.tensors())
            model.to(job.device)
        if ctx.distributed:             # every rank continues with rank 0's selection
            assert model.net is not None
            for t in model.net.state_dict().values():
                ctx.broadcast_(t, src=0)
            self.best_step = int(ctx.broadcast_(torch.tensor([self.best_step], dtype=torch.int64), src=0)[0])
        return self.best_step


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


def fit(data_root: str | Path, features: str | Path, out: str | Path, method: str = "proximity", seed: int = 0,
        config: RunConfig | str | Path | None = None, resume: bool = False,
        log: Callable[[str], None] | None = _default_log, oracle_labels: str | Path | None = None,
        encoding_cache: str | Path | None = None) -> FitResult:
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
        oracle_labels: folder of the training videos' ground truth (``patchvad synth ...
            --oracle-labels DIR``), read only by methods trained on cells (``oracle``);
            refused for every weakly supervised method.
        encoding_cache: a folder shared by the fits (and tests) of one experiment: the
            normaliser and the encoded videos are computed once and read by every fit
            that would compute the same ones (:mod:`patchvad.model.encoding_cache`).
            Not used by multi-process fits.

    Returns:
        :class:`FitResult`.

    Raises:
        ConfigError: ``oracle_labels`` given to a weak method, or missing for the oracle.
    """
    start_time = time.perf_counter()
    log = log or (lambda _msg: None)
    cfg = _resolve_config(method, config)
    _check_oracle_labels(cfg.method, oracle_labels)
    tc = cfg.train
    device = torch.device("cuda" if tc.device == "cuda" or (tc.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    with distributed.session(device) as ctx:
        if ctx.distributed:
            if device.type == "cuda":
                device = torch.device("cuda", ctx.local_rank)
            if not ctx.is_main:
                log = lambda _msg: None  # noqa: E731 - rank 0 reports
        job = _Job(cfg, Path(out), seed, device, ctx, log, start_time,
                   oracle_labels=None if oracle_labels is None else Path(oracle_labels),
                   cache=None if ctx.distributed else maybe_cache(encoding_cache))
        return _fit(job, data_root, features, resume)


def _check_oracle_labels(method: str, oracle_labels: str | Path | None) -> None:
    """Only a method trained on cells reads training ground truth, and it needs it."""
    needs = get_method(method).needs_cell_targets
    if needs and oracle_labels is None:
        raise ConfigError(f"method '{method}' is trained on the training videos' ground-truth cells: give "
                          f"--oracle-labels DIR (written by patchvad synth ROOT --oracle-labels DIR)")
    if not needs and oracle_labels is not None:
        raise ConfigError(f"method '{method}' learns from video-level labels only and never reads training "
                          f"ground truth; --oracle-labels is for --method oracle", path=oracle_labels)


def _fit(job: _Job, data_root: str | Path, features: str | Path, resume: bool) -> FitResult:
    _set_up(job, resume)
    _load_split(job, data_root, features)
    if job.oracle_labels is not None:
        _load_targets(job)
    _fit_normaliser(job)
    job.model.to(job.device)
    trained = job.model.impl.trained and job.cfg.train.steps > 0
    train_videos, val_videos = _encode(job, trained)
    try:
        return _train(job, train_videos, val_videos, trained, resume)
    finally:
        for cached in (train_videos, val_videos):
            if isinstance(cached, (EncodedVideos, ShardedVideos)):
                cached.close()


def _set_up(job: _Job, resume: bool) -> None:
    """Threads and seeds; the batch split and a resumed run's config checked; config.yaml written."""
    cfg, tc, ctx, run = job.cfg, job.cfg.train, job.ctx, job.run
    run.mkdir(parents=True, exist_ok=True)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    elif ctx.distributed and job.device.type == "cpu":
        torch.set_num_threads(distributed.threads_per_process())
    torch.manual_seed(job.seed)
    np.random.seed(job.seed)
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


def _load_split(job: _Job, data_root: str | Path, features: str | Path) -> None:
    """The training videos (``train.train_videos`` of them), their features, the train / validation split.

    The subset comes before the split (:func:`~patchvad.training.data.subset_train`), so
    ``train_videos`` counts the validation videos too; split.json records both parts.
    """
    tc, ctx = job.cfg.train, job.ctx
    entries = list(DatasetFolder(data_root, check_files=False).train_set())
    if not entries:
        raise ConfigError("the dataset has no training videos", path=data_root)
    try:
        entries = subset_train(entries, tc.train_videos, tc.split_seed)
    except ConfigError as exc:
        raise ConfigError(exc.message, path=data_root) from None
    store = FeatureStore(features)
    check_features(store, entries)
    tr, va = split_train_val(entries, tc.val_fraction, tc.split_seed)
    ctx.write_json(job.run / "split.json", {"train": [e.stem for e in tr], "val": [e.stem for e in va],
                                            "split_seed": tc.split_seed, "train_videos": len(entries)})
    if not any(e.label == 0 for e in tr):
        raise ConfigError("the training videos hold no normal video (needed for the normaliser and L_N)",
                          path=data_root)
    n_anom = sum(e.label == 1 for e in tr)
    job.log(f"fit {job.cfg.method} seed={job.seed}: {len(tr)} training videos ({n_anom} anomalous), {len(va)} "
            f"validation, device {job.device}"
            + (f", {ctx.world_size} processes ({ctx.backend})" if ctx.distributed else ""))
    job.store, job.tr, job.va = store, tr, va


def _load_targets(job: _Job) -> None:
    """Pooled cell targets of the training and validation videos (the oracle only)."""
    assert job.oracle_labels is not None
    tc, labels_dir = job.cfg.train, job.oracle_labels
    gh, gw = job.store.spec.grid

    def targets(entries: list) -> list[torch.Tensor]:
        maps = [job.store.load(e.stem, mmap=True).snippets for e in entries]
        return oracle_targets(labels_dir, entries, maps, (gh, gw), tc.max_snippets, tc.upsample_short)

    job.train_targets, job.val_targets = targets(job.tr), targets(job.va)
    job.log(f"cell targets of {len(job.tr) + len(job.va)} videos from {job.oracle_labels}")


def _feature_sha(store: FeatureStore, stem: str) -> str:
    """The SHA-256 of a video's stored features (from its record; computed when the record lacks it)."""
    sha = store.record(stem).get("sha256")
    return str(sha) if sha else sha256_file(store.path / f"{stem}.npy")


def _fit_normaliser(job: _Job) -> None:
    """Build the model; fit its encoder on (at most ``norm_videos``) normal training videos."""
    cfg, ctx, store = job.cfg, job.ctx, job.store
    model = AnomalyModel(cfg, store.spec)
    model.reduction = load_reduction(store)     # reduced features: the checkpoint carries the projection
    t_norm = time.perf_counter()
    if model.impl.uses_encoder:
        if ctx.is_main:
            normals = [e for e in job.tr if e.label == 0]
            if len(normals) > cfg.model.norm_videos:
                keep = np.unique(np.linspace(0, len(normals) - 1, cfg.model.norm_videos).round().astype(int))
                normals = [normals[i] for i in keep]
            # The token sample is drawn from the split's seed, not the training seed: the
            # normaliser belongs to the data split (like the validation set), so every seed
            # and method of one split trains on the same inputs and can share them (cache).
            seed = cfg.train.split_seed

            def fit_encoder() -> None:
                model.encoder.fit((store.load(e.stem).x for e in normals), seed=seed, max_videos_hint=len(normals))

            if job.cache is None:
                fit_encoder()
            else:
                inputs = {"what": "normaliser", "model": dataclasses.asdict(cfg.model), "seed": seed,
                          "spec": store.spec.to_dict(), "reduction": store.reduction,
                          "videos": [_feature_sha(store, e.stem) for e in normals]}
                if job.cache.fitted_normaliser(model.encoder, inputs, fit_encoder):
                    job.log(f"normaliser from the encoding cache ({job.cache.root})")
            model.init_prior()
        if ctx.distributed:             # rank 0 fitted the normaliser; the others take it
            for t in model.encoder.state_dict().values():
                ctx.broadcast_(t, src=0)
            if model.net is not None:
                for t in model.net.state_dict().values():
                    ctx.broadcast_(t, src=0)
    job.timings["normaliser"] = time.perf_counter() - t_norm
    job.model = model


def _encode(job: _Job, trained: bool) -> tuple[EncodedVideos | list, EncodedVideos | ShardedVideos | list]:
    """Encode and pool the training videos (when trained) and the validation videos, once."""
    model, store, tc, ctx, va = job.model, job.store, job.cfg.train, job.ctx, job.va
    if not model.impl.uses_encoder:
        return [], []
    t_enc = time.perf_counter()
    size = encoded_size(store, (job.tr if trained else []) + va, model.encoder.out_dim, tc.max_snippets)
    on_disk = tc.cache == "disk" or (tc.cache == "auto" and size > tc.cache_limit_mb * 2 ** 20)
    tag = f".rank{ctx.rank}" if ctx.distributed else ""
    cache = (lambda name: job.run / f".{name}{tag}.encoded.cache") if on_disk else (lambda name: None)
    train_videos: EncodedVideos | list = (
        encode_videos(model, store, job.tr, tc.max_snippets, tc.upsample_short, job.log, cache("train"), ctx=ctx,
                      shared=job.cache)
        if trained else [])
    val_videos: EncodedVideos | ShardedVideos
    if ctx.distributed:                 # each rank encodes the validation batches it scores
        held = [j for k, i in enumerate(range(0, len(va), VAL_BATCH)) if val_batch_owner(k, ctx) == ctx.rank
                for j in range(i, min(len(va), i + VAL_BATCH))]
        val_videos = ShardedVideos(len(va), held, encode_videos(
            model, store, [va[j] for j in held], tc.max_snippets, tc.upsample_short, None, cache("val")))
    else:
        val_videos = encode_videos(model, store, va, tc.max_snippets, tc.upsample_short, job.log, cache("val"),
                                   shared=job.cache)
    job.timings["encode"] = time.perf_counter() - t_enc
    job.log(f"encoded {len(train_videos) + len(val_videos)} videos in {job.timings['encode']:.1f}s "
            f"({model.encoder.out_dim} channels, {size / 2 ** 20:.0f} MB {'on disk' if on_disk else 'in memory'})")
    return train_videos, val_videos


def _train(job: _Job, train_videos, val_videos, trained: bool, resume: bool) -> FitResult:
    """The optimisation (for trained methods), then the threshold of the selected weights."""
    tc, world = job.cfg.train, job.ctx.world_size
    half = tc.batch_size // 2 * (world if tc.batch_per_rank else 1)     # per class, all ranks together
    history: list[dict] = []
    best_step = step = 0
    if trained:
        loop = _Loop(job, train_videos, val_videos, half)
        loop.start(resume)
        loop.run()
        best_step = loop.select_final()
        history, step = loop.history, loop.step
    return _finish(job, val_videos, best_step, step, history, 2 * half if trained else 0)


def _finish(job: _Job, val_videos, best_step: int, steps: int, history: list[dict], batch_size: int) -> FitResult:
    """Score the validation videos with the selected weights, store the threshold, write the checkpoint."""
    model, ctx, run = job.model, job.ctx, job.run
    val_auc, threshold = None, 0.5
    if val_videos:
        ev = job.evaluate(val_videos)
        val_auc = ev["val_auc"]
        threshold = bag_threshold(ev["bags"], np.asarray([e.label for e in job.va]))
    model.threshold = threshold
    if ctx.is_main:
        model.cpu().save(run / MODEL_FILE, {"seed": job.seed, "step": best_step, "val_auc": val_auc,
                                             "val_videos": len(val_videos), FIT_COMPLETE: "true"})
    ctx.barrier()                       # the checkpoint exists before any rank returns
    seconds = time.perf_counter() - job.start_time
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    job.log(f"done: {run / MODEL_FILE} (step {best_step}, val AUC {val_auc}, threshold {threshold:.4f}, "
            f"{seconds:.1f}s, peak RSS {peak_mb:.0f} MB)")
    return FitResult(run_dir=run, checkpoint=run / MODEL_FILE, method=job.cfg.method, seed=job.seed,
                     best_step=best_step, val_auc=val_auc, steps=steps, seconds=seconds, threshold=threshold,
                     history=history, world_size=ctx.world_size, batch_size=batch_size, timings=job.timings)


# --- command line ---------------------------------------------------------------------------------


def fit_command(data: str | Path | argparse.Namespace, features: str | Path | None = None,
                out: str | Path | None = None, method: str = "proximity", seed: int = 0,
                config: RunConfig | str | Path | None = None, resume: bool = False, quiet: bool = False,
                oracle_labels: str | Path | None = None) -> FitResult:
    """Body of ``patchvad fit``: train, print one summary line, return the FitResult.

    Accepts the paths directly (``fit_command(data, features, out, method=..., ...)``)
    or an ``argparse.Namespace`` with those names. Errors propagate as
    :class:`~patchvad.errors.PatchvadError`.
    """
    if isinstance(data, argparse.Namespace):
        a = data
        data, features, out, method, seed = a.data, a.features, a.out, a.method, a.seed
        config, resume, quiet = a.config, a.resume, getattr(a, "quiet", False)
        oracle_labels = getattr(a, "oracle_labels", None)
    if isinstance(data, argparse.Namespace) or features is None or out is None:
        raise TypeError("fit_command takes the paths data, features and out, or one Namespace holding them")
    res = fit(data, features, out, method=method, seed=seed, config=config, resume=resume,
              log=None if quiet else _default_log, oracle_labels=oracle_labels)
    val = "n/a" if res.val_auc is None else f"{res.val_auc:.4f}"
    procs = f", {res.world_size} processes" if res.world_size > 1 else ""
    procs += f", effective batch {res.batch_size}" if res.world_size > 1 and res.batch_size else ""
    if distributed.env_layout()[0] == 0:          # under torchrun, rank 0 reports
        print(f"{res.checkpoint}  (method {res.method}, seed {res.seed}, step {res.best_step}, validation video AUC "
              f"{val}, {res.seconds:.0f} s{procs})")
    return res


__all__ = ["CHECKPOINT_DIR", "CONFIG_FILE", "FIT_COMPLETE", "LOG_FILE", "MODEL_FILE", "FitResult", "bag_threshold",
           "evaluate_bags", "fit", "fit_command", "smoothed_best", "val_batch_owner", "video_auc"]
