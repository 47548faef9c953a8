"""UCF-Crime adapter on the real split lists, temporal annotation and Liu & Ma boxes."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from patchvad.data.adapters import MediaInfo, prepare_dataset
from patchvad.data.adapters.ucf_crime import _load_boxes, _read_temporal
from patchvad.data.folder import DatasetFolder
from patchvad.errors import DatasetError, UnsafeFileError

from .helpers import FakeProbe, touch


def _source(shared: Path, tmp: Path, drop: tuple[str, ...] = ()) -> Path:
    """The official layout: split lists in their folder, videos spread like the download."""
    ucf = shared / "ucf_crime"
    src = tmp / "UCF_Crimes"
    splits = src / "Anomaly_Detection_splits"
    splits.mkdir(parents=True)
    shutil.copy2(ucf / "Anomaly_Train.txt", splits)
    shutil.copy2(ucf / "Anomaly_Test.txt", splits)
    # The download names it ..._for_Testing_Videos.txt; shared/data uses the short name.
    shutil.copy2(ucf / "Temporal_Anomaly_Annotation.txt", src / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt")
    (src / "liu_ma").mkdir()
    shutil.copy2(ucf / "liu_ma_boxes" / "Test_annotation.pkl", src / "liu_ma")
    shutil.copy2(ucf / "liu_ma_boxes" / "Train_annotation.pkl", src / "liu_ma")
    for list_name in ("Anomaly_Train.txt", "Anomaly_Test.txt"):
        for line in (ucf / list_name).read_text().split():
            folder, name = line.split("/")
            if Path(name).stem in drop:
                continue
            # Abnormal videos live in Anomaly-Videos-Part-N/<Category>/ in the download, so
            # the listed path is not the path on disk for them.
            where = src / ("Anomaly-Videos-Part-1" if "Normal" not in folder else "") / folder / name
            touch(where)
    return src


@pytest.fixture(scope="module")
def ucf_facts(shared_data: Path):
    temporal = _read_temporal(shared_data / "ucf_crime" / "Temporal_Anomaly_Annotation.txt")
    boxes = _load_boxes(shared_data / "ucf_crime" / "liu_ma_boxes" / "Test_annotation.pkl")
    return temporal, boxes


def _probe(temporal, boxes, short: dict[str, int] | None = None) -> FakeProbe:
    """Real-looking frame counts: past the last annotated frame, 320x240 at 30 fps."""
    table = {}
    for stem, (_, segments, _) in temporal.items():
        last = max([e for _, e in segments] + [b[0] for b in boxes.get(stem, [])] + [600])
        table[stem] = MediaInfo((short or {}).get(stem, last + 25), 320, 240, 30.0)
    return FakeProbe(table, default=MediaInfo(900, 320, 240, 30.0))


def test_official_counts_and_ground_truth(shared_data: Path, tmp_path: Path, ucf_facts) -> None:
    temporal, boxes = ucf_facts
    src = _source(shared_data, tmp_path)
    probe = _probe(temporal, boxes)
    report = prepare_dataset("ucf_crime", src, tmp_path / "out", probe=probe)
    assert report.ok, report.summary()
    found = {c.what: c.found for c in report.checks}
    assert found["test videos"] == 290 and found["anomalous test videos"] == 140
    assert found["train videos"] == 1610 and found["anomalous train videos"] == 810
    assert found["Liu & Ma test boxes"] == 3102 and found["Liu & Ma test videos with boxes"] == 140
    assert found["Liu & Ma train boxes"] == 25483
    assert len(probe.calls) == 1900
    assert report.mode == {"hard-linked": 1900}

    ds = DatasetFolder(tmp_path / "out")
    test = ds.test_set()
    assert len(ds.train_set()) == 1610 and len(test) == 290
    regions = anomalous_frames = 0
    for entry in test:
        gt = test.ground_truth(entry)
        regions += len(gt.regions)
        anomalous_frames += int(gt.frame_labels.sum())
        assert gt.frame_count == probe.table[entry.stem].frames
    # Every Liu & Ma box becomes one region; the inclusive 1-based segments cover
    # 84,345 frames (shared/data README).
    assert regions == 3102
    assert anomalous_frames == 84345
    # Training ground truth is never written (WSVAD trains on video labels only).
    written = {p.stem for p in (tmp_path / "out" / "tracks").glob("*.csv")}
    assert written == set(boxes)
    assert not any(e.stem in written for e in ds.train_set())

    # Conventions on a known line: "Abuse028_x264.mp4  Abuse  165  240  -1  -1" and the box
    # ['.../image_0212.jpg', 1, 84, 86, 156].
    entry = ds.entry("Abuse028_x264")
    assert entry.video == "videos/Abuse/Abuse028_x264.mp4" and entry.cls == "Abuse"
    assert (entry.frames, entry.width, entry.height, entry.fps) == (probe.table["Abuse028_x264"].frames, 320, 240, 30.0)
    gt = test.ground_truth(entry)
    assert np.flatnonzero(gt.frame_labels).tolist() == list(range(164, 240))   # 1-based 165..240
    row = gt.regions[gt.regions[:, 1] == 211]                                   # image_0212 -> index 211
    assert row.tolist() == [[0, 211, 0, 83, 85, 155]]                           # 1-based pixels -> 0-based
    # Two-segment video: one track per event.
    arson = test.ground_truth(ds.entry("Arson011_x264"))
    assert sorted(np.unique(arson.regions[:, 0]).tolist()) == [0, 1]
    for track, (lo, hi) in enumerate([(149, 420), (679, 1267)]):
        frames = arson.regions[arson.regions[:, 0] == track, 1]
        assert frames.min() >= lo and frames.max() < hi
    # Normal test videos: all-zero frame labels, no tracks.
    normal = ds.entry("Normal_Videos_003_x264")
    assert normal.label == 0 and not test.ground_truth(normal).frame_labels.any()


def test_hold_repeats_boxes_until_the_next_annotated_frame(shared_data: Path, tmp_path: Path, ucf_facts) -> None:
    temporal, boxes = ucf_facts
    src = _source(shared_data, tmp_path)
    prepare_dataset("ucf_crime", src, tmp_path / "out", probe=_probe(temporal, boxes), options=["hold=16"])
    test = DatasetFolder(tmp_path / "out").test_set()
    entry = next(e for e in test if e.stem == "Abuse028_x264")
    gt = test.ground_truth(entry)
    annotated = sorted(b[0] - 1 for b in boxes["Abuse028_x264"])
    frames = gt.regions[:, 1]
    assert set(annotated) <= set(frames.tolist())
    assert len(frames) > len(annotated)
    # Never past the end of the event (segment 165..240 -> last index 239).
    assert frames.max() <= 239
    # Each held box is the box of the last annotated frame at or before it.
    for f, x1 in zip(frames, gt.regions[:, 2]):
        source = max(a for a in annotated if a <= f)
        assert x1 == gt.regions[gt.regions[:, 1] == source, 2][0]


def test_mismatches_are_listed_and_strict_writes_nothing(shared_data: Path, tmp_path: Path, ucf_facts) -> None:
    temporal, boxes = ucf_facts
    src = _source(shared_data, tmp_path, drop=("Abuse028_x264", "Normal_Videos308_x264"))
    short = {"Arson011_x264": 1000}          # shorter than its second segment (680..1267)
    with pytest.raises(DatasetError) as err:
        prepare_dataset("ucf_crime", src, tmp_path / "out", probe=_probe(temporal, boxes, short))
    text = str(err.value)
    assert "test videos: expected 290" in text and "found 289" in text
    assert "anomalous test videos: expected 140" in text and "train videos: expected 1,610" in text
    assert "Abuse/Abuse028_x264.mp4 (not found)" in text
    assert not (tmp_path / "out" / "manifest.csv").exists()

    report = prepare_dataset("ucf_crime", src, tmp_path / "out", probe=_probe(temporal, boxes, short), strict=False)
    # test videos, anomalous test videos, train videos (the dropped train video is normal)
    assert not report.ok and len(report.mismatches) == 3
    assert any("clamped" in n and "Arson011_x264" in n for n in report.notes)
    ds = DatasetFolder(tmp_path / "out")
    assert len(ds.test_set()) == 289
    arson = ds.test_set().ground_truth(ds.entry("Arson011_x264"))
    assert arson.frame_count == 1000 and arson.frame_labels[679:].all()
    assert arson.regions[:, 1].max() < 1000      # boxes past the real end are dropped


def test_box_pickle_with_code_is_refused(shared_data: Path, tmp_path: Path, ucf_facts) -> None:
    temporal, boxes = ucf_facts
    src = _source(shared_data, tmp_path)

    class Evil:
        def __reduce__(self):
            return (shutil.rmtree, (str(src),))

    (src / "liu_ma" / "Test_annotation.pkl").write_bytes(pickle.dumps({"Abuse028_x264": [Evil()]}, protocol=0))
    with pytest.raises(UnsafeFileError, match="not allowed"):
        prepare_dataset("ucf_crime", src, tmp_path / "out", probe=_probe(temporal, boxes))
    assert src.is_dir()
