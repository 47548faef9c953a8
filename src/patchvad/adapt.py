"""Adapt a trained model to one camera from ordinary footage of it: ``patchvad adapt``.

A model describes "normal" through statistics fitted on its training videos
(model/normalize.py ``FeatureEncoder``) and a score threshold chosen on them. On a
camera of its own (another place, resolution, frame rate, lens) the same people
walking give other feature values, and every frame can pass the threshold. Adapting
refits, from unlabelled normal footage of that camera, what describes normal THERE,
and keeps everything that was learned:

* **kept**: the PCA directions, the scorer's weights, the method and selection;
* **refitted**: the standardisation of every encoded channel (:func:`restandardise`:
  each channel the scorer reads gets the mean 0 / standard deviation 1 on this
  camera's normal tokens that it had on the training videos' normal tokens; for a PCA
  part this moves and rescales the projected channel, not its direction), the motion
  prior's scale ``(a0, b0)`` (:func:`prior_scale`), and the score threshold at a
  chosen false-alarm rate (:func:`false_alarm_threshold`).

The result is an ordinary checkpoint (``predict``, ``test`` and :class:`Detector`
use it as any other) whose metadata ``adaptation`` records what it was adapted on.
docs/own-camera.md gives the workflow and the measurements behind these choices.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from patchvad.errors import ConfigError, PatchvadError, VideoError
from patchvad.features.store import VideoFeatures
from patchvad.inference import predict_video
from patchvad.io.files import sha256_file
from patchvad.io.video import is_live_source, list_frame_files
from patchvad.model.model import AnomalyModel
from patchvad.model.normalize import FeatureEncoder
from patchvad.predict import Detector, resolve_sources

# Below this many snippets of footage its statistics (the prior's 99.9th percentile, one scene
# token per cell) are noise.
MIN_SNIPPETS = 16
_MIN_STD = 1e-4
ADAPTATION_KEY = "adaptation"


# -- the statistics ---------------------------------------------------------------------
def part_slices(encoder: FeatureEncoder) -> dict[str, slice]:
    """The encoded channels of each part (channel 0, the prior, belongs to none)."""
    off = encoder.part_offsets()
    ends = [*list(off.values())[1:], encoder.out_dim]
    return {part: slice(k0, k1) for (part, k0), k1 in zip(off.items(), ends)}


@torch.no_grad()
def encoded_moments(encoder: FeatureEncoder, videos: Iterable[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation ``(C,)`` of each encoded channel over the videos' tokens.

    Every (snippet, cell) token counts once, except in the ``scene`` part, which is
    static over a video and counts once per cell and video (as in
    :meth:`FeatureEncoder.fit`).

    Args:
        encoder: the encoder whose output is measured.
        videos: raw features ``(T, Gh, Gw, D)`` of each video.
    """
    scene = part_slices(encoder).get("scene")
    c = encoder.out_dim
    s1 = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    n = torch.zeros(c, dtype=torch.float64)
    for x in videos:
        enc = encoder.encode(x).double().cpu()
        flat = enc.reshape(-1, c)
        a1, a2 = flat.sum(0), (flat * flat).sum(0)
        count = torch.full((c,), float(flat.shape[0]), dtype=torch.float64)
        if scene is not None:
            cells = enc[0, ..., scene].reshape(-1, scene.stop - scene.start)
            a1[scene], a2[scene], count[scene] = cells.sum(0), (cells * cells).sum(0), float(cells.shape[0])
        s1 += a1
        s2 += a2
        n += count
    if not bool((n > 0).all()):
        raise ConfigError("no footage tokens to measure")
    mean = s1 / n
    return mean, (s2 / n - mean ** 2).clamp_min(0.0).sqrt()


