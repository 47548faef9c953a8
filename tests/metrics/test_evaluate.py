"""Folder-level evaluation on tiny dataset folders built in tmp_path."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

from patchvad.errors import PredictionError
from patchvad.metrics import MetricWarning, evaluate_command, evaluate_folder, metric_keys
from patchvad.predictions import write_prediction

TRACK_A = [[0, f, 0, 0, 9, 9] for f in range(2, 6)]  # one track, frames 2-5 of video "a"


def _videos(with_classes: bool = True) -> list[dict]:
    cls = (lambda c: c) if with_classes else (lambda c: "")
    return [
        {"stem": "a", "split": "test", "label": 1, "cls": cls("Fight"), "regions": TRACK_A},
        {"stem": "b", "split": "test", "label": 0, "cls": cls("Normal")},
        {"stem": "c", "split": "train", "label": 1, "cls": cls("Fight")},  # never evaluated
    ]


def _write_predictions(pred, maps: bool = True) -> None:
    write_prediction(pred, "a", np.array([0, 0, .9, .9, .9, .9, .2, 0, 0, 0]),
                     np.array([[2, 0, 0, 9, 9, .9],      # exact, frame 2
                               [3, 0, 0, 9, 9, .9],      # exact, frame 3
                               [4, 5, 0, 14, 9, .8]]),   # IoU 50 / 150 = 1/3, frame 4
                     maps=np.array([[[.9, .1], [.1, .1]]]) if maps else None)
    write_prediction(pred, "b", np.array([.95, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                     np.array([[0, 20, 20, 29, 29, .95]]),  # a normal video: FP
                     maps=np.full((1, 2, 2), .5) if maps else None)


def test_hand_computed_folder(make_dataset, tmp_path):
    root = make_dataset(_videos())
    pred = tmp_path / "pred"
    _write_predictions(pred)
    with pytest.warns(MetricWarning):  # class Normal has undefined metrics
        m = evaluate_folder(root, pred)
    # 20 test frames: a has 4 anomalous (score .9), 16 normal frames with scores
    # {0 x 13, .2, .95} (b's .95 is the only negative above .9):
    # micro AUC = 4 positives x 15 negatives below / (4 x 16) = 15/16
    assert m["frame_auc_micro"] == pytest.approx(15 / 16, abs=1e-12)
    # macro: a padded -> every positive (.9, pad 1) above every negative (0, .2) -> 1;
    #        b padded -> only the pad positive (1), above all -> 1; mean 1
    assert m["frame_auc_macro"] == pytest.approx(1.0, abs=1e-12)
    # AP: t=.95: P 0, R 0; t=.9: tp 4, fp 1 -> P .8, R 1 -> AP = .8
    assert m["frame_ap"] == pytest.approx(0.8, abs=1e-12)
    # Youden: t=.95: J = 0 - 1/16; t=.9: J = 1 - 1/16 (max); t=.2: 1 - 2/16 -> tau .9
    assert m["tiou_threshold"] == pytest.approx(0.9)
    # TIoU over a's GT frames 2..5 (all scored .9 >= tau): IoU 1, 1, 1/3, 0 (no box) -> 7/12
    assert m["tiou"] == pytest.approx(7 / 12, abs=1e-7)
    # RBDC, 20 frames, 4 regions: t=.95 FP (b) -> (1/20, 0); t=.9 2 TP -> (.05, .5);
    # t=.8 TP -> (.05, .75); area = flat .75 over (.05, 1] = .7125
    assert m["rbdc"] == pytest.approx(0.7125, abs=1e-7)
    # TBDC: the track (4 regions) is detected at t=.9 (1/4 >= .1): flat 1 over (.05, 1] = .95
    assert m["tbdc"] == pytest.approx(0.95, abs=1e-7)
    # PAUC: 2x2 grid on 40x40 -> cells 20x20 = 400 px; box 10x10 = 100 px = 25% of cell (0,0)
    # -> positive in frames 2..5 with score .9 (map) x .9 (frame) = .81; the highest negative is
    # b's frame 0: .5 x .95 = .475 -> PAUC 1, PAP 1
    assert m["pauc"] == 1.0 and m["pap"] == 1.0
    assert m["grid"] == [2, 2]
    assert (m["n_videos"], m["n_anomalous_videos"], m["n_frames"], m["n_anomalous_frames"]) == (2, 1, 20, 4)
    assert (m["n_gt_regions"], m["n_gt_tracks"], m["n_tiou_frames"], m["n_pred_boxes"]) == (4, 1, 4, 4)
    assert (m["n_patch_frames"], m["n_patch_frames_excluded"]) == (20, 0)

    fight, normal = m["per_class"]["Fight"], m["per_class"]["Normal"]
    assert list(m["per_class"]) == ["Fight", "Normal"]  # manifest order
    # Fight = video a alone: positives .9 above negatives {0, .2} -> AUC 1, AP 1; no FP in its 10
    # frames -> RBDR .75 from FPR 0 -> RBDC .75; TIoU with the global tau -> 7/12
    assert fight["frame_auc_micro"] == 1.0 and fight["frame_ap"] == 1.0
    assert fight["rbdc"] == pytest.approx(0.75) and fight["tbdc"] == pytest.approx(1.0)
    assert fight["tiou"] == pytest.approx(7 / 12, abs=1e-7)
    assert fight["n_videos"] == 1 and fight["n_frames"] == 10
    # Normal = video b alone: only negatives -> AUC / AP / spatial / patch undefined -> null
    for key in ("frame_auc_micro", "frame_ap", "tiou", "rbdc", "tbdc", "pauc", "pap"):
        assert normal[key] is None, key
    assert normal["frame_auc_macro"] == 1.0  # padding defines it
    assert any(w.startswith("class Normal has no anomalous frame: frame_auc_micro, frame_ap, tiou, rbdc")
               for w in m["warnings"])


def test_command_writes_json_and_prints_table(make_dataset, tmp_path, capsys):
    root = make_dataset(_videos())
    pred = tmp_path / "pred"
    _write_predictions(pred)
    out = tmp_path / "out" / "metrics.json"
    with warnings.catch_warnings():
        warnings.simplefilter("error", MetricWarning)  # the command reports them in the table instead
        m = evaluate_command(root, pred, out)

    def no_nan(token):
        raise AssertionError(f"{token} in metrics.json")

    data = json.loads(out.read_text(), parse_constant=no_nan)
    assert data == m
    assert list(data)[:len(metric_keys())] == list(metric_keys())
    assert data["per_class"]["Normal"]["frame_auc_micro"] is None
    printed = capsys.readouterr().out
    assert "AUC-micro" in printed and "RBDC" in printed and "Fight" in printed
    assert "0.9375" in printed and "0.7125" in printed
    assert "warning:" in printed and str(out) in printed


def test_no_classes_no_breakdown(make_dataset, tmp_path):
    root = make_dataset(_videos(with_classes=False))
    pred = tmp_path / "pred"
    _write_predictions(pred, maps=False)
    m = evaluate_folder(root, pred)
    assert "per_class" not in m
    # no maps at all: PAUC / PAP null, quietly (nothing to evaluate)
    assert m["pauc"] is None and m["pap"] is None and m["grid"] is None
    assert m["warnings"] == []


def test_maps_for_some_videos_only(make_dataset, tmp_path):
    root = make_dataset(_videos(with_classes=False))
    pred = tmp_path / "pred"
    _write_predictions(pred)
    write_prediction(pred, "b", np.zeros(10))  # b loses its maps
    with pytest.warns(MetricWarning, match="pauc and pap are null: 1 test video"):
        m = evaluate_folder(root, pred)
    assert m["pauc"] is None and m["pap"] is None
    assert m["rbdc"] is not None


def test_missing_prediction_folder_is_an_error_naming_the_video(make_dataset, tmp_path):
    root = make_dataset(_videos())
    pred = tmp_path / "pred"
    _write_predictions(pred)
    shutil.rmtree(pred / "b")
    with pytest.raises(PredictionError, match="'b'"):
        evaluate_folder(root, pred)


def test_wrong_score_length_names_video_and_both_lengths(make_dataset, tmp_path):
    root = make_dataset(_videos())
    pred = tmp_path / "pred"
    _write_predictions(pred)
    write_prediction(pred, "b", np.zeros(12))  # 12 scores for 10 frames: error, never truncated
    with pytest.raises(PredictionError) as err:
        evaluate_folder(root, pred)
    assert "'b'" in str(err.value) and "10 frames" in str(err.value) and "12 scores" in str(err.value)


def test_grid_argument_is_checked(make_dataset, tmp_path):
    root = make_dataset(_videos())
    pred = tmp_path / "pred"
    _write_predictions(pred)
    with pytest.raises(PredictionError, match="expected 7x7"):
        evaluate_folder(root, pred, grid=(7, 7))
    write_prediction(pred, "b", np.zeros(10), maps=np.zeros((1, 3, 3)))
    with pytest.raises(PredictionError, match="one grid"):
        evaluate_folder(root, pred)


def test_only_normal_test_videos_give_nulls_not_nan(make_dataset, tmp_path):
    root = make_dataset([{"stem": "n1", "split": "test", "label": 0}, {"stem": "n2", "split": "test", "label": 0}])
    pred = tmp_path / "pred"
    write_prediction(pred, "n1", np.linspace(0, 1, 10))
    write_prediction(pred, "n2", np.zeros(10), np.array([[0, 1, 1, 5, 5, 0.3]]))
    with pytest.warns(MetricWarning):
        m = evaluate_folder(root, pred)
    for key in ("frame_auc_micro", "frame_ap", "tiou", "tiou_threshold", "rbdc", "tbdc"):
        assert m[key] is None, key
    assert m["frame_auc_macro"] is not None
    json.dumps(m, allow_nan=False)  # would raise on NaN / inf


def test_anomalous_frames_without_boxes_left_out_of_patch_metrics(make_dataset, tmp_path):
    labels = np.zeros(10, dtype=np.uint8)
    labels[2:8] = 1  # frames 2-7 anomalous, boxes only on 2-5 (sparse annotation)
    videos = _videos(with_classes=False)
    videos[0]["frame_labels"] = labels
    root = make_dataset(videos)
    pred = tmp_path / "pred"
    _write_predictions(pred)
    m = evaluate_folder(root, pred)
    assert m["n_anomalous_frames"] == 6
    assert (m["n_patch_frames"], m["n_patch_frames_excluded"]) == (18, 2)
    # TIoU still only over the 4 boxed frames
    assert m["n_tiou_frames"] == 4


def test_scores_outside_unit_interval_warn_about_macro_padding(make_dataset, tmp_path):
    root = make_dataset(_videos(with_classes=False))
    pred = tmp_path / "pred"
    _write_predictions(pred, maps=False)
    write_prediction(pred, "b", np.full(10, 3.0))
    with pytest.warns(MetricWarning, match="assumes scores in \\[0, 1\\]"):
        evaluate_folder(root, pred)
