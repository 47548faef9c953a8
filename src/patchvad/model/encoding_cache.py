"""A disk cache of fitted normalisers and encoded videos, shared by the fits and tests of one experiment.

``compare``, ``curves`` and the demo train several methods and seeds on the same
training split: every fit used to fit the same normaliser (:class:`FeatureEncoder`)
on the same normal videos and encode the same videos, and every test encoded the same
test videos again. On the demo that was about 30 s of a core per fit, more than a
third of a fit's time. The cache does that work once.

Content-addressed, so a stale entry cannot be read:

* a **normaliser** is keyed by everything its fit reads: the model configuration, the
  sampling seed, the feature spec and reduction, and the SHA-256 of every normal
  video's stored features (``<root>/normalisers/<key>.safetensors``);
* an **encoded video** by the SHA-256 of the encoder's statistics and of the video's
  stored features (``<root>/encoded/<encoder>/<features>.npy``): the float32 output of
  :meth:`FeatureEncoder.encode` itself, unpooled, so training (which pools it) and
  inference (which scores it whole) read exactly what they would have computed.

Entries are written atomically; a process that finds another one computing the same
normaliser or encoding the same set waits for it (an advisory file lock), so two
parallel fits do not both do the work. Videos whose feature record has no checksum
are encoded without the cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from patchvad.features.store import VideoFeatures
from patchvad.io.files import atomic_path, atomic_save_npy, load_npy
from patchvad.model.normalize import FeatureEncoder


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def encoder_digest(encoder: FeatureEncoder) -> str:
    """SHA-256 of the encoder's configuration and fitted statistics (its whole state)."""
    h = hashlib.sha256(json.dumps(dataclasses.asdict(encoder.cfg), sort_keys=True, default=str).encode("utf-8"))
    h.update(json.dumps(sorted(encoder.parts.items()), default=str).encode("utf-8"))
    h.update(json.dumps(dict(encoder.channels), sort_keys=True, default=str).encode("utf-8"))
    for name, t in sorted(encoder.state_dict().items()):
        h.update(name.encode("utf-8"))
        h.update(np.ascontiguousarray(t.detach().cpu().numpy()).tobytes())
    return h.hexdigest()


class EncodingCache:
    """Normalisers and encoded videos under ``root`` (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        lock = self.root / "locks" / f"{name}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- normalisers ------------------------------------------------------------------
    def fitted_normaliser(self, encoder: FeatureEncoder, inputs: dict, fit: Callable[[], None]) -> bool:
        """Load ``encoder``'s statistics for ``inputs`` from the cache, or run ``fit`` and store them.

        Args:
            encoder: the (unfitted) encoder; filled in place.
            inputs: everything the fit reads (JSON-serialisable; becomes the key).
            fit: fits ``encoder`` in place.

        Returns:
            True when the statistics came from the cache.
        """
        key = _digest(inputs)
        path = self.root / "normalisers" / f"{key}.safetensors"
        with self._locked(f"normaliser-{key[:32]}"):
            if path.exists():
                encoder.load_state_dict(load_file(str(path)))
                return True
            fit()
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                save_file({k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}, str(tmp))
            return False

    # -- encoded videos ---------------------------------------------------------------
    def _video_path(self, digest: str, features: VideoFeatures) -> Path | None:
        sha = features.record.get("sha256") if features.record else None
        if not sha:
            return None
        return self.root / "encoded" / digest[:32] / f"{str(sha)[:32]}.npy"

    def encode(self, encoder: FeatureEncoder, features: VideoFeatures, digest: str | None = None) -> torch.Tensor:
        """``encoder.encode(features.x)`` ``(T, Gh, Gw, C)`` float32, from the cache when it holds it.

        ``digest``: :func:`encoder_digest` of ``encoder`` when the caller already has it.
        """
        path = self._video_path(digest or encoder_digest(encoder), features)
        device = encoder.prior_scale.device
        if path is not None and path.exists():
            return torch.from_numpy(load_npy(path)).to(device)
        enc = encoder.encode(features.x)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_save_npy(path, enc.cpu().numpy())
        return enc

    @contextlib.contextmanager
    def encoding(self, encoder: FeatureEncoder) -> Iterator[str]:
        """Hold the encoder's lock while a set of videos is encoded; yields its digest.

        A second process encoding with the same encoder waits, then finds every video cached.
        """
        digest = encoder_digest(encoder)
        with self._locked(f"encoder-{digest[:32]}"):
            yield digest


def maybe_cache(root: str | Path | None) -> EncodingCache | None:
    """An :class:`EncodingCache` at ``root``, or None when ``root`` is None."""
    return None if root is None else EncodingCache(root)


__all__ = ["EncodingCache", "encoder_digest", "maybe_cache"]
