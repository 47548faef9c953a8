"""The extraction loop: dataset folder -> feature store. Resumable, atomic, sharded.

Decoding runs in a background thread (PyAV releases the GIL) while the backbone
works on the previous batch. Each finished video is written atomically with a
completion record, so a killed run restarts where it stopped and recomputes nothing
that finished. Under ``torchrun`` each rank takes every ``world_size``-th video of
the sorted list (a deterministic shard).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from patchvad.data.folder import DatasetFolder, VideoEntry
from patchvad.errors import FeatureError, PatchvadError, VideoError
from patchvad.features.backbones import PatchFeatureExtractor
from patchvad.features.decode import _decode_worker, _from_shared
from patchvad.features.snippets import SnippetMap
from patchvad.features.store import FeatureStore
from patchvad.io.video import VideoReader, iter_snippets

_END = object()


def _prefetch(iterator: Iterator, depth: int = 4) -> Iterator:
    """Run ``iterator`` in a thread, ``depth`` items ahead; re-raise its errors here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def worker() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as exc:  # noqa: BLE001 - forwarded to the consumer
            q.put(exc)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def extract_video(source: str | Path, extractor: PatchFeatureExtractor, batch_size: int = 8
                  ) -> tuple[np.ndarray, SnippetMap, dict]:
    """Patch features of one video.

    Returns:
        ``features (T, Gh, Gw, D) float32``, the snippet map over the decoded frames,
        and facts ``{"frame_count", "fps", "width", "height"}``.

    Raises:
        VideoError: missing, empty, undecodable or truncated video.
    """
    spec = extractor.spec
    reader = VideoReader(source)
    frames = _prefetch(reader.frames(size=spec.input_size))
    batch: list[np.ndarray] = []
    outputs: list[np.ndarray] = []
    starts: list[int] = []
    frame_count = 0
    for start, snippet, n_real in iter_snippets(frames, spec.snippet_len, spec.stride):
        batch.append(snippet)
        starts.append(start)
        frame_count = max(frame_count, start + n_real)
        if len(batch) == batch_size:
            outputs.append(extractor(np.stack(batch)))
            batch = []
    if batch:
        outputs.append(extractor(np.stack(batch)))
    if not outputs:
        raise VideoError("contains no frames", path=source)
    snippets = SnippetMap.build(frame_count, spec.snippet_len, spec.stride)
    if snippets.starts.tolist() != starts:  # the reader and the map must agree exactly
        raise VideoError(f"snippet layout mismatch ({len(starts)} read, {snippets.num_snippets} expected)",
                         path=source)
    feats = np.concatenate(outputs, axis=0)
    facts = {"frame_count": frame_count, "fps": reader.fps, "width": reader.width, "height": reader.height}
    return feats, snippets, facts


def extract_many(sources: Sequence[str | Path], extractor: PatchFeatureExtractor, batch_size: int = 8,
                 decode_workers: int = 0) -> Iterator[tuple[int, np.ndarray | None, SnippetMap | None, dict | str]]:
    """Features of many videos, yielded as each finishes (not necessarily in order).

    With ``decode_workers > 0`` videos are decoded by that many processes in parallel
    and the backbone runs on batches that may mix videos (what a GPU needs: decoding
    is the bottleneck there). Memory stays bounded: workers send chunks of snippets
    through a bounded queue.

    Yields:
        ``(index, features (T, Gh, Gw, D) float32, snippet map, facts)`` per video, or
        ``(index, None, None, error message)`` for a video that failed.
    """
    spec = extractor.spec
    if decode_workers <= 0:
        for index, source in enumerate(sources):
            try:
                feats, snippets, facts = extract_video(source, extractor, batch_size=batch_size)
            except PatchvadError as exc:
                yield index, None, None, str(exc)
                continue
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop a days-long run
                yield index, None, None, f"{source}: {type(exc).__name__}: {exc}"
                continue
            yield index, feats, snippets, facts
        return

    import multiprocessing as mp

    ctx = mp.get_context("spawn")       # no forked torch/OpenMP state in workers
    tasks = ctx.Queue()
    results = ctx.Queue(maxsize=4 * decode_workers)
    for index, source in enumerate(sources):
        tasks.put((index, str(source)))
    for _ in range(decode_workers):
        tasks.put(None)
    workers = [ctx.Process(target=_decode_worker, args=(tasks, results, spec.input_size, spec.snippet_len,
                                                        spec.stride, batch_size), daemon=True)
               for _ in range(decode_workers)]
    for w in workers:
        w.start()
    parts: dict[int, dict[int, np.ndarray]] = {}
    done_info: dict[int, tuple[int, list[int], dict]] = {}
    pending: list[tuple[int, int, np.ndarray]] = []      # (video, part, snippets) awaiting the backbone
    remaining = len(sources)

    def flush(force: bool) -> None:
        while pending and (force or sum(len(x) for _, _, x in pending) >= batch_size):
            take, count = [], 0
            while pending and count < batch_size:
                take.append(pending.pop(0))
                count += len(take[-1][2])
            feats = extractor(np.concatenate([x for _, _, x in take]))
            offset = 0
            for vid, part, x in take:
                parts.setdefault(vid, {})[part] = feats[offset:offset + len(x)]
                offset += len(x)

    try:
        while remaining:
            index, kind, payload = results.get()
            if kind == "chunk":
                part, name, shape = payload
                pending.append((index, part, _from_shared(name, shape)))
                flush(force=False)
            elif kind == "error":
                parts.pop(index, None)
                pending[:] = [p for p in pending if p[0] != index]
                remaining -= 1
                yield index, None, None, payload
            else:
                done_info[index] = payload
            # A video is finished when all its parts went through the backbone.
            for vid in list(done_info):
                n_parts, starts, facts = done_info[vid]
                if any(p[0] == vid for p in pending):
                    flush(force=True)
                if len(parts.get(vid, {})) == n_parts:
                    del done_info[vid]
                    got = parts.pop(vid)
                    feats = np.concatenate([got[k] for k in range(n_parts)])
                    snippets = SnippetMap.build(facts["frame_count"], spec.snippet_len, spec.stride)
                    remaining -= 1
                    if snippets.starts.tolist() != starts:
                        yield vid, None, None, f"{sources[vid]}: snippet layout mismatch"
                    else:
                        yield vid, feats, snippets, facts
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
            w.join(timeout=5)


