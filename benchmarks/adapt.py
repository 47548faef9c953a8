"""What ``patchvad adapt`` refits, measured: false alarms on a real camera, detection on a toy one.

Part 1, vtest.avi (real pedestrians, 768x576 at 10 fps, nothing anomalous): the video is
cut into its first half (frames 0-397) and second half (398-794) with the project's
VideoWriter (H.264, crf 18); each checkpoint is adapted on one half and scored on the
other, for every variant below. Printed: the threshold, the target half's highest
frame score, and the fraction of the target's frames inside an event (events as
``patchvad predict`` makes them: frames >= threshold, gaps shorter than a snippet bridged).

Part 2, a toy camera (``--toy``): a proximity model trained on toy features
(tests/model/toydata.py) meets a "new camera" (appearance rotated, scaled and
shifted; motion 2.5x larger), adapted on 8 normal videos of it and scored on 20
held-out videos (half anomalous): snippet ROC-AUC, the fraction of normal snippets at or
above the threshold, and of anomalous snippets caught.

Variants:
    as is         the checkpoint unchanged (its training threshold)
    threshold     only the threshold, at the false-alarm quantile of the footage
    adapt         what ``patchvad adapt`` does: every encoded channel restandardised
                  (PCA directions kept), the prior scale refitted, the threshold
    adapt-no-pca  the same, but only the parts without PCA (motion, residual, context)
    refit-all     FeatureEncoder.fit on the footage (new PCA too), prior scale, threshold

Run from the repository root (without ``--ckpt`` it only cuts the halves, which
docs/own-camera.md then adapts and predicts with the CLI):

    .venv/bin/python benchmarks/adapt.py --work /tmp/adapt_bench \
        [--ckpt runs/demo/models/proximity/seed0/model.safetensors ...] [--toy]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from patchvad.adapt import adapt_model, false_alarm_threshold, prior_scale, restandardise
from patchvad.events import events_from_scores
from patchvad.features.snippets import SnippetMap
from patchvad.features.store import VideoFeatures
from patchvad.inference import predict_video
from patchvad.io.files import sha256_file
from patchvad.io.video import VideoReader, VideoWriter
from patchvad.model.model import AnomalyModel, load_model
from patchvad.predict import Detector

VARIANTS = ("as is", "threshold", "adapt", "adapt-no-pca", "refit-all")
HALF = 398                      # first frame of the second half


def cut_halves(video: Path, work: Path) -> tuple[Path, Path]:
    """Frames ``[0, HALF)`` and ``[HALF, end)`` of ``video`` as H.264 files (crf 18, one x264 thread: same bytes)."""
    first, second = work / "vtest_first.mp4", work / "vtest_second.mp4"
    if first.is_file() and second.is_file():
        return first, second
    reader = VideoReader(video)
    size = (reader.width, reader.height)
    with VideoWriter(first, reader.fps, size, crf=18, threads=1) as a, \
            VideoWriter(second, reader.fps, size, crf=18, threads=1) as b:
        for f, frame in enumerate(reader.frames()):
            (a if f < HALF else b).write(frame)
    return first, second


def cached_features(detector: Detector, video: Path, work: Path) -> VideoFeatures:
    """The checkpoint's features of ``video``, kept in ``work`` for the next run (same spec and video only)."""
    ident = json.dumps(detector.spec.to_dict(), sort_keys=True) + sha256_file(video)
    key = hashlib.sha256(ident.encode()).hexdigest()[:12]
    npy, meta = work / f"{video.stem}.{key}.npy", work / f"{video.stem}.{key}.json"
    if not npy.is_file():
        vf = detector.features(video)
        np.save(npy, vf.x)
        meta.write_text(json.dumps({"snippets": vf.snippets.to_dict(), "record": vf.record}))
    m = json.loads(meta.read_text())
    return VideoFeatures(video.stem, np.load(npy), SnippetMap.from_dict(m["snippets"]), m["record"])


def variant(model: AnomalyModel, name: str, footage: list[VideoFeatures], rate: float) -> AnomalyModel:
    """A copy of ``model`` adapted to ``footage`` by the variant ``name``."""
    m = copy.deepcopy(model)
    xs = [vf.x for vf in footage]
    if name == "as is":
        return m
    if name == "adapt":
        adapt_model(m, footage, rate, min_snippets=1)
        return m
    if name == "adapt-no-pca":
        restandardise(m.encoder, xs, ["motion", "residual", "context"])
    elif name == "refit-all":
        m.encoder.fit(xs, max_videos_hint=len(xs))
    if name != "threshold":
        m.encoder.prior_scale.copy_(torch.tensor(prior_scale(m.encoder, xs), dtype=torch.float32))
    scores = np.concatenate([predict_video(m, vf).frame_scores for vf in footage])
    m.threshold = false_alarm_threshold(scores, rate)
    return m


