"""Video reading and writing behind one small interface (PyAV).

Frames are ``uint8`` RGB arrays of shape ``(H, W, 3)``. Resizing happens inside the
decoder (swscale), which is much cheaper than decoding at full size and resizing in
numpy. Every failure becomes a :class:`~patchvad.errors.VideoError` naming the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from patchvad.errors import VideoError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
# Frame folders (UCSD Ped, ShanghaiTech test, Street Scene, Avenue) carry no frame rate.
FRAME_FOLDER_FPS = 25.0


def natural_key(name: str) -> tuple:
    """Sort key that orders ``2.jpg`` before ``10.jpg`` (numbers compared as numbers)."""
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p), p) if p.isdigit() else (1, 0, p.lower()) for p in parts if p != "")


def is_hidden(name: str) -> bool:
    """Dotfiles, including macOS ``._name`` resource forks shipped inside some zips."""
    return name.startswith(".")


def list_frame_files(folder: str | Path) -> list[Path]:
    """Image files of a frame folder in temporal (natural) order.

    Hidden files (``._001.tif``) and non-images (``Thumbs.db``) are skipped: several
    distributions of UCSD Ped1/Ped2 carry them, and counting them would shift every
    frame index after them.
    """
    folder = Path(folder)
    try:
        entries = [p for p in folder.iterdir()
                   if p.suffix.lower() in IMAGE_EXTENSIONS and not is_hidden(p.name) and p.is_file()]
    except OSError as exc:
        raise VideoError(f"cannot list frame folder ({exc.strerror or exc})", path=folder) from exc
    return sorted(entries, key=lambda p: natural_key(p.name))


def image_errors() -> tuple[type[BaseException], ...]:
    """What Pillow raises on a damaged or hostile image file (a decompression bomb included).

    Its decoders raise several types besides ``OSError`` on corrupt input; callers
    catch this tuple and turn it into an error naming the file.
    """
    import struct

    from PIL import Image

    return (OSError, ValueError, SyntaxError, EOFError, TypeError, IndexError, KeyError, struct.error,
            Image.DecompressionBombError)


def _image(path: Path, size: tuple[int, int] | None, gray: bool) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as opened:
            img = opened.convert("L" if gray else "RGB")
            if size is not None and img.size != tuple(size):
                img = img.resize((int(size[0]), int(size[1])), Image.Resampling.BOX)
            return np.asarray(img)
    except image_errors() as exc:
        raise VideoError(f"cannot read frame image ({type(exc).__name__}: {exc})", path=path) from exc


@dataclass(frozen=True)
class VideoInfo:
    """What a video is: ``frame_count`` frames of ``width`` x ``height`` at ``fps``."""

    path: str
    frame_count: int
    fps: float
    width: int
    height: int
    codec: str


def is_live_source(source: str | Path) -> bool:
    """A live or remote source (rtsp://, http://, a /dev/video* camera): not a plain file."""
    return "://" in str(source) or str(source).startswith("/dev/video")


def _open(source: str | Path, options: dict | None = None) -> av.container.InputContainer:
    """Open a container, turning every failure into a VideoError naming the source."""
    if not is_live_source(source):
        path = Path(source)
        if not path.exists():
            raise VideoError("file not found", path=path)
        if path.is_dir():
            raise VideoError("is a folder without images, not a video file", path=path)
        if path.stat().st_size == 0:
            raise VideoError("empty file (0 bytes)", path=path)
    fmt = "v4l2" if str(source).startswith("/dev/video") else None
    try:
        container = av.open(str(source), format=fmt, options=options or {}, timeout=(10.0, 10.0)
                            if is_live_source(source) else None)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"cannot open as a video: {exc}", path=source) from exc
    if not container.streams.video:
        container.close()
        raise VideoError("contains no video stream", path=source)
    return container


def _has_sample_index(container: "av.container.InputContainer") -> bool:
    """True for containers whose header indexes every frame (mp4, mov and relatives)."""
    return not is_live_source(container.name) and "mov" in container.format.name.split(",")


def _count_packets(source: str | Path, options: dict | None = None) -> int:
    """Video packets the file really holds (demuxed, not decoded; data cut off is not counted)."""
    container = _open(source, options)
    count = 0
    try:
        for packet in container.demux(container.streams.video[0]):
            if packet.size > 0:
                count += 1
    except av.error.FFmpegError:
        pass
    finally:
        container.close()
    return count


