"""Optional backbones (OpenCLIP / timm weights, VideoMAE): loading code with random weights, offline.

No test here downloads anything: every hub load reads a Hugging Face cache the test
fills itself with random weights (``HF_HUB_OFFLINE=1``, ``HF_HUB_CACHE`` a temporary
folder), and socket connections fail during these tests. The parameter names and
shapes of the real checkpoints come from ``tests/data/zoo_reference.json``, recorded
from timm and open_clip themselves (``tests/data/zoo_reference.py``).

The architectures patchvad implements for timm / OpenCLIP checkpoints are checked for
equal outputs against reference implementations on the same random weights: against
``transformers`` (CLIPVisionModel, ViTModel, Dinov2Model, ConvNextModel; installed by
the ``test`` extra, so this runs in CI) and against timm and open_clip themselves
where they import (not beside the pinned CPU torch: those tests skip there).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")     # before anything imports huggingface_hub

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from patchvad.errors import ConfigError, FeatureError
from patchvad.features.backbones import BACKBONES, PatchFeatureExtractor, available_backbones, hub
from patchvad.features.backbones.effnet import pass_indices
from patchvad.features.backbones.vit import (CLIP_MODELS, TIMM_MODELS, ConvNeXt, ConvNeXtConfig, VisionTransformer,
                                             ViTConfig, ZooEntry, convert)
from patchvad.features.extract import extract_dataset, extract_video
from patchvad.features.store import FeatureStore

REFERENCE = json.loads((Path(__file__).parent / "data" / "zoo_reference.json").read_text())["models"]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TINY_VIDEOMAE = dict(image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=32,
                     num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, use_mean_pooling=True)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture()
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def snapshot(cache: Path, repo_id: str) -> Path:
    """The snapshot folder of ``repo_id`` in a Hugging Face cache (created, ``main`` -> it)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def random_state(shapes: dict[str, list[int]], seed: int = 0, dtype=torch.float32,
                 zeros: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Random tensors of the given shapes (those whose names start with ``zeros``: zeros, cheaper)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.zeros(s, dtype=dtype) if k.startswith(zeros) else
            torch.empty(s, dtype=dtype).normal_(0.0, 0.02, generator=gen) for k, s in shapes.items()}