@torch.no_grad()
def restandardise(encoder: FeatureEncoder, videos: Sequence[np.ndarray], parts: Sequence[str] | None = None
                  ) -> dict[str, dict[str, list[float]]]:
    """Refit the standardisation so each encoded channel of ``parts`` has mean 0 / std 1 on ``videos``.

    Training standardised every part on the normal training tokens; this does the same
    on the new camera's normal tokens, in the encoded space the scorer reads. For a
    part without PCA the buffers become the footage's raw mean and std. For a PCA part
    ``z = ((v - mean) / std) @ pcs``, the projected channel ``k`` is moved by its mean
    ``mu_k`` and divided by its std ``sd_k``: ``pcs[:, k] /= sd_k`` and ``mean += std *
    delta`` with ``delta @ pcs = mu`` (``delta = mu @ pinv(pcs)``, exact: the PCA columns
    are independent). The PCA directions, hence what each channel means, are kept.
    A channel (almost) constant on the footage is only re-centred. The prior (channel
    0) is a copy of the ``residual`` part's prior channel and follows it.

    Args:
        encoder: fitted encoder; its buffers are changed in place.
        videos: raw features ``(T, Gh, Gw, D)`` of the normal footage.
        parts: the parts to restandardise (default all).

    Returns:
        per part, the channel means and stds measured on the footage before refitting.
    """
    mean, std = encoded_moments(encoder, videos)
    where = part_slices(encoder)
    measured: dict[str, dict[str, list[float]]] = {}
    for part in parts if parts is not None else list(encoder.parts):
        p_mean, p_std = getattr(encoder, f"{part}_mean"), getattr(encoder, f"{part}_std")
        mu, sd = mean[where[part]].to(p_mean.device), std[where[part]].to(p_mean.device)
        measured[part] = {"mean": mu.tolist(), "std": sd.tolist()}
        sd = torch.where(sd < _MIN_STD, torch.ones_like(sd), sd)
        if encoder.parts[part][1] is None:
            p_mean.copy_((p_mean.double() + p_std.double() * mu).float())
            p_std.copy_((p_std.double() * sd).float())
            continue
        pcs = getattr(encoder, f"{part}_pcs")
        live = pcs.abs().sum(0) > 0                      # unused PCA columns stay zero
        delta = mu[live] @ torch.linalg.pinv(pcs.double()[:, live])
        p_mean.copy_((p_mean.double() + p_std.double() * delta).float())
        pcs.copy_(torch.where(live, pcs.double() / sd, pcs.double()).float())
    return measured


@torch.no_grad()
def prior_scale(encoder: FeatureEncoder, videos: Iterable[np.ndarray]) -> tuple[float, float]:
    """The motion prior's ``(a0, b0)`` refitted on ``videos`` by the rule of :meth:`FeatureEncoder.fit`.

    The footage's 99th percentile of the prior channel (encoded channel 0) maps to 0.5
    and its 99.9th to about 0.88: ``b0 = q99``, ``a0 = 2 / (q99.9 - q99)``. Every token
    is used. The floor score ``sigmoid(a0 * (prior - b0))`` it defines does not change
    when the channel is moved and rescaled, so measuring before or after
    :func:`restandardise` gives the same floor.
    """
    prior = np.concatenate([encoder.encode(x)[..., 0].reshape(-1).double().cpu().numpy() for x in videos])
    q99, q999 = np.quantile(prior, [0.99, 0.999]).tolist()
    return 2.0 / max(q999 - q99, 1e-3), q99


def false_alarm_threshold(frame_scores: np.ndarray, rate: float) -> float:
    """The lowest threshold with at most ``floor(rate * F)`` of ``F`` normal frames at or above it.

    Events open where a frame's score is ``>= threshold``. With the scores sorted
    from the highest, ``s[0] >= s[1] >= ...``, and ``k = floor(rate * F)``, the
    threshold is the next float32 above ``s[k]`` (scores are float32): only frames
    scoring strictly above ``s[k]`` pass, and there are at most ``k`` of them; frames
    of one snippet share its score, so ties make it fewer. ``rate = 0`` puts it just
    above the highest normal score.

    Args:
        frame_scores: ``(F,)`` scores of the normal frames (every video's, concatenated).
        rate: allowed fraction of normal frames at or above the threshold, in ``[0, 1)``.

    Raises:
        ConfigError: ``rate`` outside ``[0, 1)`` or no scores.
    """
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"--false-alarms must be a fraction in [0, 1), got {rate}")
    s = np.sort(np.asarray(frame_scores, dtype=np.float64).ravel())[::-1]
    if s.size == 0:
        raise ConfigError("no frame scores to choose a threshold from")
    k = int(np.floor(rate * s.size + 1e-9))          # 0.29 * 100 is 28.999999999999996
    # Scores are float32: the next float32 up is above s[k] whether compared in float32 or float64.
    return float(np.nextafter(np.float32(s[k]), np.float32(np.inf)))


