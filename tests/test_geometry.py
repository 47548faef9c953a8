"""Known answers of the one geometry module (inclusive pixel boxes, +1 convention)."""

from __future__ import annotations

import numpy as np
import pytest

from patchvad.geometry import box_iou, cell_box, chain_snippet_boxes, paired_iou


def test_iou_counts_pixels_inclusively() -> None:
    # 10x10 boxes overlapping in a 5x10 strip: 50 / (100 + 100 - 50)
    assert box_iou([(0, 0, 9, 9)], [(5, 0, 14, 9)])[0, 0] == pytest.approx(1 / 3, abs=1e-15)
    assert paired_iou(np.array([[0, 0, 9, 9]]), np.array([[5, 0, 14, 9]]))[0] == pytest.approx(1 / 3, abs=1e-15)
    assert box_iou([(4, 4, 4, 4)], [(4, 4, 4, 4)])[0, 0] == 1.0      # one pixel is not empty
    assert box_iou([(0, 0, 3, 3)], [(4, 0, 7, 3)])[0, 0] == 0.0      # touching is not overlapping


def test_degenerate_boxes_have_zero_iou_instead_of_nan() -> None:
    bad = np.array([[5.0, 5.0, 3.0, 3.0]])                          # x_max < x_min - 1: empty
    assert np.isfinite(box_iou(bad, bad)).all()
    assert box_iou(bad, bad)[0, 0] == 0.0
    assert paired_iou(bad, bad)[0] == 0.0


def test_cell_box_covers_the_box_with_whole_cells() -> None:
    # 100 x 50 frame, 4 x 5 grid: cells are 20 px wide and 12.5 px high
    assert cell_box((25, 13, 30, 20), (4, 5), (100, 50)) == (20, 12, 39, 24)
    assert cell_box((0, 0, 99, 49), (4, 5), (100, 50)) == (0, 0, 99, 49)


def test_snippet_boxes_chain_while_they_overlap() -> None:
    assert chain_snippet_boxes([(0, 0, 9, 9), (1, 0, 10, 9), (50, 50, 60, 60), (50, 50, 60, 60)], 0.3) == [0, 0, 1, 1]
    assert chain_snippet_boxes([], 0.3) == []