def frames(b: int, p: int, size: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(b, p, 3, size, size, generator=gen) * 255.0


# -- registry and the recorded checkpoint layouts -------------------------------------------
def test_registry_has_the_optional_backbones() -> None:
    names = available_backbones()
    for name in ("effnet-lite0", "clip-vit-b16", "clip-vit-b16-laion2b", "videomae-base", "videomae-small-k400",
                 "timm:vit_small_patch14_dinov2.lvd142m", "timm:convnext_tiny.in12k_ft_in1k"):
        assert name in names
    assert BACKBONES["clip-vit-b16"][1] == {"appearance": 768, "appearance_change": 768}
    assert BACKBONES["timm:convnext_tiny.in12k_ft_in1k"][1] == {"appearance": 384 + 768, "appearance_change": 384}
    assert BACKBONES["videomae-small-k400"][1] == {"appearance": 384, "appearance_change": 384}
    with pytest.raises(ConfigError, match="not among patchvad's timm backbones"):
        PatchFeatureExtractor(backbone="timm:resnet50", pretrained=False)


@pytest.mark.parametrize("name", sorted(set(REFERENCE)))
def test_architecture_fits_the_real_checkpoint_layout(name: str) -> None:
    """Every registry entry's network takes the recorded checkpoint: all names, all shapes (meta tensors)."""
    entry = CLIP_MODELS.get(name) or TIMM_MODELS[name.removeprefix("timm:")]
    state = {k: torch.empty(s, device="meta") for k, s in REFERENCE[name].items()}
    with torch.device("meta"):
        net = entry.build()
    converted = convert(state, entry, net, name)
    assert set(converted) == set(net.state_dict())


def test_strict_check_names_missing_and_unexpected_tensors() -> None:
    entry = TIMM_MODELS["vit_small_patch14_dinov2.lvd142m"]
    ref = REFERENCE["timm:vit_small_patch14_dinov2.lvd142m"]
    state = {k: torch.empty(s, device="meta") for k, s in ref.items()}
    with torch.device("meta"):
        net = entry.build()
    del state["blocks.3.ls2.gamma"]
    state["blocks.3.extra.weight"] = torch.empty(3, device="meta")
    with pytest.raises(FeatureError, match=r"1 missing \['blocks.3.ls2.gamma'\], 1 unexpected"):
        convert(state, entry, net, "x")
    state = {k: torch.empty(s, device="meta") for k, s in ref.items()}
    state["pos_embed"] = torch.empty(1, 10, 384, device="meta")
    with pytest.raises(FeatureError, match="'pos_embed' has shape"):
        convert(state, entry, net, "x")


# -- the hub path, offline, with random weights in the real layouts ---------------------------
@pytest.mark.parametrize("name,size,fmt", [
    ("timm:vit_small_patch14_reg4_dinov2.lvd142m", 56, "safetensors"),
    ("timm:convnext_tiny.in12k_ft_in1k", 64, "bin"),
])
def test_hub_weights_load_offline(hub_cache: Path, name: str, size: int, fmt: str) -> None:
    entry = CLIP_MODELS.get(name) or TIMM_MODELS[name.removeprefix("timm:")]
    state = random_state(REFERENCE[name], dtype=torch.float16 if fmt == "safetensors" else torch.float32)
    snap = snapshot(hub_cache, entry.repo)
    if fmt == "safetensors":
        save_file(state, str(snap / entry.files[0]))
    else:                                  # only the pickle: the fallback the libraries use too
        torch.save(state, snap / entry.files[1])
    ex = PatchFeatureExtractor(backbone=name, grid=4, input_size=size, snippet_len=8, passes=2)
    net = ex.model.net
    with torch.device("meta"):
        ref_net = entry.build()
    expected = convert(state, entry, ref_net, name)
    assert ex.spec.weights_hash == hub.state_hash(expected) != "random"
    for key, value in net.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, expected[key]), key
    out = ex(np.random.default_rng(0).integers(0, 255, (2, 8, size, size, 3), dtype=np.uint8))
    d = sum(entry.dims) + entry.dims[0] + 8
    assert out.shape == (2, 4, 4, d) and out.dtype == np.float32 and np.isfinite(out).all()


def test_open_clip_checkpoint_maps_to_the_image_tower(hub_cache: Path) -> None:
    entry = CLIP_MODELS["clip-vit-b16"]
    shapes = REFERENCE["clip-vit-b16"]
    assert "transformer.resblocks.0.attn.in_proj_weight" in shapes    # the text tower is in the file
    text = tuple({k.split(".")[0] + "." for k in shapes if not k.startswith("visual.")} | {"logit_scale"})
    state = random_state(shapes, seed=1, dtype=torch.float16, zeros=text)     # the unused text tower: zeros
    save_file(state, str(snapshot(hub_cache, entry.repo) / "open_clip_model.safetensors"))
    net = PatchFeatureExtractor(backbone="clip-vit-b16", grid=2, input_size=32, snippet_len=4).model.net
    assert torch.equal(net.cls_token.reshape(-1), state["visual.class_embedding"].float())
    qkv = state["visual.transformer.resblocks.5.attn.in_proj_weight"]
    assert torch.equal(net.blocks[5].attn.qkv.weight, qkv.float())
    assert torch.equal(net.norm.bias, state["visual.ln_post.bias"].float())
    assert not isinstance(net.norm_pre, torch.nn.Identity)


def test_offline_without_cached_weights_says_what_to_do(hub_cache: Path) -> None:
    with pytest.raises(FeatureError, match=r"timm/vit_base_patch16_clip_224\.openai.*HF_HUB_OFFLINE is set"):
        PatchFeatureExtractor(backbone="clip-vit-b16")


@pytest.mark.parametrize("name,module,extra", [("clip-vit-b16", "huggingface_hub", "clip"),
                                               ("timm:vit_small_patch14_dinov2.lvd142m", "huggingface_hub", "timm"),
                                               ("videomae-small-k400", "transformers", "video")])
def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch, name: str, module: str,
                                                 extra: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)      # import fails as if not installed
    with pytest.raises(ConfigError, match=rf"pip install 'patchvad\[{extra}\]'"):
        PatchFeatureExtractor(backbone=name, input_size=224)


