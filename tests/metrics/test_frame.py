"""Frame-level metrics: hand-computed cases, edge cases, and scikit-learn as the reference."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from patchvad.metrics import (
    FrameAccumulator,
    UndefinedMetricError,
    frame_ap_stepwise,
    frame_auc,
    frame_auc_macro,
    frame_auc_micro,
    padded_video_auc,
    roc_curve,
    youden_threshold,
)


def test_auc_hand_computed():
    # positives {0.35, 0.8}, negatives {0.1, 0.4}; pairs (pos > neg):
    # 0.8>0.1 yes, 0.8>0.4 yes, 0.35>0.1 yes, 0.35>0.4 no -> AUC = 3/4
    assert frame_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75, abs=1e-15)


def test_roc_curve_points_only_at_distinct_thresholds():
    # scores 0.6 (pos), 0.6 (pos), 0.6 (neg), 0.2 (neg): one step at 0.6, one at 0.2.
    # At 0.6: tp = 2 of 2, fp = 1 of 2 -> (0.5, 1.0); at 0.2 -> (1, 1).
    fpr, tpr, thr = roc_curve([0, 1, 1, 0], [0.2, 0.6, 0.6, 0.6])
    np.testing.assert_array_equal(fpr, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(tpr, [0.0, 1.0, 1.0])
    np.testing.assert_array_equal(thr, [np.inf, 0.6, 0.2])
    # Area: (0,0)-(0.5,1): 0.25; (0.5,1)-(1,1): 0.5 -> 0.75. Pairwise: pos vs neg 0.2 -> 2 wins,
    # pos vs tied neg 0.6 -> 2 halves -> (2 + 1) / 4 = 0.75: ties get half credit.
    assert frame_auc([0, 1, 1, 0], [0.2, 0.6, 0.6, 0.6]) == pytest.approx(0.75, abs=1e-15)


def test_all_tied_scores_give_half():
    # one point (1, 1) after (0, 0): the diagonal, area 1/2.
    assert frame_auc([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3]) == 0.5


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1], []])
def test_auc_single_class_is_undefined(labels):
    with pytest.raises(UndefinedMetricError):
        frame_auc(labels, np.linspace(0, 1, len(labels)))


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="NaN"):
        frame_auc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="0 or 1"):
        frame_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="length"):
        frame_auc([0, 1, 1], [0.1, 0.2])


def test_micro_and_macro_hand_computed():
    labels = [np.array([0, 1]), np.array([0, 1])]
    scores = [np.array([0.2, 0.9]), np.array([0.95, 0.3])]
    # micro: pos {0.9, 0.3}, neg {0.2, 0.95}: 0.9>0.2 yes, 0.9>0.95 no, 0.3>0.2 yes, 0.3>0.95 no -> 2/4
    assert frame_auc_micro(labels, scores) == pytest.approx(0.5, abs=1e-15)
    # macro, UBnormal padding (label 0 score 0 first, label 1 score 1 last):
    # video 1: labels [0,0,1,1], scores [0,0.2,0.9,1]: every pos above every neg -> 1
    # video 2: labels [0,0,1,1], scores [0,0.95,0.3,1]: pos {0.3, 1} vs neg {0, 0.95}:
    #          0.3>0 yes, 0.3>0.95 no, 1>0 yes, 1>0.95 yes -> 3/4
    # mean = (1 + 0.75) / 2 = 0.875
    assert frame_auc_macro(labels, scores) == pytest.approx(0.875, abs=1e-15)


def test_macro_padding_defines_one_class_videos():
    # all normal: labels [0,0,0,0,1] scores [0,0.1,0.5,0.2,1]: the pad positive (1) beats all -> 1
    assert padded_video_auc([0, 0, 0], [0.1, 0.5, 0.2]) == 1.0
    # all normal and scored 1: labels [0,0,0,1], scores [0,1,1,1]; pos 1 vs neg {0, 1, 1}:
    # 1 + 1/2 + 1/2 = 2 of 3 -> 2/3
    assert padded_video_auc([0, 0], [1.0, 1.0]) == pytest.approx(2 / 3, abs=1e-15)
    # all anomalous and scored 0: labels [0,1,1,1], scores [0,0,0,1]; neg {0} vs pos {0, 0, 1}:
    # 1/2 + 1/2 + 1 = 2 of 3 -> 2/3
    assert padded_video_auc([1, 1], [0.0, 0.0]) == pytest.approx(2 / 3, abs=1e-15)


def test_ap_stepwise_hand_computed():
    # labels [1,0,1,0] scores [0.9,0.8,0.7,0.6]:
    #   t=0.9: tp1 fp0 P=1   R=0.5 ; t=0.8: tp1 fp1 P=1/2 R=0.5
    #   t=0.7: tp2 fp1 P=2/3 R=1   ; t=0.6: tp2 fp2 P=1/2 R=1
    # AP = 0.5*1 + 0*(1/2) + 0.5*(2/3) + 0*(1/2) = 5/6
    # (the trapezoid over the PR curve would give a different number: this is the step-wise one)
    assert frame_ap_stepwise([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.6]) == pytest.approx(5 / 6, abs=1e-15)


def test_ap_ties_are_one_step():
    # labels [1,0,1] scores [0.9,0.5,0.5]: t=0.9: P=1 R=1/2; t=0.5 (both tied items): tp2 fp1 P=2/3 R=1
    # AP = 1/2 * 1 + 1/2 * 2/3 = 5/6, whatever the order of the tied items
    assert frame_ap_stepwise([1, 0, 1], [0.9, 0.5, 0.5]) == pytest.approx(5 / 6, abs=1e-15)
    assert frame_ap_stepwise([1, 1, 0], [0.9, 0.5, 0.5]) == pytest.approx(5 / 6, abs=1e-15)


def test_ap_without_positives_is_undefined():
    with pytest.raises(UndefinedMetricError):
        frame_ap_stepwise([0, 0], [0.1, 0.2])


def test_ap_only_positives_is_one():
    # precision is 1 at every threshold
    assert frame_ap_stepwise([1, 1], [0.1, 0.2]) == 1.0


def test_youden_threshold_hand_computed_with_tie_in_j():
    # labels [0,0,1,1] scores [0.1,0.4,0.35,0.8]; J = TPR - FPR at each threshold:
    #   0.8: 0.5 - 0 = 0.5 ; 0.4: 0.5 - 0.5 = 0 ; 0.35: 1 - 0.5 = 0.5 ; 0.1: 1 - 1 = 0
    # J ties at 0.8 and 0.35: the highest threshold wins -> 0.8
    assert youden_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.8


def test_youden_threshold_is_a_real_score_even_for_inverted_scores():
    # labels [1,0], scores [0.1,0.9]: J at 0.9 = 0 - 1 = -1, at 0.1 = 1 - 1 = 0 -> tau = 0.1 (finite)
    assert youden_threshold([1, 0], [0.1, 0.9]) == 0.1


def test_youden_midpoints_hand_computed_with_tie_in_j():
    # labels [0,0,1,1] scores [0.1,0.4,0.35,0.8]; candidates ascending and J = TPR - FPR:
    #   0.1 - 1e-6: 1 - 1 = 0 ; 0.225: 1 - 0.5 = 0.5 ; 0.375: 0.5 - 0.5 = 0 ; 0.6: 0.5 - 0 = 0.5 ;
    #   0.8 + 1e-6: 0 - 0 = 0. J ties at 0.225 and 0.6: the lowest candidate wins.
    assert youden_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], midpoints=True) == 0.5 * (0.1 + 0.35)
    # inverted scores: J = 0 at both ends, -1 at the midpoint 0.5 -> the lowest end, 0.1 - 1e-6
    assert youden_threshold([1, 0], [0.1, 0.9], midpoints=True) == 0.1 - 1e-6
    with pytest.raises(UndefinedMetricError):
        youden_threshold([1, 1], [0.1, 0.9], midpoints=True)


def _youden_midpoints_loop(labels: np.ndarray, scores: np.ndarray) -> float:
    """Reference: every candidate tried in ascending order; the first strictly better J is kept."""
    scores = np.asarray(scores, dtype=np.float64)
    cand = np.unique(scores)
    mids = [cand[0] - 1e-6] + [0.5 * (a + b) for a, b in zip(cand[1:], cand[:-1])] + [cand[-1] + 1e-6]
    best, best_j = None, -np.inf
    for thr in mids:
        flagged = scores >= thr
        j = flagged[labels == 1].mean() - flagged[labels == 0].mean()
        if j > best_j:
            best, best_j = float(thr), j
    return best


def _auc_by_pairs(labels: np.ndarray, scores: np.ndarray) -> float:
    """Reference: every (positive, negative) pair counted, ties as half, rounded once."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    twice = int(2 * (pos[:, None] > neg[None, :]).sum() + (pos[:, None] == neg[None, :]).sum())
    return float(Fraction(twice, 2 * pos.size * neg.size))


