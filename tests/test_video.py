"""Video I/O: round trips through real H.264 files and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import moving_square_frames, require_shared, write_vfr_video
from patchvad.errors import VideoError
from patchvad.features.snippets import iter_snippets
from patchvad.io.video import (
    VideoReader, VideoWriter, clock_times, is_variable_rate, probe, rgb_planes_to_yuv420p, rgb_to_yuv420p, write_video,
)


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    frames, boxes = moving_square_frames(n=33)
    path = tmp_path / "v.mp4"
    assert write_video(path, frames, fps=25) == 33
    info = probe(path)
    assert (info.frame_count, info.width, info.height, info.codec) == (33, 96, 64, "h264")
    assert info.fps == pytest.approx(25.0)
    assert probe(path, exact=True).frame_count == 33
    decoded = VideoReader(path).read_all()
    assert decoded.shape == (33, 64, 96, 3)
    # Lossy, but the red square must be where it was drawn.
    x1, y1, x2, y2 = boxes[20]
    inside = decoded[20, y1:y2 + 1, x1:x2 + 1].astype(float).mean(axis=(0, 1))
    assert inside[0] > 180 and inside[1] < 120


def test_resize_on_decode_and_gray(square_video: Path) -> None:
    reader = VideoReader(square_video)
    frame = next(reader.frames(size=(48, 32)))
    assert frame.shape == (32, 48, 3) and frame.dtype == np.uint8
    gray = next(reader.frames(size=(48, 32), gray=True))
    assert gray.shape == (32, 48)


def test_rgb_to_yuv420p_known_values() -> None:
    # BT.601 limited range, integer: Y = ((66R + 129G + 25B + 128) >> 8) + 16 and, on the
    # sums S of each 2x2 block, U = ((-38 SR - 74 SG + 112 SB + 512) >> 10) + 128,
    # V = ((112 SR - 94 SG - 18 SB + 512) >> 10) + 128.
    frame = np.zeros((2, 4, 3), dtype=np.uint8)
    frame[:, :2] = (255, 0, 0)          # left block pure red
    frame[:, 2:] = (255, 255, 255)      # right block white
    planes = rgb_to_yuv420p(frame)
    assert planes.shape == (3, 4) and planes.dtype == np.uint8
    # red: Y = (16830 + 128) >> 8 = 66, + 16 = 82; S_R = 1020:
    # U = (-38760 + 512) >> 10 = floor(-37.35) = -38, + 128 = 90; V = (114240 + 512) >> 10 = 112, + 128 = 240
    # white: Y = (220 * 255 + 128) >> 8 = 219, + 16 = 235; U = V = (0 + 512) >> 10 = 0, + 128 = 128
    assert planes[:2].tolist() == [[82, 82, 235, 235], [82, 82, 235, 235]]
    assert planes[2].tolist() == [90, 128, 240, 128]   # U plane (2 values) then V plane (2 values)


def _yuv420p_formula(frame: np.ndarray) -> np.ndarray:
    """The BT.601 conversion written out in int64, for comparison."""
    h, w = frame.shape[:2]
    r, g, b = (frame[..., c].astype(np.int64) for c in range(3))
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    qr, qg, qb = (c[0::2, 0::2] + c[1::2, 0::2] + c[0::2, 1::2] + c[1::2, 1::2] for c in (r, g, b))
    u = ((-38 * qr - 74 * qg + 112 * qb + 512) >> 10) + 128
    v = ((112 * qr - 94 * qg - 18 * qb + 512) >> 10) + 128
    return np.concatenate([y.ravel(), u.ravel(), v.ravel()]).astype(np.uint8).reshape(h * 3 // 2, w)


def test_rgb_to_yuv420p_matches_the_formula_on_every_value() -> None:
    # Every pair of values in two channels, the third at 0, 128 and 255 in turn, in every
    # channel order: the narrow-integer arithmetic must neither wrap nor round otherwise.
    vals = np.arange(256, dtype=np.uint8)
    pairs = np.stack(np.meshgrid(vals, vals, indexing="ij"), axis=-1)          # (256, 256, 2)
    for third in (0, 128, 255):
        frame = np.concatenate([pairs, np.full((256, 256, 1), third, np.uint8)], axis=-1)
        for order in ([0, 1, 2], [1, 2, 0], [2, 0, 1]):
            f = np.ascontiguousarray(frame[..., order])
            assert np.array_equal(rgb_to_yuv420p(f), _yuv420p_formula(f))
    noisy = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    planes = noisy.transpose(2, 0, 1).astype(np.int16)
    assert np.array_equal(rgb_planes_to_yuv420p(planes), _yuv420p_formula(noisy))


def test_yuv420p_frames_encode_as_rgb_frames_do(tmp_path: Path) -> None:
    frames, _ = moving_square_frames(n=6)
    with VideoWriter(tmp_path / "rgb.mp4", 10, (96, 64), threads=1) as writer:
        for frame in frames:
            writer.write(frame)
    with VideoWriter(tmp_path / "yuv.mp4", 10, (96, 64), threads=1) as writer:
        for frame in frames:
            writer.write_yuv420p(rgb_to_yuv420p(frame))
        with pytest.raises(VideoError, match="shape"):
            writer.write_yuv420p(np.zeros((64, 96), np.uint8))     # not 3/2 of the height
        with pytest.raises(VideoError, match="C-contiguous"):
            writer.write_yuv420p(np.zeros((96, 192), np.uint8)[:, ::2])
    assert (tmp_path / "rgb.mp4").read_bytes() == (tmp_path / "yuv.mp4").read_bytes()
    assert probe(tmp_path / "yuv.mp4").frame_count == 6


def test_encoded_bytes_do_not_depend_on_the_frame_buffer(tmp_path: Path) -> None:
    # The same pixels from a contiguous array and from a strided view of a bigger one
    # must give byte-identical files (the RGB -> YUV step depends only on the pixels).
    frames, _ = moving_square_frames(n=6)
    wide = [np.pad(f, ((0, 0), (3, 5), (0, 0)))[:, 3:-5] for f in frames]
    assert not wide[0].flags["C_CONTIGUOUS"]
    for name, source in (("a.mp4", frames), ("b.mp4", wide)):
        with VideoWriter(tmp_path / name, 10, (96, 64), threads=1) as writer:
            for frame in source:
                writer.write(frame)
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    assert a.read_bytes() == b.read_bytes()


def test_odd_size_is_padded_to_even(tmp_path: Path) -> None:
    frames = [np.full((31, 45, 3), 128, np.uint8)] * 5
    write_video(tmp_path / "odd.mp4", frames, fps=10)
    info = probe(tmp_path / "odd.mp4")
    assert (info.width, info.height, info.frame_count) == (46, 32, 5)


def test_snippets_pad_last_partial_snippet() -> None:
    frames = [np.full((2, 2), i, np.uint8) for i in range(37)]
    got = list(iter_snippets(iter(frames), 16))
    assert [(s, n) for s, _, n in got] == [(0, 16), (16, 16), (32, 5)]
    last = got[-1][1]
    assert last.shape == (16, 2, 2)
    assert [int(v) for v in last[:, 0, 0]] == [32, 33, 34, 35, 36] + [36] * 11


def test_overlapping_snippets() -> None:
    frames = [np.full((1,), i, np.uint8) for i in range(20)]
    got = list(iter_snippets(iter(frames), 8, 4))
    assert [s for s, _, _ in got] == [0, 4, 8, 12]
    for start, snip, n_real in got:
        expect = [min(start + k, 19) for k in range(8)]
        assert [int(v) for v in snip[:, 0]] == expect
        assert n_real == min(8, 20 - start)


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="nope.mp4: file not found"):
        probe(tmp_path / "nope.mp4")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match=r"empty.mp4: empty file"):
        VideoReader(tmp_path / "empty.mp4")


def test_garbage_file(tmp_path: Path) -> None:
    (tmp_path / "junk.mp4").write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoError, match=r"junk.mp4: cannot open as a video"):
        probe(tmp_path / "junk.mp4")


def test_truncated_file(tmp_path: Path, square_video: Path) -> None:
    data = square_video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    # mp4 keeps its index at the end (or the start): a half file either fails to open
    # or decodes fewer frames; both must name the file, never crash inside PyAV.
    try:
        n = sum(1 for _ in VideoReader(cut).frames())
    except VideoError as exc:
        assert "cut.mp4" in str(exc)
    else:
        assert n < 40


def test_writer_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(target, 25, (32, 32)) as writer:
            writer.write(np.zeros((32, 32, 3), np.uint8))
            raise RuntimeError("crash mid-way")
    assert not target.exists()
    assert not list(tmp_path.iterdir())


def test_writer_rejects_wrong_frame_size(tmp_path: Path) -> None:
    writer = VideoWriter(tmp_path / "w.mp4", 25, (32, 32))
    with pytest.raises(VideoError, match="does not match"):
        writer.write(np.zeros((16, 16, 3), np.uint8))
    writer.abort()


def test_real_footage_probe() -> None:
    info = probe(require_shared("vtest", "vtest.avi"))
    assert (info.frame_count, info.width, info.height) == (795, 768, 576)
    assert info.fps == pytest.approx(10.0)


def test_frame_folder_reads_like_a_video(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "Test001"
    folder.mkdir()
    for i in (1, 2, 10):                     # natural order: 1, 2, 10 (not 1, 10, 2)
        Image.fromarray(np.full((24, 36), i * 20, np.uint8)).save(folder / f"{i:d}.tif")
    (folder / "._1.tif").write_bytes(b"resource fork")   # hidden: skipped
    (folder / "Thumbs.db").write_bytes(b"x")              # not an image: skipped
    info = probe(folder)
    assert (info.frame_count, info.width, info.height, info.codec) == (3, 36, 24, "images")
    frames = VideoReader(folder).read_all(size=(18, 12))
    assert frames.shape == (3, 12, 18, 3)
    assert [int(f[0, 0, 0]) for f in frames] == [20, 40, 200]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoError, match="empty: frame folder holds no images"):
        probe(empty)


def test_presentation_times_of_a_variable_rate_video(tmp_path: Path) -> None:
    """A camera that stalls for a second: the reader reports its real clock."""
    frames, _ = moving_square_frames(10, size=(64, 48))
    pts = [0, 40, 80, 120, 1120, 2120, 2160, 2200, 2240, 2280]
    path = tmp_path / "vfr.mp4"
    write_vfr_video(path, frames, pts)
    reader = VideoReader(path)
    times: list[float] = []
    assert len(list(reader.frames(size=(32, 32), times=times))) == 10
    np.testing.assert_allclose(times, np.array(pts) / 1000, atol=1e-9)
    paired: list[float] = []
    assert len(list(reader.frame_pairs((32, 32), times=paired))) == 10
    assert paired == times
    assert is_variable_rate(times, reader.fps)
    # 10 frames over 2.32 s: the average rate (4.31/s) puts frame 4 at 0.93 s, it was shown at 1.12 s.
    assert reader.fps == pytest.approx(10 / 2.32)
    np.testing.assert_allclose(clock_times(times, reader.fps), np.array(pts) / 1000)


def test_constant_rate_video_keeps_nominal_times(tmp_path: Path) -> None:
    frames, _ = moving_square_frames(30, size=(64, 48))
    path = tmp_path / "cfr.mp4"
    write_video(path, frames, fps=25)
    times: list[float] = []
    list(VideoReader(path).frames(times=times))
    np.testing.assert_allclose(times, np.arange(30) / 25, atol=1e-3)
    assert not is_variable_rate(times, 25.0)
    assert clock_times(times, 25.0).tolist() == (np.arange(30) / 25).tolist()     # exactly frame / fps


def test_clock_times_known_values() -> None:
    # fps 10: nominal 0.0, 0.1, 0.2, 0.3. Frame 2 strays by 0.3 s > half a frame: the real clock.
    assert clock_times([0.0, 0.12, 0.5, 0.31], 10.0).tolist() == [0.0, 0.12, 0.5, 0.31]
    # all within half a frame (0.05 s): exactly the nominal times
    assert clock_times([0.0, 0.12, 0.21, 0.31], 10.0).tolist() == [0.0, 0.1, 0.2, 0.3]
    assert clock_times([0.0, 0.12], 10.0, real=True).tolist() == [0.0, 0.12]
    assert clock_times([2.04, 2.1], 10.0, first_index=20).tolist() == [2.0, 2.1]
    assert is_variable_rate([0.0, 0.1, 0.26], 10.0) and not is_variable_rate([0.0, 0.1, 0.24], 10.0)
    assert is_variable_rate([2.0, 2.2], 10.0, first_index=20) and not is_variable_rate([2.0, 2.1], 10.0, 20)
