"""Configuration of the where-and-when model: dataclasses <-> YAML, validated.

Three groups, each a frozen dataclass with documented defaults (docs/model.md):

* :class:`ModelConfig`  input encoding and the patch scorer,
* :class:`LossConfig`   window, selection and the weights of the MIL loss terms,
* :class:`TrainConfig`  optimisation, sampling, validation and checkpointing.

:class:`RunConfig` bundles them with the ``method``. ``RunConfig.from_yaml`` /
``to_yaml`` round-trip exactly; unknown keys and out-of-range values raise a
:class:`~patchvad.errors.ConfigError` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from patchvad.errors import ConfigError

if TYPE_CHECKING:
    from patchvad.model.selections import SelectionConfig

WINDOWS = ("fixed", "cusum", "none")


def _registered_selections() -> tuple[str, ...]:
    # Imported here: the registries live in model/, which builds on this module.
    from patchvad.model.selections import SELECTIONS
    return tuple(SELECTIONS)


def _registered_methods() -> tuple[str, ...]:
    from patchvad.model.methods import METHODS
    return tuple(METHODS)


@dataclass(frozen=True)
class ModelConfig:
    """Input encoding and patch scorer.

    Attributes:
        width: channels of the scorer (d).
        appearance_dims: principal components kept of the (scene-relative)
            appearance channels; 0 drops appearance.
        change_dims: principal components kept of the appearance-change channels.
        scene_dims: principal components kept of each cell's median appearance (the
            static scene there; needs ``relative``), 0 to leave it out.
        motion_context: add the scene's usual motion (per cell and per video: flow
            direction, speed, activity) and each token's flow along it, so "against
            the flow" or "slow where things are fast" can be learned.
        relative: subtract each cell's median over the video from appearance and
            change (describe a patch relative to its scene).
        motion_prior: ``logit = a * (z_prior - b) + correction``; the correction's last
            layer starts at zero, so an untrained model equals the motion floor.
        prior_channel: motion channel whose scene-relative residual is the prior, or
            ``memory``: the normal-memory distance (needs ``memory``).
        memory: size of the normal memory, 0 to leave it out: k-means centroids of
            encoded tokens of NORMAL training videos (their ``memory_parts``); each
            token's distance to the nearest centroid
            becomes one more input channel ("how unlike anything normal is this patch",
            comparable across cameras; docs/model.md, "A normal memory").
        memory_parts: the encoded parts a memory token is made of (of ``motion``,
            ``residual``, ``appearance``, ``change``; those the encoding has). Motion and
            its residual by default: on a new-camera development set they localised best
            (docs/model.md, "A normal memory").
        temporal_dilations: one residual Conv1d block (kernel 3) per dilation.
        spatial: kind of the spatial blocks: ``isotropic`` (3x3 kernel that depends
            only on the distance to the centre: context without a direction, so
            evidence cannot drift to a neighbouring cell), ``conv`` (free 3x3 Conv2d)
            or ``none`` (per-cell layers; spatial context from the scene token only).
        spatial_layers: residual spatial blocks, each with the global scene token added.
        scene_token: add the per-snippet global (mean-pooled) token.
        position: add a position encoding of the cell centre (works for any grid).
        dropout: dropout inside blocks.
        correction_bound: with the motion prior, the learned correction is squashed to
            ``(-b, b)`` logits (``b * tanh(c / b)``; identity near 0, so training starts as
            before); 0 leaves it unbounded. Evidence can still lift a motionless cell
            (an object left behind) well above the prior, but no correction can bury the
            motion evidence or invent an anomaly far from it.
        pca_samples: tokens sampled from normal training videos to fit the PCA.
        norm_videos: at most this many normal training videos (evenly spaced) fit
            the normaliser (its statistics converge long before a large set is read).
    """

    width: int = 32
    appearance_dims: int = 16
    change_dims: int = 8
    scene_dims: int = 8
    relative: bool = True
    motion_context: bool = True
    motion_prior: bool = True
    prior_channel: str = "energy_mean"
    memory: int = 0
    memory_parts: tuple[str, ...] = ("motion", "residual")
    temporal_dilations: tuple[int, ...] = (1, 2)
    spatial: str = "none"
    spatial_layers: int = 2
    scene_token: bool = True
    position: bool = True
    dropout: float = 0.1
    correction_bound: float = 0.0
    pca_samples: int = 50_000
    norm_videos: int = 200

    def validate(self) -> None:
        """Check every field's range.

        Raises:
            ConfigError: a value out of its range, naming the key (``model.<field>``).
        """
        _check(self.width >= 4, "model.width", self.width, ">= 4")
        _check(self.appearance_dims >= 0, "model.appearance_dims", self.appearance_dims, ">= 0")
        _check(self.change_dims >= 0, "model.change_dims", self.change_dims, ">= 0")
        _check(self.scene_dims >= 0, "model.scene_dims", self.scene_dims, ">= 0")
        _check(all(int(d) >= 1 for d in self.temporal_dilations), "model.temporal_dilations",
               self.temporal_dilations, "all >= 1")
        _check(self.spatial in ("isotropic", "conv", "none"), "model.spatial", self.spatial,
               "isotropic, conv or none")
        _check(self.spatial_layers >= 0, "model.spatial_layers", self.spatial_layers, ">= 0")
        _check(0.0 <= self.dropout < 1.0, "model.dropout", self.dropout, "in [0, 1)")
        _check(self.correction_bound >= 0, "model.correction_bound", self.correction_bound, ">= 0")
        _check(self.pca_samples >= 100, "model.pca_samples", self.pca_samples, ">= 100")
        _check(self.norm_videos >= 1, "model.norm_videos", self.norm_videos, ">= 1")
        from patchvad.features.backbones.motion import MOTION_CHANNELS
        _check(self.memory >= 0, "model.memory", self.memory, ">= 0 (0: no normal memory)")
        _check(len(self.memory_parts) > 0 and set(self.memory_parts) <= {"motion", "residual", "appearance", "change"},
               "model.memory_parts", self.memory_parts, "one or more of motion, residual, appearance, change")
        _check(self.prior_channel in MOTION_CHANNELS or self.prior_channel == "memory" and self.memory > 0,
               "model.prior_channel", self.prior_channel,
               f"one of {list(MOTION_CHANNELS)}, or memory with model.memory > 0")


@dataclass(frozen=True)
class LossConfig:
    """Proximity-Aware Top-k MIL selection and loss weights.

    Definitions: docs/method.md, "Optimal window", "Proximity-Aware Top-k", "MIL losses".

    Attributes:
        window: optimal-window finder: fixed (w = floor(T/window_div)+1), cusum, none.
        selection: gauss (proximity-weighted), radius (top-k in the peak's
            neighbourhood), plain (top-k of the map).
        k: cells selected; sigma: Gaussian proximity width in cells; radius: cells.
        window_div: w = floor(T / window_div) + 1 (also the top-w of L_T).
        w_pa, w_t, w_n, w_smooth, w_tv, w_sparse: weights of L_PA, L_T, L_N,
            temporal smoothness, spatial total variation, sparsity.
        sultani_lambda: weight of Sultani's smoothness and sparsity terms.
    """

    window: str = "cusum"
    selection: str = "gauss"
    k: int = 4
    sigma: float = 1.0
    radius: int = 1
    window_div: int = 16
    w_pa: float = 1.0
    w_t: float = 1.0
    w_n: float = 1.0
    w_smooth: float = 1e-2
    w_tv: float = 1e-2
    w_sparse: float = 1e-3
    sultani_lambda: float = 8e-5

    def selection_config(self) -> SelectionConfig:
        """The selection rule and its settings (training's bag score = inference's snippet score)."""
        from patchvad.model.selections import SelectionConfig
        return SelectionConfig(rule=self.selection, k=self.k, sigma=self.sigma, radius=self.radius)

    def validate(self) -> None:
        """Check every field's range; ``selection`` must be a registered selection rule.

        Raises:
            ConfigError: a value out of its range, naming the key (``loss.<field>``).
        """
        _check(self.window in WINDOWS, "loss.window", self.window, f"one of {list(WINDOWS)}")
        selections = _registered_selections()
        _check(self.selection in selections, "loss.selection", self.selection, f"one of {list(selections)}")
        _check(self.k >= 1, "loss.k", self.k, ">= 1")
        _check(self.sigma > 0, "loss.sigma", self.sigma, "> 0")
        _check(self.radius >= 0, "loss.radius", self.radius, ">= 0")
        _check(self.window_div >= 1, "loss.window_div", self.window_div, ">= 1")
        for name in ("w_pa", "w_t", "w_n", "w_smooth", "w_tv", "w_sparse", "sultani_lambda"):
            _check(getattr(self, name) >= 0, f"loss.{name}", getattr(self, name), ">= 0")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping.

    Attributes:
        steps: optimisation steps.
        batch_size: videos per step, half normal, half anomalous (even).
        lr, weight_decay: AdamW.
        max_snippets: training sequences longer than this are mean-pooled into this
            many segments (docs/method.md, "Training").
        upsample_short: also stretch shorter sequences to ``max_snippets`` (by
            repeating snippets); off: keep them at native length, padded and masked.
        val_fraction: share of the TRAINING videos held out (stratified) for
            checkpoint selection by video-level AUC of bag scores.
        split_seed: seed of that split (fixed across method seeds: same validation set).
        train_videos: train on this many of the dataset's training videos (0: all of
            them), taken BEFORE the validation split: a nested, label-stratified subset
            (the first ``n`` of a fixed per-label permutation drawn from ``split_seed``,
            never from the training seed; normal / anomalous in the dataset's
            proportions), so the videos of size ``n`` are among those of size ``2n``
            (learning curves, ``patchvad curves``). More than the dataset holds is an error.
        eval_every: steps between validations (and checkpoints).
        select: ``val_auc`` (best video AUC of bag scores, ties to the later step),
            ``val_auc_smooth`` (best AUC averaged over ``smooth_window`` consecutive
            evaluations; step 0, the untrained motion prior, is a candidate),
            ``val_loss`` (lowest validation loss) or ``last``.
        smooth_window: evaluations averaged by ``val_auc_smooth``.
        keep_checkpoints: also keep every evaluated checkpoint in ``RUN/checkpoints/``
            (``val_auc_smooth`` keeps them anyway: it selects after training).
        hflip: probability of mirroring a training video left-right (grid and
            horizontal-flow channels together); 0 turns it off.
        input_noise: std of Gaussian noise added to the standardised inputs (not
            to the prior channel) during training.
        grad_clip: max gradient norm (0: off).
        batch_per_rank: under ``torchrun``: False (default) splits each balanced batch
            of ``batch_size`` videos evenly between the processes, so the effective
            batch (and the training) equals the single-process run; True gives every
            process ``batch_size`` videos (effective batch ``world_size x batch_size``,
            learning rate unchanged). No effect in one process.
        threads: torch CPU threads (0: leave torch's default).
        cache: where the encoded training videos live: ``memory``, ``disk`` (one
            file in the run folder, read per batch, removed at the end) or ``auto``
            (disk when they would take more than ``cache_limit_mb``).
        device: ``cpu``, ``cuda`` or ``auto``.
        log_every: steps between progress lines.
    """

    steps: int = 600
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 5e-3
    max_snippets: int = 64
    upsample_short: bool = False
    val_fraction: float = 0.2
    split_seed: int = 0
    train_videos: int = 0
    eval_every: int = 50
    select: str = "val_auc_smooth"
    smooth_window: int = 3
    keep_checkpoints: bool = False
    hflip: float = 0.5
    input_noise: float = 0.1
    grad_clip: float = 1.0
    batch_per_rank: bool = False
    threads: int = 0
    cache: str = "auto"
    cache_limit_mb: int = 1024
    device: str = "auto"
    log_every: int = 25

    def validate(self) -> None:
        """Check every field's range.

        Raises:
            ConfigError: a value out of its range, naming the key (``train.<field>``).
        """
        _check(self.steps >= 0, "train.steps", self.steps, ">= 0")
        _check(self.batch_size >= 2 and self.batch_size % 2 == 0, "train.batch_size", self.batch_size,
               "even and >= 2")
        _check(self.lr > 0, "train.lr", self.lr, "> 0")
        _check(self.weight_decay >= 0, "train.weight_decay", self.weight_decay, ">= 0")
        _check(self.max_snippets >= 1, "train.max_snippets", self.max_snippets, ">= 1")
        _check(0.0 <= self.val_fraction < 1.0, "train.val_fraction", self.val_fraction, "in [0, 1)")
        _check(self.train_videos >= 0, "train.train_videos", self.train_videos, ">= 0 (0: every training video)")
        _check(self.eval_every >= 1, "train.eval_every", self.eval_every, ">= 1")
        _check(self.select in ("val_auc", "val_auc_smooth", "val_loss", "last"), "train.select", self.select,
               "val_auc, val_auc_smooth, val_loss or last")
        _check(self.smooth_window >= 1, "train.smooth_window", self.smooth_window, ">= 1")
        _check(0.0 <= self.hflip <= 1.0, "train.hflip", self.hflip, "in [0, 1]")
        _check(self.input_noise >= 0, "train.input_noise", self.input_noise, ">= 0")
        _check(self.grad_clip >= 0, "train.grad_clip", self.grad_clip, ">= 0")
        _check(self.threads >= 0, "train.threads", self.threads, ">= 0")
        _check(self.cache in ("memory", "disk", "auto"), "train.cache", self.cache, "memory, disk or auto")
        _check(self.cache_limit_mb >= 0, "train.cache_limit_mb", self.cache_limit_mb, ">= 0")
        _check(self.device in ("cpu", "cuda", "auto"), "train.device", self.device, "cpu, cuda or auto")
        _check(self.log_every >= 1, "train.log_every", self.log_every, ">= 1")