@pytest.mark.parametrize("seed", range(8))
def test_exact_auc_and_midpoint_youden_match_references_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        n = int(rng.integers(2, 60))
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        # continuous float32, heavy ties, and neighbouring doubles (a midpoint that rounds onto a score)
        scores = [rng.random(n).astype(np.float32), rng.integers(0, 5, n) / 4.0,
                  1.0 + rng.integers(0, 3, n) * np.finfo(float).eps][seed % 3]
        assert frame_auc(labels, scores, exact=True) == _auc_by_pairs(labels, scores)
        assert abs(frame_auc(labels, scores, exact=True) - frame_auc(labels, scores)) < 1e-12
        assert youden_threshold(labels, scores, midpoints=True) == _youden_midpoints_loop(labels, scores)


def test_accumulator_matches_functions_in_insertion_order():
    acc = FrameAccumulator()
    acc.add(np.array([0, 1]), np.array([0.2, 0.9]))
    acc.add(np.array([0, 1]), np.array([0.95, 0.3]))
    assert acc.auc_micro() == pytest.approx(0.5)
    assert acc.auc_macro() == pytest.approx(0.875)
    y, s = acc.concatenated()
    np.testing.assert_array_equal(s, [0.2, 0.9, 0.95, 0.3])
    assert acc.ap() == pytest.approx(frame_ap_stepwise(y, s))
    assert acc.youden() == youden_threshold(y, s)


@pytest.mark.parametrize("seed", range(12))
def test_auc_and_ap_agree_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 5000))
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]  # both classes present
    # half the seeds with heavy ties (rounded scores), half continuous, one float32
    scores = rng.random(n)
    if seed % 2:
        scores = np.round(scores, 1)
    if seed == 4:
        scores = scores.astype(np.float32)
    assert abs(frame_auc(labels, scores) - roc_auc_score(labels, scores)) < 1e-9
    assert abs(frame_ap_stepwise(labels, scores) - average_precision_score(labels, scores)) < 1e-9


def test_micro_auc_agrees_with_sklearn_on_concatenation():
    rng = np.random.default_rng(7)
    labels = [rng.integers(0, 2, int(rng.integers(1, 300))) for _ in range(20)]
    scores = [rng.random(len(y)) for y in labels]
    ref = roc_auc_score(np.concatenate(labels), np.concatenate(scores))
    assert abs(frame_auc_micro(labels, scores) - ref) < 1e-9
    ref_macro = np.mean([roc_auc_score(np.r_[0, y, 1], np.r_[0.0, s, 1.0]) for y, s in zip(labels, scores)])
    assert abs(frame_auc_macro(labels, scores) - ref_macro) < 1e-9
