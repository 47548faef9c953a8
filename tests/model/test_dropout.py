"""FastDropout: the drop rate, the scale, reproducibility and the distributed share of its mask."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from patchvad.model.dropout import FastDropout, drop_threshold, keep_mask, keep_scale
from patchvad.training.augment import BatchShare


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drop_rate_is_p_within_binomial_noise(p: float) -> None:
    torch.manual_seed(0)
    n = 1 << 20
    kept = keep_mask(n, p)
    assert kept.shape == (n,) and kept.dtype == torch.bool
    p_eff = drop_threshold(p) / 2 ** 15
    assert abs(p_eff - p) <= 2 ** -16
    dropped = 1.0 - kept.float().mean().item()
    assert abs(dropped - p_eff) < 5 * math.sqrt(p_eff * (1 - p_eff) / n)     # 5 sigma
    # Each of the four 15-bit numbers of a word is uniform: the rate holds per position.
    for pos in range(4):
        rate = 1.0 - kept[pos::4].float().mean().item()
        assert abs(rate - p_eff) < 5 * math.sqrt(p_eff * (1 - p_eff) / (n / 4))


def test_neighbouring_elements_are_independent() -> None:
    torch.manual_seed(1)
    kept = keep_mask(1 << 20, 0.5).float().numpy()
    corr = np.corrcoef(kept[:-1], kept[1:])[0, 1]
    assert abs(corr) < 5 / math.sqrt(kept.size)


def test_kept_elements_are_scaled_and_the_mean_is_kept() -> None:
    torch.manual_seed(2)
    drop = FastDropout(0.1).train()
    x = torch.ones(1 << 18)
    y = drop(x)
    kept = y != 0
    assert torch.allclose(y[kept], torch.full_like(y[kept], keep_scale(0.1)))
    assert keep_scale(0.1) == pytest.approx(1 / (1 - 3277 / 32768))
    assert y.mean().item() == pytest.approx(1.0, abs=5 * math.sqrt(0.1 / 0.9 / x.numel()))


def test_eval_mode_and_zero_rate_are_the_identity_and_gradients_follow_the_mask() -> None:
    x = torch.randn(4, 5, requires_grad=True)
    assert FastDropout(0.3).eval()(x) is x
    assert FastDropout(0.0).train()(x) is x
    torch.manual_seed(3)
    drop = FastDropout(0.3).train()
    y = drop(x)
    y.sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad != 0, y != 0)


def test_same_seed_same_mask() -> None:
    torch.manual_seed(4)
    a = keep_mask(1000, 0.2)
    torch.manual_seed(4)
    b = keep_mask(1000, 0.2)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        FastDropout(1.0)


def test_a_share_of_the_batch_gets_its_rows_of_the_whole_batch_mask() -> None:
    x = torch.randn(8, 3, 5)
    net = torch.nn.Sequential(FastDropout(0.25)).train()
    torch.manual_seed(5)
    whole = net(x)
    share = BatchShare()
    restore = share.install(net)
    rows = np.array([2, 3, 6, 7])
    share.set(rows, 8)
    torch.manual_seed(5)
    part = net(x[rows])
    restore()
    assert type(net[0]) is FastDropout
    assert torch.equal(part, whole[rows])
