"""The grid ceiling: the best TIoU a map of whole grid cells can reach on a test split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from patchvad.data.folder import DatasetFolder
from patchvad.geometry import cell_box, paired_iou


def grid_ceiling(data_root: str | Path, grids: Sequence[tuple[int, int]] = ((7, 7), (14, 14), (28, 28))) -> dict:
    """TIoU of a perfect whole-cell map per grid, over the ground-truth frames of the test split.

    For each annotated frame: the union box of its regions, the smallest whole-cell box
    around it (:func:`patchvad.geometry.cell_box`), their IoU (frame scores perfect).
    Also the share of frames that can reach IoU >= 0.1 (the RBDC match threshold).

    Returns:
        ``{"<Gh>x<Gw>": {"tiou_ceiling": float | None, "frac_iou_ge_0.1": float | None,
        "frames": int}}`` (None when the test split has no annotated frame).
    """
    test = DatasetFolder(data_root, check_files=False).test_set()
    ious: dict[tuple[int, int], list[float]] = {(int(g[0]), int(g[1])): [] for g in grids}
    for e in test:
        if e.label != 1:
            continue
        gt = test.ground_truth(e)
        for f in np.unique(gt.regions[:, 1]):
            b = gt.boxes_of_frame(int(f))
            union = (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())
            for g, values in ious.items():
                cells = cell_box(union, g, (gt.width, gt.height))
                values.append(float(paired_iou(np.asarray([union]), np.asarray([cells]))[0]))
    return {f"{g[0]}x{g[1]}": {"tiou_ceiling": float(np.mean(v)) if v else None,
                               "frac_iou_ge_0.1": float(np.mean(np.asarray(v) >= 0.1)) if v else None,
                               "frames": len(v)} for g, v in ious.items()}


__all__ = ["grid_ceiling"]