def test_input_size_must_fit_the_patch() -> None:
    with pytest.raises(ConfigError, match="multiple of 14"):
        PatchFeatureExtractor(backbone="timm:vit_small_patch14_dinov2.lvd142m", input_size=64, pretrained=False)


# -- equal outputs with reference implementations on random weights --------------------------
def _randomise(sd: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Random values everywhere (norm scales near 1, layer scales near 1), so every op matters."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in sd.items():
        r = torch.randn(v.shape, generator=gen)
        scale_like = v.ndim == 1 and k.endswith(("weight", "gamma")) and ("gamma" in k or "norm" in k or "ln_" in k)
        out[k] = 1.0 + 0.2 * r if scale_like else 0.1 * r
    return out


def _tiny_entry(arch, layout: str) -> ZooEntry:
    return ZooEntry(repo="x/y", files=("f",), layout=layout, arch=arch, mean=(0.5,) * 3, std=(0.5,) * 3, extra="timm")


CLIP_TINY = ViTConfig(patch=8, dim=32, depth=2, heads=4, img_size=32, eps=1e-5, act="quick_gelu", pre_norm=True,
                      patch_bias=False)


def _open_clip_state(cfg: ViTConfig, seed: int) -> dict[str, torch.Tensor]:
    """An OpenCLIP image tower's parameters (open_clip's names; cf. zoo_reference.json)."""
    d, n = cfg.dim, cfg.pos_grid ** 2 + 1
    shapes = {"visual.conv1.weight": (d, 3, cfg.patch, cfg.patch), "visual.class_embedding": (d,),
              "visual.positional_embedding": (n, d), "visual.ln_pre.weight": (d,), "visual.ln_pre.bias": (d,),
              "visual.ln_post.weight": (d,), "visual.ln_post.bias": (d,), "visual.proj": (d, 16), "logit_scale": ()}
    for i in range(cfg.depth):
        p = f"visual.transformer.resblocks.{i}."
        shapes.update({p + "ln_1.weight": (d,), p + "ln_1.bias": (d,), p + "attn.in_proj_weight": (3 * d, d),
                       p + "attn.in_proj_bias": (3 * d,), p + "attn.out_proj.weight": (d, d),
                       p + "attn.out_proj.bias": (d,), p + "ln_2.weight": (d,), p + "ln_2.bias": (d,),
                       p + "mlp.c_fc.weight": (4 * d, d), p + "mlp.c_fc.bias": (4 * d,),
                       p + "mlp.c_proj.weight": (d, 4 * d), p + "mlp.c_proj.bias": (d,)})
    return _randomise({k: torch.empty(s) for k, s in shapes.items()}, seed)


def _ours(entry: ZooEntry, state: dict[str, torch.Tensor]):
    net = entry.build()
    net.load_state_dict(convert(state, entry, net, "test"), strict=True)
    return net.eval()


def test_clip_vit_equals_transformers_clip() -> None:
    transformers = pytest.importorskip("transformers")
    state = _open_clip_state(CLIP_TINY, seed=3)
    ours = _ours(_tiny_entry(CLIP_TINY, "open_clip"), state)
    cfg = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, image_size=32, patch_size=8, hidden_act="quick_gelu",
                                        layer_norm_eps=1e-5)
    ref = transformers.CLIPVisionModel(cfg).eval()
    hf = {"embeddings.class_embedding": state["visual.class_embedding"],
          "embeddings.patch_embedding.weight": state["visual.conv1.weight"],
          "embeddings.position_embedding.weight": state["visual.positional_embedding"],
          "pre_layrnorm.weight": state["visual.ln_pre.weight"],
          "pre_layrnorm.bias": state["visual.ln_pre.bias"],
          "post_layernorm.weight": state["visual.ln_post.weight"],
          "post_layernorm.bias": state["visual.ln_post.bias"]}
    for i in range(2):
        s, t = f"visual.transformer.resblocks.{i}.", f"encoder.layers.{i}."
        for part, w in zip("qkv", state[s + "attn.in_proj_weight"].chunk(3)):
            hf[t + f"self_attn.{part}_proj.weight"] = w
        for part, b in zip("qkv", state[s + "attn.in_proj_bias"].chunk(3)):
            hf[t + f"self_attn.{part}_proj.bias"] = b
        for a, b in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                     ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
            hf[t + b + ".weight"], hf[t + b + ".bias"] = state[s + a + ".weight"], state[s + a + ".bias"]
    ref.load_state_dict(hf, strict=True)
    _assert_same_patch_tokens(ours, lambda x: ref.post_layernorm(ref(pixel_values=x).last_hidden_state))


