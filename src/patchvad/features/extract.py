"""The extraction loop: dataset folder -> feature store. Resumable, atomic, sharded.

Decoding runs in a background thread (PyAV releases the GIL) while the backbone
works on the previous batch. Each finished video is written atomically with a
completion record, so a killed run restarts where it stopped and recomputes nothing
that finished. Under ``torchrun`` each rank takes every ``world_size``-th video of
the sorted list (a deterministic shard).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from patchvad.data.folder import DatasetFolder, VideoEntry
from patchvad.errors import FeatureError, PatchvadError, VideoError
from patchvad.features.backbones import PatchFeatureExtractor, PendingFeatures
from patchvad.features.decode import SLOT_NOT_STARTED, decode_worker, discard_shared, remove_worker_blocks, take_shared
from patchvad.features.snippets import SnippetMap, iter_snippets
from patchvad.features.store import FeatureStore
from patchvad.io.video import VideoReader

if TYPE_CHECKING:
    from multiprocessing.context import SpawnProcess

    import torch

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
        except BaseException as exc:  # forwarded to the consumer
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


def extract_video(source: str | Path, extractor: PatchFeatureExtractor, batch_size: int = 8,
                  times: list[float] | None = None,
                  natives: Callable[[np.ndarray], None] | None = None) -> tuple[np.ndarray, SnippetMap, dict]:
    """Patch features of one video.

    Args:
        source: the video file, stream URL or folder of frame images.
        extractor: the backbone (its spec gives input size and snippet geometry).
        batch_size: snippets per backbone call.
        times: if given, receives every frame's presentation time in seconds
            (:meth:`VideoReader.frames`).
        natives: if given, called with every decoded frame at its own size, ``(H, W, 3)``
            uint8 RGB, in order, from the same decode as the features
            (:meth:`VideoReader.frame_pairs`: the features are those of a plain read).
            For sources that cannot be read a second time (a URL, a camera).

    Returns:
        ``features (T, Gh, Gw, D) float32``, the snippet map over the decoded frames,
        and facts ``{"frame_count", "fps", "width", "height"}``.

    Raises:
        VideoError: missing, empty, undecodable or truncated video.
    """
    spec = extractor.spec
    reader = VideoReader(source)
    if natives is None:
        frames = _prefetch(reader.frames(size=spec.input_size, times=times))
    else:
        def handed_on() -> Iterator[np.ndarray]:
            for native, small in reader.frame_pairs(spec.input_size, times=times):
                natives(native)
                yield small

        frames = _prefetch(handed_on())
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
    through a bounded queue. Batches are then made of whole hand-over blocks
    (:data:`HANDOVER_SNIPPETS` snippets, fewer at a video's end), so one may exceed
    ``batch_size`` by up to ``HANDOVER_SNIPPETS - 1`` snippets.

    Yields:
        ``(index, features (T, Gh, Gw, D) float32, snippet map, facts)`` per video, or
        ``(index, None, None, error message)`` for a video that failed.
    """
    if decode_workers <= 0:
        for index, source in enumerate(sources):
            try:
                feats, snippets, facts = extract_video(source, extractor, batch_size=batch_size)
            except PatchvadError as exc:
                yield index, None, None, str(exc)
                continue
            except Exception as exc:  # one bad file must not stop a days-long run
                yield index, None, None, f"{source}: {type(exc).__name__}: {exc}"
                continue
            yield index, feats, snippets, facts
        return

    yield from _extract_parallel(sources, extractor, batch_size, decode_workers)


# Snippets per shared-memory block (at 224x224, 8 x 2.4 MB): small enough that the blocks
# in flight stay well under /dev/shm's size, big enough that messages stay few.
HANDOVER_SNIPPETS = 8


def _check_shared_memory(needed: int, decode_workers: int) -> None:
    """Fail early and clearly when /dev/shm cannot hold the blocks in flight.

    Writing past a full /dev/shm kills the writer with SIGBUS instead of raising, so
    this is checked before any worker starts (containers often give 64 MB).
    """
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return                      # no /dev/shm (not Linux): the platform's own limits apply
    # Under torchrun every process of this node runs its own decode workers in the same /dev/shm.
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    needed *= local
    free = st.f_bavail * st.f_frsize
    if free < needed:
        who = f"{decode_workers} decode workers" + (f" in each of {local} processes" if local > 1 else "")
        raise FeatureError(f"/dev/shm has {free / 2 ** 20:.0f} MB free but {who} need about "
                           f"{needed / 2 ** 20:.0f} MB for the frames in flight: lower --decode-workers or "
                           f"give the machine more shared memory (docker run --shm-size=2g)")


