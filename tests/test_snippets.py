"""The frame <-> snippet map."""

from __future__ import annotations

import numpy as np
import pytest

from patchvad.features.snippets import SnippetMap


def test_non_overlapping_with_partial_tail() -> None:
    m = SnippetMap.build(37, 16)
    assert m.starts.tolist() == [0, 16, 32]
    f2s = m.frame_to_snippet
    assert f2s.shape == (37,)
    assert f2s[:16].tolist() == [0] * 16 and f2s[16:32].tolist() == [1] * 16 and f2s[32:].tolist() == [2] * 5
    assert m.snippet_frames(2) == (32, 36)


def test_exact_multiple_has_no_empty_snippet() -> None:
    assert SnippetMap.build(32, 16).starts.tolist() == [0, 16]
    assert SnippetMap.build(1, 16).starts.tolist() == [0]


def test_overlapping_latest_snippet_wins() -> None:
    m = SnippetMap.build(20, 8, 4)
    assert m.starts.tolist() == [0, 4, 8, 12]
    assert m.frame_to_snippet.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 8


def test_to_frames_never_truncates() -> None:
    m = SnippetMap.build(37, 16)
    np.testing.assert_array_equal(m.to_frames(np.array([0.1, 0.5, 0.9])), [0.1] * 16 + [0.5] * 16 + [0.9] * 5)
    with pytest.raises(ValueError, match="2 snippet values for a map of 3 snippets"):
        m.to_frames(np.array([0.1, 0.5]))


def test_round_trip_dict() -> None:
    m = SnippetMap.build(100, 16, 8)
    m2 = SnippetMap.from_dict(m.to_dict())
    assert m2.frame_count == 100 and m2.starts.tolist() == m.starts.tolist() and m2.stride == 8
