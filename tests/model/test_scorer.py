"""PatchScorer shapes, padding and the motion prior; the encoder; the baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patchvad.config import ModelConfig
from patchvad.features.backbones.motion import MOTION_CHANNELS
from patchvad.model.baselines import RandomScorer, VideoMILScorer, motion_floor_scores
from patchvad.model.normalize import FeatureEncoder
from patchvad.model.scorer import PatchScorer

CFG = ModelConfig(width=8, appearance_dims=3, change_dims=2, scene_dims=2)


@pytest.mark.parametrize("grid,t", [((7, 7), 5), ((14, 14), 1), ((3, 5), 9)])
def test_any_grid_and_any_t(grid, t):
    torch.manual_seed(0)
    net = PatchScorer(12, CFG)
    x = torch.randn(2, t, *grid, 12)
    s = net(x)
    assert s.shape == (2, t, *grid)
    assert ((s > 0) & (s < 1)).all()


def test_padding_gives_the_same_scores_as_the_unpadded_video():
    torch.manual_seed(0)
    net = PatchScorer(6, CFG).eval()
    with torch.no_grad():
        for p in net.head[2].parameters():            # make the correction non-zero
            p.normal_(0, 0.5)
    short = torch.randn(1, 4, 5, 5, 6)
    long = torch.randn(1, 7, 5, 5, 6)
    x = torch.zeros(2, 7, 5, 5, 6)
    x[0, :4] = short[0]
    x[1] = long[0]
    mask = torch.tensor([[True] * 4 + [False] * 3, [True] * 7])
    batched = net(x, mask)
    assert torch.allclose(batched[0, :4], net(short)[0], atol=1e-5)
    assert torch.allclose(batched[1], net(long)[0], atol=1e-5)
    assert (batched[0, 4:] == 0).all()


def test_untrained_scorer_reproduces_the_motion_prior():
    net = PatchScorer(6, CFG, prior_init=(2.5, 0.7))
    x = torch.randn(1, 3, 4, 4, 6)
    expected = torch.sigmoid(2.5 * (x[..., 0] - 0.7))
    assert torch.allclose(net(x), expected, atol=1e-5)


def test_correction_bound_limits_how_far_the_logit_leaves_the_prior():
    import dataclasses

    torch.manual_seed(0)
    x = torch.randn(1, 3, 4, 4, 6)
    prior = 2.5 * (x[..., 0] - 0.7)
    free = PatchScorer(6, CFG, prior_init=(2.5, 0.7)).eval()
    bounded = PatchScorer(6, dataclasses.replace(CFG, correction_bound=1.5), prior_init=(2.5, 0.7)).eval()
    bounded.load_state_dict(free.state_dict())
    with torch.no_grad():
        for p in free.head[2].parameters():
            p.normal_(0, 20.0)                       # a wild correction: tens of logits
        bounded.head[2].load_state_dict(free.head[2].state_dict())
        free_corr = free.logits(x) - prior
        bound_corr = bounded.logits(x) - prior
    assert free_corr.abs().max() > 5.0
    assert bound_corr.abs().max() <= 1.5 + 1e-5               # float32 tanh saturates at 1
    # b * tanh(c / b): the same sign, and almost the identity for small corrections
    assert torch.allclose(bound_corr, 1.5 * torch.tanh(free_corr / 1.5), atol=1e-4)


def test_motion_floor_scores_known_answer():
    motion = slice(2, 10)
    x = np.zeros((3, 1, 2, 10), dtype=np.float16)
    e = 2 + MOTION_CHANNELS.index("energy_mean")
    x[:, 0, 0, e] = [0.1, 0.5, 0.2]
    x[:, 0, 1, e] = [0.3, 0.3, 0.3]
    s = motion_floor_scores(x, motion)
    assert s.shape == (3, 1, 2)
    np.testing.assert_allclose(s[:, 0, 0], [-0.1, 0.3, 0.0], atol=1e-3)
    np.testing.assert_allclose(s[:, 0, 1], 0.0, atol=1e-6)


def test_encoder_fit_uses_the_given_videos_and_standardises():
    rng = np.random.default_rng(0)
    channels = {"appearance": [0, 6], "appearance_change": [6, 9], "motion": [9, 17]}
    enc = FeatureEncoder(channels, CFG)
    videos = [rng.normal(3.0, 2.0, (10, 4, 4, 17)).astype(np.float16) for _ in range(5)]
    enc.fit(videos, max_videos_hint=5)
    z = torch.cat([enc.encode(v).reshape(-1, enc.out_dim) for v in videos])
    assert z.shape[1] == 1 + 16 + 3 + 2 + 2 + 6          # prior, motion, residual, app, change, scene, context
    # motion channels standardised on exactly these videos
    assert torch.allclose(z[:, 1:9].mean(0), torch.zeros(8), atol=1e-3)
    assert torch.allclose(z[:, 1:9].std(0), torch.ones(8), atol=1e-2)
    # PCA components have unit variance on the fitting tokens (up to the sample)
    assert torch.allclose(z[:, 17:22].std(0), torch.ones(5), atol=0.15)
    # the scene part is constant over time within a cell
    e = enc.encode(videos[0])
    assert torch.allclose(e[0, ..., 22:28], e[-1, ..., 22:28])
    # the prior channel is the standardised energy residual
    assert torch.equal(z[:, 0], z[:, 9 + MOTION_CHANNELS.index("energy_mean")])


def test_video_mil_scorer_and_random_scorer():
    net = VideoMILScorer(5, CFG)
    a = net(torch.randn(3, 6, 4, 4, 5), torch.ones(3, 6, dtype=torch.bool))
    assert a.shape == (3, 6)
    r = RandomScorer(3)
    assert np.array_equal(r("v", (2, 3, 3)), r("v", (2, 3, 3)))
    assert not np.array_equal(r("v", (2, 3, 3)), r("w", (2, 3, 3)))


def test_isotropic_context_cannot_move_evidence_in_one_direction():
    from patchvad.model.scorer import IsotropicConv2d
    torch.manual_seed(0)
    conv = IsotropicConv2d(4)
    h = torch.zeros(1, 7, 7, 4)
    h[0, 3, 3] = torch.randn(4)
    out = conv(h)[0] - conv(torch.zeros(1, 7, 7, 4))[0]
    # the response to one cell is symmetric under flips and transposition around it
    assert torch.allclose(out, out.flip(0), atol=1e-6)
    assert torch.allclose(out, out.flip(1), atol=1e-6)
    assert torch.allclose(out, out.transpose(0, 1), atol=1e-6)


@pytest.mark.parametrize("spatial", ["isotropic", "conv", "none"])
def test_spatial_variants_keep_shapes(spatial):
    cfg = ModelConfig(width=8, spatial=spatial)
    net = PatchScorer(5, cfg)
    assert net(torch.randn(2, 3, 6, 4, 5)).shape == (2, 3, 6, 4)


def test_motion_context_projects_against_the_usual_flow():
    from patchvad.model.normalize import context_tokens, motion_context
    mot = np.zeros((6, 1, 3, 8), dtype=np.float32)
    u, mv = MOTION_CHANNELS.index("flow_u"), MOTION_CHANNELS.index("moving_fraction")
    mot[:5, 0, :, u] = 1.0                  # walkers go right (+x) through every cell ...
    mot[:5, 0, :, mv] = 0.3
    mot[5, 0, 1, u] = -1.0                  # ... one goes left through the middle cell
    mot[5, 0, 1, mv] = 0.3
    cell, overall = motion_context(mot)
    assert overall[0] > 0.5 and cell[0, 1, 0] > 0.5
    tok = context_tokens(mot, cell, overall)
    assert tok.shape == (6, 1, 3, 6)
    assert tok[5, 0, 1, 4] < -0.5 and tok[5, 0, 1, 5] < -0.5    # against the cell's and the video's flow
    assert tok[0, 0, 1, 4] > 0.5 and tok[0, 0, 1, 5] > 0.5


def test_hflip_augmentation_mirrors_grid_and_horizontal_flow():
    from patchvad.training import augment
    channels = {"appearance": [0, 6], "appearance_change": [6, 9], "motion": [9, 17]}
    enc = FeatureEncoder(channels, CFG)
    signs = enc.hflip_signs()
    off = enc.part_offsets()
    u = MOTION_CHANNELS.index("flow_u")
    assert signs[off["motion"] + u] == -1 and signs[off["residual"] + u] == -1 and signs[off["context"]] == -1
    assert int((signs < 0).sum()) == 3
    x = torch.randn(2, 3, 4, 5, enc.out_dim)
    mask = torch.ones(2, 3, dtype=torch.bool)
    out = augment(x, mask, 1.0, 0.0, signs, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x.flip(3) * signs)
    assert torch.equal(augment(x, mask, 0.0, 0.0, signs, torch.Generator()), x)
