"""Known-answer tests of the window finders, patch map and top-k selections."""

from __future__ import annotations

import math

import pytest
import torch

from patchvad.errors import ConfigError
from patchvad.model.selections import SelectionConfig
from patchvad.model.selection import (bag_score, bag_scores, find_window, patch_map, plain_topk, proximity_topk,
                                      snippet_scores, window_cusum, window_fixed, window_length, window_none)


def test_window_length():
    assert window_length(15) == 1
    assert window_length(16) == 2
    assert window_length(64) == 5
    assert window_length(3, div=1) == 3          # capped at T


def test_window_fixed_known_answers():
    a = torch.tensor([0.0, 0.1, 0.2, 0.9, 0.8, 0.1, 0.0])
    assert window_fixed(a, 2) == (3, 5)
    assert window_fixed(a, 1) == (3, 4)
    assert window_fixed(a, 3) == (2, 5)           # 0.2+0.9+0.8 beats 0.9+0.8+0.1
    # ties: earliest start
    assert window_fixed(torch.tensor([1.0, 0.0, 1.0]), 1) == (0, 1)
    # w larger than T: the whole sequence
    assert window_fixed(torch.tensor([0.3, 0.4]), 5) == (0, 2)


def test_window_cusum_single_bump():
    a = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    # mean 3/8; S = 0,0,0,.625,1.25,1.875,1.5,1.125 -> ends at t=5, starts after the zero at t=2
    assert window_cusum(a) == (3, 6)


def test_window_cusum_two_bumps_picks_the_stronger():
    a = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    # mean 3/8: S = .625,.25,0,0,0,.625,1.25,.875 -> end 6; last zero before it at t=4 -> start 5
    assert window_cusum(a) == (5, 7)


def test_window_cusum_constant_sequence_falls_back_to_the_peak():
    assert window_cusum(torch.full((5,), 0.3)) == (0, 1)


def test_window_none_and_dispatch():
    a = torch.rand(9)
    assert window_none(a) == (0, 9)
    assert find_window(a, "none") == (0, 9)
    assert find_window(torch.tensor([0.0] * 16 + [1.0, 1.0]), "fixed") == (16, 18)  # T=18 -> w=2
    with pytest.raises(ConfigError):
        find_window(a, "bogus")


def test_patch_map_is_the_window_mean():
    s = torch.arange(4 * 2 * 2, dtype=torch.float32).view(4, 2, 2)
    m = patch_map(s, (1, 3))
    assert torch.equal(m, (s[1] + s[2]) / 2)
    with pytest.raises(ValueError):
        patch_map(s, (3, 3))


def scattered_map() -> torch.Tensor:
    """7x7: a compact blob around (3,3) and three isolated far-away maxima."""
    m = torch.full((7, 7), 0.1)
    m[3, 3] = 0.9                     # the peak
    m[3, 4] = 0.6                     # its right neighbour
    m[2, 3] = 0.55                    # above it
    m[4, 4] = 0.5                     # diagonal neighbour
    m[0, 0] = 0.85                    # scattered maxima, far from the peak
    m[6, 6] = 0.8
    m[0, 6] = 0.75
    return m


def cells(sel) -> set[tuple[int, int]]:
    return {tuple(c) for c in sel.cells.tolist()}


def test_plain_and_proximity_topk_pick_different_stated_cells():
    m = scattered_map()
    plain = plain_topk(m, 4)
    assert cells(plain) == {(3, 3), (0, 0), (6, 6), (0, 6)}
    assert plain.score.item() == pytest.approx((0.9 + 0.85 + 0.8 + 0.75) / 4)

    gauss = proximity_topk(m, 4, mode="gauss", sigma=1.0)
    assert gauss.peak == (3, 3)
    assert cells(gauss) == {(3, 3), (3, 4), (2, 3), (4, 4)}
    e1, e2 = math.exp(-0.5), math.exp(-1.0)            # pi at distance 1 and sqrt(2)
    expected = (0.9 + 0.6 * e1 + 0.55 * e1 + 0.5 * e2) / (1 + e1 + e1 + e2)
    assert gauss.score.item() == pytest.approx(expected, rel=1e-6)

    radius = proximity_topk(m, 4, mode="radius", radius=1)
    assert cells(radius) == {(3, 3), (3, 4), (2, 3), (4, 4)}
    assert radius.score.item() == pytest.approx((0.9 + 0.6 + 0.55 + 0.5) / 4)


def test_radius_neighbourhood_at_the_border_holds_fewer_cells():
    m = torch.zeros(5, 5)
    m[0, 0] = 1.0
    sel = proximity_topk(m, 9, mode="radius", radius=1)
    assert len(cells(sel)) == 4                          # 2x2 corner neighbourhood


def test_gradients_flow_only_through_selected_cells():
    torch.manual_seed(0)
    s = torch.full((8, 7, 7), 0.1)
    s[5] = scattered_map()                               # the window (T=8 -> w=1) is snippet 5
    s = s.clone().requires_grad_(True)
    score, win = bag_score(s, SelectionConfig(rule="gauss", k=4, sigma=1.0), window="fixed")
    assert win == (5, 6)
    score.backward()
    nz = {tuple(i) for i in torch.nonzero(s.grad).tolist()}
    assert nz == {(5, 3, 3), (5, 3, 4), (5, 2, 3), (5, 4, 4)}

    s2 = s.detach().clone().requires_grad_(True)
    score2, _ = bag_score(s2, SelectionConfig(rule="plain", k=4), window="none")
    score2.backward()
    nz2 = {tuple(i[1:]) for i in torch.nonzero(s2.grad).tolist()}
    # window none: the map is the mean over all 8 snippets; plain top-4 of that map
    m = s2.detach().mean(0)
    top = {divmod(int(i), 7) for i in torch.topk(m.flatten(), 4).indices}
    assert nz2 == top
    assert torch.allclose(s2.grad[:, 3, 3], torch.full((8,), 1 / 32))   # 1/k of 1/T each


def test_bag_scores_ignore_padding():
    s = torch.zeros(2, 6, 3, 3)
    s[0, :4] = 0.2
    s[0, 4:] = 0.99                                      # padding of a 4-snippet video
    s[1] = 0.3
    out = bag_scores(s, [4, 6], SelectionConfig(rule="gauss", k=2), window="fixed")
    assert out[0].item() == pytest.approx(0.2)
    assert out[1].item() == pytest.approx(0.3)


@pytest.mark.parametrize("mode", ["gauss", "radius", "plain"])
def test_snippet_scores_match_per_snippet_selection(mode):
    torch.manual_seed(1)
    s = torch.rand(6, 5, 7)
    vec = snippet_scores(s, SelectionConfig(rule=mode, k=4, sigma=1.3, radius=1))
    ref = torch.stack([proximity_topk(s[t], 4, mode=mode, sigma=1.3, radius=1).score for t in range(6)])
    assert torch.allclose(vec, ref, atol=1e-6)
