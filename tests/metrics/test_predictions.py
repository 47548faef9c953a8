"""The predictions folder: round trip, validation, error messages that name the file."""

from __future__ import annotations

import numpy as np
import pytest

from patchvad.errors import PredictionError
from patchvad.predictions import (
    default_frame_to_snippet,
    prediction_stems,
    read_prediction,
    write_prediction,
)

HEADER = "frame_id,x_min,y_min,x_max,y_max,score\n"


def test_round_trip(tmp_path):
    scores = np.array([0.1, 0.25, 0.9, 0.3], dtype=np.float32)
    boxes = np.array([[2, 1.5, 2, 10, 12, 0.123456789012345], [0, 0, 0, 3, 3, 1 / 3]])
    maps = np.random.default_rng(0).random((2, 3, 4))
    folder = write_prediction(tmp_path, "vid", scores, boxes, maps=maps, frame_to_snippet=np.array([0, 0, 1, 1]))
    assert folder == tmp_path / "vid"
    assert np.load(folder / "scores.npy").dtype == np.float32
    assert np.load(folder / "maps.npy").dtype == np.float16
    assert np.load(folder / "frame_to_snippet.npy").dtype == np.int32
    assert (folder / "boxes.csv").read_text().startswith(HEADER)
    p = read_prediction(tmp_path, "vid", frame_count=4)
    np.testing.assert_array_equal(p.frame_scores, scores.astype(np.float64))
    np.testing.assert_array_equal(p.boxes, boxes)  # exact: scores survive the CSV round trip
    np.testing.assert_array_equal(p.maps, maps.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(p.frame_to_snippet, [0, 0, 1, 1])
    assert not p.frame_to_snippet_assumed and p.frame_count == 4
    assert prediction_stems(tmp_path) == ["vid"]


def test_no_boxes_writes_header_only(tmp_path):
    write_prediction(tmp_path, "v", np.zeros(3))
    assert (tmp_path / "v" / "boxes.csv").read_text() == HEADER
    p = read_prediction(tmp_path, "v")
    assert p.boxes.shape == (0, 6) and p.maps is None and p.frame_to_snippet is None


def test_maps_without_frame_to_snippet_are_written_with_the_default(tmp_path):
    write_prediction(tmp_path, "v", np.zeros(10), maps=np.zeros((3, 2, 2)))
    # F = 10, T = 3: L = ceil(10/3) = 4 -> frames 0-3 -> 0, 4-7 -> 1, 8-9 -> 2
    expected = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    np.testing.assert_array_equal(np.load(tmp_path / "v" / "frame_to_snippet.npy"), expected)
    # another tool's folder without the file: same mapping, flagged as assumed
    (tmp_path / "v" / "frame_to_snippet.npy").unlink()
    p = read_prediction(tmp_path, "v")
    assert p.frame_to_snippet_assumed
    np.testing.assert_array_equal(p.frame_to_snippet, expected)


def test_default_mapping_covers_every_snippet_range():
    # T > F: one snippet per frame, later snippets unused; never an index >= T
    np.testing.assert_array_equal(default_frame_to_snippet(3, 5), [0, 1, 2])
    assert default_frame_to_snippet(100, 7).max() == 6


def test_rewrite_without_maps_removes_stale_maps(tmp_path):
    write_prediction(tmp_path, "v", np.zeros(4), maps=np.zeros((1, 2, 2)))
    write_prediction(tmp_path, "v", np.zeros(4))
    assert not (tmp_path / "v" / "maps.npy").exists()
    assert not (tmp_path / "v" / "frame_to_snippet.npy").exists()


def test_write_refuses_bad_arrays(tmp_path):
    with pytest.raises(PredictionError, match="scores.npy"):
        write_prediction(tmp_path, "v", np.array([0.1, np.nan]))
    with pytest.raises(PredictionError, match="boxes.csv"):
        write_prediction(tmp_path, "v", np.zeros(2), np.array([[2, 0, 0, 1, 1, 0.5]]))  # frame 2 of 2
    with pytest.raises(PredictionError, match="x_max < x_min"):
        write_prediction(tmp_path, "v", np.zeros(2), np.array([[0, 5, 0, 1, 1, 0.5]]))
    with pytest.raises(PredictionError, match="frame_to_snippet"):
        write_prediction(tmp_path, "v", np.zeros(2), maps=np.zeros((1, 2, 2)), frame_to_snippet=np.array([0, 1]))
    with pytest.raises(PredictionError, match="not a valid video stem"):
        write_prediction(tmp_path, "../escape", np.zeros(2))
    assert not (tmp_path / "v").exists()  # nothing half-written


def test_missing_folder_names_the_video(tmp_path):
    with pytest.raises(PredictionError, match="'gone'") as err:
        read_prediction(tmp_path, "gone")
    assert str(tmp_path / "gone") in str(err.value)


def test_score_length_mismatch_names_video_and_both_lengths(tmp_path):
    write_prediction(tmp_path, "v", np.zeros(9))
    with pytest.raises(PredictionError) as err:
        read_prediction(tmp_path, "v", frame_count=10)
    msg = str(err.value)
    assert "'v'" in msg and "10 frames" in msg and "9 scores" in msg and "scores.npy" in msg


@pytest.mark.parametrize("bad, match", [
    (np.array([0.1, np.nan], dtype=np.float32), "NaN or inf"),
    (np.array([0.1, np.inf]), "NaN or inf"),
    (np.array([0, 1]), "1-D float"),
    (np.zeros((2, 2), dtype=np.float32), "1-D float"),
])
def test_invalid_scores_file(tmp_path, bad, match):
    write_prediction(tmp_path, "v", np.zeros(2))
    np.save(tmp_path / "v" / "scores.npy", bad)
    with pytest.raises(PredictionError, match=match) as err:
        read_prediction(tmp_path, "v")
    assert "scores.npy" in str(err.value)


@pytest.mark.parametrize("text, match, line", [
    ("frame,x_min,y_min,x_max,y_max,score\n", "header must be", 1),
    ("frame_id, x_min,y_min,x_max,y_max,score\n", "header must be", 1),
    (HEADER + "0,1,1,5,5,0.5\n0,1,1,5,oops,0.5\n", "y_max 'oops' is not a number", 3),
    (HEADER + "0,1,1,5,5,0.5\n\n0,1,1,5,5\n", "expected 6 fields", 4),
    (HEADER + "0,1,1,5,5,nan\n", "NaN or inf", 2),
    (HEADER + "0,1,1,5,5,0.5\n7,1,1,5,5,0.5\n", "frame_id", 3),
    (HEADER + "1.5,1,1,5,5,0.5\n", "frame_id", 2),
    (HEADER + "0,6,1,5,5,0.5\n", "x_max < x_min", 2),
])
def test_invalid_boxes_file_names_file_and_line(tmp_path, text, match, line):
    write_prediction(tmp_path, "v", np.zeros(3))
    (tmp_path / "v" / "boxes.csv").write_text(text)
    with pytest.raises(PredictionError, match=match) as err:
        read_prediction(tmp_path, "v")
    assert err.value.line == line
    assert err.value.path == str(tmp_path / "v" / "boxes.csv")


def test_missing_boxes_file(tmp_path):
    write_prediction(tmp_path, "v", np.zeros(3))
    (tmp_path / "v" / "boxes.csv").unlink()
    with pytest.raises(PredictionError, match="header-only"):
        read_prediction(tmp_path, "v")


def test_invalid_maps_and_orphan_frame_to_snippet(tmp_path):
    write_prediction(tmp_path, "v", np.zeros(3), maps=np.zeros((1, 2, 2)))
    np.save(tmp_path / "v" / "maps.npy", np.full((1, 2, 2), np.nan, dtype=np.float16))
    with pytest.raises(PredictionError, match="maps.npy"):
        read_prediction(tmp_path, "v")
    np.save(tmp_path / "v" / "maps.npy", np.zeros((2, 2), dtype=np.float16))
    with pytest.raises(PredictionError, match=r"\(T, Gh, Gw\)"):
        read_prediction(tmp_path, "v")
    (tmp_path / "v" / "maps.npy").unlink()
    with pytest.raises(PredictionError, match="without maps.npy"):
        read_prediction(tmp_path, "v")
    np.save(tmp_path / "v" / "maps.npy", np.zeros((2, 2, 2), dtype=np.float16))
    np.save(tmp_path / "v" / "frame_to_snippet.npy", np.array([0, 1, 2], dtype=np.int32))  # 2 >= T
    with pytest.raises(PredictionError, match=r"\[0, 2\)"):
        read_prediction(tmp_path, "v")
