"""Image backbones from the timm and OpenCLIP model zoos, in plain PyTorch.

timm and open_clip themselves cannot be imported beside the CPU build of torch that
patchvad pins (both import torchvision at module level, and PyPI's torchvision wheel
is built against CUDA torch; see docs/features.md, "Backbones"). So the two
architectures patchvad offers from those zoos are written here, with the zoo's own
parameter names, and load the very checkpoint files those libraries load from the
Hugging Face hub:

* :class:`VisionTransformer`: timm's ``VisionTransformer`` (augreg ViTs, DINOv2 with
  layer scale and register tokens, OpenCLIP's CLIP image tower: pre-norm, QuickGELU);
* :class:`ConvNeXt`: timm's ``ConvNeXt``.

Checkpoints in timm's layout load as they are; OpenCLIP checkpoints go through
:func:`open_clip_to_timm`, an exact key mapping. Every load is strict: a missing or
unexpected tensor is an error (only the classifier head and the text tower, which
are never used, are skipped by name).

A :class:`ZooAppearance` turns the backbone's feature maps into the patch grid the
same way the default backbone does: per snippet, the mean over passes of each map
resampled to the grid (``appearance``) and the mean absolute change of the first map
between consecutive passes (``appearance_change``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from patchvad.errors import ConfigError, FeatureError
from patchvad.features.backbones import hub
from patchvad.features.backbones.effnet import resample

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# -- Vision Transformer (timm names) ---------------------------------------------------------
@dataclass(frozen=True)
class ViTConfig:
    """Architecture of a timm ``VisionTransformer`` (only what patchvad's models use).

    Attributes:
        patch: patch side in pixels.
        dim, depth, heads: width, blocks, attention heads.
        img_size: the checkpoint's input side; its position grid is ``img_size // patch``.
        mlp_ratio: hidden width of the MLP over ``dim``.
        eps: LayerNorm epsilon (timm 1e-6, CLIP 1e-5).
        act: ``gelu`` (erf) or ``quick_gelu`` (OpenAI CLIP).
        pre_norm: LayerNorm before the blocks (``norm_pre``; CLIP's ``ln_pre``).
        patch_bias: bias of the patch projection (CLIP has none).
        layer_scale: per-channel scales after attention and MLP (``ls1``, ``ls2``; DINOv2).
        reg_tokens: register tokens after the class token (DINOv2-reg).
        no_embed_class: position embeddings cover the patches only (DINOv2-reg).
    """

    patch: int
    dim: int
    depth: int
    heads: int
    img_size: int = 224
    mlp_ratio: float = 4.0
    eps: float = 1e-6
    act: str = "gelu"
    pre_norm: bool = False
    patch_bias: bool = True
    layer_scale: bool = False
    reg_tokens: int = 0
    no_embed_class: bool = False

    @property
    def pos_grid(self) -> int:
        """Side of the checkpoint's position grid, in patches."""
        return self.img_size // self.patch

    @property
    def num_prefix(self) -> int:
        """Tokens before the patch tokens: the class token and the register tokens."""
        return 1 + self.reg_tokens


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class _LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, act: nn.Module):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        act = _QuickGELU() if cfg.act == "quick_gelu" else nn.GELU()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.attn = _Attention(cfg.dim, cfg.heads)
        self.ls1 = _LayerScale(cfg.dim) if cfg.layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.mlp = _Mlp(cfg.dim, int(cfg.dim * cfg.mlp_ratio), act)
        self.ls2 = _LayerScale(cfg.dim) if cfg.layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class _PatchEmbed(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.dim, cfg.patch, stride=cfg.patch, bias=cfg.patch_bias)


def resample_pos_embed(pos: torch.Tensor, old: tuple[int, int], new: tuple[int, int]) -> torch.Tensor:
    """``(1, Gh*Gw, D)`` position embeddings of grid ``old`` -> grid ``new``.

    Bicubic with antialiasing, the way timm resamples a checkpoint's embeddings to
    another input size.
    """
    if old == new:
        return pos
    d = pos.shape[-1]
    grid = pos.float().reshape(1, old[0], old[1], d).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new, mode="bicubic", align_corners=False, antialias=True)
    return grid.permute(0, 2, 3, 1).reshape(1, new[0] * new[1], d).to(pos.dtype)