def _extract_parallel(sources: Sequence[str | Path], extractor: PatchFeatureExtractor, batch_size: int,
                      decode_workers: int) -> Iterator[tuple[int, np.ndarray | None, SnippetMap | None, dict | str]]:
    """``extract_many`` with ``decode_workers`` decoding processes feeding this one.

    Batches may mix videos. A worker that dies (FFmpeg crashing on a file, SIGKILL, a
    full /dev/shm) fails the video it was decoding (read from its shared slot, so the
    videos it finished before are unaffected even when their messages are still
    queued), is replaced, and the run goes on. A message lost with a killed worker
    cannot hang the run: once every worker has exited and the queue is empty, the
    videos never reported fail.

    Raises:
        FeatureError: /dev/shm too small, or a worker died before it started (the
            calling script lacks ``if __name__ == "__main__":``, or the machine is out
            of memory).
    """
    spec = extractor.spec
    w, h = spec.input_size
    block_bytes = HANDOVER_SNIPPETS * spec.snippet_len * w * h * 3
    queued = 2 * decode_workers
    # Blocks in the queue, one being filled per worker, one being read here.
    _check_shared_memory((queued + decode_workers + 1) * block_bytes, decode_workers)
    run = _ParallelRun(sources, extractor, batch_size, decode_workers, queued)
    try:
        yield from run.videos()
    finally:
        run.close()