def _fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        return 25.0
    return float(rate)


def probe(path: str | Path, exact: bool = False) -> VideoInfo:
    """Return frame count, fps and size of a video file.

    Args:
        path: the video file.
        exact: count frames by decoding them all (slow, always right). The default
            counts demuxed video packets, which equals the decoded frame count for
            intra/inter coded streams without dropped packets (everything patchvad
            writes, and the public datasets' mp4/avi files); extraction records the
            decoded count and checks it against this one.

    Raises:
        VideoError: missing, empty, undecodable, or zero frames.
    """
    if not is_live_source(path) and Path(path).is_dir():
        files = list_frame_files(path)
        if not files:
            raise VideoError("frame folder holds no images", path=path)
        first = _image(files[0], None, gray=False)
        return VideoInfo(str(path), len(files), FRAME_FOLDER_FPS, int(first.shape[1]), int(first.shape[0]),
                         "images")
    container = _open(path)
    try:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        codec = stream.codec_context.name
        fps = _fps(stream)
        count = 0
        try:
            if exact:
                stream.thread_type = "AUTO"
                for _ in container.decode(stream):
                    count += 1
            else:
                for packet in container.demux(stream):
                    if packet.size > 0:
                        count += 1
        except av.error.FFmpegError as exc:
            raise VideoError(f"corrupt or truncated after {count} frames: {exc}", path=path) from exc
        if width <= 0 or height <= 0:
            raise VideoError(f"invalid frame size {width}x{height}", path=path)
    finally:
        container.close()
    if count == 0:
        raise VideoError("contains no frames", path=path)
    return VideoInfo(str(path), count, fps, width, height, codec)


def _reformat(frame: "av.VideoFrame", size: tuple[int, int] | None, fmt: str) -> np.ndarray:
    """One decoded frame as an array, resized (area interpolation) when ``size`` is given.

    libswscale runs single-threaded (``threads=1``). PyAV's default (0) starts a
    thread per core for every frame: on a 320x240 frame that cost 1.3x (quiet) to 2.7x
    (loaded) the CPU time of one thread on 2 cores, for identical output
    (benchmarks/extract.py, "resize + RGB (swscale)"), and with one decoder process per
    core (GPU extraction) every process's scaler would spawn a thread per core on top.
    """
    if size is None:
        return frame.reformat(format=fmt, threads=1).to_ndarray()
    return frame.reformat(width=int(size[0]), height=int(size[1]), format=fmt, interpolation="AREA",
                          threads=1).to_ndarray()