# -- footage ----------------------------------------------------------------------------
def footage_sources(normal: Sequence[str | Path]) -> list[str]:
    """Video files and frame folders of the normal footage, in the order given.

    Each item is a video file, a frame folder, a folder of videos or a glob
    (:func:`patchvad.predict.resolve_sources`); a source named twice counts once.

    Raises:
        ConfigError: no footage given.
        VideoError: an item matches nothing or is a live stream (adapting reads the
            footage twice and records its digest, so it must be recorded files).
    """
    if not normal:
        raise ConfigError("no normal footage given: name video files, frame folders, folders or globs of "
                          "ordinary footage of the camera")
    out: list[str] = []
    seen: set[Path] = set()
    for item in normal:
        if is_live_source(str(item)):
            raise VideoError("is a live stream; adapting needs recorded footage (record a few minutes of it to "
                             "files first)", path=item)
        for src in resolve_sources(item):
            if Path(src).resolve() not in seen:
                seen.add(Path(src).resolve())
                out.append(src)
    return out


def footage_digest(source: str | Path) -> tuple[str, int]:
    """SHA-256 of one footage source's content and its size in bytes.

    A video file: the SHA-256 of its bytes. A frame folder: the SHA-256 of its
    images' SHA-256 hex digests, one per line in frame order.

    Raises:
        VideoError: the source cannot be read.
    """
    path = Path(source)
    try:
        if path.is_dir():
            files = list_frame_files(path)
            lines = "".join(f"{sha256_file(f)}\n" for f in files)
            return hashlib.sha256(lines.encode()).hexdigest(), sum(f.stat().st_size for f in files)
        return sha256_file(path), path.stat().st_size
    except OSError as exc:
        raise VideoError(f"cannot read the footage ({exc.strerror or exc})", path=path) from exc


def _extract_footage(detector: Detector, sources: Sequence[str], folder: Path, echo: Callable[[str], None]
                     ) -> tuple[list[VideoFeatures], list[dict]]:
    """Features of every source with the checkpoint's spec, and what each source is.

    Each video's features go to a ``.npy`` in ``folder`` and are read back memory-mapped,
    so hours of footage do not have to fit in memory.
    """
    videos: list[VideoFeatures] = []
    records: list[dict] = []
    for i, src in enumerate(sources):
        try:
            vf = detector.features(src)
        except PatchvadError:
            raise
        except Exception as exc:  # a decoder failure names the file, never a deep traceback
            raise VideoError(f"cannot read the footage ({type(exc).__name__}: {exc})", path=src) from exc
        target = folder / f"{i:05d}.npy"
        np.save(target, vf.x, allow_pickle=False)
        videos.append(VideoFeatures(stem=vf.stem, x=np.load(target, mmap_mode="r"), snippets=vf.snippets,
                                    record=vf.record))
        digest, size = footage_digest(src)
        facts = vf.record
        records.append({"file": str(src), "sha256": digest, "bytes": int(size),
                        "frames": int(vf.snippets.frame_count), "snippets": int(vf.snippets.num_snippets),
                        "fps": float(facts["fps"]), "width": int(facts["width"]), "height": int(facts["height"])})
        echo(f"  {src}: {vf.snippets.frame_count} frames ({facts['width']}x{facts['height']}, "
             f"{float(facts['fps']):g} fps), {vf.snippets.num_snippets} snippets")
    return videos, records


