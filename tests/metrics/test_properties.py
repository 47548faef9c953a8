"""Property tests (hypothesis) of the metrics."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from patchvad.metrics import (
    PatchAccumulator,
    SpatialAccumulator,
    cell_labels_per_frame,
    evaluate_folder,
    frame_ap_stepwise,
    frame_auc,
    frame_auc_macro,
    frame_auc_micro,
    rbdc_tbdc,
    youden_threshold,
)
from patchvad.predictions import write_prediction

from .helpers import build_dataset, reference_rbdc_tbdc

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SIZE = 32  # frames of 32 x 32 px
GRID = (4, 4)  # cells of 8 x 8 px

scores_st = st.one_of(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]),  # many ties
                      st.floats(0, 1, allow_nan=False))


# --- frame level ----------------------------------------------------------------------


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 1), scores_st), min_size=2, max_size=200))
def test_auc_and_ap_agree_with_sklearn(items):
    labels = np.array([y for y, _ in items])
    scores = np.array([s for _, s in items])
    if labels.min() == labels.max():
        labels[0] = 1 - labels[0]
    assert abs(frame_auc(labels, scores) - roc_auc_score(labels, scores)) < 1e-9
    assert abs(frame_ap_stepwise(labels, scores) - average_precision_score(labels, scores)) < 1e-9


@st.composite
def videos_and_permutation(draw):
    n = draw(st.integers(1, 6))
    videos = []
    for i in range(n):
        length = draw(st.integers(2 if i == 0 else 1, 30))  # video 0 can hold both classes
        labels = np.array(draw(st.lists(st.integers(0, 1), min_size=length, max_size=length)))
        scores = np.array(draw(st.lists(scores_st, min_size=length, max_size=length)))
        videos.append((labels, scores))
    all_labels = np.concatenate([y for y, _ in videos])
    if all_labels.min() == all_labels.max():  # make both classes occur
        videos[0][0][0] = 1 - videos[0][0][0]
    return videos, draw(st.permutations(range(n)))


@SETTINGS
@given(videos_and_permutation())
def test_permuting_videos_leaves_micro_auc_unchanged(case):
    videos, perm = case
    labels, scores = [y for y, _ in videos], [s for _, s in videos]
    before = frame_auc_micro(labels, scores)
    after = frame_auc_micro([labels[i] for i in perm], [scores[i] for i in perm])
    assert after == pytest.approx(before, abs=1e-12)
    assert frame_auc_macro([labels[i] for i in perm], [scores[i] for i in perm]) == pytest.approx(
        frame_auc_macro(labels, scores), abs=1e-12)


# --- spatial --------------------------------------------------------------------------


box_st = st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 12), st.integers(0, 12)).map(
    lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]])


@st.composite
def detection_case(draw, n_frames: int = 6):
    """Regions in frames 0..n-2 (frame n-1 never has ground truth) and predictions anywhere."""
    keys = draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, n_frames - 2)), min_size=1, max_size=12,
                         unique=True))
    regions = np.array([[t, f, *draw(box_st)] for t, f in keys], dtype=np.int64)
    preds = draw(st.lists(st.tuples(st.integers(0, n_frames - 1), box_st, st.sampled_from([0.2, 0.5, 0.7, 0.9])),
                          max_size=25))
    boxes = np.array([[f, *b, s] for f, b, s in preds], dtype=np.float64).reshape(-1, 6)
    return regions, boxes, n_frames


@SETTINGS
@given(detection_case())
def test_vectorized_rbdc_tbdc_equal_the_literal_walk(case):
    regions, boxes, n_frames = case
    ours = rbdc_tbdc(regions, boxes, n_frames)
    rbdc, tbdc, fpr, rbdr, tbdr = reference_rbdc_tbdc(regions, boxes, n_frames)
    assert ours.rbdc == pytest.approx(rbdc, abs=1e-12)
    assert ours.tbdc == pytest.approx(tbdc, abs=1e-12)
    np.testing.assert_allclose(ours.fpr, fpr, atol=1e-12)
    np.testing.assert_allclose(ours.rbdr, rbdr, atol=1e-12)
    np.testing.assert_allclose(ours.tbdr, tbdr, atol=1e-12)


@SETTINGS
@given(detection_case(), st.randoms(use_true_random=False))
def test_rbdc_tbdc_do_not_depend_on_the_order_of_predictions(case, rnd):
    regions, boxes, n_frames = case
    order = list(range(boxes.shape[0]))
    rnd.shuffle(order)
    a, b = rbdc_tbdc(regions, boxes, n_frames), rbdc_tbdc(regions, boxes[order], n_frames)
    assert a.rbdc == pytest.approx(b.rbdc, abs=1e-12) and a.tbdc == pytest.approx(b.tbdc, abs=1e-12)


@SETTINGS
@given(detection_case(), scores_st, st.booleans())
def test_adding_a_false_positive_never_increases_rbdc(case, score, in_gt_frame):
    regions, boxes, n_frames = case
    if in_gt_frame:
        # in a frame with regions, but far from every box (regions lie within 0..42 px): IoU 0
        fp = [regions[0, 1], 100, 100, 110, 110, score]
    else:
        fp = [n_frames - 1, 0, 0, 5, 5, score]  # the last frame never has ground truth
    before = rbdc_tbdc(regions, boxes, n_frames)
    after = rbdc_tbdc(regions, np.vstack([boxes, fp]), n_frames)
    assert after.false_positives == before.false_positives + 1
    assert after.rbdc <= before.rbdc + 1e-12
    assert after.tbdc <= before.tbdc + 1e-12


# --- perfect predictions ----------------------------------------------------------------


@st.composite
def gt_sets(draw):
    """Videos of 32x32 frames: video 0 anomalous, video 1 normal, others either.

    Anomalous videos carry tracks over disjoint frame spans (one region per frame), boxes of
    at least 8x8 px, so that every boxed frame has a cell covered >= 25%.
    """
    n_videos = draw(st.integers(2, 4))
    videos = []
    for v in range(n_videos):
        n = draw(st.integers(3, 12))
        anomalous = v == 0 or (v > 1 and draw(st.booleans()))
        regions = []
        if anomalous:
            cursor, track = draw(st.integers(0, n - 1)), 0
            while cursor < n and track < 3:
                length = draw(st.integers(1, 5))
                for f in range(cursor, min(cursor + length, n)):
                    x, y = draw(st.integers(0, SIZE - 8)), draw(st.integers(0, SIZE - 8))
                    w, h = draw(st.integers(8, SIZE - x)), draw(st.integers(8, SIZE - y))
                    regions.append([track, f, x, y, x + w - 1, y + h - 1])
                cursor += length + draw(st.integers(0, 3))
                track += 1
        regions_arr = np.array(regions, dtype=np.int64).reshape(-1, 6)
        labels = np.zeros(n, dtype=np.uint8)
        labels[regions_arr[:, 1]] = 1
        videos.append({"frames": n, "label": int(anomalous), "regions": regions_arr, "labels": labels})
    return videos


def _perfect(video):
    """Scores = labels; the exact GT boxes; per-frame maps = the cell labels."""
    boxes = np.column_stack([video["regions"][:, 1], video["regions"][:, 2:6], np.ones(len(video["regions"]))])
    maps = cell_labels_per_frame(video["regions"], video["frames"], (SIZE, SIZE), GRID).astype(np.float64)
    return video["labels"].astype(np.float64), boxes.reshape(-1, 6), maps, np.arange(video["frames"])


@SETTINGS
@given(gt_sets())
def test_perfect_predictions_score_one_on_every_metric(videos):
    frames = [v["labels"] for v in videos]
    spatial, patch = SpatialAccumulator(), PatchAccumulator()
    scores = []
    for v in videos:
        s, boxes, maps, f2s = _perfect(v)
        scores.append(s)
        spatial.add(v["regions"], boxes, v["frames"], anomalous=bool(v["label"]))
        patch.add(maps, f2s, s, v["regions"], (SIZE, SIZE), frame_labels=v["labels"])
    tau = youden_threshold(np.concatenate(frames), np.concatenate(scores))
    curves = spatial.rbdc_tbdc()
    values = {
        "frame_auc_micro": frame_auc_micro(frames, scores),
        "frame_auc_macro": frame_auc_macro(frames, scores),
        "frame_ap": frame_ap_stepwise(np.concatenate(frames), np.concatenate(scores)),
        "tiou": spatial.tiou(np.concatenate(scores), tau),
        "rbdc": curves.rbdc, "tbdc": curves.tbdc, "pauc": patch.pauc(), "pap": patch.pap(),
    }
    assert values == {k: 1.0 for k in values}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gt_sets())
def test_perfect_predictions_through_the_folders(videos):
    with tempfile.TemporaryDirectory() as tmp:
        rows = [{"stem": f"v{i}", "split": "test", "label": v["label"], "frames": v["frames"], "width": SIZE,
                 "height": SIZE, "regions": v["regions"] if len(v["regions"]) else None}
                for i, v in enumerate(videos)]
        root = build_dataset(Path(tmp) / "ds", rows)
        for i, v in enumerate(videos):
            s, boxes, maps, f2s = _perfect(v)
            write_prediction(Path(tmp) / "pred", f"v{i}", s, boxes, maps=maps, frame_to_snippet=f2s)
        m = evaluate_folder(root, Path(tmp) / "pred")
    for key in ("frame_auc_micro", "frame_auc_macro", "frame_ap", "tiou", "rbdc", "tbdc", "pauc", "pap"):
        assert m[key] == 1.0, key
