"""Area 3, whole adapters: ``prepare`` on small official-layout trees with one fuzzed file.

Each dataset adapter runs end to end (``prepare_dataset``, lenient, with a stand-in
frame-count probe) on a minimal source tree in its official layout, one of whose
annotation files is replaced by a mutated or random one. ``prepare`` must either
write a dataset folder that the generic reader accepts (every test video's ground
truth loads), or fail with a :class:`~patchvad.errors.PatchvadError` that names a
file. Anything else is a fault.
"""

from __future__ import annotations

import io
import itertools
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from patchvad.data.adapters import MediaInfo, prepare_dataset
from patchvad.data.folder import DatasetFolder
from patchvad.errors import PatchvadError
from patchvad.io.video import list_frame_files

from .strategies import file_bytes, fuzz_settings
from .seeds import (
    SH_AED_SEED, SH_IDS_SEED, STREET_SEED, UB_MAP_SEED, UB_MAP_SIZE, UB_TRACKS_SEED, UCF_LIST_SEED, UCF_PICKLE_SEED,
    UCF_TEMPORAL_SEED, UCSD_M_SEED, XD_ANN_SEED, bmp, cell, mat,
)

FUZZ = fuzz_settings(25)
_RUN = itertools.count()


def _touch(path: Path, data: bytes = b"") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _probe(frames: int, width: int, height: int, fps: float | None = 25.0) -> Callable[[Path], MediaInfo]:
    def probe(path: Path) -> MediaInfo:
        if Path(path).is_dir():
            return MediaInfo(len(list_frame_files(path)), width, height, None)
        return MediaInfo(frames, width, height, fps)
    return probe


def prepare_or_refuse(name: str, source: Path, tmp: Path, probe) -> None:
    """Run ``prepare``; a refusal names a file; what is written reads back cleanly."""
    out = tmp / f"out{next(_RUN)}"
    try:
        prepare_dataset(name, source, out, strict=False, probe=probe, workers=1)
    except PatchvadError as exc:
        assert exc.path is not None and str(exc).startswith(str(exc.path)), f"error names no file: {exc}"
        return
    dataset = DatasetFolder(out)
    test = dataset.test_set()
    for entry in test:
        gt = test.ground_truth(entry)            # the adapter wrote only what the reader accepts
        assert gt.frame_labels.shape == (entry.frames,)


# --- UCF-Crime ----------------------------------------------------------------------------


def _ucf_tree(src: Path, which: str, data: bytes) -> None:
    files = {"Anomaly_Train.txt": b"Normal_Videos_event/Normal_Videos_001_x264.mp4\nAbuse/Abuse001_x264.mp4\n",
             "Anomaly_Test.txt": UCF_LIST_SEED.encode(),
             "Temporal_Anomaly_Annotation.txt": b"".join(UCF_TEMPORAL_SEED.encode().splitlines(True)[:2]),
             "Test_annotation.pkl": UCF_PICKLE_SEED}
    files[which] = data
    for name, content in files.items():
        _touch(src / "UCF" / name, content)
    for video in ("Normal_Videos_event/Normal_Videos_001_x264.mp4", "Abuse/Abuse001_x264.mp4",
                  "Abuse/Abuse028_x264.mp4", "Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4"):
        _touch(src / "UCF" / "Anomaly-Videos" / video)


@FUZZ
@given(which=st.sampled_from(["Anomaly_Test.txt", "Temporal_Anomaly_Annotation.txt", "Test_annotation.pkl"]),
       text=st.one_of(file_bytes(UCF_TEMPORAL_SEED), file_bytes(UCF_LIST_SEED)),
       obj=st.one_of(st.none(), st.dictionaries(
           st.sampled_from(["Abuse028_x264", "Normal_Videos_003_x264", "x"]),
           st.lists(st.tuples(st.sampled_from(["a/image_0170.jpg", "a/image_0001.jpg", "a/image_9999.jpg"]),
                              *[st.integers(-400, 700)] * 4).map(list), max_size=4), max_size=3)))
@example(which="Test_annotation.pkl", text=b"", obj={"Abuse028_x264": [["a/image_0170.jpg", 300, 200, 20, 10]]})
@example(which="Test_annotation.pkl", text=b"", obj={"Normal_Videos_003_x264": [["a/image_0170.jpg", 1, 2, 3, 4]]})
@example(which="Temporal_Anomaly_Annotation.txt", text=b"Abuse028_x264.mp4  Abuse  9000  9999  -1  -1\n", obj=None)
@example(which="Anomaly_Test.txt", text=b"\x00/Abuse028_x264.mp4\n", obj=None)      # a NUL in a listed path
def test_ucf_crime_prepare_fuzz(tmp_path: Path, which: str, text: bytes, obj) -> None:
    src = tmp_path / f"src{next(_RUN)}"
    data = pickle.dumps(obj, protocol=0) if which.endswith(".pkl") and obj is not None else text
    _ucf_tree(src, which, data)
    prepare_or_refuse("ucf_crime", src, tmp_path, _probe(600, 320, 240, 30.0))


