"""IoU, RBDC / TBDC and TIoU on hand-computed cases and edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from patchvad.metrics import (
    SpatialAccumulator,
    UndefinedMetricError,
    area_up_to,
    box_iou,
    paired_iou,
    rbdc_tbdc,
    tiou,
)

from .helpers import reference_rbdc_tbdc

BOX = [0, 0, 9, 9]  # 10 x 10 = 100 pixels with the +1 convention


def region(track, frame, box=BOX):
    return [track, frame, *box]


def pred(frame, score, box=BOX):
    return [frame, *box, score]


# --- IoU ------------------------------------------------------------------------------


def test_box_iou_plus_one_pixel_convention():
    a = np.array([[0, 0, 9, 9]])
    b = np.array([[5, 5, 14, 14],   # overlap 5x5 = 25; union 100 + 100 - 25 = 175 -> 1/7
                  [0, 0, 9, 9],     # identical -> 1
                  [10, 0, 19, 9],   # touching edge: overlap width 9 - 10 + 1 = 0 -> 0
                  [3, 3, 3, 3]])    # one pixel (area 1) inside a -> 1/100
    np.testing.assert_allclose(box_iou(a, b), [[1 / 7, 1.0, 0.0, 0.01]], rtol=0, atol=1e-15)
    assert box_iou([[3, 3, 3, 3]], [[3, 3, 3, 3]])[0, 0] == 1.0  # a single pixel is not empty
    np.testing.assert_allclose(paired_iou(np.repeat(a, 4, axis=0), b), [1 / 7, 1.0, 0.0, 0.01], atol=1e-15)
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 4)


# --- area -----------------------------------------------------------------------------


def test_area_extends_flat_when_fpr_never_reaches_one():
    # (0,0)-(0,0.5): 0 ; (0,0.5)-(0.2,0.5): 0.1 ; flat 0.5 on (0.2, 1]: 0.4 -> 0.5
    assert area_up_to(np.array([0, 0, 0.2]), np.array([0, 0.5, 0.5])) == pytest.approx(0.5, abs=1e-15)


def test_area_cuts_at_one_with_interpolation():
    # (0,0)-(0.5,0.5): 0.125; crossing of (0.5,0.5)-(1.5,1.0) at x=1: y = 0.75;
    # (0.5,0.5)-(1,0.75): 0.5 * 0.625 = 0.3125 -> 0.4375
    assert area_up_to(np.array([0, 0.5, 1.5]), np.array([0, 0.5, 1.0])) == pytest.approx(0.4375, abs=1e-15)


# --- RBDC / TBDC ------------------------------------------------------------------------


def test_rbdc_tbdc_hand_computed():
    regions = [region(0, 0), region(0, 1)]
    preds = [pred(0, 0.9),   # TP (region of frame 0)
             pred(5, 0.8),   # frame 5 has no region: FP
             pred(1, 0.7)]   # TP (region of frame 1)
    r = rbdc_tbdc(regions, preds, n_frames=10)
    # curve: (0,0) -> t=0.9 (0, 1/2) -> t=0.8 (0.1, 1/2) -> t=0.7 (0.1, 1)
    np.testing.assert_allclose(r.fpr, [0, 0, 0.1, 0.1])
    np.testing.assert_allclose(r.rbdr, [0, 0.5, 0.5, 1.0])
    np.testing.assert_array_equal(r.thresholds, [np.inf, 0.9, 0.8, 0.7])
    # area: 0 + 0.1 * 0.5 + 0 + flat 1.0 on (0.1, 1] = 0.05 + 0.9 = 0.95
    assert r.rbdc == pytest.approx(0.95, abs=1e-12)
    # track 0 (2 regions) is detected once 1/2 >= 0.1, at t=0.9: TBDR = 1 from FPR 0 -> 1.0
    np.testing.assert_allclose(r.tbdr, [0, 1, 1, 1])
    assert r.tbdc == pytest.approx(1.0, abs=1e-12)
    assert (r.true_positives, r.false_positives, r.n_regions, r.n_tracks) == (2, 1, 2, 1)


def test_no_predictions_give_zero():
    r = rbdc_tbdc([region(0, 0)], np.zeros((0, 6)), n_frames=4)
    # curve is the single point (0, 0), extended flat at 0 -> 0
    assert (r.rbdc, r.tbdc) == (0.0, 0.0)
    np.testing.assert_array_equal(r.fpr, [0.0])


def test_predictions_only_in_normal_frames_give_zero():
    # frames 2 and 3 (say, of a normal video) have no regions: both predictions are FPs
    r = rbdc_tbdc([region(0, 0)], [pred(2, 0.9), pred(3, 0.5)], n_frames=4)
    # curve (0,0), (1/4, 0), (1/2, 0): RBDR stays 0 -> 0
    np.testing.assert_allclose(r.fpr, [0, 0.25, 0.5])
    assert (r.rbdc, r.tbdc, r.false_positives) == (0.0, 0.0, 2)


def test_prediction_matching_two_regions_counts_two_true_positives():
    regions = [region(0, 0, [0, 0, 9, 9]), region(1, 0, [5, 0, 14, 9])]
    # prediction (0,0,14,9) = 150 px; with each region: overlap 100, union 150 -> IoU 2/3 >= 0.1
    r = rbdc_tbdc(regions, [pred(0, 0.9, [0, 0, 14, 9])], n_frames=1)
    # one step: TP += 2 -> RBDR 1 at FPR 0; both tracks detected -> both areas 1
    assert (r.true_positives, r.false_positives) == (2, 0)
    assert r.rbdc == 1.0 and r.tbdc == 1.0


def test_duplicate_prediction_is_neither_tp_nor_fp():
    # the second copy only re-matches the matched region: neither
    r = rbdc_tbdc([region(0, 0)], [pred(0, 0.9), pred(0, 0.8)], n_frames=10)
    assert (r.true_positives, r.false_positives) == (1, 0)
    np.testing.assert_allclose(r.fpr, [0, 0, 0])
    assert r.rbdc == 1.0


def test_prediction_below_beta_in_a_gt_frame_is_a_false_positive():
    # (20,20,29,29) does not touch the region: IoU 0 < 0.1 -> FP although its frame has a region
    r = rbdc_tbdc([region(0, 0)], [pred(0, 0.9, [20, 20, 29, 29]), pred(0, 0.5)], n_frames=10)
    # curve (0,0), (0.1, 0), (0.1, 1): area 0 + 0 + flat 0.9 -> 0.9
    assert r.false_positives == 1
    assert r.rbdc == pytest.approx(0.9, abs=1e-12)


def test_iou_exactly_beta_matches():
    # region 10x1 = 10 px, prediction one pixel inside it: IoU = 1/10 = beta -> a match
    r = rbdc_tbdc([region(0, 0, [0, 0, 9, 0])], [pred(0, 0.5, [0, 0, 0, 0])], n_frames=1)
    assert r.true_positives == 1 and r.rbdc == 1.0


@pytest.mark.parametrize("fp_first", [True, False])
def test_tied_scores_form_one_step_independent_of_input_order(fp_first):
    tp, fp = pred(0, 0.5), pred(5, 0.5, [20, 20, 29, 29])
    r = rbdc_tbdc([region(0, 0)], [fp, tp] if fp_first else [tp, fp], n_frames=10)
    # one threshold (0.5): FP 1, TP 1 -> curve (0,0) -> (0.1, 1)
    # area: triangle 0.1 * 1 / 2 = 0.05, then flat 1 on (0.1, 1] = 0.9 -> 0.95
    # (walking the tie one box at a time would give 1.0 or 0.9 depending on the order)
    np.testing.assert_allclose(r.fpr, [0, 0.1])
    assert r.rbdc == pytest.approx(0.95, abs=1e-12)
    assert r.tbdc == pytest.approx(0.95, abs=1e-12)


def test_track_hit_in_fewer_than_ten_percent_of_its_frames_is_not_detected():
    track = [region(0, f) for f in range(11)]  # 11 regions
    r = rbdc_tbdc(track, [pred(0, 0.9)], n_frames=11)
    # 1 of 11 matched: 1/11 = 0.0909 < 0.1 -> not detected -> TBDC 0
    assert r.tbdc == 0.0
    # RBDR = 1/11 from FPR 0 on -> RBDC = 1/11
    assert r.rbdc == pytest.approx(1 / 11, abs=1e-12)
    # the same hit on a 10-region track: 1/10 = 0.1 >= 0.1 -> detected
    assert rbdc_tbdc(track[:10], [pred(0, 0.9)], n_frames=11).tbdc == 1.0


def test_track_threshold_uses_the_ratio_not_a_rounded_product():
    # alpha = 0.55 on a 100-region track: 0.55 * 100 = 55.00000000000001 in floats (ceil -> 56),
    # but 55 / 100 == 0.55, so 55 matched regions detect the track and 54 do not.
    track = [region(0, f) for f in range(100)]
    hits = lambda k: [pred(f, 0.9) for f in range(k)]  # noqa: E731
    assert rbdc_tbdc(track, hits(54), n_frames=100, alpha=0.55).tbdc == 0.0
    assert rbdc_tbdc(track, hits(55), n_frames=100, alpha=0.55).tbdc == 1.0


def test_fpr_beyond_one_is_cut_with_interpolation():
    regions = [region(0, 0), region(0, 1)]
    preds = [pred(0, 0.9),                                         # TP
             pred(2, 0.8), pred(3, 0.8), pred(2, 0.8),             # 3 FP
             pred(1, 0.7), pred(2, 0.7), pred(3, 0.7)]             # TP + 2 FP
    r = rbdc_tbdc(regions, preds, n_frames=4)
    # curve: (0,0), (0, 1/2), (3/4, 1/2), (5/4, 1)
    np.testing.assert_allclose(r.fpr, [0, 0, 0.75, 1.25])
    np.testing.assert_allclose(r.rbdr, [0, 0.5, 0.5, 1.0])
    # area: 0.75 * 0.5 = 0.375; crossing at FPR 1: y = 0.5 + 0.5 * 0.25 / 0.5 = 0.75;
    #       (0.75, 0.5)-(1, 0.75): 0.25 * 0.625 = 0.15625 -> 0.53125
    assert r.rbdc == pytest.approx(0.53125, abs=1e-12)
    # track detected at t=0.9 -> TBDR 1 from FPR 0 -> 1.0
    assert r.tbdc == 1.0


def test_rbdc_matches_literal_reference_on_a_mixed_case():
    rng = np.random.default_rng(3)
    regions = [region(t, f, [x, y, x + 8, y + 8]) for t, (f0, x, y) in enumerate([(0, 2, 2), (3, 20, 5)])
               for f, x, y in [(f0 + k, x + k, y) for k in range(4)]]
    preds = [[int(rng.integers(0, 10)), x, y, x + int(rng.integers(3, 12)), y + int(rng.integers(3, 12)),
              float(rng.choice([0.2, 0.5, 0.7, 0.9]))]
             for x, y in rng.integers(0, 30, (40, 2))]
    ours = rbdc_tbdc(regions, preds, n_frames=10)
    ref = reference_rbdc_tbdc(regions, preds, 10)
    assert ours.rbdc == pytest.approx(ref[0], abs=1e-12)
    assert ours.tbdc == pytest.approx(ref[1], abs=1e-12)
    np.testing.assert_allclose(ours.fpr, ref[2])
    np.testing.assert_allclose(ours.rbdr, ref[3])
    np.testing.assert_allclose(ours.tbdr, ref[4])


def test_rbdc_input_errors():
    with pytest.raises(UndefinedMetricError):
        rbdc_tbdc(np.zeros((0, 6)), [pred(0, 0.5)], n_frames=3)
    with pytest.raises(ValueError, match="outside"):
        rbdc_tbdc([region(0, 0)], [pred(3, 0.5)], n_frames=3)
    with pytest.raises(ValueError, match="NaN"):
        rbdc_tbdc([region(0, 0)], [pred(0, np.nan)], n_frames=3)
    with pytest.raises(ValueError, match="integers"):
        rbdc_tbdc([region(0, 0)], [pred(0.5, 0.5)], n_frames=3)


def test_accumulator_offsets_frames_and_separates_tracks():
    acc = SpatialAccumulator()
    # both videos use track id 0 and frame 0: they must stay two tracks, two frames
    acc.add(np.array([region(0, 0)]), np.array([pred(0, 0.9)]), n_frames=5)
    acc.add(np.array([region(0, 0), region(0, 1)]), np.array([pred(1, 0.8, [30, 30, 35, 35])]), n_frames=5)
    np.testing.assert_array_equal(acc.regions[:, :2], [[0, 0], [1, 5], [1, 6]])
    np.testing.assert_array_equal(acc.boxes[:, 0], [0, 6])
    r = acc.rbdc_tbdc()
    # 10 frames, 3 regions, 2 tracks; t=0.9: TP (video 1) -> (0, 1/3), TBDR 1/2;
    # t=0.8: FP in video 2 frame 1 -> (0.1, 1/3)
    # RBDC = flat 1/3 -> 1/3 ; TBDC = flat 1/2 -> 1/2
    assert (r.n_frames, r.n_regions, r.n_tracks) == (10, 3, 2)
    assert r.rbdc == pytest.approx(1 / 3, abs=1e-12)
    assert r.tbdc == pytest.approx(1 / 2, abs=1e-12)


# --- TIoU -----------------------------------------------------------------------------


def test_tiou_hand_computed():
    regions = [region(0, 0, [0, 0, 9, 9]), region(1, 0, [10, 0, 19, 9]),  # frame 0: union (0,0,19,9) = 200 px
               region(0, 1), region(0, 2)]
    preds = [pred(0, 0.9, [0, 0, 9, 9]),    # frame 0's best box: IoU with the union = 100 / 200 = 0.5
             pred(0, 0.5, [0, 0, 19, 9]),   # lower score: ignored although it fits perfectly
             pred(2, 0.9),                  # exact, but frame 2 scores below tau -> 0
             pred(3, 0.9)]                  # frame 3 has no ground truth: not in the mean
    frame_scores = np.array([0.8, 0.8, 0.2, 0.9])
    # frame 1 has no box -> 0.  TIoU = (0.5 + 0 + 0) / 3 = 1/6
    assert tiou(regions, preds, frame_scores, tau=0.5) == pytest.approx(1 / 6, abs=1e-15)
    # tau is inclusive: frame 2 at exactly tau counts -> (0.5 + 0 + 1) / 3 = 1/2
    assert tiou(regions, preds, frame_scores, tau=0.2) == pytest.approx(0.5, abs=1e-15)


def test_tiou_tied_best_boxes_take_the_first():
    preds = [pred(0, 0.7, [0, 0, 4, 9]), pred(0, 0.7, [0, 0, 9, 9])]
    # first of the tied boxes: 50 / 100 = 0.5 (the second would give 1.0)
    assert tiou([region(0, 0)], preds, np.array([1.0]), tau=0.5) == 0.5


def test_tiou_without_predictions_is_zero_and_without_gt_undefined():
    assert tiou([region(0, 0)], np.zeros((0, 6)), np.array([1.0]), tau=0.5) == 0.0
    with pytest.raises(UndefinedMetricError):
        tiou(np.zeros((0, 6)), [pred(0, 0.5)], np.array([1.0]), tau=0.5)


def test_accumulator_tiou_uses_anomalous_videos_only():
    acc = SpatialAccumulator()
    acc.add(np.array([region(0, 0)]), np.array([pred(0, 0.9)]), n_frames=1, anomalous=True)
    acc.add(np.array([region(0, 0)]), np.zeros((0, 6)), n_frames=1, anomalous=False)
    # only the first video's frame counts: IoU 1 -> 1 (with the second it would be 1/2)
    assert acc.tiou(np.array([1.0, 1.0]), tau=0.5) == 1.0