def _assert_same_patch_tokens(ours: torch.nn.Module, tokens) -> None:
    """Our (B, C, gh, gw) grid equals the reference's tokens (B, 1 + gh * gw, C) without the class token."""
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = tokens(x)[:, 1:]
        got = ours(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def _timm_vit_state(cfg: ViTConfig, seed: int) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in VisionTransformer(cfg).state_dict().items()}
    return _randomise({k: torch.empty(s) for k, s in shapes.items()}, seed)


def _hf_vit_embeddings(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm ViT embedding and final-norm tensors under transformers' ViT/DINOv2 names."""
    return {"embeddings.cls_token": state["cls_token"], "embeddings.position_embeddings": state["pos_embed"],
            "embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
            "embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
            "layernorm.weight": state["norm.weight"], "layernorm.bias": state["norm.bias"]}


def _hf_vit_layers(state: dict[str, torch.Tensor], depth: int, prefix: str,
                   names: dict[str, str]) -> dict[str, torch.Tensor]:
    """timm block tensors under transformers' (5.x) names ``<prefix><i>.attention.q_proj`` etc."""
    hf = {}
    for i in range(depth):
        s, t = f"blocks.{i}.", f"{prefix}{i}."
        for part, w, b in zip("qkv", state[s + "attn.qkv.weight"].chunk(3), state[s + "attn.qkv.bias"].chunk(3)):
            hf[t + f"attention.{part}_proj.weight"], hf[t + f"attention.{part}_proj.bias"] = w, b
        for a, b in names.items():
            if a.endswith("gamma"):
                hf[t + b] = state[s + a]
            else:
                hf[t + b + ".weight"], hf[t + b + ".bias"] = state[s + a + ".weight"], state[s + a + ".bias"]
    return hf


def test_timm_vit_equals_transformers_vit() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = ViTConfig(patch=8, dim=32, depth=2, heads=4, img_size=32)
    state = _timm_vit_state(cfg, seed=4)
    ours = _ours(_tiny_entry(cfg, "timm"), state)
    ref = transformers.ViTModel(transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                       intermediate_size=128, image_size=32, patch_size=8,
                                                       layer_norm_eps=1e-6, hidden_act="gelu"),
                                add_pooling_layer=False).eval()
    hf = _hf_vit_embeddings(state)
    hf.update(_hf_vit_layers(state, 2, "layers.", {"attn.proj": "attention.o_proj", "norm1": "layernorm_before",
                                                   "norm2": "layernorm_after", "mlp.fc1": "mlp.fc1",
                                                   "mlp.fc2": "mlp.fc2"}))
    ref.load_state_dict(hf, strict=True)
    _assert_same_patch_tokens(ours, lambda x: ref(pixel_values=x).last_hidden_state)


def test_dinov2_layer_scale_equals_transformers_dinov2() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = ViTConfig(patch=8, dim=32, depth=2, heads=4, img_size=32, layer_scale=True)
    state = _timm_vit_state(cfg, seed=5)
    ours = _ours(_tiny_entry(cfg, "timm"), state)
    ref = transformers.Dinov2Model(transformers.Dinov2Config(hidden_size=32, num_hidden_layers=2,
                                                             num_attention_heads=4, mlp_ratio=4, image_size=32,
                                                             patch_size=8, layer_norm_eps=1e-6)).eval()
    hf = {**_hf_vit_embeddings(state), "embeddings.mask_token": torch.zeros(1, 32)}
    hf.update(_hf_vit_layers(state, 2, "encoder.layer.", {"attn.proj": "attention.o_proj", "norm1": "norm1",
                                                          "norm2": "norm2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
                                                          "ls1.gamma": "layer_scale1.lambda1",
                                                          "ls2.gamma": "layer_scale2.lambda1"}))
    ref.load_state_dict(hf, strict=True)
    _assert_same_patch_tokens(ours, lambda x: ref(pixel_values=x).last_hidden_state)


