"""Overlay drawing: pixels where they belong, and overlay videos that decode."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from patchvad.errors import VideoError
from patchvad.features.snippets import SnippetMap
from patchvad.io.video import VideoReader, write_video
from patchvad.viz.overlay import (GREEN, MARKER, RED, ScoreStrip, colormap_lut, draw_box, draw_overlay, scale_boxes,
                                  upsample, write_overlay_video)

from .helpers import ground_truth, square_frames, synthetic_prediction

GREY = 100


def grey(h: int = 80, w: int = 100) -> np.ndarray:
    return np.full((h, w, 3), GREY, dtype=np.uint8)


def test_gt_box_is_red_and_pred_box_green_at_their_pixels() -> None:
    frame = grey()
    out = draw_overlay(frame, None, pred_boxes=[(50, 40, 70, 60, 0.9)], gt_boxes=[(10, 10, 40, 30)])
    assert out.shape == frame.shape and np.array_equal(frame, grey())  # input untouched
    # GT: 2-pixel lines on the inside of the inclusive box.
    for y, x in [(10, 25), (11, 25), (30, 25), (29, 25), (20, 10), (20, 11), (20, 40), (20, 39)]:
        assert tuple(out[y, x]) == RED, (y, x)
    for y, x in [(12, 25), (9, 25), (31, 25), (20, 12), (20, 9), (20, 41), (20, 38)]:
        assert tuple(out[y, x]) == (GREY,) * 3, (y, x)
    for y, x in [(40, 60), (41, 60), (60, 60), (50, 50), (50, 70)]:
        assert tuple(out[y, x]) == GREEN, (y, x)
    assert tuple(out[50, 60]) == (GREY,) * 3  # inside the box
    # Nothing else changed.
    changed = np.any(out != GREY, axis=2)
    assert changed.sum() == 2 * (2 * 31 + 2 * 21) - 4 * 4 + 2 * (2 * 21 + 2 * 21) - 4 * 4


def test_gt_drawn_over_pred_and_boxes_clipped_at_the_border() -> None:
    out = draw_overlay(grey(), None, pred_boxes=[(5, 5, 20, 20)], gt_boxes=[(5, 5, 20, 20)])
    assert tuple(out[5, 10]) == RED
    out = draw_overlay(grey(), None, gt_boxes=[(-10, -10, 10, 10), (90, 70, 130, 130), (200, 200, 210, 210)])
    assert tuple(out[10, 5]) == RED and tuple(out[5, 10]) == RED
    assert tuple(out[0, 5]) == (GREY,) * 3  # the clipped top edge is outside: not drawn at row 0
    assert tuple(out[75, 90]) == RED and tuple(out[70, 95]) == RED


def test_draw_box_thickness_and_degenerate_boxes() -> None:
    img = grey()
    draw_box(img, (30, 30, 30, 30), RED)  # a single pixel
    assert tuple(img[30, 30]) == RED and (np.any(img != GREY, axis=2)).sum() == 1
    draw_box(img, (10, 10, 5, 20), RED)  # inverted: nothing
    assert (np.any(img != GREY, axis=2)).sum() == 1


def test_heatmap_blends_only_where_notable() -> None:
    heat = np.zeros((4, 5), dtype=np.float32)
    heat[1, 2] = 1.0  # the cell covering rows 20..39, columns 40..59 of a 100x80 frame
    out = draw_overlay(grey(), heat)
    assert np.array_equal(out[:8], grey()[:8])  # far from the hot cell: untouched
    assert np.array_equal(out[:, :20], grey()[:, :20])
    assert np.any(out[30, 50] != GREY)
    # A full-size map is used as is: exact colour where it is 1, nothing below the floor.
    full = np.zeros((80, 100), dtype=np.float32)
    full[20:40, 40:60] = 1.0
    full[60:70, 10:20] = 0.3
    out = draw_overlay(grey(), full)
    hot = colormap_lut("inferno")[255].astype(float)
    assert np.all(np.abs(out[30, 50] - np.round(GREY + (hot - GREY) * 0.6)) <= 1)
    assert np.array_equal(out[60:70, 10:20], grey()[60:70, 10:20])
    mask = np.zeros((80, 100), bool)
    mask[20:40, 40:60] = True
    assert np.array_equal(out[~mask], grey()[~mask])


def test_upsample_bilinear() -> None:
    assert np.allclose(upsample(np.full((3, 4), 0.25), 30, 40), 0.25)
    up = upsample(np.array([[0.0, 1.0]]), 2, 4)  # half-pixel centres: 0, .25, .75, 1
    assert np.allclose(up[0], [0.0, 0.25, 0.75, 1.0])
    same = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    assert np.array_equal(upsample(same, 8, 8), same)


def test_scale_boxes_covers_the_same_pixels() -> None:
    assert scale_boxes(np.array([[0, 0, 9, 4]]), 2, 3).tolist() == [[0, 0, 19, 14]]
    assert scale_boxes(np.zeros((0, 4)), 2, 2).shape == (0, 4)


def test_score_strip_marks_frame_threshold_and_gt() -> None:
    scores = np.r_[np.full(20, 0.1), np.full(20, 0.9)]
    labels = np.r_[np.zeros(25, np.uint8), np.ones(15, np.uint8)]
    out = draw_overlay(grey(60, 300), None, score_history=scores[:30], threshold=0.5, n_frames=40,
                       gt_labels=labels, strip_height=40)
    assert out.shape == (100, 300, 3)
    strip = ScoreStrip(scores, 300, 40, threshold=0.5, gt_labels=labels)
    img = strip.render(29)
    c = strip.column_of(29)
    assert tuple(img[20, strip.panel + c]) == MARKER
    gt_col = strip.panel + strip.column_of(35)
    assert tuple(img[1, gt_col]) != tuple(img[1, strip.panel + strip.column_of(5)])  # GT band vs background
    with pytest.raises(ValueError):
        strip.render(40)


def _video(tmp_path: Path, n: int = 24) -> tuple[Path, np.ndarray]:
    frames, boxes = square_frames(n)
    path = tmp_path / "sq.mp4"
    write_video(path, frames, fps=12)
    return path, boxes


def test_overlay_video_decodes_with_every_frame(tmp_path: Path) -> None:
    n = 24
    path, boxes = _video(tmp_path, n)
    pred = synthetic_prediction(n, boxes, (6, 18))
    gt = ground_truth(n, boxes, (6, 18))
    out = write_overlay_video(path, pred, gt, tmp_path / "ov" / "x.mp4", threshold=0.5, scale=4)
    reader = VideoReader(out)
    frames = reader.read_all()
    assert frames.shape[0] == n
    assert (reader.width, reader.height) == (256, 192 + max(40, 192 // 9))
    assert abs(reader.fps - 12) < 1e-6
    # The GT box's top edge of frame 10 (scaled x4) is red after H.264 (tolerant check).
    x1, y1, x2, _ = scale_boxes(boxes[10:11], 4, 4)[0].astype(int)
    edge = frames[10, y1:y1 + 2, x1 + 4:x2 - 3].reshape(-1, 3).astype(int).mean(axis=0)
    assert edge[0] > 170 and edge[1] < 110 and edge[2] < 110, edge
    assert not list(tmp_path.joinpath("ov").glob(".*tmp*"))


def test_overlay_video_max_frames_and_snippet_map(tmp_path: Path) -> None:
    n = 24
    path, boxes = _video(tmp_path, n)
    pred = synthetic_prediction(n, boxes, (6, 18), snippet_len=8)
    smap = SnippetMap.build(n, snippet_len=8)
    out = write_overlay_video(path, replace(pred, frame_to_snippet=None), None, tmp_path / "y.mp4", smap,
                              max_frames=5, start_frame=3, scale=2)
    assert VideoReader(out).read_all().shape[0] == 5


def test_overlay_video_refuses_a_length_mismatch(tmp_path: Path) -> None:
    n = 24
    path, boxes = _video(tmp_path, n)
    short = synthetic_prediction(n - 4, boxes[: n - 4], (6, 18))
    with pytest.raises(VideoError, match="more frames than"):
        write_overlay_video(path, short, None, tmp_path / "z.mp4", scale=1)
    long = synthetic_prediction(n + 4, np.r_[boxes, boxes[:4]], (6, 18))
    with pytest.raises(VideoError, match="24 frames but the prediction 28"):
        write_overlay_video(path, long, None, tmp_path / "z.mp4", scale=1)
    assert not (tmp_path / "z.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".z.")]


def test_overlay_video_without_maps_or_ground_truth(tmp_path: Path) -> None:
    n = 16
    path, boxes = _video(tmp_path, n)
    pred = replace(synthetic_prediction(n, boxes, (4, 10)), maps=None, frame_to_snippet=None)
    out = write_overlay_video(path, pred, None, tmp_path / "plain.mp4", scale=1)
    frames = VideoReader(out).read_all()
    assert frames.shape[0] == n and frames.shape[2] == 64  # tiny strip: no text panel, still decodes
