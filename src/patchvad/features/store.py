"""The feature store: one ``.npy`` per video plus a manifest, memory-mapped on read.

    FEATS/manifest.json     format, FeatureSpec, and the index of finished videos
    FEATS/<stem>.npy        float16 (T, Gh, Gw, D)
    FEATS/<stem>.json       completion record: shape, sha256, frame count, snippet map
    FEATS/projection.safetensors  only in a reduced store (features/reduce.py), recorded
                            under "reduction" in the manifest

A video is finished only when its record exists and the array matches the record's
size and checksum: a killed run leaves at most a temporary file, which never passes
as complete. This module alone reads and writes that layout.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from patchvad.errors import FeatureError, PatchvadError
from patchvad.features.backbones import FeatureSpec
from patchvad.features.snippets import SnippetMap
from patchvad.io.files import atomic_save_npy, atomic_write_json, load_npy, sha256_file

FORMAT = "patchvad-features/1"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class VideoFeatures:
    """Patch features of one video.

    Attributes:
        stem: the video's stem.
        x: ``(T, Gh, Gw, D)`` float16 (memory-mapped when loaded with ``mmap``).
        snippets: the stored frame <-> snippet map.
        record: the completion record (fps, size, video path...).
    """

    stem: str
    x: np.ndarray
    snippets: SnippetMap
    record: dict


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FeatureError("file not found", path=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FeatureError(f"not valid JSON ({exc})", path=path) from None


def _check_finite(x: np.ndarray, path: Path, chunk: int = 256) -> None:
    """Refuse features holding NaN or inf (a damaged or foreign file): they would train a NaN model.

    Checked in chunks of snippets, so a memory-mapped array is read once, in bounded memory.
    """
    for t0 in range(0, x.shape[0], chunk):
        part = np.asarray(x[t0:t0 + chunk])
        if not np.isfinite(part).all():
            t = t0 + int(np.flatnonzero(~np.isfinite(part).reshape(part.shape[0], -1).all(axis=1))[0])
            raise FeatureError(f"features contain NaN or inf (first in snippet {t}); delete its completion record "
                               f"{path.with_suffix('.json').name} and rerun `patchvad extract`", path=path)


class FeatureStore:
    """Read and write one feature folder.

    Args:
        path: the folder.
        spec: required when creating; when the folder exists its spec must match.
        extra: further manifest entries to record when creating (e.g. ``reduction``,
            the record of a fitted projection: features/reduce.py); kept by
            :meth:`write_index`.
    """

    def __init__(self, path: str | Path, spec: FeatureSpec | None = None, extra: dict | None = None):
        self.path = Path(path)
        self.extra: dict = {}
        manifest = self.path / MANIFEST
        if manifest.exists():
            data = _read_json(manifest)
            if data.get("format") != FORMAT:
                raise FeatureError(f"unknown feature-store format {data.get('format')!r}", path=manifest)
            try:
                stored = FeatureSpec.from_dict(data["spec"])
            except (KeyError, TypeError, ValueError) as exc:
                raise FeatureError(f"malformed spec ({exc})", path=manifest) from None
            if spec is not None:
                diff = stored.compatible_with(spec)
                if diff:
                    raise FeatureError(f"holds features of another extraction (differs in {diff}); "
                                       f"use another --out folder", path=manifest)
            self.spec = stored
            self.extra = {k: v for k, v in data.items() if k not in ("format", "spec", "videos")}
        elif spec is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            self.spec = spec
            self.extra = dict(extra or {})
            atomic_write_json(manifest, {"format": FORMAT, "spec": spec.to_dict(), **self.extra, "videos": {}})
        else:
            raise FeatureError("not a feature folder (no manifest.json); run `patchvad extract` first",
                               path=self.path)

    # -- writing ------------------------------------------------------------------
    def write(self, stem: str, x: np.ndarray, snippets: SnippetMap, info: dict) -> dict:
        """Store one video's features atomically and mark it finished.

        Args:
            stem: video stem.
            x: ``(T, Gh, Gw, D)`` features (stored as float16).
            snippets: its snippet map (``T`` snippets).
            info: extra facts recorded with it (video path, fps, width, height...).
        """
        with np.errstate(over="ignore"):         # an overflow to inf is reported below, as an error
            x16 = np.asarray(x, dtype=np.float16)
        gh, gw = self.spec.grid
        expected = (snippets.num_snippets, gh, gw, self.spec.dim)
        if x16.shape != expected:
            raise FeatureError(f"features of shape {x16.shape}, expected {expected}", path=self.path / stem)
        if not np.isfinite(x16).all():
            raise FeatureError("features contain NaN or inf (float16 overflow?)", path=self.path / f"{stem}.npy")
        array_path = self.path / f"{stem}.npy"
        atomic_save_npy(array_path, x16)
        record = {"stem": stem, "shape": list(x16.shape), "dtype": "float16",
                  "bytes": array_path.stat().st_size, "sha256": sha256_file(array_path),
                  "snippets": snippets.to_dict(), **info}
        # The record is written last: its presence is the completion marker.
        atomic_write_json(self.path / f"{stem}.json", record)
        return record

    def write_index(self) -> None:
        """Rewrite manifest.json with every finished video (merged from the records)."""
        videos = {stem: self.record(stem) for stem in self.finished()}
        atomic_write_json(self.path / MANIFEST, {"format": FORMAT, "spec": self.spec.to_dict(), **self.extra,
                                                 "videos": videos})

    def remove_partial(self, stem: str) -> None:
        """Delete temporary files a killed run left for ``stem`` (never finished ones).

        Only ``stem``'s own: the temporary names are ``.<stem>.npy.<random>.tmp.npy`` and
        ``.<stem>.json.<random>.tmp.json`` (``io.files.atomic_path``), so another video
        whose stem starts with this one (``a`` and ``a.b``), possibly being written by
        another process of a sharded run, keeps its files.
        """
        own = re.compile(rf"\.{re.escape(stem)}\.(npy|json)\.[^.]+\.tmp\.(npy|json)")
        for tmp in self.path.glob(".*.tmp*"):
            if own.fullmatch(tmp.name):
                tmp.unlink(missing_ok=True)

    # -- reading ------------------------------------------------------------------
    def finished(self) -> list[str]:
        """Stems with a completion record, sorted."""
        return sorted(p.stem for p in self.path.glob("*.json") if p.name != MANIFEST and not p.name.startswith("."))

    def is_complete(self, stem: str, verify: bool = True) -> bool:
        """True when ``stem`` is finished and its array matches the record."""
        rec_path = self.path / f"{stem}.json"
        arr_path = self.path / f"{stem}.npy"
        if not rec_path.exists() or not arr_path.exists():
            return False
        try:
            rec = _read_json(rec_path)
        except FeatureError:
            return False
        if arr_path.stat().st_size != rec.get("bytes"):
            return False
        return not verify or sha256_file(arr_path) == rec.get("sha256")

    @property
    def reduction(self) -> dict | None:
        """Record of the projection these features were reduced with (None: raw features)."""
        return self.extra.get("reduction")

    def record(self, stem: str) -> dict:
        """The JSON record of one video's features (``<stem>.json``)."""
        return _read_json(self.path / f"{stem}.json")

    def __contains__(self, stem: str) -> bool:
        return (self.path / f"{stem}.json").exists()

    def load(self, stem: str, mmap: bool = True) -> VideoFeatures:
        """Features of one video (memory-mapped by default: bounded RAM)."""
        rec_path = self.path / f"{stem}.json"
        if not rec_path.exists():
            raise FeatureError(f"no features for video '{stem}' (extraction not run or not finished)",
                               path=self.path)
        rec = _read_json(rec_path)
        array_path = self.path / f"{stem}.npy"
        try:
            x = load_npy(array_path, mmap=mmap)
        except PatchvadError as exc:
            raise FeatureError(exc.message, path=array_path) from exc
        try:
            shape, snippets = rec["shape"], SnippetMap.from_dict(rec["snippets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FeatureError(f"malformed completion record ({type(exc).__name__}: {exc})", path=rec_path) from None
        if list(x.shape) != shape:
            raise FeatureError(f"array shape {x.shape} differs from its record {shape}", path=array_path)
        if x.dtype.kind != "f":
            raise FeatureError(f"features must be floats, found {x.dtype}", path=array_path)
        _check_finite(x, array_path)
        return VideoFeatures(stem=stem, x=x, snippets=snippets, record=rec)

    def channel_slice(self, name: str) -> slice:
        """Slice of the feature dimension holding channel group ``name``."""
        if name not in self.spec.channels:
            raise FeatureError(f"no channel group '{name}' (have {sorted(self.spec.channels)})",
                               path=self.path / MANIFEST)
        start, end = self.spec.channels[name]
        return slice(start, end)
