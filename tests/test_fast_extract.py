"""The fast CPU extraction path against the straightforward computation it replaces.

* the fused EfficientNet-Lite0 (BatchNorm folded, oneDNN's fused convolutions or
  conv2d + clamp, channels last, micro-batches on worker threads) against the package's
  own layers, at 224x224 and at a size whose "same" padding the package fixed for 224;
* the features do not depend on the thread count or the micro-batch size;
* the grey levels and motion channels, bit for bit, against their documented recipe
  written out plainly (docs/features.md, "Motion channels");
* the worker pool: order, errors, and torch's thread count afterwards.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import skip_or_fail

from patchvad.features import cpu
from patchvad.features.backbones import PatchFeatureExtractor
from patchvad.features.backbones.effnet import EffNetLite0Appearance, pointwise_available, zero_pad
from patchvad.features.backbones.motion import motion_features, snippet_gray


@pytest.fixture(scope="module")
def appearance() -> EffNetLite0Appearance:
    return EffNetLite0Appearance()


@pytest.fixture()
def two_threads():
    """Two torch threads for the test (the pool then has two workers), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("size", [(224, 224), (240, 320)], ids=["224x224", "240x320"])
@pytest.mark.parametrize("pointwise", [True, False], ids=["onednn-fused", "conv2d+clamp"])
def test_fused_backbone_equals_the_package_layers(appearance, size, pointwise, two_threads) -> None:
    if pointwise and not pointwise_available():
        skip_or_fail("this torch build has no oneDNN fused convolutions (the pinned CPU wheel has them)")
    images = torch.rand(5, 3, *size, generator=torch.Generator().manual_seed(0)) * 255
    want = appearance.reference_maps(images)
    appearance.fused.set_pointwise(pointwise)
    try:
        appearance.micro_batch = 2                  # 5 images: pieces of 2, 2 and 1
        got = appearance.maps(images)
    finally:
        appearance.fused.set_pointwise(pointwise_available())
        appearance.micro_batch = EffNetLite0Appearance.micro_batch
    for g, w in zip(got, want):
        assert g.shape == w.shape
        # Measured: at most 3.7e-6 of the largest value (float32 rounding of the folded layers).
        assert _rel(g, w) < 1e-5


def test_fused_backbone_in_plain_layout_equals_the_package_layers(appearance) -> None:
    """The GPU path's layout (NCHW, one batch, conv2d + clamp), checked on CPU."""
    images = torch.rand(3, 3, 224, 224, generator=torch.Generator().manual_seed(1)) * 255
    want = appearance.reference_maps(images)
    appearance.fused.set_pointwise(False)
    try:
        with torch.no_grad():
            got = appearance.fused((images - 127.0) / 128.0, (10, 15))
    finally:
        appearance.fused.set_pointwise(pointwise_available())
    for g, w in zip(got, want):
        assert g.is_contiguous() and _rel(g, w) < 1e-5


def test_features_do_not_depend_on_threads_or_micro_batch() -> None:
    """Each piece runs single-threaded whatever the count: the features are bitwise equal."""
    rng = np.random.default_rng(0)
    snippets = rng.integers(0, 256, (3, 16, 224, 224, 3), dtype=np.uint8)
    ex = PatchFeatureExtractor()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ex(snippets)
        torch.set_num_threads(2)
        two = ex(snippets)
        ex.model.micro_batch = 1
        two_small = ex(snippets)
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(one, two) and np.array_equal(two, two_small)


