"""The public RBDC/TBDC toy fixtures: two 5-frame videos, RBDC = TBDC = 1.0 (their readme).

toy_tracks/0{1,2}.txt rows ``track_id,frame_id,x1,y1,x2,y2``; toy_anomalies/0{1,2}.txt
rows ``frame_id,x1,y1,x2,y2,score``; no header. Read from the shared data folder beside
the repository, never copied into the package.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED_DATA, require_shared
from patchvad.metrics import MetricWarning, SpatialAccumulator, evaluate_folder
from patchvad.predictions import write_prediction

from .helpers import build_dataset

TOY = SHARED_DATA / "rbdc_tbdc_toy"
STEMS = ("01", "02")
FRAMES = 5


@pytest.fixture(autouse=True)
def _toy_fixtures_present() -> None:
    """Skipped without the shared data; failed under CI=true."""
    require_shared("rbdc_tbdc_toy")


def _load(kind: str, stem: str) -> np.ndarray:
    return np.loadtxt(TOY / kind / f"{stem}.txt", delimiter=",", ndmin=2)


def test_toy_fixtures_give_one():
    acc = SpatialAccumulator()
    for stem in STEMS:
        acc.add(_load("toy_tracks", stem), _load("toy_anomalies", stem), n_frames=FRAMES)
    r = acc.rbdc_tbdc()
    # Per video: one track over frames 0-4, box (10,10,20,20); predictions: that exact box in
    # every frame (score .5) plus (0,0,20,20) in frame 3 (score .1).
    # t=.5: all 10 regions matched, no FP -> (0, 1). t=.1: (0,0,20,20) has IoU
    # 11*11 / 21*21 = 121/441 = .27 >= .1 with the already matched region -> neither -> (0, 1).
    # Both curves sit at 1 from FPR 0: RBDC = TBDC = 1.
    assert (r.n_frames, r.n_regions, r.n_tracks, r.n_predictions) == (10, 10, 2, 12)
    assert (r.true_positives, r.false_positives) == (10, 0)
    assert r.rbdc == 1.0 and r.tbdc == 1.0


def test_toy_fixtures_through_the_folders(tmp_path):
    # The same data through the dataset folder and the predictions folder.
    videos = [{"stem": s, "split": "test", "label": 1, "frames": FRAMES, "width": 32, "height": 32,
               "regions": _load("toy_tracks", s).astype(np.int64)} for s in STEMS]
    root = build_dataset(tmp_path / "ds", videos)
    pred = tmp_path / "pred"
    for s in STEMS:
        write_prediction(pred, s, np.full(FRAMES, 0.5), _load("toy_anomalies", s))
    # every toy frame is anomalous: the frame ROC (and so tau and TIoU) is undefined -> null + warning
    with pytest.warns(MetricWarning) as record:
        m = evaluate_folder(root, pred)
    assert any("ROC needs both classes" in str(w.message) for w in record)
    assert m["frame_auc_micro"] is None and m["tiou"] is None
    assert m["rbdc"] == 1.0 and m["tbdc"] == 1.0
    assert m["n_frames"] == 10 and m["n_gt_tracks"] == 2