def test_convnext_equals_transformers_convnext() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = ConvNeXtConfig(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32))
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in ConvNeXt(cfg).state_dict().items()}
    state = _randomise({k: torch.empty(s) for k, s in shapes.items()}, seed=6)
    ours = _ours(_tiny_entry(cfg, "timm"), {**state, "head.fc.weight": torch.zeros(3, 32)})
    ref = transformers.ConvNextModel(transformers.ConvNextConfig(hidden_sizes=list(cfg.dims), depths=list(cfg.depths),
                                                                 hidden_act="gelu")).eval()
    hf = {"embeddings.patch_embeddings.weight": state["stem.0.weight"],
          "embeddings.patch_embeddings.bias": state["stem.0.bias"],
          "embeddings.layernorm.weight": state["stem.1.weight"], "embeddings.layernorm.bias": state["stem.1.bias"],
          "layernorm.weight": torch.ones(32), "layernorm.bias": torch.zeros(32)}
    for i, depth in enumerate(cfg.depths):
        s, t = f"stages.{i}.", f"encoder.stages.{i}."
        if i:
            for j in (0, 1):
                hf[t + f"downsampling_layer.{j}.weight"] = state[s + f"downsample.{j}.weight"]
                hf[t + f"downsampling_layer.{j}.bias"] = state[s + f"downsample.{j}.bias"]
        for k in range(depth):
            a, b = s + f"blocks.{k}.", t + f"layers.{k}."
            hf[b + "layer_scale_parameter"] = state[a + "gamma"]
            for x, y in (("conv_dw", "dwconv"), ("norm", "layernorm"), ("mlp.fc1", "pwconv1"), ("mlp.fc2", "pwconv2")):
                hf[b + y + ".weight"], hf[b + y + ".bias"] = state[a + x + ".weight"], state[a + x + ".bias"]
    ref.load_state_dict(hf, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        h = ref.embeddings(x)
        outs = []
        for stage in ref.encoder.stages:
            h = stage(h)
            outs.append(h)
        s16, s32 = ours.maps(x)
    torch.testing.assert_close(s16, outs[2], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(s32, outs[3], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["vit_small_patch16_224.augreg_in21k_ft_in1k", "vit_small_patch14_dinov2.lvd142m",
                                  "vit_small_patch14_reg4_dinov2.lvd142m", "convnext_tiny.in12k_ft_in1k"])
def test_equals_timm_itself(tmp_path: Path, name: str) -> None:
    """Where timm imports (it needs a working torchvision): same outputs from the same checkpoint."""
    timm = pytest.importorskip("timm")
    entry = TIMM_MODELS[name]
    ref = timm.create_model(name, pretrained=False)
    state = _randomise(ref.state_dict(), seed=7)
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    ours = _ours(entry, state)
    size = 224
    # timm resamples the position embeddings of a checkpoint to the model's input size itself.
    kwargs = {"img_size": size} if isinstance(entry.arch, ViTConfig) else {}
    ref = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs).eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        if isinstance(entry.arch, ViTConfig):
            want = [ref.forward_features(x)[:, ref.num_prefix_tokens:]]
            got = [m.flatten(2).transpose(1, 2) for m in ours.maps(x)]
        else:
            h = ref.stem(x)
            want = []
            for stage in ref.stages:
                h = stage(h)
                want.append(h)
            want = want[2:]
            got = ours.maps(x)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name,quick", [("clip-vit-b16", True), ("clip-vit-b16-laion2b", False)])
def test_equals_open_clip_itself(name: str, quick: bool) -> None:
    """Where open_clip imports: same image-tower tokens from the same checkpoint."""
    open_clip = pytest.importorskip("open_clip")
    ref = open_clip.create_model("ViT-B-16", pretrained=None, quick_gelu=quick).eval()
    state = _randomise(ref.state_dict(), seed=8)
    ref.load_state_dict(state)
    ours = _ours(CLIP_MODELS[name], state)
    ref.visual.output_tokens = True
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        _, want = ref.visual(x)
        got = ours(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


# -- VideoMAE through transformers -------------------------------------------------------------
def _seed_videomae(cache: Path, repo: str, seed: int = 0):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    model = transformers.VideoMAEModel(transformers.VideoMAEConfig(**TINY_VIDEOMAE)).eval()
    model.save_pretrained(snapshot(cache, repo))          # config.json + model.safetensors, the hub's files
    return model


def test_videomae_loads_from_hub_cache_and_pools_tokens(hub_cache: Path) -> None:
    ref = _seed_videomae(hub_cache, "MCG-NJU/videomae-small-finetuned-kinetics")
    ex = PatchFeatureExtractor(backbone="videomae-small-k400", grid=2, input_size=32, snippet_len=8)
    assert ex.spec.passes == 4                                 # the model's frames per clip
    assert ex.spec.channels == {"appearance": [0, 32], "appearance_change": [32, 64], "motion": [64, 72]}
    assert ex.spec.weights_hash == hub.state_hash(ref.state_dict())
    snippets = np.random.default_rng(1).integers(0, 255, (2, 8, 32, 32, 3), dtype=np.uint8)
    out = ex(snippets)
    assert out.shape == (2, 2, 2, 72) and out.dtype == np.float32
    # By hand: 4 frames spread over the 8, ImageNet-normalised; tokens (t'=2, 2, 2); mean and |change| over t'.
    picked = pass_indices(8, 4)
    assert picked.tolist() == [0, 2, 4, 6]
    x = torch.from_numpy(snippets[:, picked]).permute(0, 1, 4, 2, 3).float() / 255.0
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    x = (x - mean.view(1, 1, 3, 1, 1)) / std.view(1, 1, 3, 1, 1)
    with torch.no_grad():
        tok = ref(pixel_values=x).last_hidden_state.reshape(2, 2, 2, 2, 32)       # (B, t', h, w, D)
    np.testing.assert_allclose(out[..., :32], tok.mean(1).numpy(), atol=1e-5)
    np.testing.assert_allclose(out[..., 32:64], (tok[:, 1] - tok[:, 0]).abs().numpy(), atol=1e-5)


def test_videomae_refuses_other_input_sizes_and_random_weights_build() -> None:
    pytest.importorskip("transformers")
    with pytest.raises(ConfigError, match="takes 224x224 frames only"):
        PatchFeatureExtractor(backbone="videomae-small-k400", input_size=112, pretrained=False)


# -- through the normal extraction path ---------------------------------------------------------
def test_extract_path_with_each_new_backbone(tmp_path: Path, hub_cache: Path, tiny_dataset: Path,
                                             square_video: Path) -> None:
    _seed_videomae(hub_cache, "MCG-NJU/videomae-base")
    cases = [("clip-vit-b16", dict(input_size=32, pretrained=False), 768),
             ("timm:vit_small_patch14_dinov2.lvd142m", dict(input_size=56, pretrained=False), 384),
             ("timm:convnext_tiny.in12k_ft_in1k", dict(input_size=32, pretrained=False), 1152),
             ("videomae-base", dict(input_size=32), 32)]
    for name, kwargs, app in cases:
        ex = PatchFeatureExtractor(backbone=name, grid=4, snippet_len=8, **kwargs)
        feats, snippets, facts = extract_video(square_video, ex, batch_size=4)
        change = ex.spec.channels["appearance_change"][1] - ex.spec.channels["appearance_change"][0]
        assert feats.shape == (5, 4, 4, app + change + 8) and feats.dtype == np.float32, name
        assert np.isfinite(feats).all() and snippets.num_snippets == 5 and facts["frame_count"] == 40
    # A whole dataset into a feature store, with the video backbone.
    report = extract_dataset(tiny_dataset, tmp_path / "feats", extractor=ex, progress=False)
    assert len(report.done) == 5 and not report.failed
    store = FeatureStore(tmp_path / "feats")
    assert store.spec.backbone == "videomae-base" and store.spec.passes == 4
    assert store.load(report.done[0]).x.shape[1:] == (4, 4, 72)
