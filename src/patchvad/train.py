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

from patchvad.config import RunConfig
from patchvad.data.folder import DatasetFolder, TrainSet, VideoEntry
from patchvad.errors import CheckpointError, ConfigError, FeatureError
from patchvad.features.store import FeatureStore
from patchvad.io.files import atomic_path, atomic_write_json, atomic_write_text
from patchvad.model.baselines import sultani_loss, video_topk_loss
from patchvad.model.losses import MILLoss
from patchvad.model.model import TRAINED_METHODS, AnomalyModel
from patchvad.model.selection import window_length

MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.safetensors"
CONFIG_FILE = "config.yaml"
LOG_FILE = "train_log.jsonl"
CHECKPOINT_DIR = "checkpoints"


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


def _pad_batch(videos: list[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    lengths = [int(v.shape[0]) for v in videos]
    tmax = max(lengths)
    x = torch.zeros((len(videos), tmax, *videos[0].shape[1:]), dtype=torch.float32)
    for i, v in enumerate(videos):
        x[i, :lengths[i]] = v.float()
    mask = torch.arange(tmax).view(1, -1) < torch.as_tensor(lengths).view(-1, 1)
    return x.to(device), mask.to(device), lengths


def augment(x: torch.Tensor, mask: torch.Tensor, hflip: float, noise: float, signs: torch.Tensor,
            gen: torch.Generator) -> torch.Tensor:
    """Training augmentation of a padded batch ``(B, T, Gh, Gw, C)``.

    ``hflip``: each video mirrored left-right with that probability (grid axis and the
    horizontal-flow channels, ``signs``). ``noise``: Gaussian noise on every channel
    but the prior (channel 0), on real snippets only. Draws from ``gen`` only when
    enabled, so runs without augmentation consume the same random numbers as before.
    """
    if hflip > 0:
        flip = (torch.rand(x.shape[0], generator=gen) < hflip).to(x.device)
        if bool(flip.any()):
            x = torch.where(flip.view(-1, 1, 1, 1, 1), x.flip(3) * signs, x)
    if noise > 0:
        eps = torch.randn(x.shape, generator=gen).to(x.device) * noise
        eps[..., 0] = 0.0
        x = x + eps * mask.to(x.dtype).view(*mask.shape, 1, 1, 1)
    return x


# --- objective ----------------------------------------------------------------------------


def batch_loss(model: AnomalyModel, x: torch.Tensor, mask: torch.Tensor, lengths: list[int], labels: list[int],
               mil: MILLoss) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """Loss of one padded batch for the model's method -> ``(loss, terms, bag scores (B,))``."""
    cfg = model.config
    if model.is_video_level:
        a = model.snippet_level(x, mask)
        if model.method == "sultani":
            loss = sultani_loss(a, lengths, labels, cfg.loss.sultani_lambda)
        else:
            loss = video_topk_loss(a, lengths, labels, cfg.loss.window_div)
        bags = torch.stack([torch.topk(a[b, :n], window_length(n, cfg.loss.window_div)).values.mean()
                            for b, n in enumerate(lengths)]).detach()
        return loss, {"total": float(loss.detach())}, bags
    s = model.scores(x, mask)
    loss, terms = mil(s, lengths, labels)
    bags = terms.pop("bag")
    return loss, terms, bags


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


@torch.no_grad()
def evaluate_bags(model: AnomalyModel, videos, labels: list[int], mil: MILLoss,
                  device: torch.device, batch_size: int = 16) -> dict:
    """Bag scores, video AUC and mean loss over videos."""
    model.eval()
    bags, losses = [], []
    for i in range(0, len(videos), batch_size):
        x, mask, lengths = _pad_batch([videos[j] for j in range(i, min(len(videos), i + batch_size))], device)
        loss, _, b = batch_loss(model, x, mask, lengths, labels[i:i + batch_size], mil)
        bags.append(b.cpu())
        losses.append(float(loss) * len(lengths))
    model.train()
    scores = torch.cat(bags).numpy() if bags else np.zeros(0)
    return {"bags": scores, "val_auc": roc_auc(scores, np.asarray(labels)),
            "val_loss": float(sum(losses) / max(1, len(videos)))}


# --- resume state ----------------------------------------------------------------------------


def _save_state(path: Path, model: AnomalyModel, opt: torch.optim.Optimizer, gen: torch.Generator,
                sampler: _Sampler, info: dict) -> None:
    tensors = {f"model.{k}": v for k, v in model.tensors().items()}
    sd = opt.state_dict()
    for idx, st in sd["state"].items():
        for key, val in st.items():
            tensors[f"opt.{idx}.{key}"] = torch.as_tensor(val).detach().cpu().contiguous()
    tensors["rng.torch"] = gen.get_state().clone()
    tensors["rng.global"] = torch.get_rng_state().clone()          # dropout
    for c in (0, 1):
        tensors[f"sampler.perm{c}"] = torch.as_tensor(sampler.perm[c], dtype=torch.int64).contiguous()
    meta = {"format": "patchvad-train-state/1", "param_groups": json.dumps(sd["param_groups"]),
            "sampler_pos": json.dumps(sampler.pos), "info": json.dumps(info)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


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


def encoded_size(store: FeatureStore, entries: list, channels: int, max_snippets: int) -> int:
    """Bytes the encoded, pooled float16 videos will take (from the stored shapes)."""
    total = 0
    for e in entries:
        t, gh, gw, _ = store.record(e.stem)["shape"]
        total += min(int(t), max_snippets) * gh * gw * channels * 2
    return total


def encode_videos(model: AnomalyModel, store: FeatureStore, entries: list, max_snippets: int,
                  upsample_short: bool, log: Callable[[str], None] | None = None,
                  cache_file: Path | None = None) -> EncodedVideos:
    """Encode each video once (memory-mapped read) and pool to ``max_snippets``.

    Returns an :class:`EncodedVideos` in memory, or backed by ``cache_file``.
    """
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
    run = Path(out)
    run.mkdir(parents=True, exist_ok=True)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device = torch.device("cuda" if tc.device == "cuda" or (tc.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    torch.manual_seed(seed)
    np.random.seed(seed)

    if resume and (run / CONFIG_FILE).exists():
        saved = RunConfig.load(run / CONFIG_FILE).to_dict()
        now = cfg.to_dict()
        saved["train"].pop("steps")
        now["train"].pop("steps")
        if saved != now:
            raise ConfigError("cannot resume: the configuration differs from the one this run was started "
                              "with (only train.steps may change; see config.yaml)", path=run / CONFIG_FILE)
    atomic_write_text(run / CONFIG_FILE, cfg.to_yaml())

    trainset: TrainSet = DatasetFolder(data_root, check_files=False).train_set()
    entries = list(trainset)
    if not entries:
        raise ConfigError("the dataset has no training videos", path=data_root)
    store = FeatureStore(features)
    _check_store(store, entries)
    tr, va = split_train_val(entries, tc.val_fraction, tc.split_seed)
    atomic_write_json(run / "split.json", {"train": [e.stem for e in tr], "val": [e.stem for e in va],
                                           "split_seed": tc.split_seed})
    if not any(e.label == 0 for e in tr):
        raise ConfigError("the training videos hold no normal video (needed for the normaliser and L_N)",
                          path=data_root)
    n_anom = sum(e.label == 1 for e in tr)
    log(f"fit {cfg.method} seed={seed}: {len(tr)} training videos ({n_anom} anomalous), {len(va)} validation, "
        f"device {device}")

    model = AnomalyModel(cfg, store.spec)
    if cfg.method != "random":
        normals = [e for e in tr if e.label == 0]
        if len(normals) > cfg.model.norm_videos:
            keep = np.unique(np.linspace(0, len(normals) - 1, cfg.model.norm_videos).round().astype(int))
            normals = [normals[i] for i in keep]
        model.encoder.fit((store.load(e.stem).x for e in normals), seed=seed, max_videos_hint=len(normals))
        model.init_prior()
    model.to(device)
    trained = cfg.method in TRAINED_METHODS and tc.steps > 0
    val_videos: EncodedVideos | list = []
    train_videos: EncodedVideos | list = []
    if cfg.method != "random":
        t_enc = time.perf_counter()
        size = encoded_size(store, (tr if trained else []) + va, model.encoder.out_dim, tc.max_snippets)
        on_disk = tc.cache == "disk" or (tc.cache == "auto" and size > tc.cache_limit_mb * 2 ** 20)
        cache = (lambda name: run / f".{name}.encoded.cache") if on_disk else (lambda name: None)
        train_videos = (encode_videos(model, store, tr, tc.max_snippets, tc.upsample_short, log, cache("train"))
                        if trained else [])
        val_videos = encode_videos(model, store, va, tc.max_snippets, tc.upsample_short, log, cache("val"))
        log(f"encoded {len(train_videos) + len(val_videos)} videos in {time.perf_counter() - t_enc:.1f}s "
            f"({model.encoder.out_dim} channels, {size / 2 ** 20:.0f} MB {'on disk' if on_disk else 'in memory'})")
    try:
        return _train(cfg, run, model, store, tr, va, train_videos, val_videos, trained, resume, seed, device,
                      log, start_time)
    finally:
        for cached in (train_videos, val_videos):
            if isinstance(cached, EncodedVideos):
                cached.close()


def _train(cfg: RunConfig, run: Path, model: AnomalyModel, store: FeatureStore, tr: list, va: list,
           train_videos, val_videos, trained: bool, resume: bool, seed: int, device: torch.device,
           log: Callable[[str], None], start_time: float) -> FitResult:
    tc = cfg.train
    n_anom = sum(e.label == 1 for e in tr)
    mil = MILLoss(cfg.loss)
    history: list[dict] = []
    log_path = run / LOG_FILE

    def write_log(record: dict) -> None:
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
        sampler = _Sampler(labels, tc.batch_size // 2, gen)
        opt = torch.optim.AdamW(model.net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        flip_signs = model.encoder.hflip_signs().to(device)
        if resume and (run / STATE_FILE).exists():
            info = _load_state(run / STATE_FILE, model, opt, gen, sampler)
            step, best_step, best_score = info["step"], info["best_step"], info["best_score"]
            history = info.get("history", [])
            log(f"resumed at step {step} (best step {best_step}, score {best_score:.4f})")
        elif not resume and log_path.exists():
            log_path.unlink()
        keep = tc.keep_checkpoints or tc.select == "val_auc_smooth"
        ckpt_dir = run / CHECKPOINT_DIR

        def keep_checkpoint(at: int, rec: dict) -> None:
            if keep:
                model.save(ckpt_dir / f"step_{at:06d}.safetensors", {"seed": seed, "step": at,
                                                                      "val_auc": rec["val_auc"]})

        if step == 0 and val_videos:
            ev = evaluate_bags(model, val_videos, val_labels, mil, device)
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
            idx = sampler.next()
            x, mask, lengths = _pad_batch([train_videos[i] for i in idx], device)
            x = augment(x, mask, tc.hflip, tc.input_noise, flip_signs, gen)
            y = [int(labels[i]) for i in idx]
            loss, terms, _ = batch_loss(model, x, mask, lengths, y, mil)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.net.parameters(), tc.grad_clip)
            opt.step()
            step += 1
            for k, v in terms.items():
                running[k] = running.get(k, 0.0) + float(v)
            n_running += 1
            if step % tc.log_every == 0 or step == tc.steps:
                avg = {k: v / n_running for k, v in running.items()}
                rate = (step - first_step) / max(1e-9, time.perf_counter() - t_steps)
                write_log({"kind": "train", "step": step, **avg})
                log(f"step {step}/{tc.steps} loss {avg['total']:.4f} ({rate:.1f} steps/s)")
                running, n_running = {}, 0
            if step % tc.eval_every == 0 or step == tc.steps:
                if val_videos:
                    ev = evaluate_bags(model, val_videos, val_labels, mil, device)
                    rec = {"step": step, "val_auc": ev["val_auc"], "val_loss": ev["val_loss"]}
                else:
                    rec = {"step": step, "val_auc": None, "val_loss": None}
                history.append(rec)
                write_log({"kind": "val", **rec})
                keep_checkpoint(step, rec)
                score = _selection_score(tc.select, rec, step)
                if score >= best_score:
                    best_score, best_step = score, step
                    model.save(run / MODEL_FILE, {"seed": seed, "step": step, "val_auc": rec["val_auc"],
                                                 "val_videos": len(val_videos)})
                log(f"step {step}: val AUC {rec['val_auc']}, val loss {rec['val_loss']} (best step {best_step})")
                _save_state(run / STATE_FILE, model, opt, gen, sampler,
                            {"step": step, "best_step": best_step, "best_score": best_score, "history": history})
        from patchvad.model.model import load_model
        if tc.select == "val_auc_smooth" and history:
            best_step = smoothed_best(history, tc.smooth_window)
            best = load_model(ckpt_dir / f"step_{best_step:06d}.safetensors", store.spec)
            log(f"selected step {best_step} (best mean validation AUC over {tc.smooth_window} evaluations)")
        else:
            # Reload the selected weights for the threshold.
            best = load_model(run / MODEL_FILE, store.spec)
        model.load_tensors(best.tensors())
        model.to(device)

    val_auc = None
    if val_videos:
        ev = evaluate_bags(model, val_videos, val_labels, mil, device)
        val_auc = ev["val_auc"]
        threshold = youden_threshold(ev["bags"], np.asarray(val_labels))
    model.threshold = threshold
    model.cpu().save(run / MODEL_FILE, {"seed": seed, "step": best_step, "val_auc": val_auc,
                                         "val_videos": len(val_videos)})
    seconds = time.perf_counter() - start_time
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log(f"done: {run / MODEL_FILE} (step {best_step}, val AUC {val_auc}, threshold {threshold:.4f}, "
        f"{seconds:.1f}s, peak RSS {peak_mb:.0f} MB)")
    return FitResult(run_dir=run, checkpoint=run / MODEL_FILE, method=cfg.method, seed=seed, best_step=best_step,
                     val_auc=val_auc, steps=step, seconds=seconds, threshold=threshold, history=history)


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


def add_fit_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``patchvad fit``."""
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (generic layout)")
    parser.add_argument("--features", required=True, type=Path, help="feature store of that dataset")
    parser.add_argument("--out", required=True, type=Path, help="run folder to write")
    parser.add_argument("--method", default="proximity",
                        choices=["proximity", "plain_topk", "video_mil", "sultani", "motion_floor", "random"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", type=Path, default=None, help="YAML with model/loss/train overrides")
    parser.add_argument("--resume", action="store_true", help="continue from RUN/train_state.safetensors")
    parser.add_argument("--quiet", action="store_true")
    return parser


def fit_command(data: str | Path | argparse.Namespace, features: str | Path | None = None,
                out: str | Path | None = None, method: str = "proximity", seed: int = 0,
                config: RunConfig | str | Path | None = None, resume: bool = False, quiet: bool = False) -> FitResult:
    """Body of ``patchvad fit``: train, print one summary line, return the FitResult.

    Accepts the paths directly (``fit_command(data, features, out, method=..., ...)``)
    or an ``argparse.Namespace`` built with :func:`add_fit_arguments`. Errors propagate
    as :class:`~patchvad.errors.PatchvadError`.
    """
    if isinstance(data, argparse.Namespace):
        a = data
        data, features, out, method, seed = a.data, a.features, a.out, a.method, a.seed
        config, resume, quiet = a.config, a.resume, getattr(a, "quiet", False)
    res = fit(data, features, out, method=method, seed=seed, config=config, resume=resume,
              log=None if quiet else _default_log)
    val = "n/a" if res.val_auc is None else f"{res.val_auc:.4f}"
    print(f"{res.checkpoint}  (method {res.method}, seed {res.seed}, step {res.best_step}, validation video AUC "
          f"{val}, {res.seconds:.0f} s)")
    return res


__all__ = ["EncodedVideos", "FitResult", "add_fit_arguments", "batch_loss", "encode_videos", "evaluate_bags", "fit", "fit_command",
           "pool_snippets", "roc_auc", "split_train_val", "youden_threshold"]