@dataclass(frozen=True)
class RunConfig:
    """Everything ``fit`` needs besides data paths and the seed."""

    method: str = "proximity"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> "RunConfig":
        """Check the method (a registered one) and the three groups; return self.

        Raises:
            ConfigError: an unknown method or a value out of its range, naming the key.
        """
        methods = _registered_methods()
        _check(self.method in methods, "method", self.method, f"one of {list(methods)}")
        self.model.validate()
        self.loss.validate()
        self.train.validate()
        return self

    @classmethod
    def for_method(cls, method: str, base: "RunConfig | None" = None) -> "RunConfig":
        """The configuration of ``method``: ``base`` with the method's switches applied.

        ``plain_topk`` is the ablation without proximity and without window
        (window none, selection plain); everything else stays as in ``base``.
        """
        from patchvad.model.methods import get_method
        base = base or cls()
        return get_method(method).configure(dataclasses.replace(base, method=method)).validate()

    # -- YAML ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain dict ``{method, model, loss, train}`` of YAML-safe values (tuples become lists)."""
        return {"method": self.method, "model": _to_plain(self.model), "loss": _to_plain(self.loss),
                "train": _to_plain(self.train)}

    def to_yaml(self) -> str:
        """The YAML text of :meth:`to_dict`, keys in field order."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: Any, source: str | Path | None = None) -> "RunConfig":
        """The validated configuration of a parsed mapping; missing keys keep their defaults.

        Args:
            data: mapping with keys among ``method``, ``model``, ``loss``, ``train`` (None: all defaults).
            source: the file ``data`` came from, named in errors.

        Raises:
            ConfigError: not a mapping, an unknown key, a value of the wrong type or out of range.
        """
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError("a config must be a mapping with keys method/model/loss/train", path=source)
        unknown = sorted(set(data) - {"method", "model", "loss", "train"})
        if unknown:
            raise ConfigError(f"unknown top-level key(s) {unknown}; allowed: method, model, loss, train",
                              path=source)
        kw: dict[str, Any] = {}
        if "method" in data:
            kw["method"] = str(data["method"])
        for name, typ in (("model", ModelConfig), ("loss", LossConfig), ("train", TrainConfig)):
            if name in data:
                kw[name] = _from_plain(typ, data[name], name, source)
        try:
            return cls(**kw).validate()
        except ConfigError as exc:
            raise ConfigError(exc.message, path=source) from None

    @classmethod
    def from_yaml(cls, text: str, source: str | Path | None = None) -> "RunConfig":
        """The validated configuration of YAML text (see :meth:`from_dict`).

        Args:
            text: the YAML document.
            source: the file ``text`` came from, named in errors.

        Raises:
            ConfigError: not valid YAML, or as :meth:`from_dict`.
        """
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"not valid YAML ({exc})", path=source) from None
        return cls.from_dict(data, source)

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        """The validated configuration in the YAML file ``path``.

        Raises:
            ConfigError: the file is missing or unreadable, or as :meth:`from_yaml`.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError("config file not found", path=path) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config ({exc})", path=path) from None
        return cls.from_yaml(text, path)


def _check(ok: bool, key: str, value: Any, expect: str) -> None:
    if not ok:
        raise ConfigError(f"{key} = {value!r} is out of range: must be {expect}")


def _to_plain(obj: Any) -> dict:
    out = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def _from_plain(typ: type, data: Any, section: str, source: str | Path | None) -> Any:
    if data is None:
        return typ()
    if not isinstance(data, dict):
        raise ConfigError(f"'{section}' must be a mapping", path=source)
    known = {f.name: f for f in fields(typ)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) {[f'{section}.{u}' for u in unknown]}; allowed: "
                          f"{sorted(known)}", path=source)
    defaults = typ()
    kw = {}
    for name, value in data.items():
        default = getattr(defaults, name)
        kw[name] = _coerce(value, default, f"{section}.{name}", source)
    return typ(**kw)


def _coerce(value: Any, default: Any, key: str, source: str | Path | None) -> Any:
    bad = ConfigError(f"{key} = {value!r} has the wrong type (expected {type(default).__name__})", path=source)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise bad
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad
        return tuple(_coerce(v, default[0] if default else 0, key, source) for v in value)
    return value


__all__ = ["LossConfig", "ModelConfig", "RunConfig", "TrainConfig",
           "WINDOWS"]
