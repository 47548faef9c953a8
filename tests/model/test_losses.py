"""Loss terms against hand-computed values on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch

from patchvad.config import LossConfig
from patchvad.model.baselines import sultani_loss, video_topk_loss
from patchvad.model.losses import (MILLoss, bce, frame_proxy, loss_n, loss_pa, loss_t, smoothness, sparsity,
                                   sultani_ranking, total_variation)


def test_bce():
    assert bce(torch.tensor(0.8), 1).item() == pytest.approx(-math.log(0.8))
    assert bce(torch.tensor(0.8), 0).item() == pytest.approx(-math.log(0.2))
    assert bce(torch.tensor(0.0), 1).item() == pytest.approx(-math.log(1e-6))     # clamped, finite


def test_loss_pa_and_t():
    assert loss_pa(torch.tensor(0.25), 0).item() == pytest.approx(-math.log(0.75))
    a = torch.tensor([0.1, 0.9, 0.5, 0.7])
    # top-2 mean = 0.8
    assert loss_t(a, 1, 2).item() == pytest.approx(-math.log(0.8))


def test_loss_n_smoothness_tv_sparsity():
    s = torch.tensor([[[0.5, 0.0], [0.0, 0.0]],
                      [[0.5, 0.5], [0.0, 0.0]]])          # (T=2, 2, 2)
    # L_N: mean of -log(1-s): two cells... values 0.5 (x3) and 0 (x5)
    assert loss_n(s).item() == pytest.approx(3 * math.log(2) / 8)
    # smoothness: only cell (0,1) changes by 0.5 -> 0.25 / 4 cells
    assert smoothness(s).item() == pytest.approx(0.25 / 4)
    # TV: snippet 0 pairs |.5-0| (h), |0-0| (h), |.5-0| (v), |0-0| (v) -> 1.0;
    # snippet 1: h |.5-.5|, |0-0|; v |.5-0|, |.5-0| -> 1.0; mean over 8 pairs = 2/8
    assert total_variation(s).item() == pytest.approx(2 / 8)
    assert sparsity(s).item() == pytest.approx(1.5 / 8)
    assert smoothness(s[:1]).item() == 0.0
    assert frame_proxy(s).tolist() == [0.5, 0.5]


def test_mil_loss_equals_the_hand_sum():
    cfg = LossConfig(window="fixed", selection="gauss", k=1, sigma=1.0, w_pa=1.0, w_t=0.5, w_n=0.1,
                     w_smooth=0.01, w_tv=0.02, w_sparse=0.003)
    normal = torch.tensor([[[0.2, 0.1]], [[0.1, 0.1]]])    # (T=2, 1, 2)
    anom = torch.tensor([[[0.1, 0.1]], [[0.1, 0.8]]])
    s = torch.stack([normal, anom])
    loss, terms = MILLoss(cfg)(s, [2, 2], [0, 1])
    # normal: w=1 -> window at t=0 (a = .2,.1); k=1 -> bag = .2; L_T on top-1 a = .2
    n_pa = -math.log(0.8)
    n_t = -math.log(0.8)
    n_n = (-math.log(0.8) - 3 * math.log(0.9)) / 4
    n_sm = (0.1 ** 2 + 0.0) / 2
    n_tv = (0.1 + 0.0) / 2
    # L_N is averaged over normal videos: x (B / n_normal) = x2, then the batch mean halves it
    normal_total = n_pa + 0.5 * n_t + 0.1 * (2 * n_n) + 0.01 * n_sm + 0.02 * n_tv
    a_pa = -math.log(0.8)
    a_t = -math.log(0.8)
    a_sm = (0.0 + 0.7 ** 2) / 2
    a_tv = (0.0 + 0.7) / 2
    a_sp = (0.1 * 3 + 0.8) / 4
    anom_total = a_pa + 0.5 * a_t + 0.01 * a_sm + 0.02 * a_tv + 0.003 * (2 * a_sp)
    assert loss.item() == pytest.approx((normal_total + anom_total) / 2, rel=1e-5)
    assert terms["bag"].tolist() == pytest.approx([0.2, 0.8])


@pytest.mark.parametrize("window", ["fixed", "cusum", "none"])
@pytest.mark.parametrize("selection", ["gauss", "radius", "plain"])
def test_mil_loss_chooses_like_bag_score_video_by_video(window: str, selection: str) -> None:
    """MILLoss picks windows and peaks for the whole batch at once (one host copy each)
    and computes every term on the masked batch: it must give exactly the bags of
    bag_score video by video, and the terms, the loss and the gradients of the per-video
    functions (to float rounding: the additions come in another order)."""
    from patchvad.model.selection import bag_score

    cfg = LossConfig(window=window, selection=selection, k=3, sigma=1.0, radius=1)
    gen = torch.Generator().manual_seed(3)
    lengths = [7, 12, 1, 12, 5]
    labels = [0, 1, 0, 1, 1]
    s = torch.rand((5, 12, 4, 5), generator=gen, requires_grad=True)
    loss, terms = MILLoss(cfg)(s, lengths, labels)
    expected_bags = [bag_score(s[b, :n], cfg.selection_config(), window, cfg.window_div)[0]
                     for b, n in enumerate(lengths)]
    assert torch.equal(terms["bag"], torch.stack(expected_bags).detach())
    # the logged means: sum over videos of float(term) / B, in order
    bsz, n_norm, n_anom = 5, 2, 3
    expected = dict.fromkeys(("pa", "t", "n", "smooth", "tv", "sparse"), 0.0)
    weights = {"pa": cfg.w_pa, "t": cfg.w_t, "n": cfg.w_n, "smooth": cfg.w_smooth, "tv": cfg.w_tv,
               "sparse": cfg.w_sparse}
    reference = s.sum() * 0.0
    for b, n in enumerate(lengths):
        sb, y = s[b, :n], float(labels[b])
        vals = {"pa": loss_pa(expected_bags[b], y), "t": loss_t(frame_proxy(sb), y, max(1, n // 16 + 1)),
                "smooth": smoothness(sb), "tv": total_variation(sb),
                "n": loss_n(sb) * (bsz / n_norm) if y == 0 else sb.sum() * 0.0,
                "sparse": sparsity(sb) * (bsz / n_anom) if y == 1 else sb.sum() * 0.0}
        for key, v in vals.items():
            expected[key] += float(v.detach()) / bsz
        reference = reference + sum(weights[k] * v for k, v in vals.items()) / bsz
    assert {k: terms[k] for k in expected} == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert terms["total"] == float(loss.detach())
    assert float(loss.detach()) == pytest.approx(float(reference.detach()), rel=1e-6)
    (grad,) = torch.autograd.grad(loss, s, retain_graph=True)
    (want,) = torch.autograd.grad(reference, s)
    assert torch.allclose(grad, want, rtol=1e-5, atol=1e-8)
    assert grad[2, 1:].abs().sum() == 0 and grad[0, 7:].abs().sum() == 0       # padding gets no gradient


def test_sultani_and_video_topk():
    an = torch.tensor([0.2, 0.9, 0.4])
    no = torch.tensor([0.3, 0.1, 0.2])
    lam = 0.01
    hinge = 1 - 0.9 + 0.3
    smooth = 0.7 ** 2 + 0.5 ** 2
    assert sultani_ranking(an, no, lam).item() == pytest.approx(hinge + lam * smooth + lam * 1.5)
    a = torch.stack([no, an])
    assert sultani_loss(a, [3, 3], [0, 1], lam).item() == pytest.approx(hinge + lam * smooth + lam * 1.5)
    # top-k BCE, k = floor(3/16)+1 = 1
    expect = (-math.log(0.7) - math.log(0.9)) / 2
    assert video_topk_loss(a, [3, 3], [0, 1]).item() == pytest.approx(expect, rel=1e-6)
