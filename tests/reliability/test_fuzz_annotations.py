"""Area 3: every annotation parser, fed random and mutated files, fails only with our errors.

Each parser gets a valid seed file of its format, mutated by hypothesis (tokens such
as ``nan``, ``1e400``, ``-1``, NUL, non-ASCII digits, numbers past int64, dropped and
repeated lines), random text, or random bytes. It must either return or raise a
:class:`~patchvad.errors.PatchvadError` whose ``path`` is the fuzzed file and whose
``line``, when given, is a line of that file. Anything else (``ValueError``,
``OverflowError``, ``IndexError``...) fails the test.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from patchvad.data.adapters import shanghaitech, street_scene, ubnormal, ucf_crime, ucsd_ped, xd_violence
from patchvad.data.adapters.avenue import read_label_mat
from patchvad.data.folder import load_ground_truth, read_manifest, read_tracks
from patchvad.errors import PatchvadError

from .seeds import (
    AVENUE_SEED, MANIFEST_SEED, SH_AED_SEED, SH_IDS_SEED, STREET_SEED, TRACKS_SEED, UB_MAP_SEED, UB_TRACKS_SEED,
    UCF_LIST_SEED, UCF_PICKLE_SEED, UCF_TEMPORAL_SEED, UCSD_M_SEED, UCSD_NPZ_SEED, XD_ANN_SEED, XD_LIST_SEED, bmp,
    cell, mat, npz, png_header_claiming,
)
from .strategies import file_bytes, fuzz_settings, mutated_text

FUZZ = fuzz_settings(30)


def parse_or_refuse(fn, path: Path):
    """Run ``fn``; a refusal must be a PatchvadError naming ``path`` (and a real line of it)."""
    try:
        return fn()
    except PatchvadError as exc:
        assert exc.path is not None, f"error names no file: {exc}"
        assert Path(exc.path) == path, f"error names {exc.path}, not the fuzzed {path}: {exc}"
        if exc.line is not None:
            n_lines = max(1, len(path.read_bytes().splitlines()))
            assert 1 <= exc.line <= n_lines, f"line {exc.line} of a {n_lines}-line file: {exc}"
        assert str(exc).startswith(str(path)), str(exc)
        return None


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- the generic folder --------------------------------------------------------------------


@FUZZ
@given(data=file_bytes(MANIFEST_SEED))
@example(data=b"video,split,label\nvideos/a\x00.mp4,train,0\n")          # NUL in a path
@example(data=b"video,split,label\n.,train,0\n")                        # the root itself
@example(data=b"video,split,label\nvideos/..,train,0\n")
@example(data=b"video,split,label\n" + b"x" * 300 + b".mp4,train,0\n")  # name too long to look up
@example(data=b"video,split,label,fps\nvideos/a.mp4,train,0,nan\n")
@example(data=b"video,split,label,fps\nvideos/a.mp4,train,0,-25\n")
@example(data=b"video,split,label,frames\nvideos/a.mp4,train,0,99999999999999999999999\n")
@example(data=b"video,split,label\n../../etc/passwd,train,0\n")
@example(data=b"video,split,label\n/etc/passwd,train,0\n")
@example(data=b"\xff\xfe\x00v")
def test_manifest_fuzz(tmp_path: Path, data: bytes) -> None:
    root = tmp_path / "ds"
    for name in ("a.mp4", "b.mp4", "sub/c.mp4"):
        _write(root / "videos" / name, b"")
    path = _write(root / "manifest.csv", data)
    entries = parse_or_refuse(lambda: read_manifest(root), path)
    for e in entries or []:
        # What the reader accepts is a usable entry: inside the root, a file, a real stem.
        assert e.path.is_file() and root.resolve() in e.path.parents
        assert e.stem and e.split in ("train", "test") and e.label in (0, 1)
        for value in (e.frames, e.width, e.height):
            assert value is None or 1 <= value < 2 ** 63
        assert e.fps is None or (np.isfinite(e.fps) and e.fps > 0)


@FUZZ
@given(data=file_bytes(TRACKS_SEED))
@example(data=TRACKS_SEED.encode() + b"99999999999999999999999,1,1,1,2,2\n")   # past int64
@example(data=TRACKS_SEED.encode() + b"0,12,1e400,1,2,2\n")
@example(data=TRACKS_SEED.encode() + b"0,12,nan,1,2,2\n")
def test_tracks_fuzz(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path / "tracks" / "b.csv", data)
    regions = parse_or_refuse(lambda: read_tracks(path, frame_count=40, width=96, height=64), path)
    if regions is not None:
        assert regions.dtype == np.int64 and regions.shape[1] == 6
        assert ((regions[:, 1] >= 0) & (regions[:, 1] < 40)).all()
        assert ((regions[:, 2] >= 0) & (regions[:, 4] < 96) & (regions[:, 2] <= regions[:, 4])).all()


@FUZZ
@given(data=file_bytes(TRACKS_SEED))
@example(data=TRACKS_SEED.encode() + b"0,1,1,1,99999999999999999999999,2\n")
def test_tracks_fuzz_without_known_size(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path / "tracks" / "b.csv", data)
    parse_or_refuse(lambda: read_tracks(path), path)


_ARRAYS = hnp.arrays(
    dtype=st.one_of(hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(), hnp.boolean_dtypes(),
                    hnp.complex_number_dtypes(), hnp.byte_string_dtypes(max_len=2),
                    hnp.unicode_string_dtypes(max_len=2),
                    hnp.datetime64_dtypes(), st.just(np.dtype([("a", "<i4"), ("b", "u1")]))),
    shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=45))


@FUZZ
@given(array=_ARRAYS, raw=st.one_of(st.none(), st.binary(max_size=120)))
@example(array=np.zeros(40, dtype=[("a", "<i4")]), raw=None)                 # structured
@example(array=np.ones(40, dtype=complex), raw=None)
@example(array=np.array(["0", "1"] * 20), raw=None)
def test_frame_labels_fuzz(tmp_path: Path, array: np.ndarray, raw: bytes | None) -> None:
    root = tmp_path / "ds"
    path = root / "frame_labels" / "b.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    if raw is None:
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        path.write_bytes(buf.getvalue())
    else:
        path.write_bytes(raw)
    gt = parse_or_refuse(lambda: load_ground_truth(root, "b", 1, 40, 96, 64), path)
    if gt is not None:
        assert gt.frame_labels.shape == (40,) and gt.frame_labels.dtype == np.uint8
        assert set(np.unique(gt.frame_labels).tolist()) <= {0, 1}


def test_error_line_numbers_are_the_lines_an_editor_shows(tmp_path: Path) -> None:
    """Known answers: a CSV row whose quoted field spans lines, and a form feed inside a line."""
    root = tmp_path / "ds"
    _write(root / "videos" / "a.mp4", b"")
    path = _write(root / "manifest.csv", b'video,split,label,class\nvideos/a.mp4,train,0,"two\nlines"\n'
                                         b"videos/a.mp4,train,7,x\n")
    with pytest.raises(PatchvadError, match=r"manifest.csv:4: label must be 0 or 1"):
        read_manifest(root)
    path.write_bytes(b"\n\nvideo,split\n")                                   # the header is on line 3
    with pytest.raises(PatchvadError, match=r"manifest.csv:3: missing column"):
        read_manifest(root)
    temporal = _write(tmp_path / "t.txt", b"Abuse028_x264.mp4  Abuse  1  2  -1  -1 \x0c\nx  y  1  2  3\n")
    with pytest.raises(PatchvadError, match=r"t.txt:2: expected"):
        ucf_crime._read_temporal(temporal)


# --- UCF-Crime ------------------------------------------------------------------------------


@FUZZ
@given(data=file_bytes(UCF_LIST_SEED))
def test_ucf_list_fuzz(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path / "Anomaly_Test.txt", data)
    parse_or_refuse(lambda: ucf_crime._read_list(path), path)


@FUZZ
@given(data=file_bytes(UCF_TEMPORAL_SEED))
@example(data=b"Abuse028_x264.mp4  Abuse  1  99999999999999999999999  -1  -1\n")
@example(data=b"\x1e0")                          # a record separator is no line break for editors
def test_ucf_temporal_fuzz(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path / "Temporal_Anomaly_Annotation.txt", data)
    parse_or_refuse(lambda: ucf_crime._read_temporal(path), path)


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                     st.floats(), st.text(max_size=20),
                     st.sampled_from(["Abuse028_x264/image_0170.jpg", "image_12.jpg", "image_.jpg"]))
_BUILTINS = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=6), st.tuples(inner, inner),
                                                          st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                         max_leaves=30)
_BOX_ROW = st.lists(st.one_of(st.sampled_from(["Abuse028_x264/image_0170.jpg", "x/image_0001.jpg"]), _SCALARS,
                              st.integers(-5, 400)), min_size=3, max_size=6)
_BOX_PICKLE_OBJECTS = st.one_of(
    _BUILTINS,
    st.dictionaries(st.sampled_from(["Abuse028_x264", "Arson011_x264", ""]), st.lists(_BOX_ROW, max_size=5),
                    max_size=3),
)


@FUZZ
@given(obj=_BOX_PICKLE_OBJECTS, protocol=st.integers(0, pickle.HIGHEST_PROTOCOL),
       raw=st.one_of(st.none(), st.binary(max_size=120),
                     st.integers(0, len(UCF_PICKLE_SEED)).map(lambda n: UCF_PICKLE_SEED[:n]),
                     st.tuples(st.integers(0, len(UCF_PICKLE_SEED) - 1), st.binary(min_size=1, max_size=3)).map(
                         lambda t: UCF_PICKLE_SEED[:t[0]] + t[1] + UCF_PICKLE_SEED[t[0] + len(t[1]):])))
@example(obj={"a": [["a/image_0001.jpg", float("inf"), 1, 2, 3]]}, protocol=0, raw=None)
@example(obj={"a": [["a/image_0001.jpg", 10 ** 30, 1, 2, 3]]}, protocol=0, raw=None)
@example(obj={"a": [["a/image_99999999999999999999999.jpg", 1, 1, 2, 3]]}, protocol=2, raw=None)
@example(obj={"a": [["a/image_0001.jpg", 1.5, 1, 2, 3]]}, protocol=0, raw=None)
@example(obj=None, protocol=0, raw=b"c__builtin__\nbytes\n(I1000000000000000\ntR.")           # memory bomb
@example(obj=None, protocol=0, raw=b"c__builtin__\nlist\n(c__builtin__\nrange\n(I1000000000000000\ntRtR.")
def test_ucf_box_pickle_fuzz(tmp_path: Path, obj, protocol: int, raw: bytes | None) -> None:
    path = _write(tmp_path / "Test_annotation.pkl", pickle.dumps(obj, protocol=protocol) if raw is None else raw)
    boxes = parse_or_refuse(lambda: ucf_crime._load_boxes(path), path)
    if boxes:
        # What the parser accepts must also survive the region builder.
        for stem, rows in boxes.items():
            regions, _ = parse_or_refuse(lambda: ucf_crime._regions(rows, [(100, 400)], 900, (320, 240), 4),
                                         path) or (None, None)
            assert regions is None or regions.dtype == np.int64


# --- XD-Violence ----------------------------------------------------------------------------


@FUZZ
@given(data=file_bytes(XD_ANN_SEED))
@example(data=b"v_label_B1 0 99999999999999999999999\n")
def test_xd_annotations_fuzz(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path / "annotations.txt", data)
    parse_or_refuse(lambda: xd_violence.read_annotations(path), path)


@FUZZ
@given(data=file_bytes(XD_LIST_SEED))
def test_xd_test_list_fuzz(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path / "rgb_test.list", data)
    parse_or_refuse(lambda: xd_violence.read_test_list(path), path)


@FUZZ
@given(name=mutated_text("Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6"))
def test_xd_naming_rule_fuzz(name: str) -> None:
    codes = xd_violence.label_codes(name)
    assert isinstance(codes, list) and isinstance(xd_violence.is_normal(name), bool)


# --- ShanghaiTech ---------------------------------------------------------------------------


@FUZZ
@given(data=file_bytes(SH_IDS_SEED))
def test_shanghaitech_ids_fuzz(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path / "SH_Test.txt", data)
    parse_or_refuse(lambda: shanghaitech._read_ids(path), path)


@FUZZ
@given(data=file_bytes(SH_AED_SEED))
@example(data=b"0,99999999999999999999999,1,1,2,2\n")
def test_shanghaitech_aed_tracks_fuzz(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path / "01_0014.txt", data)
    tracks = parse_or_refuse(lambda: shanghaitech.read_aed_tracks(path), path)
    if tracks is not None:
        assert tracks.dtype == np.int64 and tracks.shape[1:] == (6,)


# --- UBnormal -------------------------------------------------------------------------------


@FUZZ
@given(data=file_bytes(UB_TRACKS_SEED))
@example(data=b"1,0,1e30\n")
def test_ubnormal_tracks_fuzz(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path / "abnormal_scene_1_scenario_1_tracks.txt", data)
    parse_or_refuse(lambda: ubnormal.read_tracks_txt(path), path)


@FUZZ
@given(cut=st.integers(0, len(UB_MAP_SEED)), flip=st.lists(st.integers(0, len(UB_MAP_SEED) - 1), max_size=4),
       raw=st.one_of(st.none(), st.binary(max_size=100)))
@example(cut=len(UB_MAP_SEED), flip=[], raw=png_header_claiming(100000, 100000))   # decompression bomb
def test_ubnormal_object_map_fuzz(tmp_path: Path, cut: int, flip: list[int], raw: bytes | None) -> None:
    data = bytearray(UB_MAP_SEED)
    for i in flip:
        data[i] ^= 0x5A
    path = _write(tmp_path / "abnormal_scene_1_scenario_1_0003_gt.png", bytes(data[:cut]) if raw is None else raw)
    parse_or_refuse(lambda: ubnormal._read_map(path), path)


# --- UCSD Ped ---------------------------------------------------------------------------------


@FUZZ
@given(data=file_bytes(UCSD_M_SEED))
def test_ucsd_m_file_fuzz(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path / "UCSDped2.m", data)
    clips = parse_or_refuse(lambda: ucsd_ped.read_m_file(path), path)
    for ranges in clips or []:
        assert all(1 <= a <= b for a, b in ranges)


@FUZZ
@given(array=_ARRAYS, cut=st.integers(0, len(UCSD_NPZ_SEED)), mode=st.sampled_from(["array", "cut", "bytes"]),
       raw=st.binary(max_size=100))
@example(array=np.zeros(1), cut=0, mode="cut", raw=b"")
@example(array=np.zeros(1), cut=4, mode="cut", raw=b"")
@example(array=np.zeros((2, 3, 1), dtype=[("a", "u1")]), cut=0, mode="array", raw=b"")
def test_ucsd_npz_masks_fuzz(tmp_path: Path, array: np.ndarray, cut: int, mode: str, raw: bytes) -> None:
    if mode == "array":
        data = npz({"Test001": array})
    else:
        data = UCSD_NPZ_SEED[:cut] if mode == "cut" else raw
    path = _write(tmp_path / "test_gt_masks.npz", data)
    masks = parse_or_refuse(lambda: ucsd_ped._read_npz_masks(path, "Test001", 16), path)
    if masks is not None:
        assert masks.dtype == bool and masks.ndim == 3


@FUZZ
@given(raw=st.binary(max_size=80), cut=st.integers(0, 200), side=st.integers(1, 9))
@example(raw=b"", cut=-1, side=4)                    # a mask of another size
def test_ucsd_bmp_masks_fuzz(tmp_path: Path, raw: bytes, cut: int, side: int) -> None:
    folder = tmp_path / "Test001_gt"
    folder.mkdir(exist_ok=True)
    seed = bmp(np.eye(8, dtype=np.uint8) * 255)
    (folder / "001.bmp").write_bytes(seed)
    data = bmp(np.eye(side, dtype=np.uint8)) if cut < 0 else raw if cut % 2 else seed[:cut]
    path = _write(folder / "002.bmp", data)
    parse_or_refuse(lambda: ucsd_ped._read_bmp_masks(folder), path)


# --- Street Scene -------------------------------------------------------------------------------


@FUZZ
@given(data=file_bytes(STREET_SEED))
@example(data=b"Test001/002.jpg 0 nan 8 6 4\n")
@example(data=b"Test001/002.jpg 0 1 8 inf 4\n")
@example(data=b"Test001/002.jpg 0 1e300 8 6 4\n")
@example(data=b"Test001/99999999999999999999999.jpg 0 1 8 6 4\n")
def test_street_scene_gt_fuzz(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path / "Test001_gt.txt", data)
    rows = parse_or_refuse(lambda: street_scene.read_gt(path), path)
    if rows is not None:
        assert rows.dtype == np.int64 and rows.shape[1:] == (6,)


# --- Avenue ---------------------------------------------------------------------------------------


@FUZZ
@given(mode=st.sampled_from(["cut", "flip", "bytes", "content"]), cut=st.integers(0, len(AVENUE_SEED)),
       flip=st.lists(st.integers(0, len(AVENUE_SEED) - 1), min_size=1, max_size=4), raw=st.binary(max_size=150),
       content=st.one_of(_ARRAYS.filter(lambda a: a.dtype.kind in "biuf" and a.dtype.names is None),
                         st.lists(_ARRAYS.filter(lambda a: a.dtype.kind in "biuf" and a.dtype.names is None),
                                  min_size=0, max_size=3).map(cell)),
       name=st.sampled_from(["volLabel", "other"]))
@example(mode="cut", cut=0, flip=[0], raw=b"", content=np.zeros(1), name="volLabel")
@example(mode="content", cut=0, flip=[0], raw=b"", content=np.ones((3, 4, 2), dtype=complex), name="volLabel")
@example(mode="content", cut=0, flip=[0], raw=b"", content=cell([{"a": np.eye(3)}]), name="volLabel")
def test_avenue_label_mat_fuzz(tmp_path: Path, mode: str, cut: int, flip: list[int], raw: bytes, content,
                               name: str) -> None:
    if mode == "cut":
        data = AVENUE_SEED[:cut]
    elif mode == "flip":
        buf = bytearray(AVENUE_SEED)
        for i in flip:
            buf[i] ^= 0xA5
        data = bytes(buf)
    elif mode == "bytes":
        data = raw
    else:
        try:
            data = mat({name: content})
        except Exception:  # noqa: BLE001 - scipy cannot write this array; nothing to test
            return
    path = _write(tmp_path / "1_label.mat", data)
    masks = parse_or_refuse(lambda: read_label_mat(path), path)
    if masks is not None:
        assert masks.dtype == bool and masks.ndim == 3