class VideoReader:
    """Sequential frame access to one video file, stream, or folder of frame images.

    Example::

        with VideoReader("a.mp4") as reader:
            for frame in reader.frames(size=(224, 224)):   # (224, 224, 3) uint8 RGB
                ...
    """

    def __init__(self, source: str | Path, options: dict | None = None):
        self.source = str(source)
        self._options = options
        self._frame_files: list[Path] | None = None
        if not is_live_source(source) and Path(source).is_dir():
            # A folder of frame images (natural order) reads like a video.
            info = probe(source)
            self._frame_files = list_frame_files(source)
            self.fps, self.width, self.height, self.codec = info.fps, info.width, info.height, info.codec
            return
        container = _open(source, options)
        stream = container.streams.video[0]
        self.fps = _fps(stream)
        self.width = stream.codec_context.width
        self.height = stream.codec_context.height
        self.codec = stream.codec_context.name
        container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def frames(self, size: tuple[int, int] | None = None, gray: bool = False,
               threads: int | None = None, times: list[float] | None = None) -> Iterator[np.ndarray]:
        """Yield every frame in order, resized on decode.

        Args:
            size: ``(width, height)`` to resize to (the whole frame, no crop); None keeps it.
            gray: yield ``(H, W)`` uint8 luma instead of RGB.
            threads: decoder threads (None: FFmpeg chooses; 1 in worker processes).
            times: if given, each frame's presentation time in seconds from the first
                frame is appended to it before the frame is yielded (see
                :meth:`_decoded`); for a frame folder ``index / fps``.

        Yields:
            ``(H, W, 3)`` uint8 RGB (or ``(H, W)`` when ``gray``).

        Raises:
            VideoError: the stream is corrupt or truncated (names the frame index reached).
        """
        if self._frame_files is not None:
            for i, path in enumerate(self._frame_files):
                if times is not None:
                    times.append(i / self.fps)
                yield _image(path, size, gray)
            return
        fmt = "gray" if gray else "rgb24"
        for frame in self._decoded(threads, times):
            yield _reformat(frame, size, fmt)

    def frame_pairs(self, size: tuple[int, int], times: list[float] | None = None
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(native (H, W, 3), resized (h, w, 3))`` RGB pairs from ONE decode.

        The resized frame is made exactly as :meth:`frames` makes it, so features of a
        stream equal features of the same file read offline; the native frame is for
        drawing (overlays of live sources that cannot be read twice). ``times``: as
        in :meth:`frames`.
        """
        if self._frame_files is not None:
            for i, path in enumerate(self._frame_files):
                if times is not None:
                    times.append(i / self.fps)
                yield _image(path, None, False), _image(path, size, False)
            return
        for frame in self._decoded(None, times):
            yield _reformat(frame, None, "rgb24"), _reformat(frame, size, "rgb24")

    def _decoded(self, threads: int | None, times: list[float] | None = None) -> Iterator["av.VideoFrame"]:
        """Decoded PyAV frames of the source; every failure becomes a VideoError.

        A file whose sample index (mp4 / mov) lists more frames than its data holds was
        cut short (an interrupted copy or download): FFmpeg just stops at the end of the
        data, so this is checked here and raised as a VideoError after the last frame.

        ``times`` receives each frame's presentation time, ``(pts - first pts) x
        time_base`` seconds: the real clock of a variable-frame-rate video (cameras that
        drop frames, screen recordings), where ``index / fps`` drifts. A frame without a
        timestamp, or one that does not move forward (broken muxing), gets the previous
        time plus one average frame duration.
        """
        container = _open(self.source, self._options)
        index = 0
        declared = 0
        first_pts: int | None = None
        previous = -1.0
        try:
            stream = container.streams.video[0]
            if _has_sample_index(container):
                declared = int(stream.frames or 0)
            if threads == 1:
                stream.codec_context.thread_count = 1
            else:
                stream.thread_type = "AUTO"
                if threads:
                    stream.codec_context.thread_count = int(threads)
            for frame in container.decode(stream):
                if times is not None:
                    t = None
                    if frame.pts is not None and frame.time_base is not None:
                        first_pts = frame.pts if first_pts is None else first_pts
                        t = float((frame.pts - first_pts) * frame.time_base)
                    if t is None or t <= previous:
                        t = previous + 1.0 / self.fps if index else 0.0
                    times.append(t)
                    previous = t
                yield frame
                index += 1
        except av.error.FFmpegError as exc:
            raise VideoError(f"corrupt, truncated or dropped: decoding failed after {index} frames ({exc})",
                             path=self.source) from exc
        finally:
            container.close()
        if index == 0:
            raise VideoError("contains no frames", path=self.source)
        if index < declared:
            present = _count_packets(self.source, self._options)
            if present < declared:
                raise VideoError(f"truncated: its index lists {declared} frames but the file holds data for "
                                 f"{present} ({index} decoded)", path=self.source)

    def read_all(self, size: tuple[int, int] | None = None, gray: bool = False) -> np.ndarray:
        """All frames as one array ``(F, H, W, 3)`` (or ``(F, H, W)``). For short videos."""
        return np.stack(list(self.frames(size=size, gray=gray)))


def clock_times(times: Sequence[float], fps: float, first_index: int = 0, real: bool | None = None
                ) -> np.ndarray:
    """Times in seconds to report for frames ``first_index, first_index + 1, ...``.

    The presentation ``times`` when the video is variable-rate (some time differs
    from ``index / fps`` by more than half a frame: a camera that drops frames or
    slows down at night), else the nominal ``index / fps`` exactly (a constant-rate
    video's timestamps give the same up to rounding). ``real`` forces the choice
    (streaming decides once it has seen a stray frame).
    """
    t = np.asarray(times, dtype=np.float64)
    nominal = (first_index + np.arange(len(t))) / fps
    if real is None:
        real = is_variable_rate(t, fps, first_index)
    return t if real else nominal


def is_variable_rate(times: Sequence[float] | np.ndarray, fps: float, first_index: int = 0) -> bool:
    """True when some presentation time strays from ``index / fps`` by more than half a frame.

    ``times`` are those of frames ``first_index, first_index + 1, ...``.
    """
    if len(times) == 0 or fps <= 0:
        return False
    t = np.asarray(times, dtype=np.float64)
    return bool(np.abs(t - (first_index + np.arange(len(t))) / fps).max() > 0.5 / fps)


def rgb_to_yuv420p(frame: np.ndarray) -> np.ndarray:
    """Convert an ``(H, W, 3)`` uint8 RGB frame (H and W even) to yuv420p.

    Returns ``(H * 3 // 2, W)`` uint8: the Y plane, then U and V (each H/2 x W/2)
    flattened one after the other, the layout ``av.VideoFrame.from_ndarray`` takes.
    BT.601 limited range ("studio swing", what decoders assume for untagged SD
    video) in integer arithmetic, chroma from the sum of each 2x2 block. Done here,
    not by libswscale, because swscale's x86 SIMD kernels differ between CPUs and
    can read past a row's end, which made the encoded bytes depend on the process;
    this conversion depends only on the pixels.
    """
    h, w = frame.shape[:2]
    planes = np.empty((3, h, w), dtype=np.int16)
    # One pass de-interleaves and widens; the arithmetic then reads contiguous planes.
    np.copyto(planes, np.asarray(frame).transpose(2, 0, 1), casting="safe")
    return rgb_planes_to_yuv420p(planes)


def rgb_planes_to_yuv420p(planes: np.ndarray) -> np.ndarray:
    """:func:`rgb_to_yuv420p` of planar RGB: ``(3, H, W)`` int16 in [0, 255], H and W even.

    For callers that already hold widened planes (the synthetic renderer adds its
    sensor noise in int16 and clips there). Values outside [0, 255] are not checked.

    Returns:
        ``(H * 3 // 2, W)`` uint8 yuv420p, the same bytes as :func:`rgb_to_yuv420p`.
    """
    _, h, w = planes.shape
    out = np.empty(h * w * 3 // 2, dtype=np.uint8)
    # Luma in uint16 (halves the memory traffic of int32): 66R + 129G + 25B + 128 is at
    # most 56,228, so it cannot wrap; in-place steps avoid temporaries.
    p16 = planes.view(np.uint16)
    y = np.multiply(p16[0], np.uint16(66))
    tmp = np.multiply(p16[1], np.uint16(129))
    y += tmp
    np.multiply(p16[2], np.uint16(25), out=tmp)
    y += tmp
    y += np.uint16(128)
    y >>= 8
    y += np.uint16(16)
    out[:h * w].reshape(h, w)[...] = y
    # Chroma from the sum of each 2x2 block (at most 1020, fits int16), then int32.
    rows = planes[:, 0::2] + planes[:, 1::2]
    sums = (rows[:, :, 0::2] + rows[:, :, 1::2]).astype(np.int32)
    qr, qg, qb = sums[0], sums[1], sums[2]
    u = -38 * qr
    u -= 74 * qg
    u += 112 * qb
    v = 112 * qr
    v -= 94 * qg
    v -= 18 * qb
    quarter = h * w // 4
    for plane, start in ((u, h * w), (v, h * w + quarter)):
        plane += 512                                       # round, then >> 10 divides by 4 * 256
        plane >>= 10
        plane += 128
        out[start:start + quarter] = plane.ravel()
    return out.reshape(h * 3 // 2, w)


class VideoWriter:
    """Write RGB frames to an H.264 mp4 (yuv420p, plays in browsers), atomically.

    Frames go to a temporary file beside the target, renamed into place by
    :meth:`close`; a crash mid-way leaves no partial file under the final name.
    Odd sizes are padded to even (H.264 4:2:0 needs even dimensions).
    ``threads=1`` makes the bytes depend only on the frames (x264's output differs
    with its thread count); the default lets x264 choose.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], crf: int = 23,
                 preset: str = "veryfast", threads: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.width, self.height = int(size[0]), int(size[1])
        if self.width < 1 or self.height < 1:
            raise VideoError(f"invalid frame size {self.width}x{self.height}", path=path)
        self._even_w = self.width + (self.width % 2)
        self._even_h = self.height + (self.height % 2)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".tmp.mp4", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self.frame_count = 0
        try:
            # faststart: the index goes first, so a browser can play the file while it loads.
            self._container: av.container.OutputContainer | None = av.open(
                str(self._tmp), mode="w", format="mp4", options={"movflags": "faststart"})
            rate = Fraction(fps).limit_denominator(1001)
            self._stream = self._container.add_stream("libx264", rate=rate)
            self._stream.width = self._even_w
            self._stream.height = self._even_h
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(crf), "preset": preset, "bf": "0",
                                    **({"threads": str(threads)} if threads else {})}
            if threads:
                self._stream.codec_context.thread_count = int(threads)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            self._tmp.unlink(missing_ok=True)
            raise VideoError(f"cannot create H.264 writer: {exc}", path=path) from exc

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frame: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame (or ``(H, W)`` gray)."""
        frame = np.asarray(frame)
        if frame.ndim == 2:
            frame = np.repeat(frame[:, :, None], 3, axis=2)
        if frame.shape[0] != self.height or frame.shape[1] != self.width:
            raise VideoError(f"frame of size {frame.shape[1]}x{frame.shape[0]} does not match the "
                             f"writer's {self.width}x{self.height}", path=self.path)
        if frame.dtype != np.uint8:
            frame = np.clip(frame, 0, 255).astype(np.uint8)
        if self._even_w != self.width or self._even_h != self.height:
            frame = np.pad(frame, ((0, self._even_h - self.height), (0, self._even_w - self.width), (0, 0)),
                           mode="edge")
        self.write_yuv420p(rgb_to_yuv420p(frame))

    def write_yuv420p(self, planes: np.ndarray) -> None:
        """Append one frame already converted to yuv420p.

        ``planes`` is ``(H * 3 // 2, W)`` uint8 as :func:`rgb_to_yuv420p` returns it, H and
        W the writer's size padded to even. The array is handed to the encoder without a copy and must not be changed
        afterwards (x264 takes its own copy while encoding; a fresh array per frame, as
        the converters return, is always safe).
        """
        expected = (self._even_h * 3 // 2, self._even_w)
        if planes.dtype != np.uint8 or planes.shape != expected:
            raise VideoError(f"a yuv420p frame of this writer is uint8 of shape {expected}; got "
                             f"{planes.dtype} of shape {planes.shape}", path=self.path)
        if not planes.flags["C_CONTIGUOUS"]:
            # The encoder reads the planes straight from the array's memory.
            raise VideoError("a yuv420p frame must be a C-contiguous array (np.ascontiguousarray)", path=self.path)
        vf = av.VideoFrame.from_numpy_buffer(planes, format="yuv420p")
        container = self._container
        if container is None:
            raise VideoError(f"writing frame {self.frame_count} failed: the writer is closed", path=self.path)
        try:
            for packet in self._stream.encode(vf):
                container.mux(packet)
        except (av.error.FFmpegError, OSError) as exc:
            self.abort()
            raise VideoError(f"writing frame {self.frame_count} failed: {exc}", path=self.path) from exc
        self.frame_count += 1

    def close(self) -> None:
        """Flush the encoder and move the finished file into place."""
        if self._container is None:
            return
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        except (av.error.FFmpegError, OSError) as exc:
            self.abort()
            raise VideoError(f"finishing the video failed: {exc}", path=self.path) from exc
        self._container = None
        if self.frame_count == 0:
            self._tmp.unlink(missing_ok=True)
            raise VideoError("no frames were written", path=self.path)
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the partial file; the target path is left untouched."""
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        self._tmp.unlink(missing_ok=True)


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float, crf: int = 23) -> int:
    """Write frames (each ``(H, W, 3)`` uint8 RGB) to an H.264 mp4; returns the frame count."""
    writer: VideoWriter | None = None
    try:
        for frame in frames:
            if writer is None:
                writer = VideoWriter(path, fps, (frame.shape[1], frame.shape[0]), crf=crf)
            writer.write(frame)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is None:
        raise VideoError("no frames to write", path=path)
    writer.close()
    return writer.frame_count
