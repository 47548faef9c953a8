"""Feature-dimension reduction: a PCA fitted on TRAINING videos, stored with the features.

``patchvad reduce FEATS --data ROOT --dim 64 --out FEATS64`` fits, per channel group
except ``motion`` (kept exactly: the motion prior and context read its channels), a
PCA on patch tokens sampled from the training videos of ``ROOT`` only, and writes a new
feature store of ``(T, Gh, Gw, 64)`` float16 arrays (every video of FEATS, train and
test, projected with that one projection):

    FEATS64/manifest.json            spec of the reduced features + "reduction" record
    FEATS64/projection.safetensors   per group: "<group>.mean" (D_g,), "<group>.components" (D_g, k_g)
    FEATS64/<stem>.npy / <stem>.json as any feature store

``fit``, ``test`` and ``evaluate`` read FEATS64 like any store (its spec says what the
features are). The reduced spec keeps backbone, grid and snippet geometry; its
``weights_hash`` becomes ``<source hash>+pca<dim>-<projection hash>`` and its channel
slices the reduced ones, so a model trained on reduced features refuses raw ones (and
the other way round). Checkpoints trained on a reduced store carry the projection, so
``patchvad predict`` on raw video applies it after the backbone.

Fitting reads through ``np.load(mmap_mode="r")``: per training video a random sample of
tokens (``samples / videos`` of them) is gathered and folded into a float64 sum and
scatter matrix per group, so memory is ``O(D^2)`` plus one video's sample, whatever the
dataset size. Projecting streams each video in chunks of snippets.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from patchvad.data.folder import DatasetFolder
from patchvad.errors import ConfigError, FeatureError
from patchvad.features.backbones import FeatureSpec
from patchvad.features.store import FeatureStore
from patchvad.io.files import atomic_path

FORMAT = "patchvad-projection/1"
PROJECTION_FILE = "projection.safetensors"
KEEP = ("motion",)
"""Channel groups copied unchanged (never projected)."""


def split_dims(spec: FeatureSpec, dim: int) -> dict[str, int]:
    """Components per projected group for a total of ``dim`` output channels.

    Kept groups (motion) take their own width; the rest of ``dim`` is shared between
    the projected groups in proportion to their width (largest remainder), at least 1
    and at most the group's width each.
    """
    widths = {g: b - a for g, (a, b) in spec.channels.items()}
    kept = sum(w for g, w in widths.items() if g in KEEP)
    proj = {g: w for g, w in widths.items() if g not in KEEP}
    budget = dim - kept
    if not proj:
        raise ConfigError("these features have no channel group to reduce (only motion)")
    if budget < len(proj) or dim >= spec.dim:
        raise ConfigError(f"--dim {dim} out of range: between {kept + len(proj)} (motion's {kept} channels plus one "
                          f"per reduced group) and {spec.dim - 1} (the features have {spec.dim})")
    total = sum(proj.values())
    exact = {g: budget * w / total for g, w in proj.items()}
    out = {g: max(1, min(proj[g], int(np.floor(v)))) for g, v in exact.items()}
    for g in sorted(proj, key=lambda g: exact[g] - np.floor(exact[g]), reverse=True):
        if sum(out.values()) >= budget:
            break
        if out[g] < proj[g]:
            out[g] += 1
    while sum(out.values()) > budget:          # the minimum of 1 overshot: take from the largest
        g = max(out, key=lambda group: out[group])
        out[g] -= 1
    return out


@dataclass
class Projection:
    """Per-group PCA: ``z_g = (x_g - mean_g) @ components_g``; kept groups copied.

    Attributes:
        source: spec of the raw features; spec: spec of the projected ones.
        mean, components: per projected group, ``(D_g,)`` and ``(D_g, k_g)`` float32
            (orthonormal columns, by decreasing variance, sign fixed).
        record: how it was fitted (training videos, tokens, explained variance...).
    """

    source: FeatureSpec
    spec: FeatureSpec
    mean: dict[str, np.ndarray]
    components: dict[str, np.ndarray]
    record: dict

    @property
    def dim(self) -> int:
        """Channels of the projected features."""
        return self.spec.dim

    def apply(self, x: np.ndarray, chunk: int = 64) -> np.ndarray:
        """Raw ``(T, Gh, Gw, D)`` -> projected ``(T, Gh, Gw, dim)`` float16, ``chunk`` snippets at a time."""
        if x.shape[-1] != self.source.dim:
            raise FeatureError(f"features have {x.shape[-1]} channels; this projection takes {self.source.dim}")
        out = np.empty((*x.shape[:-1], self.dim), dtype=np.float16)
        for t0 in range(0, x.shape[0], chunk):
            xc = x[t0:t0 + chunk]
            for g, (a, b) in self.spec.channels.items():
                sa, sb = self.source.channels[g]
                v = np.asarray(xc[..., sa:sb], dtype=np.float32)
                if g in self.components:
                    v = (v - self.mean[g]) @ self.components[g]
                out[t0:t0 + chunk, ..., a:b] = v
        return out

    def reconstruct(self, z: np.ndarray) -> np.ndarray:
        """Projected -> raw-space approximation ``(T, Gh, Gw, D)`` float32 (for error checks)."""
        out = np.empty((*z.shape[:-1], self.source.dim), dtype=np.float32)
        for g, (a, b) in self.spec.channels.items():
            sa, sb = self.source.channels[g]
            v = np.asarray(z[..., a:b], dtype=np.float32)
            out[..., sa:sb] = v @ self.components[g].T + self.mean[g] if g in self.components else v
        return out

    # -- file ---------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        """The file's tensors: ``"<group>.mean" (D_g,)`` and ``"<group>.components" (D_g, k_g)`` float32."""
        out = {}
        for g in self.components:
            out[f"{g}.mean"] = torch.from_numpy(np.ascontiguousarray(self.mean[g], dtype=np.float32))
            out[f"{g}.components"] = torch.from_numpy(np.ascontiguousarray(self.components[g], dtype=np.float32))
        return out

    def metadata(self) -> dict[str, str]:
        """The file's string metadata: format, both specs and the fit record (JSON)."""
        return {"format": FORMAT, "source_spec": json.dumps(self.source.to_dict()),
                "spec": json.dumps(self.spec.to_dict()), "record": json.dumps(self.record)}

    def save(self, path: str | Path) -> Path:
        """Write the projection as one safetensors file (atomically); returns ``path``."""
        path = Path(path)
        with atomic_path(path) as tmp:
            save_file(self.tensors(), str(tmp), metadata=self.metadata())
        return path

    @classmethod
    def from_parts(cls, tensors: dict[str, torch.Tensor], meta: dict[str, str],
                   source: str | Path | None = None) -> "Projection":
        """Rebuild a projection from its file's tensors and metadata (``source`` names the file in errors).

        Raises:
            FeatureError: not a patchvad projection, or a part is missing or malformed.
        """
        if meta.get("format") != FORMAT:
            raise FeatureError(f"not a patchvad projection (format {meta.get('format')!r})", path=source)
        try:
            src = FeatureSpec.from_dict(json.loads(meta["source_spec"]))
            spec = FeatureSpec.from_dict(json.loads(meta["spec"]))
            record = json.loads(meta["record"])
            groups = [g for g in spec.channels if g not in KEEP]
            mean = {g: tensors[f"{g}.mean"].numpy().astype(np.float32) for g in groups}
            comps = {g: tensors[f"{g}.components"].numpy().astype(np.float32) for g in groups}
        except (KeyError, ValueError, TypeError) as exc:
            raise FeatureError(f"malformed projection ({exc})", path=source) from None
        return cls(source=src, spec=spec, mean=mean, components=comps, record=record)

    @classmethod
    def load(cls, path: str | Path) -> "Projection":
        """Read a projection written by :meth:`save`.

        Raises:
            FeatureError: the file is missing, not safetensors, or not a projection.
        """
        from safetensors.torch import load_file
        path = Path(path)
        if not path.is_file():
            raise FeatureError("projection file not found", path=path)
        try:
            tensors = load_file(str(path))
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
        except Exception as exc:  # safetensors raises several types
            raise FeatureError(f"not a safetensors file ({exc})", path=path) from None
        return cls.from_parts(tensors, meta, source=path)


