"""VideoMAE video backbones through Hugging Face ``transformers`` (extra ``video``).

A video model sees the whole snippet at once: ``clip_frames`` frames (16 for every
model here) spread over the snippet go through the model together, and its
space-time tokens (tubelets of 2 frames x 16 x 16 pixels) form a grid
``(T', H/16, W/16)`` per snippet. The patch feature of a cell is:

* ``appearance``: the cell's token, averaged over the ``T' = clip_frames / 2`` token
  slices (resampled to the requested grid like every backbone);
* ``appearance_change``: the mean absolute difference of the cell's token between
  consecutive token slices.

The models' position embeddings are a fixed sinusoid table over the flattened
``(t, h, w)`` token index, so the input must be the model's own size (224x224) and
frame count; other sizes are refused rather than silently misread.

``transformers`` installs and imports beside patchvad's CPU torch without
torchvision, so this is the library's own model code and its own ``from_pretrained``
(weights from the Hugging Face hub, cached after the first download).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from patchvad.errors import ConfigError
from patchvad.features.backbones import hub
from patchvad.features.backbones.effnet import resample
from patchvad.features.backbones.vit import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class VideoEntry:
    """A VideoMAE checkpoint on the hub and its architecture (for random weights without files)."""

    repo: str
    config: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """``D``, the width of the model's tokens."""
        return int(self.config["hidden_size"])


_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
_SMALL = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536)

VIDEO_MODELS: dict[str, VideoEntry] = {
    # Self-supervised (masked autoencoding) on Kinetics-400, no labels: general space-time features.
    "videomae-base": VideoEntry("MCG-NJU/videomae-base", dict(_BASE, use_mean_pooling=False)),
    # Fine-tuned on Kinetics-400 action labels.
    "videomae-base-k400": VideoEntry("MCG-NJU/videomae-base-finetuned-kinetics", dict(_BASE, use_mean_pooling=True)),
    "videomae-small-k400": VideoEntry("MCG-NJU/videomae-small-finetuned-kinetics",
                                      dict(_SMALL, use_mean_pooling=True)),
}


def _load(name: str, entry: VideoEntry, pretrained: bool) -> tuple[nn.Module, str]:
    transformers = hub.require("transformers", "video", name)
    if not pretrained:
        torch.manual_seed(0)
        model = transformers.VideoMAEModel(transformers.VideoMAEConfig(**entry.config))
        digest = "random"
    else:
        hub.require("huggingface_hub", "video", name)
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()     # the classifier head of a fine-tuned model is unused
        try:
            model = transformers.VideoMAEModel.from_pretrained(entry.repo, dtype=torch.float32, **hub.hub_kwargs())
        except Exception as exc:  # missing files, network, a malformed config
            raise hub.download_error(entry.repo, "config.json and weights", exc) from exc
        finally:
            transformers.logging.set_verbosity(verbosity)
        digest = hub.state_hash(model.state_dict())
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, digest


class VideoMAEAppearance(nn.Module):
    """Space-time token grid of a VideoMAE model per snippet.

    Input ``(B, F, 3, H, W)`` float RGB in [0, 255] with ``F == clip_frames`` and
    ``(H, W)`` the model's image size; output ``(B, Gh, Gw, 2 D)``.
    """

    mean: torch.Tensor      # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, name: str, entry: VideoEntry, pretrained: bool = True):
        super().__init__()
        self.name = name
        self.net, self.weights_hash = _load(name, entry, pretrained)
        cfg: Any = self.net.config      # a transformers VideoMAEConfig (transformers is imported at run time)
        self.clip_frames = int(cfg.num_frames)
        self.tubelet = int(cfg.tubelet_size)
        self.patch = int(cfg.patch_size)
        size = cfg.image_size
        self.image_size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        d = int(cfg.hidden_size)
        self.channel_groups = {"appearance": d, "appearance_change": d}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1) * 255.0, persistent=False)

    def check_input_size(self, width: int, height: int) -> None:
        """Refuse any input size but the model's image size.

        Raises:
            ConfigError: ``(width, height)`` differs from the model's.
        """
        h, w = self.image_size
        if (width, height) != (w, h):
            raise ConfigError(f"backbone '{self.name}' takes {w}x{h} frames only (its position embeddings are "
                              f"fixed for that size); got --input-size {width}x{height}")

    @torch.no_grad()
    def forward(self, frames: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``(B, F, 3, H, W)`` frames -> ``(B, Gh, Gw, 2 D)`` (see the class docstring)."""
        b, f, _, h, w = frames.shape
        if f != self.clip_frames:
            raise ValueError(f"{self.name} takes {self.clip_frames} frames per snippet, got {f}")
        x = (frames - self.mean) / self.std
        tokens = self.net(pixel_values=x).last_hidden_state                     # (B, T'*gh*gw, D)
        t, gh, gw = f // self.tubelet, h // self.patch, w // self.patch
        d = tokens.shape[-1]
        tokens = tokens.reshape(b * t, gh, gw, d).permute(0, 3, 1, 2)          # (B*T', D, gh, gw)
        tokens = resample(tokens, grid).unflatten(0, (b, t))                   # (B, T', D, Gh, Gw)
        appearance = tokens.mean(1)
        change = (tokens[:, 1:] - tokens[:, :-1]).abs().mean(1) if t > 1 else torch.zeros_like(appearance)
        return torch.cat([appearance, change], dim=1).permute(0, 2, 3, 1).float()