# --- XD-Violence -----------------------------------------------------------------------------


@FUZZ
@given(data=file_bytes(XD_ANN_SEED.replace("Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6", "A_label_B1")))
@example(data=b"A_label_B1 0 9999\n")
@example(data=b"A_label_B1 5 9\nB_label_A 0 4\n")
def test_xd_violence_prepare_fuzz(tmp_path: Path, data: bytes) -> None:
    src = tmp_path / f"src{next(_RUN)}"
    _touch(src / "annotations.txt", data)
    for video in ("test/A_label_B1.mp4", "test/B_label_A.mp4", "train/C_label_A.mp4", "train/D_label_G.mp4"):
        _touch(src / video)
    prepare_or_refuse("xd_violence", src, tmp_path, _probe(48, 64, 48, 24.0))


# --- ShanghaiTech ------------------------------------------------------------------------------


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


@FUZZ
@given(which=st.sampled_from(["list/SH_Test.txt", "aed/01_0014.txt", "testing/test_frame_mask/01_0014.npy"]),
       text=st.one_of(file_bytes(SH_IDS_SEED), file_bytes(SH_AED_SEED)),
       mask=st.one_of(st.none(), st.lists(st.integers(-1, 2), max_size=45).map(np.asarray)))
@example(which="aed/01_0014.txt", text=b"0,3,900,500,950,600\n", mask=None)     # outside the frame
@example(which="testing/test_frame_mask/01_0014.npy", text=b"", mask=np.zeros(40, dtype=np.int64))
def test_shanghaitech_prepare_fuzz(tmp_path: Path, which: str, text: bytes, mask) -> None:
    src = tmp_path / f"src{next(_RUN)}"
    files = {"list/SH_Train.txt": b"01_001\n01_0016\n", "list/SH_Test.txt": b"01_0014\n01_002\n",
             "aed/01_0014.txt": b"0,10,100,120,140,200\n0,11,102,120,142,200\n",
             "testing/test_frame_mask/01_0014.npy": _npy(np.repeat(np.uint8([0, 1, 0]), [10, 5, 25])),
             "testing/test_frame_mask/01_0016.npy": _npy(np.ones(40, dtype=np.uint8))}
    if which.endswith(".npy"):
        files[which] = text if mask is None else _npy(mask)
    else:
        files[which] = text
    for name, content in files.items():
        _touch(src / name, content)
    for vid in ("01_001", "01_0016", "01_0014", "01_002"):
        _touch(src / "training" / "videos" / f"{vid}.avi")
    prepare_or_refuse("shanghaitech", src, tmp_path, _probe(40, 856, 480, 24.0))


# --- UBnormal ------------------------------------------------------------------------------------

UB_NAMES = {(kind, split): f"{kind}_scene_1_scenario_{k}" for k, split in enumerate(("training", "validation", "test"), 1)
            for kind in ("abnormal", "normal")}


@FUZZ
@given(which=st.sampled_from(["tracks", "map", "list"]), text=file_bytes(UB_TRACKS_SEED.replace("10,40", "1,3")),
       cut=st.integers(0, len(UB_MAP_SEED)), raw=st.one_of(st.none(), st.binary(max_size=60)))
@example(which="tracks", text=b"3,1,2\n", cut=0, raw=None)                     # the object is not in the map
@example(which="tracks", text=b"1,2,99\n", cut=0, raw=None)                    # past the last frame and map
def test_ubnormal_prepare_fuzz(tmp_path: Path, which: str, text: bytes, cut: int, raw) -> None:
    src = tmp_path / f"src{next(_RUN)}"
    for (kind, split), name in UB_NAMES.items():
        listing = text if which == "list" and (kind, split) == ("abnormal", "test") else f"{name}\n".encode()
        _touch(src / "lists" / f"{kind}_{split}_video_names.txt", listing)
        _touch(src / "Scene1" / f"{name}.mp4")
    video = UB_NAMES[("abnormal", "test")]
    ann = src / "Scene1" / f"{video}_annotations"
    _touch(ann / f"{video}_tracks.txt", text if which == "tracks" else b"1,1,3\n")
    for frame in range(6):
        data = UB_MAP_SEED
        if which == "map" and frame == 2:
            data = UB_MAP_SEED[:cut] if raw is None else raw
        _touch(ann / f"{video}_gt" / f"{video}_{frame:04d}_gt.png", data)
    prepare_or_refuse("ubnormal", src, tmp_path, _probe(6, *UB_MAP_SIZE, 30.0))