def _digest(mean: dict[str, np.ndarray], components: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for g in sorted(components):
        h.update(g.encode())
        h.update(np.ascontiguousarray(mean[g], dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(components[g], dtype=np.float32).tobytes())
    return h.hexdigest()[:12]


def fit_projection(store: FeatureStore, stems: list[str], dim: int, samples: int = 200_000, seed: int = 0,
                   log: Callable[[str], Any] | None = None) -> Projection:
    """Fit the per-group PCA on tokens sampled from the videos ``stems`` (the training videos).

    Args:
        store: raw feature store.
        stems: videos to sample from (callers pass the TRAINING videos only).
        dim: output channels in total (motion's kept channels included).
        samples: tokens sampled in all (spread evenly over the videos, at random inside each).
        seed: sampling seed.
        log: called with a progress line every 200 videos; None for silence.
    """
    if not stems:
        raise ConfigError("no training videos to fit the projection on")
    spec = store.spec
    dims = split_dims(spec, dim)
    rng = np.random.default_rng(seed)
    per_video = max(1, -(-samples // len(stems)))
    acc: dict[str, list[Any]] = {g: [0, np.zeros(b - a), np.zeros((b - a, b - a))]
                                 for g, (a, b) in spec.channels.items() if g in dims}
    t0 = time.perf_counter()
    for i, stem in enumerate(stems):
        x = store.load(stem, mmap=True).x
        flat = x.reshape(-1, x.shape[-1])                      # a view of the memory map
        pick = np.sort(rng.choice(flat.shape[0], size=min(per_video, flat.shape[0]), replace=False))
        rows = np.asarray(flat[pick], dtype=np.float64)        # reads only the sampled tokens' pages
        for g, (a, b) in spec.channels.items():
            if g in acc:
                v = rows[:, a:b]
                acc[g][0] += v.shape[0]
                acc[g][1] += v.sum(0)
                acc[g][2] += v.T @ v
        del x, flat, rows
        if log and (i + 1) % 200 == 0:
            log(f"sampled {i + 1}/{len(stems)} training videos ({time.perf_counter() - t0:.1f}s)")
    mean, comps, explained = {}, {}, {}
    for g, (n, s1, s2) in acc.items():
        mu = s1 / n
        cov = (s2 - n * np.outer(mu, mu)) / max(1, n - 1)
        evals, evecs = np.linalg.eigh(cov)
        order = np.argsort(evals)[::-1]
        k = min(dims[g], n)
        top = evecs[:, order[:k]]
        top *= np.where(top[np.abs(top).argmax(0), np.arange(k)] < 0, -1.0, 1.0)    # a fixed sign per component
        if k < dims[g]:                                        # fewer tokens than components: pad with zeros
            top = np.concatenate([top, np.zeros((top.shape[0], dims[g] - k))], axis=1)
        mean[g] = mu.astype(np.float32)
        comps[g] = top.astype(np.float32)
        total = float(np.clip(evals, 0, None).sum())
        explained[g] = float(np.clip(evals[order[:k]], 0, None).sum() / total) if total > 0 else 1.0
    digest = _digest(mean, comps)
    channels, start = {}, 0
    for g, (a, b) in spec.channels.items():
        width = dims.get(g, b - a)
        channels[g] = [start, start + width]
        start += width
    reduced = FeatureSpec(backbone=spec.backbone, weights_hash=f"{spec.weights_hash}+pca{dim}-{digest}",
                          input_size=spec.input_size, grid=spec.grid, snippet_len=spec.snippet_len,
                          stride=spec.stride, passes=spec.passes, motion=spec.motion, channels=channels)
    record = {"method": "pca", "dim": dim, "components": dims, "kept": [g for g in spec.channels if g in KEEP],
              "explained_variance": explained, "fitted_on": {"split": "train", "videos": len(stems),
                                                              "tokens": int(next(iter(acc.values()))[0])},
              "samples": samples, "seed": seed, "digest": digest}
    return Projection(source=spec, spec=reduced, mean=mean, components=comps, record=record)


@dataclass
class ReduceReport:
    """What :func:`reduce_store` did.

    Attributes:
        out: the reduced store.
        projection: the projection applied (fitted now or reused from ``out``).
        done: videos projected by this run.
        skipped: videos already finished in ``out``.
        seconds: wall time of the run.
    """

    out: Path
    projection: Projection
    done: list[str]
    skipped: list[str]
    seconds: float

    def summary(self) -> str:
        """One line for the terminal: channels per group, variance kept, videos done and skipped."""
        ev = ", ".join(f"{g} {k} PCs ({100 * self.projection.record['explained_variance'][g]:.1f}% of the variance)"
                       for g, k in self.projection.record["components"].items())
        return (f"{self.out}: {self.projection.dim} channels ({ev}; motion kept); projected {len(self.done)} videos, "
                f"skipped {len(self.skipped)} already finished, {self.seconds:.1f}s")


def reduce_store(features: str | Path, data_root: str | Path, out: str | Path, dim: int, samples: int = 200_000,
                 seed: int = 0, log: Callable[[str], Any] | None = None) -> ReduceReport:
    """Fit the projection on the training videos of ``data_root`` and write the reduced store ``out``.

    Resumable: a rerun with the same arguments reuses ``out/projection.safetensors``
    and skips finished videos.
    """
    t0 = time.perf_counter()
    source = FeatureStore(features)
    if source.reduction is not None:
        raise ConfigError("these features are already reduced; reduce the raw store instead", path=source.path)
    train = [e.stem for e in DatasetFolder(data_root, check_files=False).train_set()]
    have = set(source.finished())
    missing = [s for s in train if s not in have]
    if missing:
        raise FeatureError(f"{len(missing)} training video(s) have no features (first: {missing[:3]})",
                           path=source.path)
    out = Path(out)
    proj_path = out / PROJECTION_FILE
    proj = None
    if proj_path.exists():
        old = Projection.load(proj_path)
        r = old.record
        if (old.source.compatible_with(source.spec) == [] and r.get("dim") == dim and r.get("samples") == samples
                and r.get("seed") == seed and r["fitted_on"]["videos"] == len(train)):
            proj = old
    if proj is None:
        proj = fit_projection(source, train, dim, samples=samples, seed=seed, log=log)
    record = {**proj.record, "file": PROJECTION_FILE, "source": str(source.path), "source_spec": source.spec.to_dict()}
    store = FeatureStore(out, spec=proj.spec, extra={"reduction": record})
    if not proj_path.exists():
        proj.save(proj_path)
    done, skipped = [], []
    for stem in source.finished():
        if store.is_complete(stem, verify=False):
            skipped.append(stem)
            continue
        store.remove_partial(stem)
        vf = source.load(stem, mmap=True)
        info = {k: v for k, v in vf.record.items() if k not in ("stem", "shape", "dtype", "bytes", "sha256",
                                                                   "snippets")}
        store.write(stem, proj.apply(vf.x), vf.snippets, info)
        done.append(stem)
        del vf
    store.write_index()
    return ReduceReport(out=out, projection=proj, done=done, skipped=skipped, seconds=time.perf_counter() - t0)


def load_reduction(store: FeatureStore) -> Projection | None:
    """The projection a reduced store was made with (None for raw features)."""
    rec = store.reduction
    if rec is None:
        return None
    proj = Projection.load(store.path / rec.get("file", PROJECTION_FILE))
    if proj.spec.compatible_with(store.spec):
        raise FeatureError("projection.safetensors does not belong to these features (spec differs)",
                           path=store.path / PROJECTION_FILE)
    return proj


def reduce_command(features: Path, data: Path, out: Path, dim: int, samples: int = 200_000,
                   seed: int = 0) -> ReduceReport:
    """``patchvad reduce``: fit on the training videos, write the reduced store, print a summary."""
    import sys
    report = reduce_store(features, data, out, dim, samples=samples, seed=seed,
                          log=lambda m: print(m, file=sys.stderr, flush=True))
    print(report.summary())
    return report


__all__ = ["FORMAT", "PROJECTION_FILE", "Projection", "ReduceReport", "fit_projection", "load_reduction",
           "reduce_command", "reduce_store", "split_dims"]