@pytest.mark.parametrize("pad", [(0, 1, 0, 1), (1, 2, 1, 2), (2, 2, 2, 2)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_zero_pad_is_f_pad(pad, layout) -> None:
    x = torch.randn(2, 5, 7, 6).contiguous(memory_format=layout)
    got = zero_pad(x, pad)
    assert torch.equal(got, F.pad(x, pad)) and got.is_contiguous(memory_format=layout)


def _plain_gray(snippets: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The recipe as first written: planar float channels, luma, area resampling."""
    x = snippets.permute(0, 1, 4, 2, 3).float()
    gray = (0.299 * x[:, :, 0] + 0.587 * x[:, :, 1] + 0.114 * x[:, :, 2]) / 255.0
    if tuple(gray.shape[-2:]) == size:
        return gray
    if gray.shape[-2] >= size[0] and gray.shape[-1] >= size[1]:
        return F.interpolate(gray, size=size, mode="area")
    return F.interpolate(gray, size=size, mode="bilinear", align_corners=False)


def _plain_motion(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """docs/features.md's motion channels written out plainly (x at 8 pixels per cell)."""
    k = 8
    diff = x[:, 1:] - x[:, :-1]
    energy = diff.abs()
    cell = F.avg_pool2d(energy, k)
    moving = (energy > 0.04).float()
    mid = 0.5 * (x[:, 1:] + x[:, :-1])
    ix, iy = torch.zeros_like(mid), torch.zeros_like(mid)
    ix[..., :, 1:-1] = 0.5 * (mid[..., :, 2:] - mid[..., :, :-2])
    iy[..., 1:-1, :] = 0.5 * (mid[..., 2:, :] - mid[..., :-2, :])

    def cell_sum(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t * moving, k).sum(1)

    sxx, sxy, syy = cell_sum(ix * ix), cell_sum(ix * iy), cell_sum(iy * iy)
    sxt, syt = cell_sum(ix * diff), cell_sum(iy * diff)
    r = 1e-4
    det = (sxx + r) * (syy + r) - sxy * sxy
    u = ((-(syy + r) * sxt + sxy * syt) / det).clamp(-4.0, 4.0)
    v = ((sxy * sxt - (sxx + r) * syt) / det).clamp(-4.0, 4.0)
    return torch.stack([cell.mean(1), cell.amax(1), cell.std(1, unbiased=False), F.max_pool2d(energy, k).mean(1),
                        u, v, torch.hypot(u, v), F.avg_pool2d(moving, k).mean(1)], dim=-1)


@pytest.mark.parametrize("shape,grid", [((224, 224), (14, 14)), ((224, 224), (7, 7)), ((240, 320), (14, 14)),
                                        ((56, 56), (14, 14))], ids=["224-14", "224-7", "320x240-14", "56-14 (up)"])
def test_gray_and_motion_are_bitwise_the_plain_recipe(shape, grid) -> None:
    """Random pixels put many differences right at the moving threshold: any reordering shows."""
    rng = np.random.default_rng(3)
    snippets = torch.from_numpy(rng.integers(0, 256, (2, 6, *shape, 3), dtype=np.uint8))
    gray = snippet_gray(snippets, grid)
    want_gray = _plain_gray(snippets, (grid[0] * 8, grid[1] * 8))
    assert torch.equal(gray, want_gray)
    assert torch.equal(motion_features(gray, grid), _plain_motion(want_gray, grid))


def test_pool_keeps_order_raises_and_restores_the_thread_count(two_threads) -> None:
    names = cpu.parallel_map(lambda i: (i, threading.current_thread().name, torch.get_num_threads()), range(6))
    assert [n[0] for n in names] == list(range(6))
    assert all(n[1].startswith("patchvad-cpu") and n[2] == 1 for n in names)     # single-threaded workers
    assert torch.get_num_threads() == 2
    threads_seen: list[int] = []
    thread = threading.Thread(target=lambda: threads_seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert threads_seen == [2]                     # threads started later get the caller's count

    def boom(i: int) -> int:
        if i == 2:
            raise ValueError("piece 2")
        return i

    with pytest.raises(ValueError, match="piece 2"):
        cpu.parallel_map(boom, range(4))
    assert torch.get_num_threads() == 2


def test_one_thread_runs_in_the_caller() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        names = cpu.parallel_map(lambda i: threading.current_thread().name, range(3))
    finally:
        torch.set_num_threads(before)
    assert names == [threading.current_thread().name] * 3


def test_a_forked_child_gets_its_own_pool(two_threads) -> None:
    """A forked child inherits the parent's pool object but not its threads: it builds its own."""
    import multiprocessing as mp

    cpu.parallel_map(abs, [-1, -2])                 # the parent's pool exists
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        names = pool.apply_async(_in_child).get(timeout=60)
    assert len(set(names)) == 2                     # both workers, not one left-over thread


def _slow_name(_: int) -> str:
    import time

    time.sleep(0.3)
    return threading.current_thread().name


def _in_child() -> list[str]:
    torch.set_num_threads(2)
    return cpu.parallel_map(_slow_name, range(4))


def test_serial_caller_keeps_the_workers_and_restores(two_threads) -> None:
    with cpu.serial_caller() as count:
        assert count == 2 and torch.get_num_threads() == 1 and cpu.workers() == 2
        names = cpu.parallel_map(_slow_name, range(4))
        assert len(set(names)) == 2 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2 and cpu.workers() == 2