class _ParallelRun:
    """The state of one :func:`_extract_parallel` run: decode workers, queues, videos in flight.

    Building it starts the workers; :meth:`videos` yields the results; :meth:`close`
    stops the workers and frees what is left in shared memory.
    """

    def __init__(self, sources: Sequence[str | Path], extractor: PatchFeatureExtractor, batch_size: int,
                 decode_workers: int, queued: int):
        import multiprocessing as mp

        self.sources = sources
        self.extractor = extractor
        self.batch_size = batch_size
        self.spec = extractor.spec
        self.ctx = mp.get_context("spawn")       # no forked torch/OpenMP state in workers
        self.tasks = self.ctx.Queue()
        self.results = self.ctx.Queue(maxsize=queued)
        for index, source in enumerate(sources):
            self.tasks.put((index, str(source)))
        for _ in range(decode_workers):
            self.tasks.put(None)
        # slots[i]: the video worker i is decoding (or SLOT_IDLE / SLOT_NOT_STARTED).
        self.slots = self.ctx.Array("q", [SLOT_NOT_STARTED] * decode_workers, lock=False)
        self.started: list[int] = []          # pids of every worker, replacements included
        self.workers = [self.start_worker(i) for i in range(decode_workers)]
        self.device = extractor.device
        self.cuda = self.device.type == "cuda"
        # Snippets waiting for the backbone, already on the device: (video, part, (n, L, H, W, 3) uint8).
        self.pending: list[tuple[int, int, torch.Tensor]] = []
        # Per video and part: the batch's (possibly still running) features and the part's rows in it.
        self.parts: dict[int, dict[int, tuple[PendingFeatures, int, int]]] = {}
        self.done_info: dict[int, tuple[int, list[int], dict]] = {}
        self.reported: set[int] = set()          # videos yielded (features or failure)
        self.failed: set[int] = set()

    def start_worker(self, slot: int) -> SpawnProcess:
        """Start a decode worker for ``slot`` (first start or replacement)."""
        self.slots[slot] = SLOT_NOT_STARTED
        spec = self.spec
        proc = self.ctx.Process(target=decode_worker,
                                args=(self.tasks, self.results, self.slots, slot, spec.input_size,
                                      spec.snippet_len, spec.stride, HANDOVER_SNIPPETS),
                                daemon=True)
        proc.start()
        assert proc.pid is not None         # set by start()
        self.started.append(proc.pid)
        return proc

    def flush(self, force: bool) -> None:
        """Submit pending snippets to the backbone in batches (all of them when ``force``)."""
        import torch

        pending, batch_size = self.pending, self.batch_size
        while pending and (force or sum(len(x) for _, _, x in pending) >= batch_size):
            take, count = [], 0
            while pending and count < batch_size:
                take.append(pending.pop(0))
                count += len(take[-1][2])
            batch = take[0][2] if len(take) == 1 else torch.cat([x for _, _, x in take])
            feats = self.extractor.submit(batch)
            offset = 0
            for vid, part, x in take:
                self.parts.setdefault(vid, {})[part] = (feats, offset, len(x))
                offset += len(x)

    def fail(self, index: int, why: str) -> tuple[int, None, None, str]:
        """Give up on a video: forget its parts; returns its failure to yield."""
        self.failed.add(index)
        self.reported.add(index)
        self.done_info.pop(index, None)
        self.parts.pop(index, None)
        self.pending[:] = [p for p in self.pending if p[0] != index]
        return index, None, None, why

    def dead_workers(self) -> Iterator[tuple[int, str]]:
        """Videos whose worker died; each dead worker is replaced (tasks may remain)."""
        workers, sources = self.workers, self.sources
        for i, proc in enumerate(workers):
            if proc.exitcode is None or proc.exitcode == 0:
                continue
            video = self.slots[i]
            if video == SLOT_NOT_STARTED:
                raise FeatureError(f"a decode worker process exited with code {proc.exitcode} before it started "
                                   f"(a script that calls patchvad's extraction needs `if __name__ == "
                                   f"'__main__':` around it; or the machine is out of memory)")
            workers[i] = self.start_worker(i)
            # A video whose "done" arrived has all its chunks here: it will complete.
            if video >= 0 and video not in self.reported and video not in self.done_info:
                yield video, (f"{sources[video]}: the decoding process died (exit code {proc.exitcode}: FFmpeg "
                              f"crashed on this file, or /dev/shm ran out)")

    def videos(self) -> Iterator[tuple[int, np.ndarray | None, SnippetMap | None, dict | str]]:
        """Receive the workers' messages until every video is reported; yield each video's result."""
        sources = self.sources
        last_check = time.monotonic()
        while len(self.reported) < len(sources):
            try:
                index, kind, payload = self.results.get(timeout=1.0)
            except queue.Empty:
                kind = None
            if kind is None or time.monotonic() - last_check > 1.0:
                last_check = time.monotonic()
                for vid, why in list(self.dead_workers()):
                    yield self.fail(vid, why)
                if kind is None and all(proc.exitcode is not None for proc in self.workers):
                    # Every worker is gone and nothing is queued: what was not reported never will be.
                    for vid in range(len(sources)):
                        if vid not in self.reported:
                            yield self.fail(vid, f"{sources[vid]}: not fully reported by its decoding process (it "
                                                 f"was killed before its last messages were sent)")
                    break
                if kind is None:
                    continue
            if index in self.failed:             # leftovers of a video given up on
                if kind == "chunk":
                    discard_shared(payload[1])
                continue
            if kind == "chunk":
                part, name, shape = payload
                x = take_shared(name, shape, pin=self.cuda)
                if self.cuda:
                    x = x.to(self.device, non_blocking=True)     # overlaps with the running batch
                self.pending.append((index, part, x))
                self.flush(force=False)
            elif kind == "error":
                yield self.fail(index, payload)
            else:
                self.done_info[index] = payload
            yield from self.finished()

    def finished(self) -> Iterator[tuple[int, np.ndarray | None, SnippetMap | None, dict | str]]:
        """The videos whose parts all went through the backbone, with their features."""
        spec, sources = self.spec, self.sources
        for vid in list(self.done_info):
            n_parts, starts, facts = self.done_info[vid]
            if any(p[0] == vid for p in self.pending):
                self.flush(force=True)
            if len(self.parts.get(vid, {})) == n_parts:
                del self.done_info[vid]
                got = self.parts.pop(vid)
                feats = np.concatenate([batch.numpy()[offset:offset + n]
                                        for batch, offset, n in (got[k] for k in range(n_parts))])
                snippets = SnippetMap.build(facts["frame_count"], spec.snippet_len, spec.stride)
                self.reported.add(vid)
                if snippets.starts.tolist() != starts:
                    yield vid, None, None, f"{sources[vid]}: snippet layout mismatch"
                else:
                    yield vid, feats, snippets, facts

    def close(self) -> None:
        """Stop the workers and free every shared-memory block still in flight."""
        for proc in self.workers:
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=5)
        # Tasks no worker will read: without this the queue's feeder thread, blocked on a
        # full pipe, would keep the interpreter from exiting after an early stop.
        self.tasks.cancel_join_thread()
        # Blocks handed over but never read (the caller stopped early, or an error): free them.
        while True:
            try:
                _, kind, payload = self.results.get_nowait()
            except (queue.Empty, OSError, ValueError):
                break
            if kind == "chunk":
                discard_shared(payload[1])
        remove_worker_blocks(self.started)      # what killed workers were filling


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
        """Frames of the videos done per second of the run (0 before it is timed)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """Counts and speed on one line, then one line per failed video."""
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
        batch_size: snippets per backbone call.
        rank: this process's shard (torchrun rank), see :func:`shard`.
        world_size: number of shards (torchrun processes).
        progress: show a progress bar.
        verify: check finished videos' checksums before skipping them (else size only).
        decode_workers: decode in that many processes (GPU extraction; see extract_many).
        **extractor_kwargs: arguments of :class:`PatchFeatureExtractor` when ``extractor`` is None.
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
            assert snippets is not None and isinstance(facts, dict)     # features come with both
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
    ``threads`` is given. The default backbone's CPU features do not depend on the
    thread count (every piece of work runs single-threaded, features/cpu.py; tested);
    other backbones' may differ by one float16 step across thread counts (oneDNN's
    reductions), and are bitwise identical for equal ones.
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
