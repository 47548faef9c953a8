"""Inference: a checkpoint + patch features -> frame scores, maps, boxes, tracks.

Per video (docs/method.md, "Inference"):

* patch scores ``s[t, i, j]`` for ALL snippets (no temporal resampling);
* snippet score ``f[t]``: the method's selection (proximity-weighted top-k for the
  proximity model) around snippet t's own peak; frame scores through the stored
  frame <-> snippet map (``SnippetMap.to_frames``);
* one box per snippet, given to each of its frames: the map upsampled bilinearly
  (at most ``upsample`` pixels per cell), pixels ``>= max(abs_thr, rel_thr * peak)``
  (``rel_thr * peak`` alone when the peak is below ``abs_thr``), the 8-connected
  component holding the peak, its tight box in frame pixels, scored by ``f[t]``.
  Video-level methods box the whole frame;
* tracks: boxes of consecutive snippets linked when their IoU >= ``link_iou``.

``test(ckpt, data_root, features, out)`` writes the predictions folder
(docs/data-format.md, "The predictions folder"; ``patchvad.predictions.write_prediction``)
of the test split, plus ``PRED/<stem>/tracks.csv``
(``track_id,frame_id,x_min,y_min,x_max,y_max,score``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from patchvad.data.folder import DatasetFolder
from patchvad.errors import FeatureError
from patchvad.features.store import FeatureStore, VideoFeatures
from patchvad.geometry import chain_snippet_boxes
from patchvad.io.files import atomic_write_json, atomic_write_text, one_sync
from patchvad.model.encoding_cache import EncodingCache, maybe_cache
from patchvad.model.model import AnomalyModel, load_model
from patchvad.model.selection import snippet_scores
from patchvad.model.selections import SelectionConfig
from patchvad.predictions import VideoPrediction, write_prediction

TRACKS_FILE = "tracks.csv"


@dataclass(frozen=True)
class BoxConfig:
    """How boxes are cut from a map.

    Attributes:
        abs_thr, rel_thr: threshold ``max(abs_thr, rel_thr * peak)``.
        upsample: pixels per cell of the bilinear map (0: whole cells).
        link_iou: IoU that links boxes of consecutive snippets into a track.
    """

    abs_thr: float = 0.5
    rel_thr: float = 0.5
    upsample: int = 16
    link_iou: float = 0.3


def box_from_map(m: np.ndarray | torch.Tensor, frame_size: tuple[int, int], cfg: BoxConfig = BoxConfig()
                 ) -> tuple[int, int, int, int]:
    """Tight box ``(x1, y1, x2, y2)`` (inclusive frame pixels) of the peak's component.

    Args:
        m: ``(Gh, Gw)`` patch scores of one snippet.
        frame_size: ``(W, H)`` of the video.
        cfg: the thresholds and the upsampling.
    """
    return boxes_from_maps(np.asarray(m, dtype=np.float32)[None], frame_size, cfg)[0]


def boxes_from_maps(maps: np.ndarray, frame_size: tuple[int, int], cfg: BoxConfig = BoxConfig()
                    ) -> list[tuple[int, int, int, int]]:
    """:func:`box_from_map` of every snippet of ``maps`` ``(T, Gh, Gw)`` (one upsampling call for all)."""
    w_img, h_img = int(frame_size[0]), int(frame_size[1])
    m = torch.as_tensor(np.asarray(maps, dtype=np.float32))
    _, gh, gw = m.shape
    if cfg.upsample > 0:
        oh, ow = min(h_img, cfg.upsample * gh), min(w_img, cfg.upsample * gw)
        ups = F.interpolate(m[:, None], size=(oh, ow), mode="bilinear", align_corners=False)[:, 0].numpy()
    else:
        oh, ow = gh, gw
        ups = m.numpy()
    structure = np.ones((3, 3), dtype=bool)
    boxes = []
    for up in ups:
        peak = float(up.max())
        thr = max(cfg.abs_thr, cfg.rel_thr * peak) if peak >= cfg.abs_thr else cfg.rel_thr * peak
        mask = up >= thr
        pi, pj = np.unravel_index(int(np.argmax(up)), up.shape)
        mask[pi, pj] = True
        lab, _ = ndimage.label(mask, structure=structure)
        # The bounding slices of the peak's component (labels are 1-based).
        rows, cols = ndimage.find_objects(lab, max_label=int(lab[pi, pj]))[int(lab[pi, pj]) - 1]
        r0, r1, c0, c1 = rows.start, rows.stop - 1, cols.start, cols.stop - 1
        x1 = int(np.floor(c0 * w_img / ow))
        x2 = int(np.ceil((c1 + 1) * w_img / ow)) - 1
        y1 = int(np.floor(r0 * h_img / oh))
        y2 = int(np.ceil((r1 + 1) * h_img / oh)) - 1
        boxes.append((x1, y1, min(x2, w_img - 1), min(y2, h_img - 1)))
    return boxes


@torch.no_grad()
def patch_scores(model: AnomalyModel, features: VideoFeatures, chunk: int = 256,
                 cache: EncodingCache | None = None) -> np.ndarray:
    """``(T, Gh, Gw)`` float32 patch scores of all snippets of one video.

    Long videos are scored in chunks of ``chunk`` snippets with a halo of the temporal
    receptive field, so the result equals scoring the whole video at once. ``cache``:
    an encoding cache the encoded video is read from or added to.
    """
    t_len, gh, gw = features.x.shape[:3]
    fixed = model.impl.input_free_scores(model, features.stem, (t_len, gh, gw))
    if fixed is not None:
        return fixed
    device = model.encoder.prior_scale.device
    enc = model.encoder.encode(features.x) if cache is None else cache.encode(model.encoder, features)
    halo = sum(int(d) for d in model.config.model.temporal_dilations) + 1
    out = np.empty((t_len, gh, gw), dtype=np.float32)
    for t0 in range(0, t_len, chunk):
        lo, hi = max(0, t0 - halo), min(t_len, t0 + chunk + halo)
        s = model.scores(enc[lo:hi][None].to(device))[0]
        out[t0:min(t_len, t0 + chunk)] = s[t0 - lo:t0 - lo + min(chunk, t_len - t0)].float().cpu().numpy()
    return out


def predict_video(model: AnomalyModel, features: VideoFeatures, box_cfg: BoxConfig = BoxConfig(),
                  cache: EncodingCache | None = None) -> VideoPrediction:
    """Frame scores, maps, boxes and tracks of one video (see the module docstring).

    ``cache``: an encoding cache for the encoded video (:func:`patch_scores`).
    """
    model.eval()
    maps = patch_scores(model, features, cache=cache)
    width = int(features.record.get("width", 0))
    height = int(features.record.get("height", 0))
    if width < 1 or height < 1:
        raise FeatureError(f"feature record of '{features.stem}' lacks the frame size (width/height)")
    return prediction_from_maps(maps, features.snippets.frame_to_snippet, (width, height), model.selection,
                                box_cfg, video_level=model.is_video_level)


def prediction_from_maps(maps: np.ndarray, frame_to_snippet: np.ndarray, size: tuple[int, int],
                         selection: SelectionConfig, box_cfg: BoxConfig = BoxConfig(), video_level: bool = False
                         ) -> VideoPrediction:
    """Everything a prediction holds, from the patch maps of one video.

    Args:
        maps: ``(T, Gh, Gw)`` patch scores.
        frame_to_snippet: ``(F,)`` the snippet each frame takes its score from.
        size: ``(width, height)`` of the frames (boxes are in their pixels).
        selection: the model's selection rule and settings (the snippet scores are made
            exactly as training's bag scores are made).
        box_cfg: how boxes are cut from the maps and linked into tracks.
        video_level: whole-frame boxes and the map's single value as the score.
    """
    maps = np.asarray(maps, dtype=np.float32)
    t_len = maps.shape[0]
    width, height = int(size[0]), int(size[1])
    if video_level:
        f = maps[:, 0, 0].copy()
    else:
        f = snippet_scores(torch.from_numpy(maps), selection).numpy()
    f = f.astype(np.float32)
    f2s = np.asarray(frame_to_snippet, dtype=np.int64)
    frame_scores = f[f2s].astype(np.float32)
    if video_level:
        sboxes = [(0, 0, width - 1, height - 1)] * t_len
    else:
        sboxes = boxes_from_maps(maps, (width, height), box_cfg)
    track_of = chain_snippet_boxes(sboxes, box_cfg.link_iou)
    frames = np.arange(f2s.shape[0])
    sb = np.asarray(sboxes, dtype=np.float64)[f2s]                 # (F, 4)
    boxes = np.column_stack([frames, sb, f[f2s].astype(np.float64)])
    tracks = np.column_stack([np.asarray(track_of)[f2s], boxes])
    return VideoPrediction(frame_scores=frame_scores, snippet_scores=f, maps=maps, boxes=boxes, tracks=tracks,
                           frame_to_snippet=f2s)


def write_tracks(folder: Path, tracks: np.ndarray) -> Path:
    """``tracks.csv``: ``track_id,frame_id,x_min,y_min,x_max,y_max,score``."""
    lines = ["track_id,frame_id,x_min,y_min,x_max,y_max,score"]
    lines += [f"{int(r[0])},{int(r[1])},{int(r[2])},{int(r[3])},{int(r[4])},{int(r[5])},{float(r[6])!r}"
              for r in tracks]
    target = Path(folder) / TRACKS_FILE
    atomic_write_text(target, "\n".join(lines) + "\n")
    return target


@dataclass
class TestResult:
    """Outcome of :func:`test`: the predictions folder, video count and speed."""

    out: Path
    videos: int
    snippets: int
    seconds: float

    @property
    def snippets_per_second(self) -> float:
        """Snippets scored per second of model time."""
        return self.snippets / max(self.seconds, 1e-9)


def test(ckpt: str | Path, data_root: str | Path, features: str | Path, out: str | Path,
         box_cfg: BoxConfig = BoxConfig(), log=None, encoding_cache: str | Path | None = None) -> TestResult:
    """Predict every TEST video of ``data_root`` and write the predictions folder ``out``.

    ``encoding_cache``: a folder shared with other tests (and fits) of the same
    experiment: a model with the same normaliser reads the encoded test videos from it
    (:mod:`patchvad.model.encoding_cache`).
    """
    cache = maybe_cache(encoding_cache)
    store = FeatureStore(features)
    model = load_model(ckpt, store.spec)
    test_set = DatasetFolder(data_root, check_files=False).test_set()
    have = set(store.finished())
    missing = [e.stem for e in test_set if e.stem not in have]
    if missing:
        raise FeatureError(f"{len(missing)} test video(s) have no features (first: {missing[:3]})", path=store.path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_snip, seconds = 0, 0.0
    with one_sync():                     # inference.json, written after, is the completion marker
        for e in test_set:
            feats = store.load(e.stem, mmap=True)
            t0 = time.perf_counter()
            pred = predict_video(model, feats, box_cfg, cache=cache)
            seconds += time.perf_counter() - t0
            assert pred.maps is not None and pred.tracks is not None        # prediction_from_maps sets both
            n_snip += pred.maps.shape[0]
            folder = write_prediction(out, e.stem, pred.frame_scores, pred.boxes, pred.maps, pred.frame_to_snippet)
            write_tracks(folder, pred.tracks)
    atomic_write_json(out / "inference.json", {"checkpoint": str(ckpt), "method": model.method,
                                               "selection": model.selection.to_record(),
                                               "videos": len(test_set), "snippets": n_snip,
                                               "seconds": seconds, "snippets_per_second": n_snip / max(seconds, 1e-9)})
    if log:
        log(f"predicted {len(test_set)} videos ({n_snip} snippets, {n_snip / max(seconds, 1e-9):.0f} snippets/s)")
    return TestResult(out=out, videos=len(test_set), snippets=n_snip, seconds=seconds)


def test_command(ckpt: str | Path | argparse.Namespace, data: str | Path | None = None,
                 features: str | Path | None = None, out: str | Path | None = None) -> TestResult:
    """Body of ``patchvad test``: predict the test split, print one summary line.

    Accepts the paths directly or an ``argparse.Namespace`` with ``ckpt``, ``data``,
    ``features`` and ``out``.
    """
    import sys
    if isinstance(ckpt, argparse.Namespace):
        a = ckpt
        ckpt, data, features, out = a.ckpt, a.data, a.features, a.out
    if isinstance(ckpt, argparse.Namespace) or data is None or features is None or out is None:
        raise TypeError("test_command takes the paths ckpt, data, features and out, or one Namespace holding them")
    res = test(ckpt, data, features, out, log=lambda m: print(m, file=sys.stderr))
    print(f"{res.out}  ({res.videos} videos, {res.snippets_per_second:.0f} snippets/s)")
    return res


test.__test__ = False  # type: ignore[attr-defined]  # not a pytest test function; pytest reads the flag
__all__ = ["BoxConfig", "TestResult", "VideoPrediction", "box_from_map", "boxes_from_maps",
           "patch_scores", "predict_video", "prediction_from_maps", "test", "test_command",
           "write_tracks"]