class VisionTransformer(nn.Module):
    """timm's ViT, for patch tokens: ``(N, 3, H, W)`` normalised -> ``(N, D, H/p, W/p)``.

    Parameter names are timm's, so a timm checkpoint loads with ``strict=True``. Any
    input whose sides are multiples of the patch works: the position embeddings are
    resampled from the checkpoint's grid to the input's grid (bicubic, antialiased,
    as timm does; cached per grid).
    """

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.patch_embed = _PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.reg_token = nn.Parameter(torch.zeros(1, cfg.reg_tokens, d)) if cfg.reg_tokens else None
        n_pos = cfg.pos_grid ** 2 + (0 if cfg.no_embed_class else cfg.num_prefix)
        self.pos_embed = nn.Parameter(torch.zeros(1, n_pos, d))
        self.norm_pre = nn.LayerNorm(d, eps=cfg.eps) if cfg.pre_norm else nn.Identity()
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(d, eps=cfg.eps)
        self._pos_cache: dict[tuple, torch.Tensor] = {}

    def init_random(self, seed: int = 0) -> "VisionTransformer":
        """Random weights (normal, std 0.02, clipped at 2 std, like timm's init): tests, no files."""
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("gamma"):
                    p.fill_(1e-5 if self.cfg.layer_scale else 1.0)
                elif p.ndim == 1 and ("norm" in name):
                    p.fill_(1.0 if name.endswith("weight") else 0.0)
                elif p.ndim == 1:
                    p.zero_()
                else:
                    p.normal_(0.0, 0.02, generator=gen).clamp_(-0.04, 0.04)
        return self

    def _pos(self, grid: tuple[int, int]) -> torch.Tensor:
        cfg = self.cfg
        n_prefix = 0 if cfg.no_embed_class else cfg.num_prefix
        prefix, patches = self.pos_embed[:, :n_prefix], self.pos_embed[:, n_prefix:]
        native = (cfg.pos_grid, cfg.pos_grid)
        if grid == native:
            return self.pos_embed
        # Resampled once per grid (and per weights, device and dtype).
        key = (grid, self.pos_embed.data_ptr(), str(patches.device), patches.dtype)
        cached = self._pos_cache.get(key)
        if cached is None:
            cached = torch.cat([prefix, resample_pos_embed(patches, native, grid)], dim=1).detach()
            self._pos_cache = {key: cached}
        return cached

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` normalised images -> ``(N, D, H/p, W/p)`` patch tokens."""
        x = self.patch_embed.proj(x)                         # (N, D, gh, gw)
        n, d, gh, gw = x.shape
        x = x.flatten(2).transpose(1, 2)                      # (N, gh*gw, D)
        prefix = [self.cls_token.expand(n, -1, -1)]
        if self.reg_token is not None:
            prefix.append(self.reg_token.expand(n, -1, -1))
        pos = self._pos((gh, gw))
        if self.cfg.no_embed_class:
            x = torch.cat(prefix + [x + pos], dim=1)
        else:
            x = torch.cat(prefix + [x], dim=1) + pos
        x = self.norm_pre(x)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)[:, self.cfg.num_prefix:]
        return x.transpose(1, 2).reshape(n, d, gh, gw)

    def maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The one feature map, ``[(N, D, H/p, W/p)]``."""
        return [self(x)]

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this (the patch side)."""
        return self.cfg.patch

    # parameters of timm checkpoints that patchvad never uses
    unused = ("head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias", "mask_token")


def open_clip_to_timm(state: Mapping[str, torch.Tensor], cfg: ViTConfig) -> tuple[dict[str, torch.Tensor], list[str]]:
    """OpenCLIP checkpoint -> timm names of its image tower (the mapping timm uses itself).

    Returns the converted tensors and the names that were skipped (text tower,
    ``logit_scale``, the image projection ``visual.proj``). Anything else under
    ``visual.`` that has no counterpart is left unconverted, so the strict check
    reports it.
    """
    out: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    fixed = {
        "visual.conv1.weight": "patch_embed.proj.weight",
        "visual.ln_pre.weight": "norm_pre.weight", "visual.ln_pre.bias": "norm_pre.bias",
        "visual.ln_post.weight": "norm.weight", "visual.ln_post.bias": "norm.bias",
    }
    block = {"ln_1": "norm1", "ln_2": "norm2", "attn.in_proj_weight": "attn.qkv.weight",
             "attn.in_proj_bias": "attn.qkv.bias", "attn.out_proj": "attn.proj", "mlp.c_fc": "mlp.fc1",
             "mlp.c_proj": "mlp.fc2"}
    for key, value in state.items():
        if not key.startswith("visual.") or key == "visual.proj":
            skipped.append(key)
        elif key in fixed:
            out[fixed[key]] = value
        elif key == "visual.class_embedding":
            out["cls_token"] = value.reshape(1, 1, -1)
        elif key == "visual.positional_embedding":
            out["pos_embed"] = value.unsqueeze(0)
        elif key.startswith("visual.transformer.resblocks."):
            rest = key[len("visual.transformer.resblocks."):]
            idx, sub = rest.split(".", 1)
            for src, dst in block.items():
                if sub == src or sub.startswith(src + "."):
                    out[f"blocks.{idx}.{dst}{sub[len(src):]}"] = value
                    break
            else:
                out[key] = value            # unknown: the strict check names it
        else:
            out[key] = value
    return out, skipped


# -- ConvNeXt (timm names) ------------------------------------------------------------------
@dataclass(frozen=True)
class ConvNeXtConfig:
    """Architecture of a timm ``ConvNeXt``: blocks and widths of the 4 stages."""

    depths: tuple[int, int, int, int]
    dims: tuple[int, int, int, int]
    eps: float = 1e-6


class _LayerNorm2d(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class _ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.mlp = _Mlp(dim, 4 * dim, nn.GELU())
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_dw(x).permute(0, 2, 3, 1)
        y = self.mlp(self.norm(y)) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class _Stage(nn.Module):
    def __init__(self, cin: int, cout: int, depth: int, eps: float, first: bool):
        super().__init__()
        self.downsample = nn.Identity() if first else nn.Sequential(_LayerNorm2d(cin, eps=eps),
                                                                     nn.Conv2d(cin, cout, 2, stride=2))
        self.blocks = nn.Sequential(*[_ConvNeXtBlock(cout, eps) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class ConvNeXt(nn.Module):
    """timm's ConvNeXt trunk: ``(N, 3, H, W)`` -> the stride-16 and stride-32 maps."""

    def __init__(self, cfg: ConvNeXtConfig):
        super().__init__()
        self.cfg = cfg
        self.stem = nn.Sequential(nn.Conv2d(3, cfg.dims[0], 4, stride=4), _LayerNorm2d(cfg.dims[0], eps=cfg.eps))
        cins = (cfg.dims[0],) + cfg.dims[:3]
        self.stages = nn.ModuleList(_Stage(cins[i], cfg.dims[i], cfg.depths[i], cfg.eps, i == 0) for i in range(4))

    def init_random(self, seed: int = 0) -> "ConvNeXt":
        """Random weights (normal, std 0.02, clipped at 2 std, like timm's init): tests, no files."""
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("gamma"):
                    p.fill_(1e-6)
                elif p.ndim == 1 and name.endswith("weight"):
                    p.fill_(1.0)
                elif p.ndim == 1:
                    p.zero_()
                else:
                    p.normal_(0.0, 0.02, generator=gen).clamp_(-0.04, 0.04)
        return self

    def maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(N, 3, H, W)`` normalised images -> the stride-16 and stride-32 maps."""
        x = self.stem(x)
        x = self.stages[1](self.stages[0](x))
        s16 = self.stages[2](x)
        return [s16, self.stages[3](s16)]

    multiple = 32
    unused = ("head.norm.weight", "head.norm.bias", "head.fc.weight", "head.fc.bias")


# -- the zoo ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ZooEntry:
    """One pretrained model: architecture, where its weights are, how its input is normalised.

    Attributes:
        repo: Hugging Face hub repository of the weights.
        files: file names in order of preference (what the original library tries).
        layout: ``timm`` or ``open_clip`` (parameter names of the file).
        arch: :class:`ViTConfig` or :class:`ConvNeXtConfig`.
        mean, std: input normalisation of the model (RGB in [0, 1]).
        extra: the patchvad extra that installs what loading needs.
    """

    repo: str
    files: tuple[str, ...]
    layout: str
    arch: ViTConfig | ConvNeXtConfig
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    extra: str

    def build(self) -> VisionTransformer | ConvNeXt:
        """The architecture with uninitialised weights."""
        return VisionTransformer(self.arch) if isinstance(self.arch, ViTConfig) else ConvNeXt(self.arch)

    @property
    def dims(self) -> list[int]:
        """Channels of each feature map the network outputs."""
        if isinstance(self.arch, ViTConfig):
            return [self.arch.dim]
        return [self.arch.dims[2], self.arch.dims[3]]

    @property
    def groups(self) -> dict[str, int]:
        """Feature channel groups: every map's channels, then the first map's change."""
        return {"appearance": sum(self.dims), "appearance_change": self.dims[0]}


_TIMM_FILES = ("model.safetensors", "pytorch_model.bin")
_OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

CLIP_MODELS: dict[str, ZooEntry] = {
    # OpenCLIP "ViT-B-16" / "openai" (quick_gelu=True): the original OpenAI CLIP weights.
    "clip-vit-b16": ZooEntry(
        repo="timm/vit_base_patch16_clip_224.openai", files=_OPEN_CLIP_FILES, layout="open_clip",
        arch=ViTConfig(patch=16, dim=768, depth=12, heads=12, img_size=224, eps=1e-5, act="quick_gelu",
                       pre_norm=True, patch_bias=False),
        mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD, extra="clip"),
    # OpenCLIP "ViT-B-16" / "laion2b_s34b_b88k".
    "clip-vit-b16-laion2b": ZooEntry(
        repo="laion/CLIP-ViT-B-16-laion2B-s34B-b88K", files=_OPEN_CLIP_FILES, layout="open_clip",
        arch=ViTConfig(patch=16, dim=768, depth=12, heads=12, img_size=224, eps=1e-5, act="gelu",
                       pre_norm=True, patch_bias=False),
        mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD, extra="clip"),
}

TIMM_MODELS: dict[str, ZooEntry] = {
    "vit_small_patch16_224.augreg_in21k_ft_in1k": ZooEntry(
        repo="timm/vit_small_patch16_224.augreg_in21k_ft_in1k", files=_TIMM_FILES, layout="timm",
        arch=ViTConfig(patch=16, dim=384, depth=12, heads=6), mean=INCEPTION_MEAN, std=INCEPTION_STD, extra="timm"),
    "vit_base_patch16_224.augreg2_in21k_ft_in1k": ZooEntry(
        repo="timm/vit_base_patch16_224.augreg2_in21k_ft_in1k", files=_TIMM_FILES, layout="timm",
        arch=ViTConfig(patch=16, dim=768, depth=12, heads=12), mean=INCEPTION_MEAN, std=INCEPTION_STD,
        extra="timm"),
    "vit_small_patch14_dinov2.lvd142m": ZooEntry(
        repo="timm/vit_small_patch14_dinov2.lvd142m", files=_TIMM_FILES, layout="timm",
        arch=ViTConfig(patch=14, dim=384, depth=12, heads=6, img_size=518, layer_scale=True),
        mean=IMAGENET_MEAN, std=IMAGENET_STD, extra="timm"),
    "vit_base_patch14_dinov2.lvd142m": ZooEntry(
        repo="timm/vit_base_patch14_dinov2.lvd142m", files=_TIMM_FILES, layout="timm",
        arch=ViTConfig(patch=14, dim=768, depth=12, heads=12, img_size=518, layer_scale=True),
        mean=IMAGENET_MEAN, std=IMAGENET_STD, extra="timm"),
    "vit_small_patch14_reg4_dinov2.lvd142m": ZooEntry(
        repo="timm/vit_small_patch14_reg4_dinov2.lvd142m", files=_TIMM_FILES, layout="timm",
        arch=ViTConfig(patch=14, dim=384, depth=12, heads=6, img_size=518, layer_scale=True, reg_tokens=4,
                       no_embed_class=True),
        mean=IMAGENET_MEAN, std=IMAGENET_STD, extra="timm"),
    "convnext_tiny.in12k_ft_in1k": ZooEntry(
        repo="timm/convnext_tiny.in12k_ft_in1k", files=_TIMM_FILES, layout="timm",
        arch=ConvNeXtConfig(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)), mean=IMAGENET_MEAN, std=IMAGENET_STD,
        extra="timm"),
}


def convert(state: Mapping[str, torch.Tensor], entry: ZooEntry, net: VisionTransformer | ConvNeXt,
            source: str) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors under the names of ``net``, float32, after a strict key check."""
    if entry.layout == "open_clip":
        assert isinstance(entry.arch, ViTConfig)
        state, skipped = open_clip_to_timm(state, entry.arch)
        ignored = set(skipped)
    elif entry.layout == "timm":
        ignored = set(net.unused)
    else:
        raise ConfigError(f"unknown checkpoint layout '{entry.layout}'")
    want = net.state_dict()
    hub.check_keys(state, want, ignored, source)
    out = {}
    for name, ref in want.items():
        t = state[name]
        if name == "pos_embed" and t.ndim == 2:
            t = t.unsqueeze(0)
        if tuple(t.shape) != tuple(ref.shape):
            raise FeatureError(f"'{name}' has shape {tuple(t.shape)}, the architecture needs {tuple(ref.shape)}",
                               path=source)
        out[name] = t.to(torch.float32).contiguous()
    return out


def load_entry(name: str, entry: ZooEntry, pretrained: bool) -> tuple[VisionTransformer | ConvNeXt, str]:
    """The network of a zoo entry in eval mode and its weights hash.

    ``pretrained=False``: random weights (no file, no optional package needed).
    ``pretrained=True``: the hub checkpoint, downloaded once (needs ``huggingface_hub``).
    """
    if not pretrained:
        with torch.device("meta"):               # no default initialisation: init_random sets every tensor
            net = entry.build()
        net = net.to_empty(device="cpu").init_random()
        digest = "random"
    else:
        path = hub.download(entry.repo, entry.files, entry.extra, name)
        state = hub.load_state_dict(path)
        with torch.device("meta"):
            net = entry.build()
        state = convert(state, entry, net, f"{entry.repo}/{path.name}")
        net.load_state_dict(state, strict=True, assign=True)
        digest = hub.state_hash(state)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, digest


class ZooAppearance(nn.Module):
    """Patch features of snippets from a zoo backbone (timm / OpenCLIP weights).

    Frames ``(B, P, 3, H, W)`` float RGB in [0, 255] are scaled to [0, 1] and
    normalised with the model's mean and std; each map of the backbone is resampled
    to the grid. Output ``(B, Gh, Gw, A + C)``: ``appearance`` (mean over passes of
    every map, ``A = sum(dims)``), then ``appearance_change`` (mean absolute difference
    of the first map between consecutive passes, ``C = dims[0]``; zero for one pass).
    """

    mean: torch.Tensor      # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, name: str, entry: ZooEntry, pretrained: bool = True):
        super().__init__()
        self.name = name
        self.entry = entry
        self.net, self.weights_hash = load_entry(name, entry, pretrained)
        self.channel_groups = entry.groups
        mean = torch.tensor(entry.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(entry.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def check_input_size(self, width: int, height: int) -> None:
        """Refuse input sizes that are not multiples of the network's :attr:`multiple`.

        Raises:
            ConfigError: a side is not a multiple (the message suggests one that is).
        """
        m = self.net.multiple
        if width % m or height % m:
            raise ConfigError(f"backbone '{self.name}' needs an input size that is a multiple of {m} "
                              f"(got {width}x{height}; e.g. --input-size {max(m, round(224 / m) * m)})")

    @torch.no_grad()
    def forward(self, frames: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``(B, P, 3, H, W)`` frames -> ``(B, Gh, Gw, A + C)`` (see the class docstring)."""
        b, p = frames.shape[:2]
        x = (frames.flatten(0, 1) - self.mean) / self.std
        maps = [resample(m, grid).unflatten(0, (b, p)) for m in self.net.maps(x)]   # (B, P, C, Gh, Gw)
        appearance = torch.cat([m.mean(1) for m in maps], dim=1)
        first = maps[0]
        change = (first[:, 1:] - first[:, :-1]).abs().mean(1) if p > 1 else torch.zeros_like(first[:, 0])
        return torch.cat([appearance, change], dim=1).permute(0, 2, 3, 1).float()