# -- adapting ---------------------------------------------------------------------------
@dataclass
class Adaptation:
    """What :func:`adapt_model` changed.

    Attributes:
        threshold_before, threshold: the checkpoint's threshold and the adapted one.
        above_before, above_after: fraction of the footage's frames at or above the
            threshold with the checkpoint as it was and as adapted.
        frames, snippets: footage used.
        prior_scale: the refitted ``(a0, b0)``.
        measured: per part, the encoded channels' mean and std on the footage before
            adapting (:func:`restandardise`).
    """

    threshold_before: float
    threshold: float
    above_before: float
    above_after: float
    frames: int
    snippets: int
    prior_scale: tuple[float, float]
    measured: dict[str, dict[str, list[float]]]


def _frame_scores(model: AnomalyModel, videos: Sequence[VideoFeatures]) -> np.ndarray:
    """``(F,)`` frame scores of every video, concatenated."""
    return np.concatenate([predict_video(model, vf).frame_scores for vf in videos])


def adapt_model(model: AnomalyModel, videos: Sequence[VideoFeatures], false_alarms: float = 0.01,
                min_snippets: int = MIN_SNIPPETS) -> Adaptation:
    """Adapt ``model`` in place to the camera of ``videos`` (normal footage, features as stored).

    Restandardises every encoded channel (:func:`restandardise`; with a normal memory,
    the parts the memory reads keep their training standardisation, in which its
    centroids live, and the memory channel is restandardised), refits the prior's scale
    (:func:`prior_scale`) and sets the threshold so that at most
    ``false_alarms`` of the footage's frames reach it (:func:`false_alarm_threshold`).
    PCA directions and the scorer's weights are kept.

    Args:
        model: a loaded checkpoint.
        videos: features ``(T, Gh, Gw, D)`` of the normal footage with their snippet maps.
        false_alarms: fraction of normal frames allowed at or above the threshold.
        min_snippets: fewer snippets in all are refused.

    Raises:
        ConfigError: ``false_alarms`` outside ``[0, 1)``.
        VideoError: fewer than ``min_snippets`` snippets of footage.
    """
    if not 0.0 <= false_alarms < 1.0:
        raise ConfigError(f"--false-alarms must be a fraction in [0, 1), got {false_alarms}")
    snippets = sum(int(vf.x.shape[0]) for vf in videos)
    frames = sum(int(vf.snippets.frame_count) for vf in videos)
    if snippets < min_snippets:
        raise VideoError(_too_short(model, videos, snippets, frames, min_snippets))
    before = _frame_scores(model, videos)
    threshold_before = float(model.threshold)
    arrays = [vf.x for vf in videos]
    # A normal memory's centroids live in the training standardisation of the parts it
    # reads: those parts keep it, and the memory channel itself is restandardised.
    keep = set(model.encoder.memory_sources)
    measured = restandardise(model.encoder, arrays, [p for p in model.encoder.parts if p not in keep])
    a0, b0 = prior_scale(model.encoder, arrays)
    model.encoder.prior_scale.copy_(torch.tensor([a0, b0], dtype=torch.float32))
    after = _frame_scores(model, videos)
    model.threshold = false_alarm_threshold(after, false_alarms)
    return Adaptation(threshold_before=threshold_before, threshold=model.threshold,
                      above_before=float((before >= threshold_before).mean()),
                      above_after=float((after >= model.threshold).mean()), frames=frames, snippets=snippets,
                      prior_scale=(a0, b0), measured=measured)


def _too_short(model: AnomalyModel, videos: Sequence[VideoFeatures], snippets: int, frames: int,
               needed: int) -> str:
    spec = model.spec
    frames_needed = spec.snippet_len + (needed - 1) * spec.stride
    fps = [float(vf.record.get("fps") or 0) for vf in videos]
    at = f", {frames_needed / fps[0]:.0f} s at {fps[0]:g} fps" if fps and fps[0] > 0 else ""
    names = ", ".join(vf.stem for vf in videos[:3]) + (f" and {len(videos) - 3} more" if len(videos) > 3 else "")
    return (f"normal footage too short to estimate its statistics: adapting needs at least {needed} snippets "
            f"({frames_needed} frames{at}), got {snippets} snippets ({frames} frames) from {names}; "
            f"give longer or more recordings of the camera")


