"""Cell targets of training videos for the supervised oracle (never used by weak methods).

Training ground truth lives outside the weak dataset root (``patchvad synth ROOT
--oracle-labels DIR``); only :func:`oracle_targets` reads it, and only
``fit(..., oracle_labels=DIR)`` with a method whose ``needs_cell_targets`` is set
calls it (training/loop.py refuses the option for every other method).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from patchvad.data.folder import GroundTruth, VideoEntry, read_oracle_labels
from patchvad.features.snippets import SnippetMap
from patchvad.metrics.patch import COVERAGE, cell_labels_per_frame
from patchvad.training.data import segment_edges, stretch_index


def snippet_cell_targets(gt: GroundTruth, snippets: SnippetMap, grid: tuple[int, int],
                         coverage: float = COVERAGE) -> np.ndarray:
    """``(T, Gh, Gw)`` float32: a cell of snippet ``t`` is 1 when a box covers ``coverage`` of it in any of its frames.

    The frames of snippet ``t`` are its real frames ``snippets.snippet_frames(t)``; the
    cell rule is the patch metrics' (:func:`~patchvad.metrics.patch.cell_labels_per_frame`).
    """
    per_frame = cell_labels_per_frame(gt.regions, gt.frame_count, (gt.height, gt.width), grid, coverage)
    out = np.zeros((snippets.num_snippets, int(grid[0]), int(grid[1])), dtype=np.float32)
    for t in range(snippets.num_snippets):
        first, last = snippets.snippet_frames(t)
        last = min(last, per_frame.shape[0] - 1)
        if first <= last:
            out[t] = per_frame[first:last + 1].any(axis=0)
    return out


def pool_targets(y: torch.Tensor, max_snippets: int, upsample_short: bool = False) -> torch.Tensor:
    """Targets resampled like the inputs (``pool_snippets``): a pooled segment is 1 when any of its snippets is."""
    t = y.shape[0]
    if t > max_snippets:
        edges = segment_edges(t, max_snippets)
        return torch.stack([y[lo:hi].amax(0) for lo, hi in zip(edges[:-1], edges[1:], strict=True)])
    if t < max_snippets and upsample_short:
        return y[stretch_index(t, max_snippets)]
    return y


def oracle_targets(directory: str | Path, entries: Sequence[VideoEntry], snippet_maps: Sequence[SnippetMap],
                   grid: tuple[int, int], max_snippets: int, upsample_short: bool = False) -> list[torch.Tensor]:
    """Pooled ``(T', Gh, Gw)`` cell targets of each entry, read from the oracle label folder ``directory``."""
    truths = read_oracle_labels(directory, entries)
    out = []
    for entry, snippets in zip(entries, snippet_maps, strict=True):
        y = torch.from_numpy(snippet_cell_targets(truths[entry.stem], snippets, grid))
        out.append(pool_targets(y, max_snippets, upsample_short))
    return out