def in_events(scores: np.ndarray, threshold: float, fps: float, min_gap: int) -> float:
    """Fraction of frames inside an event, as ``patchvad predict`` forms events."""
    events = events_from_scores(scores, threshold, fps, min_gap=min_gap)
    return sum(e.end_frame - e.start_frame + 1 for e in events) / max(1, len(scores))


def vtest_table(ckpts: list[Path], first: Path, second: Path, work: Path, rate: float) -> None:
    """Part 1: every checkpoint x variant x direction (first -> second half, second -> first)."""
    print(f"--false-alarms {rate:g}; cells: threshold / the target half's highest frame score / its frames in events")
    print(f"{'checkpoint':40s} {'variant':13s} {'first -> second':>26s} {'second -> first':>26s}")
    for ckpt in ckpts:
        det = Detector(ckpt)
        a, b = cached_features(det, first, work), cached_features(det, second, work)
        for name in VARIANTS:
            cells = []
            for foot, target in ((a, b), (b, a)):
                m = variant(det.model, name, [foot], rate)
                s = predict_video(m, target).frame_scores
                frac = in_events(s, m.threshold, float(target.record["fps"]), m.spec.snippet_len)
                cells.append(f"{m.threshold:6.3f} / {s.max():5.3f} / {100 * frac:5.1f}%")
            label = f"{ckpt.parent.parent.name}/{ckpt.parent.name}"
            print(f"{label:40s} {name:13s} {cells[0]:>26s} {cells[1]:>26s}", flush=True)


def toy_table(work: Path, rate: float) -> None:
    """Part 2: a toy proximity model on a toy new camera (the setting of tests/test_adapt.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from model.toydata import make_toy_dataset
    from test_adapt import SMALL, Camera, camera_videos

    from patchvad.metrics.frame import frame_auc
    from patchvad.training import fit

    torch.set_num_threads(1)
    ckpt = work / "toy" / "run" / "model.safetensors"
    if not ckpt.is_file():
        make_toy_dataset(work / "toy" / "data", work / "toy" / "feats", n_train=60, n_test=2, seed=3)
        fit(work / "toy" / "data", work / "toy" / "feats", work / "toy" / "run", method="proximity", seed=0,
            config=SMALL, log=None)
    camera = Camera()
    footage = [vf for vf, _ in camera_videos(camera, 8, seed=100, anomalous=False)]
    held_out = camera_videos(camera, 20, seed=200, anomalous=True)
    labels = np.concatenate([lab for _, lab in held_out])
    model = load_model(ckpt)
    print(f"\ntoy camera: 8 normal footage videos, 20 held-out videos ({int(labels.sum())} of {labels.size} "
          f"snippets anomalous)")
    print(f"{'variant':13s} {'threshold':>9s} {'AUC':>6s} {'normal >= thr':>14s} {'anomalous caught':>17s}")
    for name in VARIANTS:
        m = variant(model, name, footage, rate)
        s = np.concatenate([predict_video(m, vf).snippet_scores for vf, _ in held_out])
        auc = frame_auc(labels, s, exact=True)
        print(f"{name:13s} {m.threshold:9.3f} {auc:6.3f} {(s[labels == 0] >= m.threshold).mean():14.3f} "
              f"{(s[labels == 1] >= m.threshold).mean():17.3f}", flush=True)


def main() -> None:
    """Parse the arguments and print the tables."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", nargs="*", type=Path, default=[], help="checkpoints to adapt (part 1)")
    p.add_argument("--vtest", type=Path, default=Path("../shared/data/vtest/vtest.avi"))
    p.add_argument("--work", type=Path, required=True, help="folder for the cut halves and cached features")
    p.add_argument("--false-alarms", type=float, default=0.01)
    p.add_argument("--toy", action="store_true", help="also part 2, the toy camera (trains a toy model, ~20 s)")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    first, second = cut_halves(args.vtest, args.work)
    print(f"{first}: frames 0-{HALF - 1}; {second}: frames {HALF}-end")
    if args.ckpt:
        vtest_table(args.ckpt, first, second, args.work, args.false_alarms)
    if args.toy:
        toy_table(args.work, args.false_alarms)


if __name__ == "__main__":
    main()
