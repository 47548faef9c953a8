"""Cell labels from boxes (25% coverage), cell scores, PAUC and PAP."""

from __future__ import annotations

import numpy as np
import pytest

from patchvad.metrics import (
    PatchAccumulator,
    UndefinedMetricError,
    cell_labels_from_boxes,
    cell_labels_per_frame,
    pap,
    patch_cell_scores,
    pauc,
)

# A 40 x 40 frame with a 4 x 4 grid: cells of 10 x 10 = 100 px.
SIZE, GRID = (40, 40), (4, 4)


def test_exactly_a_quarter_of_a_cell_is_positive():
    # (0,0,4,4) covers [0,5) x [0,5) = 25 px = 25% of cell (0,0)
    labels = cell_labels_from_boxes(np.array([[0, 0, 4, 4]]), SIZE, GRID)
    assert labels[0, 0] and labels.sum() == 1
    # (0,0,3,4) covers 4 x 5 = 20 px = 20% -> negative
    assert not cell_labels_from_boxes(np.array([[0, 0, 3, 4]]), SIZE, GRID).any()


def test_box_across_four_cells():
    # (5,5,14,14) covers [5,15)^2: 5 x 5 = 25 px in each of cells (0,0),(0,1),(1,0),(1,1) -> 4 positives
    labels = cell_labels_from_boxes(np.array([[5, 5, 14, 14]]), SIZE, GRID)
    assert labels[:2, :2].all() and labels.sum() == 4
    # (5,5,13,13) covers [5,14)^2: cell (0,0) 5x5 = 25 yes; (0,1) 4x5 = 20 no; (1,1) 4x4 = 16 no
    labels = cell_labels_from_boxes(np.array([[5, 5, 13, 13]]), SIZE, GRID)
    assert labels[0, 0] and labels.sum() == 1


def test_coverage_is_per_box_not_merged():
    # two boxes of 3 x 5 = 15 px each in cell (0,0): 15% each, 30% together -> still negative
    boxes = np.array([[0, 0, 2, 4], [5, 5, 7, 9]])
    assert not cell_labels_from_boxes(boxes, SIZE, GRID).any()


def test_non_integer_cell_size():
    # 240 x 320 frame, 7 x 7 grid: cells of 34.29 x 45.71 px. A box over the whole first cell
    # column (x in [0, 46) > 45.71) covers all cells of column 0 -> 7 positives; its 0.29 px
    # spill into column 1 is ~0.6% of a cell.
    labels = cell_labels_from_boxes(np.array([[0, 0, 45, 239]]), (240, 320), (7, 7))
    assert labels[:, 0].all() and labels.sum() == 7


def test_empty_boxes_give_no_positive():
    assert cell_labels_from_boxes(np.zeros((0, 4)), SIZE, GRID).shape == GRID
    assert not cell_labels_from_boxes(np.zeros((0, 4)), SIZE, GRID).any()


def test_cell_labels_per_frame_or_over_regions():
    regions = np.array([[0, 1, 0, 0, 9, 9], [1, 1, 30, 30, 39, 39], [0, 2, 0, 0, 9, 9]])
    labels = cell_labels_per_frame(regions, 3, SIZE, GRID)
    assert not labels[0].any()
    assert labels[1, 0, 0] and labels[1, 3, 3] and labels[1].sum() == 2
    assert labels[2, 0, 0] and labels[2].sum() == 1


def test_cell_scores_use_the_frame_to_snippet_map():
    maps = np.array([[[0.5]], [[0.25]]])          # T=2, 1x1 grid
    f2s = np.array([0, 0, 1])
    scores = np.array([1.0, 0.5, 0.8])
    # frame 0: 0.5 * 1.0; frame 1: 0.5 * 0.5; frame 2: 0.25 * 0.8
    np.testing.assert_allclose(patch_cell_scores(maps, f2s, scores)[:, 0, 0], [0.5, 0.25, 0.2])
    with pytest.raises(ValueError, match="frame_to_snippet"):
        patch_cell_scores(maps, np.array([0, 2, 1]), scores)


def _two_frame_case(map_values):
    # frame size 10 x 20, grid 1 x 2 -> cells 10 x 10; frame 0 has region (0,0,9,9) -> cell (0,0) positive
    acc = PatchAccumulator()
    acc.add(np.array([[map_values]]), np.array([0, 0]), np.array([1.0, 0.5]),
            np.array([[0, 0, 0, 0, 9, 9]]), (10, 20), frame_labels=np.array([1, 0]))
    return acc


def test_pauc_pap_hand_computed():
    # map [0.9, 0.2]: cell scores f0 = (0.9, 0.2), f1 = (0.45, 0.1); labels (1, 0, 0, 0)
    # the positive (0.9) is above every negative -> PAUC 1, PAP 1
    acc = _two_frame_case([0.9, 0.2])
    assert acc.pauc() == 1.0 and acc.pap() == 1.0
    # map [0.3, 0.9]: f0 = (0.3, 0.9), f1 = (0.15, 0.45); positive 0.3 beats only 0.15 -> PAUC 1/3
    # ranking 0.9 (n), 0.45 (n), 0.3 (p), 0.15 (n): AP = recall 1 at precision 1/3 -> 1/3
    acc = _two_frame_case([0.3, 0.9])
    assert acc.pauc() == pytest.approx(1 / 3, abs=1e-15)
    assert acc.pap() == pytest.approx(1 / 3, abs=1e-15)


def test_pure_pauc_pap_flatten_any_shape():
    labels = np.array([[[1, 0]], [[0, 0]]])
    scores = np.array([[[0.3, 0.9]], [[0.15, 0.45]]])
    assert pauc(labels, scores) == pytest.approx(1 / 3)
    assert pap(labels, scores) == pytest.approx(1 / 3)


def test_anomalous_frames_without_boxes_are_left_out():
    acc = PatchAccumulator()
    # 3 frames: 0 boxed, 1 anomalous without a box (unknown cells), 2 normal
    acc.add(np.array([[[0.9, 0.1]]]), np.array([0, 0, 0]), np.array([1.0, 1.0, 0.2]),
            np.array([[0, 0, 0, 0, 9, 9]]), (10, 20), frame_labels=np.array([1, 1, 0]))
    assert (acc.n_frames, acc.n_excluded_frames) == (2, 1)
    # kept cells: f0 (0.9 p, 0.1 n), f2 (0.18 n, 0.02 n) -> PAUC 1. Had frame 1 been kept with
    # all-negative labels, its 0.9 cell would tie with the positive.
    assert acc.pauc() == 1.0


def test_accumulator_refuses_mixed_grids_and_empty():
    acc = PatchAccumulator()
    with pytest.raises(UndefinedMetricError):
        acc.pauc()
    acc.add(np.zeros((1, 2, 2)), np.array([0]), np.array([1.0]), np.zeros((0, 6)), SIZE)
    with pytest.raises(ValueError, match="grid"):
        acc.add(np.zeros((1, 3, 3)), np.array([0]), np.array([1.0]), np.zeros((0, 6)), SIZE)
    # only negative cells so far: undefined, not NaN
    with pytest.raises(UndefinedMetricError):
        acc.pauc()