# --- UCSD Ped2 ----------------------------------------------------------------------------------------


@FUZZ
@given(which=st.sampled_from(["m", "bmp"]), text=file_bytes(UCSD_M_SEED.replace("61:180", "2:3")),
       side=st.integers(1, 10), raw=st.one_of(st.none(), st.binary(max_size=60)))
@example(which="m", text=b"gt_frame = [2:99];\n", side=8, raw=None)
@example(which="bmp", text=b"", side=5, raw=None)
def test_ucsd_ped2_prepare_fuzz(tmp_path: Path, which: str, text: bytes, side: int, raw) -> None:
    src = tmp_path / f"src{next(_RUN)}" / "UCSDped2"
    for folder in ("Train/Train001", "Test/Test001"):
        for k in (1, 2, 3, 4):
            _touch(src / folder / f"{k:03d}.tif")
    for k in (1, 2, 3, 4):
        mask = np.zeros((6, 8), np.uint8)
        mask[1:3, 2:5] = 255 * (k in (2, 3))
        data = bmp(mask)
        if which == "bmp" and k == 2:
            data = bmp(np.eye(side, dtype=np.uint8) * 255) if raw is None else raw
        _touch(src / "Test" / "Test001_gt" / f"{k:03d}.bmp", data)
    _touch(src / "Test" / "UCSDped2.m", text if which == "m" else b"TestVideoFile{end+1}.gt_frame = [2:3];\n")
    prepare_or_refuse("ucsd_ped2", src.parent, tmp_path, _probe(4, 8, 6))


# --- Street Scene -----------------------------------------------------------------------------------------


@FUZZ
@given(data=file_bytes(STREET_SEED))
@example(data=b"Test001/002.jpg 0 -50 -50 6 4\n")                  # wholly outside the frame
@example(data=b"Test001/099.jpg 0 10 8 6 4\n")                     # past the last frame
def test_street_scene_prepare_fuzz(tmp_path: Path, data: bytes) -> None:
    src = tmp_path / f"src{next(_RUN)}"
    for folder in ("Train/Train001", "Test/Test001"):
        for k in range(1, 7):
            _touch(src / folder / f"{k:03d}.jpg")
    _touch(src / "Test" / "Test001" / "Test001_gt.txt", data)
    prepare_or_refuse("street_scene", src, tmp_path, _probe(6, 40, 30))


# --- Avenue ---------------------------------------------------------------------------------------------------

AVENUE_MASKS = [np.zeros((6, 8)), np.pad(np.ones((2, 3)), ((1, 3), (2, 3))), np.zeros((6, 8))]


@FUZZ
@given(mode=st.sampled_from(["cut", "flip", "frames"]), cut=st.integers(0, 400),
       flip=st.lists(st.integers(0, 399), min_size=1, max_size=3), n=st.integers(0, 5))
@example(mode="frames", cut=0, flip=[0], n=0)
def test_avenue_prepare_fuzz(tmp_path: Path, mode: str, cut: int, flip: list[int], n: int) -> None:
    src = tmp_path / f"src{next(_RUN)}"
    seed = mat({"volLabel": cell(AVENUE_MASKS)})
    if mode == "cut":
        data = seed[:cut]
    elif mode == "flip":
        buf = bytearray(seed)
        for i in flip:
            buf[i % len(buf)] ^= 0x5A
        data = bytes(buf)
    else:
        data = mat({"volLabel": cell([np.ones((6, 8))] * n)}) if n else mat({"volLabel": np.zeros((0, 0))})
    _touch(src / "training_videos" / "01.avi")
    _touch(src / "testing_videos" / "01.avi")
    _touch(src / "ground_truth_demo" / "testing_label_mask" / "1_label.mat", data)
    prepare_or_refuse("avenue", src, tmp_path, _probe(3, 8, 6))


def test_the_seeds_prepare_cleanly(tmp_path: Path) -> None:
    """The unmutated trees are valid: the fuzzing starts from datasets that work."""
    _ucf_tree(tmp_path / "ucf", "Anomaly_Test.txt", UCF_LIST_SEED.encode())
    report = prepare_dataset("ucf_crime", tmp_path / "ucf", tmp_path / "o_ucf", strict=False,
                             probe=_probe(600, 320, 240, 30.0), workers=1)
    assert report.counts["test videos"] == 2 and report.counts["test regions"] == 2 and not report.problems
    ds = DatasetFolder(tmp_path / "o_ucf")
    gt = ds.test_set().ground_truth(ds.entry("Abuse028_x264"))
    assert np.flatnonzero(gt.frame_labels).tolist() == list(range(164, 240))
    assert gt.regions[:, 1].tolist() == [169, 185]