@dataclass
class ExtractReport:
    """What one extraction run did."""

    out: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        text = (f"extracted {len(self.done)} videos ({self.frames} frames, {self.frames_per_second:.0f} frames/s), "
                f"skipped {len(self.skipped)} already finished, {len(self.failed)} failed")
        for stem, why in self.failed.items():
            text += f"\n  FAILED {stem}: {why}"
        return text


def shard(entries: Sequence[VideoEntry], rank: int, world_size: int) -> list[VideoEntry]:
    """Deterministic shard: sort by stem, take every ``world_size``-th from ``rank``."""
    ordered = sorted(entries, key=lambda e: e.stem)
    return ordered[rank::world_size]


def extract_dataset(root: str | Path, out: str | Path, extractor: PatchFeatureExtractor | None = None,
                    splits: Sequence[str] = ("train", "test"), batch_size: int = 8, rank: int = 0,
                    world_size: int = 1, progress: bool = True, verify: bool = True, decode_workers: int = 0,
                    **extractor_kwargs) -> ExtractReport:
    """Extract features of every video of a dataset folder into ``out``.

    Finished videos are skipped (verified by size and checksum); a failing video is
    reported and the run continues with the next one.

    Args:
        root: dataset folder (manifest.csv).
        out: feature folder.
        extractor: a ready extractor; else one is built from ``extractor_kwargs``.
        splits: which splits to extract.
        rank, world_size: shard of this process (torchrun).
        decode_workers: decode in that many processes (GPU extraction; see extract_many).
    """
    from tqdm import tqdm

    dataset = DatasetFolder(root)
    extractor = extractor or PatchFeatureExtractor(**extractor_kwargs)
    store = FeatureStore(out, spec=extractor.spec)
    entries = shard([e for e in dataset.entries if e.split in splits], rank, world_size)
    report = ExtractReport(out=Path(out))
    t0 = time.perf_counter()
    bar = tqdm(total=len(entries), desc=f"extract[{rank}]" if world_size > 1 else "extract", unit="video",
               disable=not progress)
    try:
        todo = []
        for entry in entries:
            if store.is_complete(entry.stem, verify=verify):
                report.skipped.append(entry.stem)
                bar.update(1)
                continue
            store.remove_partial(entry.stem)
            todo.append(entry)
        for index, feats, snippets, facts in extract_many([e.path for e in todo], extractor, batch_size=batch_size,
                                                          decode_workers=decode_workers):
            entry = todo[index]
            bar.update(1)
            if feats is None:
                report.failed[entry.stem] = str(facts)
                continue
            if entry.frames is not None and facts["frame_count"] != entry.frames:
                # The manifest's count is the ground truth's length: features of another length
                # would fail evaluation later, far from the cause.
                report.failed[entry.stem] = (f"{entry.path}: decoded {facts['frame_count']} frames but the manifest "
                                             f"says {entry.frames} (truncated or damaged video, or a wrong manifest)")
                continue
            try:
                store.write(entry.stem, feats, snippets, {"video": entry.video, **facts})
            except FeatureError as exc:        # features of this video unusable (NaN / inf); a failed write stops
                report.failed[entry.stem] = str(exc)
                continue
            report.done.append(entry.stem)
            report.frames += facts["frame_count"]
    finally:
        bar.close()             # also on an error, so the message starts on a line of its own
    report.seconds = time.perf_counter() - t0
    if world_size == 1:
        store.write_index()
    return report


def extract_command(root: Path, out: Path, device: str = "cpu", batch_size: int = 8,
                    splits: Sequence[str] = ("train", "test"), threads: int | None = None,
                    decode_workers: int = 0, **extractor_kwargs) -> ExtractReport:
    """``patchvad extract``: build the extractor, run it over the dataset, print a summary.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) each process takes its deterministic shard
    of the videos, writes its own finished files, and rank 0 writes the merged
    manifest after a barrier. CPU processes split the cores between them unless
    ``threads`` is given. Features are bitwise identical for equal thread counts;
    across thread counts oneDNN's reductions may differ by one float16 step.
    """
    import torch

    from patchvad import distributed

    with distributed.session(device) as ctx:
        device = distributed.rank_device(device, ctx)
        if device == "cpu":
            torch.set_num_threads(distributed.threads_per_process(threads))
        extractor = PatchFeatureExtractor(device=device, **extractor_kwargs)
        if ctx.distributed:
            if ctx.is_main:
                FeatureStore(out, spec=extractor.spec)      # rank 0 creates (or checks) the manifest first
            ctx.barrier()
        report = extract_dataset(root, out, extractor=extractor, splits=splits, batch_size=batch_size,
                                 rank=ctx.rank, world_size=ctx.world_size, decode_workers=decode_workers)
        if ctx.distributed:
            ctx.barrier()           # every shard finished
            if ctx.is_main:
                FeatureStore(out).write_index()
    rank, world_size, distributed_run = ctx.rank, ctx.world_size, ctx.distributed
    prefix = f"[rank {rank}/{world_size}] " if distributed_run else ""
    print(prefix + report.summary())
    return report
