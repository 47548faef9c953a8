"""Area 2: broken and unusual video files give a clear per-file error or a correct result.

Every case is a real file made here: truncated mp4s, a zero-byte file, a text file and
an image behind a video extension, containers without frames, a variable frame rate,
1x1 and 4000x3000 frames, grey video, a video shorter than one snippet. A "correct
result" is checked against a known answer (the features of the same pixels read from
a plain file, or built by hand from the padding rule). A batch (``extract`` of a
dataset folder, ``predict`` of a folder) goes on past each bad file and lists it at
the end.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from patchvad.data.folder import write_manifest
from patchvad.errors import VideoError
from patchvad.features.backbones import PatchFeatureExtractor
from patchvad.features.extract import extract_video
from patchvad.features.store import FeatureStore
from patchvad.io.video import write_video

from .helpers import SMALL_ARGS, SMALL_SPEC, patchvad, smooth_frames, write_raw_video

W, H = 96, 64


@pytest.fixture(scope="module")
def extractor() -> PatchFeatureExtractor:
    return PatchFeatureExtractor(**SMALL_SPEC)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """One file per case, in one folder (the batch runs take the whole folder)."""
    d = tmp_path_factory.mktemp("videos")
    frames = smooth_frames(40, W, H)
    good = d / "good.mp4"
    write_video(good, frames, fps=25)
    data = good.read_bytes()
    out = {"good": good}
    out["truncated"] = d / "truncated.mp4"
    out["truncated"].write_bytes(data[: int(len(data) * 0.6)])      # index up front (faststart), data cut
    out["truncated_header"] = d / "truncated_header.mp4"
    out["truncated_header"].write_bytes(data[:200])
    out["zero_bytes"] = d / "zero_bytes.mp4"
    out["zero_bytes"].write_bytes(b"")
    out["text_as_mp4"] = d / "text_as_mp4.mp4"
    out["text_as_mp4"].write_text("this is not a video\n" * 40)
    out["mp4_as_avi"] = d / "mp4_as_avi.avi"
    out["mp4_as_avi"].write_bytes(data)
    from PIL import Image

    Image.fromarray(frames[5]).save(d / "frame.png")
    out["png_as_mp4"] = d / "png_as_mp4.mp4"
    out["png_as_mp4"].write_bytes((d / "frame.png").read_bytes())
    (d / "frame.png").unlink()
    out["no_frames_mp4"] = write_raw_video(d / "no_frames_mp4.mp4", [], fmt="mp4", codec="libx264", pix_fmt="yuv420p")
    out["no_frames_avi"] = write_raw_video(d / "no_frames_avi.avi", [], fmt="avi", codec="mpeg4", pix_fmt="yuv420p")
    # Lossless (FFV1) files decode to exactly the frames written: their features are a known answer.
    out["cfr"] = write_raw_video(d / "cfr.mkv", frames[:30], fmt="matroska", codec="ffv1", pix_fmt="bgr0")
    pts = np.cumsum([0] + [40, 80, 20, 120, 40, 33, 200, 40, 40, 40] * 3)[:30].tolist()
    out["vfr"] = write_raw_video(d / "vfr.mkv", frames[:30], fmt="matroska", codec="ffv1", pix_fmt="bgr0",
                                 pts_ms=pts)
    grey = [f[..., 1] for f in frames[:20]]
    out["grey"] = write_raw_video(d / "grey.mkv", grey, fmt="matroska", codec="ffv1", pix_fmt="gray")
    out["grey_as_rgb"] = write_raw_video(d / "grey_as_rgb.mkv", [np.repeat(g[..., None], 3, 2) for g in grey],
                                         fmt="matroska", codec="ffv1", pix_fmt="bgr0")
    out["one_pixel"] = write_raw_video(d / "one_pixel.mkv", [f[:1, :1] for f in frames[:20]], fmt="matroska",
                                       codec="ffv1", pix_fmt="bgr0")
    out["huge"] = write_raw_video(d / "huge.mp4", smooth_frames(3, 4000, 3000), fmt="mp4", codec="libx264",
                                  pix_fmt="yuv420p")
    out["short"] = write_raw_video(d / "short.mkv", frames[:3], fmt="matroska", codec="ffv1", pix_fmt="bgr0")
    out["one_frame"] = write_raw_video(d / "one_frame.mkv", frames[:1], fmt="matroska", codec="ffv1",
                                       pix_fmt="bgr0")
    return out


BAD = {  # case -> what the per-file error says
    "truncated": "truncated: its index lists 40 frames",
    "truncated_header": "no video stream|cannot open",
    "zero_bytes": "empty file",
    "text_as_mp4": "cannot open as a video",
    "no_frames_mp4": "no video stream|no frames",
    "no_frames_avi": "no frames",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_gives_a_clear_error_naming_it(files: dict[str, Path], extractor, case: str) -> None:
    with pytest.raises(VideoError, match=BAD[case]) as err:
        extract_video(files[case], extractor)
    assert str(err.value).startswith(f"{files[case]}: ")


def test_truncated_file_streams_its_whole_snippets(files: dict[str, Path], floor_ckpt: Path, tmp_path: Path) -> None:
    from patchvad.predict import Detector, stream_to_folder

    det = stream_to_folder(Detector(floor_ckpt), str(files["truncated"]), tmp_path, overlay=False,
                           echo=lambda m: None)
    record = json.loads((tmp_path / "truncated" / "events.json").read_text())
    assert record["status"] == "stream_lost" and "truncated" in record["error"]
    assert det.frame_count == record["frame_count"] and det.frame_count % 8 == 0 and det.frame_count < 40


def test_same_pixels_give_the_same_features_whatever_the_file(files: dict[str, Path], extractor) -> None:
    """Wrong extension, variable frame rate, grey pixels: decoded like the plain file."""
    mp4, _, facts = extract_video(files["good"], extractor)
    as_avi, _, facts_avi = extract_video(files["mp4_as_avi"], extractor)
    np.testing.assert_array_equal(as_avi, mp4)
    assert facts_avi == facts
    cfr, cfr_map, _ = extract_video(files["cfr"], extractor)
    vfr, vfr_map, vfr_facts = extract_video(files["vfr"], extractor)
    np.testing.assert_array_equal(vfr, cfr)
    assert vfr_facts["frame_count"] == 30 and vfr_map.to_dict() == cfr_map.to_dict()
    grey, _, grey_facts = extract_video(files["grey"], extractor)
    np.testing.assert_array_equal(grey, extract_video(files["grey_as_rgb"], extractor)[0])
    assert grey_facts["frame_count"] == 20


def test_image_behind_a_video_extension_is_a_one_frame_video(files: dict[str, Path], extractor) -> None:
    feats, snippets, facts = extract_video(files["png_as_mp4"], extractor)
    assert facts["frame_count"] == 1 and (facts["width"], facts["height"]) == (W, H)
    assert feats.shape == (1, 4, 4, extractor.spec.dim) and snippets.num_snippets == 1


@pytest.mark.parametrize("case,n", [("short", 3), ("one_frame", 1)])
def test_video_shorter_than_a_snippet_is_padded(files: dict[str, Path], extractor, case: str, n: int) -> None:
    from patchvad.io.video import VideoReader

    feats, snippets, facts = extract_video(files[case], extractor)
    assert facts["frame_count"] == n and snippets.num_snippets == 1 and snippets.frame_to_snippet.tolist() == [0] * n
    frames = list(VideoReader(files[case]).frames(size=(64, 64)))
    padded = np.stack(frames + [frames[-1]] * (8 - n))[None]        # the last frame repeated (docs/features.md)
    np.testing.assert_array_equal(feats, extractor(padded))


def test_odd_frame_sizes_predict_with_overlay(files: dict[str, Path], floor_ckpt: Path, tmp_path: Path) -> None:
    """1x1 and 4000x3000 frames: scores, boxes inside the frame, a playable overlay."""
    from patchvad.io.video import probe
    from patchvad.predict import Detector, write_detection

    detector = Detector(floor_ckpt)
    for case, (w, h, n) in {"one_pixel": (1, 1, 20), "huge": (4000, 3000, 3)}.items():
        det = detector.predict(files[case])
        assert (det.width, det.height, det.frame_count) == (w, h, n)
        assert np.isfinite(det.frame_scores).all()
        boxes = det.boxes[:, 1:5]
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w - 1).all() and (boxes[:, 3] <= h - 1).all()
        folder = write_detection(det, tmp_path)
        assert probe(folder / "overlay.mp4").frame_count == n


@pytest.mark.slow
def test_extract_batch_goes_on_and_lists_the_bad_files(files: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "data"
    rows = []
    for case in ("good", "truncated", "zero_bytes", "text_as_mp4", "no_frames_avi", "grey", "vfr", "short",
                 "one_pixel"):
        target = root / "videos" / files[case].name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[case].read_bytes())
        rows.append({"video": f"videos/{target.name}", "split": "train", "label": 0})
    # A manifest that promises more frames than the file holds: refused, not silently short.
    rows.append({"video": "videos/cfr.mkv", "split": "train", "label": 1, "frames": 50, "width": W, "height": H})
    (root / "videos" / "cfr.mkv").write_bytes(files["cfr"].read_bytes())
    write_manifest(root, rows)
    result = patchvad("extract", root, "--out", tmp_path / "feats", *SMALL_ARGS, check=False)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "extracted 5 videos" in result.stdout and "5 failed" in result.stdout
    failed = {line.split()[1].rstrip(":"): line for line in result.stdout.splitlines() if "FAILED" in line}
    assert sorted(failed) == ["cfr", "no_frames_avi", "text_as_mp4", "truncated", "zero_bytes"]
    assert "decoded 30 frames but the manifest says 50" in failed["cfr"]
    assert "truncated" in failed["truncated"] and "empty file" in failed["zero_bytes"]
    assert sorted(FeatureStore(tmp_path / "feats").finished()) == ["good", "grey", "one_pixel", "short", "vfr"]


def test_predict_batch_goes_on_and_lists_the_bad_files(files: dict[str, Path], floor_ckpt: Path,
                                                       tmp_path: Path) -> None:
    from patchvad.predict import predict_command

    folder = tmp_path / "in"
    folder.mkdir()
    cases = ("good", "truncated", "zero_bytes", "text_as_mp4", "no_frames_mp4", "one_pixel", "short")
    for case in cases:
        (folder / files[case].name).write_bytes(files[case].read_bytes())
    lines: list[str] = []
    report = predict_command(str(folder), floor_ckpt, tmp_path / "out", overlay=False, echo=lines.append)
    assert sorted(d.stem for d in report.done) == ["good", "one_pixel", "short"]
    assert sorted(Path(p).stem for p in report.failed) == ["no_frames_mp4", "text_as_mp4", "truncated", "zero_bytes"]
    summary = lines[lines.index(next(x for x in lines if x.startswith("predicted "))):]
    assert summary[0].endswith("4 failed") and len(summary) == 5       # the failures listed at the end
    assert all(line.startswith("  FAILED ") for line in summary[1:])
    for src, why in report.failed.items():
        assert why.startswith(f"{src}: ") and "\n" not in why
    recorded = json.loads((tmp_path / "out" / "predict.json").read_text())
    assert sorted(recorded["videos"]) == ["good", "one_pixel", "short"] and len(recorded["failed"]) == 4


def test_same_stem_twice_in_a_batch_is_refused(files: dict[str, Path], floor_ckpt: Path, tmp_path: Path) -> None:
    """``a.mp4`` and ``a.avi`` would write one output folder: the second fails instead of overwriting."""
    from patchvad.predict import predict_command

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "clip.avi").write_bytes(files["mp4_as_avi"].read_bytes())
    (folder / "clip.mp4").write_bytes(files["short"].read_bytes())
    report = predict_command(str(folder), floor_ckpt, tmp_path / "out", overlay=False, echo=lambda m: None)
    assert [d.source for d in report.done] == [str(folder / "clip.avi")]
    second = str(folder / "clip.mp4")
    assert list(report.failed) == [second] and "stem 'clip'" in report.failed[second]
    assert json.loads((tmp_path / "out" / "clip" / "events.json").read_text())["frame_count"] == 40


def test_unexpected_exception_in_one_video_does_not_stop_the_batch(files, floor_ckpt: Path, tmp_path: Path,
                                                                   extractor, monkeypatch) -> None:
    """A bug hit by one input (any exception type) fails that input only, named and reported."""
    from patchvad.features import extract as extract_module
    from patchvad.predict import predict_command

    real = extract_module.extract_video

    def flaky(source, *args, **kwargs):
        if Path(source).stem == "short":
            raise IndexError("a decoder bug")
        return real(source, *args, **kwargs)

    monkeypatch.setattr(extract_module, "extract_video", flaky)
    folder = tmp_path / "in"
    folder.mkdir()
    for case in ("good", "short"):
        (folder / files[case].name).write_bytes(files[case].read_bytes())
    report = predict_command(str(folder), floor_ckpt, tmp_path / "out", overlay=False, echo=lambda m: None)
    assert [d.stem for d in report.done] == ["good"]
    assert report.failed == {str(folder / "short.mkv"): f"{folder / 'short.mkv'}: IndexError: a decoder bug"}
    # The same in a dataset extraction: the run goes on and reports it.
    write_manifest(folder, [{"video": "short.mkv", "split": "train", "label": 0},
                            {"video": "good.mp4", "split": "train", "label": 1}])
    extracted = extract_module.extract_dataset(folder, tmp_path / "feats", extractor=extractor, progress=False)
    assert extracted.done == ["good"]
    assert extracted.failed == {"short": f"{folder / 'short.mkv'}: IndexError: a decoder bug"}
