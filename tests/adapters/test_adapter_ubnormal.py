"""UBnormal adapter on the real split files, with stand-in videos and object-id maps."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from patchvad.data.adapters import MediaInfo, prepare_dataset
from patchvad.data.folder import DatasetFolder
from patchvad.errors import ConfigError

from .helpers import FakeProbe, touch

W, H, FRAMES = 16, 12, 10
LISTS = [f"{k}_{s}_video_names.txt" for k in ("abnormal", "normal") for s in ("training", "validation", "test")]


def _map(objects: dict[int, tuple[int, int, int, int]]) -> np.ndarray:
    """An object-id map with rectangles ``id -> (x1, y1, x2, y2)`` inclusive."""
    m = np.zeros((H, W), dtype=np.uint8)
    for obj, (x1, y1, x2, y2) in objects.items():
        m[y1:y2 + 1, x1:x2 + 1] = obj
    return m


def _write_annotations(scene_dir: Path, name: str, tracks: str, maps: dict[int, np.ndarray],
                       subfolder: bool) -> None:
    folder = scene_dir / f"{name}_annotations"
    gt_dir = folder / f"{name}_gt" if subfolder else folder
    gt_dir.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}_tracks.txt").write_text(tracks)
    for frame, m in maps.items():
        Image.fromarray(m).save(gt_dir / f"{name}_{frame:04d}_gt.png")


@pytest.fixture(scope="module")
def ub_source(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("ub") / "UBnormal"
    (src / "scripts").mkdir(parents=True)
    for name in LISTS:
        shutil.copy2(shared_data / "ubnormal" / name, src / "scripts")
    for list_name in LISTS:
        for k, name in enumerate((src / "scripts" / list_name).read_text().split()):
            scene = src / f"Scene{name.split('_')[2]}"
            touch(scene / f"{name}.mp4")
            if list_name == "abnormal_test_video_names.txt":
                # One anomalous object (id 2; id 1 is a bystander) on frames 3..5, a box that
                # moves right by one pixel per frame.
                maps = {f: _map({1: (0, 0, 1, 1), 2: (4 + f, 3, 7 + f, 8)}) for f in range(3, 6)}
                _write_annotations(scene, name, "2,3,5\n", maps, subfolder=bool(k % 2))
    return src


def _probe() -> FakeProbe:
    return FakeProbe({}, default=MediaInfo(FRAMES, W, H, 30.0))


def test_official_split_counts(ub_source: Path, tmp_path: Path) -> None:
    report = prepare_dataset("ubnormal", ub_source, tmp_path / "out", probe=_probe())
    assert report.ok, report.summary()
    found = {c.what: c.found for c in report.checks}
    assert found["abnormal training videos listed"] == 82 and found["normal training videos listed"] == 186
    assert found["abnormal validation videos listed"] == 38 and found["normal validation videos listed"] == 26
    assert found["abnormal test videos listed"] == 158 and found["normal test videos listed"] == 53
    assert (found["train videos"], found["anomalous train videos"]) == (268, 82)
    assert (found["test videos"], found["anomalous test videos"]) == (211, 158)
    assert any("64 validation videos left out" in n for n in report.notes)

    ds = DatasetFolder(tmp_path / "out")
    test = ds.test_set()
    entry = ds.entry("abnormal_scene_1_scenario_1")
    assert entry.video == "videos/Scene1/abnormal_scene_1_scenario_1.mp4" and entry.cls == "Scene1"
    gt = test.ground_truth(entry)
    # [3, 5] inclusive -> frames 3, 4, 5; the box of object 2 only (not the bystander).
    assert np.flatnonzero(gt.frame_labels).tolist() == [3, 4, 5]
    assert gt.regions.tolist() == [[0, f, 4 + f, 3, 7 + f, 8] for f in (3, 4, 5)]
    assert sum(len(test.ground_truth(e).regions) for e in test) == 158 * 3
    # Irregular scene-1 names (normal_scene_1_scenario1_10) are found like the others.
    assert ds.entry("normal_scene_1_scenario1_10").split in ("train", "test")


def test_validation_option_and_new_tracks(ub_source: Path, tmp_path: Path) -> None:
    src = tmp_path / "UBnormal"
    shutil.copytree(ub_source, src)
    name = "abnormal_scene_1_scenario_1"
    folder = src / "Scene1" / f"{name}_annotations"
    # The corrected tracks file: the bystander (id 1) on frames 3..6, object 2 extended to
    # frame 6, where only the bystander is visible. The authors' frame-level script reads
    # _tracks.txt only (2,3,5); their RBDC/TBDC script reads _new_tracks.txt.
    (folder / f"{name}_new_tracks.txt").write_text("2,3,6\n1,3,6\n")
    Image.fromarray(_map({1: (0, 0, 1, 1)})).save(folder / f"{name}_0006_gt.png")
    report = prepare_dataset("ubnormal", src, tmp_path / "out", probe=_probe(), options=["validation=test"],
                             strict=False)
    assert f"track frames where the object is not visible in its map (frame label kept, no box) (1): {name} (1)" \
        in report.notes
    assert f"videos whose regions come from <video>_new_tracks.txt (the authors' corrected tracks for RBDC/TBDC; " \
           f"frame labels still from <video>_tracks.txt) (1): {name}" in report.notes
    assert f"videos with regions on frames that <video>_tracks.txt leaves normal (frames) (1): {name} (1)" \
        in report.notes
    # The stand-in tree has no annotations for the 38 abnormal validation videos: one
    # problem line lists them, and those videos are left out (their GT is unknown).
    assert [p for p in report.problems if p.startswith("abnormal test videos without a <video>_annotations "
                                                       "folder") and "(38)" in p]
    expected = {c.what: c.expected for c in report.checks}
    found = {c.what: c.found for c in report.checks}
    assert (expected["test videos"], expected["anomalous test videos"]) == (211 + 64, 158 + 38)
    assert (found["test videos"], found["anomalous test videos"]) == (211 + 64 - 38, 158)
    ds = DatasetFolder(tmp_path / "out")
    gt = ds.test_set().ground_truth(ds.entry(name))
    assert np.flatnonzero(gt.frame_labels).tolist() == [3, 4, 5]          # _tracks.txt: 2,3,5
    # Rows of _new_tracks.txt sorted by object id get track ids 0.. : the bystander (id 1)
    # is track 0, on frames 3..6; object 2 is track 1, on 3..5 (not visible on 6).
    assert gt.regions.tolist() == [[0, 3, 0, 0, 1, 1], [1, 3, 7, 3, 10, 8], [0, 4, 0, 0, 1, 1], [1, 4, 8, 3, 11, 8],
                                   [0, 5, 0, 0, 1, 1], [1, 5, 9, 3, 12, 8], [0, 6, 0, 0, 1, 1]]
    # Without a corrected file, the regions follow _tracks.txt (every other abnormal test video).
    other = ds.test_set().ground_truth(ds.entry("abnormal_scene_2_scenario_1"))
    assert other.regions[:, :2].tolist() == [[0, 3], [0, 4], [0, 5]]


def test_unknown_option_is_refused(ub_source: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="validation"):
        prepare_dataset("ubnormal", ub_source, tmp_path / "out", probe=_probe(), options={"hold": 3})


def test_frame_labels_need_the_tracks_file(tmp_path: Path) -> None:
    """A video whose annotation folder holds only _new_tracks.txt has no frame-level
    ground truth (the authors' frame-level script reads _tracks.txt): a problem naming it."""
    src = tmp_path / "UBnormal"
    for kind in ("abnormal", "normal"):
        for k, split in enumerate(("training", "validation", "test"), 1):
            name = f"{kind}_scene_1_scenario_{k}"
            touch(src / "scripts" / f"{kind}_{split}_video_names.txt").write_text(name)
            touch(src / "Scene1" / f"{name}.mp4")
    name = "abnormal_scene_1_scenario_3"
    _write_annotations(src / "Scene1", name, "2,3,5\n", {f: _map({2: (4, 3, 7, 8)}) for f in (3, 4, 5)},
                       subfolder=False)
    folder = src / "Scene1" / f"{name}_annotations"
    (folder / f"{name}_tracks.txt").rename(folder / f"{name}_new_tracks.txt")
    report = prepare_dataset("ubnormal", src, tmp_path / "out", probe=_probe(), strict=False)
    assert f"{name}: no {name}_tracks.txt in {folder} (the frame-level ground truth; it ships with the UBnormal " \
           f"download in Scene<S>/{name}_annotations/: unpack that folder again)" in report.problems
    assert name not in {e.stem for e in DatasetFolder(tmp_path / "out").entries}