def adapt_command(ckpt: str | Path, normal: Sequence[str | Path], out: str | Path, false_alarms: float = 0.01,
                  device: str = "cpu", min_snippets: int = MIN_SNIPPETS,
                  echo: Callable[[str], None] = print) -> Adaptation:
    """``patchvad adapt``: refit a checkpoint to one camera and write it as a new checkpoint.

    Extracts the footage with the checkpoint's own feature spec, adapts a copy of the
    model (:func:`adapt_model`) and writes ``out`` atomically (nothing is written on
    any error). Its metadata ``adaptation`` (JSON) records the source checkpoint, every
    footage file (name, SHA-256, bytes, frames, size, fps), ``footage_sha256`` (the
    SHA-256 of the files' hex digests, one per line in the order read), the
    false-alarm rate, the frames and snippets used, the thresholds and what was refitted;
    adapting an adapted checkpoint keeps the earlier record under ``previous``.

    Raises:
        ConfigError: no footage, a bad rate, or ``out`` is the checkpoint itself.
        VideoError: footage unreadable, matching nothing, live, or too short.
        CheckpointError: the checkpoint cannot be read or written.
    """
    if not 0.0 <= false_alarms < 1.0:
        raise ConfigError(f"--false-alarms must be a fraction in [0, 1), got {false_alarms}")
    ckpt, out = Path(ckpt), Path(out)
    if out.exists() and ckpt.exists() and out.resolve() == ckpt.resolve():
        raise ConfigError("--out is the checkpoint being adapted; write the adapted model to a new file",
                          path=out)
    if out.is_dir():
        raise ConfigError("--out is a folder; give the adapted checkpoint's file name "
                          "(e.g. adapted.safetensors)", path=out)
    sources = footage_sources(normal)
    detector = Detector(ckpt, device=device)
    model = detector.model
    echo(f"adapting {ckpt} on {len(sources)} footage source(s)")
    with tempfile.TemporaryDirectory(prefix="patchvad-adapt-") as tmp:
        videos, records = _extract_footage(detector, sources, Path(tmp), echo)
        result = adapt_model(model, videos, false_alarms, min_snippets=min_snippets)
        del videos                                # release the memory maps before their folder goes
    previous = model.meta.pop(ADAPTATION_KEY, None)
    record = {
        "format": "patchvad-adaptation/1",
        "source_checkpoint": {"file": str(ckpt), "sha256": sha256_file(ckpt), "threshold": result.threshold_before},
        "footage": records,
        "footage_sha256": hashlib.sha256("".join(f"{r['sha256']}\n" for r in records).encode()
                                         ).hexdigest(),
        "false_alarms": float(false_alarms),
        "frames": result.frames,
        "snippets": result.snippets,
        "threshold": result.threshold,
        "footage_frames_at_or_above_threshold": {"before": result.above_before, "after": result.above_after},
        "refitted": {"standardisation": list(result.measured), "prior_scale": list(result.prior_scale),
                     "threshold": "false_alarm_quantile"},
        "kept": ["pca_directions", "scorer_weights", "method", "selection"],
    }
    if previous is not None:
        record["previous"] = json.loads(previous)
    model.save(out, extra={ADAPTATION_KEY: json.dumps(record)})
    echo(f"footage: {result.frames} frames, {result.snippets} snippets; frames at or above the threshold: "
         f"{100 * result.above_before:.1f}% at {result.threshold_before:.3f} before, "
         f"{100 * result.above_after:.1f}% at {result.threshold:.3f} adapted (--false-alarms {false_alarms:g})")
    echo(f"wrote {out}")
    return result
