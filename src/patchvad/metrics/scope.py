"""What the metrics of one evaluation scope share: its videos and their accumulators.

A scope is the whole test split or one class of it. :class:`EvalScope` holds its
videos (ground truth + prediction each) and builds each accumulator once, on first
use, so that every metric of the table (:mod:`patchvad.metrics.table`) reads the same
streams: frame scores (:class:`~patchvad.metrics.frame.FrameAccumulator`), boxes
(:class:`~patchvad.metrics.spatial.SpatialAccumulator`) and patch cells
(:class:`~patchvad.metrics.patch.PatchAccumulator`).

:meth:`EvalScope.value` computes a metric of the table once and remembers it, so a
metric may build on another (TIoU on the TIoU threshold). A metric that is undefined
on the scope is ``None`` with a note (:meth:`EvalScope.notes`); several metrics that
fail for one shared reason (RBDC and TBDC without ground-truth boxes) give one note.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from patchvad.data.folder import GroundTruth, VideoEntry
from patchvad.metrics.frame import FrameAccumulator, UndefinedMetricError
from patchvad.metrics.patch import COVERAGE, PatchAccumulator
from patchvad.metrics.spatial import ALPHA, BETA, DetectionCurves, SpatialAccumulator
from patchvad.metrics.table import get_metric
from patchvad.predictions import MAPS, VideoPrediction

T = TypeVar("T")


@dataclass(frozen=True)
class EvalVideo:
    """One test video: its manifest entry, ground truth and prediction."""

    entry: VideoEntry
    gt: GroundTruth
    pred: VideoPrediction


class EvalScope:
    """The videos of one scope and the accumulators over them (built once each, lazily).

    Attributes:
        videos: the scope's test videos, manifest order.
        tau: the frame-score threshold of TIoU given by the caller (per-class scopes
            take the whole test split's), or None to derive it on this scope.
        suffix: appended to metric names in notes, e.g. ``" (class Fight)"``.
    """

    def __init__(self, videos: list[EvalVideo], tau: float | None = None, suffix: str = "") -> None:
        self.videos = list(videos)
        self.tau = tau
        self.suffix = suffix
        self._values: dict[str, float | None] = {}
        self._failures: list[tuple[str, UndefinedMetricError]] = []
        self._shared: dict[str, Any] = {}  # a build's value, or the UndefinedMetricError it raised

    # --- accumulators ------------------------------------------------------------------

    @cached_property
    def frames(self) -> FrameAccumulator:
        """Frame labels ``(F,)`` and frame scores ``(F,)`` of every video, concatenated in order."""
        acc = FrameAccumulator()
        for v in self.videos:
            acc.add(v.gt.frame_labels, v.pred.frame_scores)
        return acc

    @cached_property
    def spatial(self) -> SpatialAccumulator:
        """Ground-truth regions and predicted boxes of every video, frames numbered across videos."""
        acc = SpatialAccumulator()
        for v in self.videos:
            acc.add(v.gt.regions, v.pred.boxes, v.gt.frame_count, anomalous=v.entry.label == 1)
        return acc

    @cached_property
    def patch(self) -> PatchAccumulator:
        """Patch cells of every video when all videos have maps (empty otherwise)."""
        acc = PatchAccumulator(coverage=COVERAGE)
        for v in self.videos:
            maps, frame_to_snippet = v.pred.maps, v.pred.frame_to_snippet
            if maps is None or frame_to_snippet is None:
                return PatchAccumulator(coverage=COVERAGE)
            acc.add(maps, frame_to_snippet, v.pred.frame_scores, v.gt.regions, (v.gt.height, v.gt.width),
                    frame_labels=v.gt.frame_labels)
        return acc

    def detection(self) -> DetectionCurves:
        """RBDC / TBDC curves (beta, alpha of docs/metrics.md), computed once.

        Raises:
            UndefinedMetricError: the same instance on every call, so that the metrics
                resting on it share one note.
        """
        return self._once("detection", lambda: self.spatial.rbdc_tbdc(beta=BETA, alpha=ALPHA))

    def patch_cells(self) -> PatchAccumulator | None:
        """:attr:`patch` when every video has maps; None when no video has (patch metrics do not apply).

        Raises:
            UndefinedMetricError: some videos have maps and some do not (one shared instance).
        """
        def build() -> PatchAccumulator | None:
            lacking = [v.entry.stem for v in self.videos if v.pred.maps is None]
            if not lacking:
                return self.patch
            if len(lacking) == len(self.videos):
                return None
            raise UndefinedMetricError(f"{len(lacking)} test video(s) have no {MAPS} (e.g. {', '.join(lacking[:3])})")
        return self._once("patch", build)

    def _once(self, name: str, build: Callable[[], T]) -> T:
        if name not in self._shared:
            try:
                self._shared[name] = build()
            except UndefinedMetricError as exc:
                self._shared[name] = exc
        value = self._shared[name]
        if isinstance(value, UndefinedMetricError):
            raise value
        return value

    # --- metric values -----------------------------------------------------------------

    def value(self, key: str) -> float | None:
        """The table metric ``key`` on this scope, computed once (None: undefined or not applicable)."""
        if key in self._values:
            return self._values[key]
        try:
            raw = get_metric(key).compute(self)
            value = None if raw is None else float(raw)
            if value is not None and not math.isfinite(value):
                # Cannot happen for the built-in metrics; never let NaN reach the JSON.
                raise UndefinedMetricError("not a finite number")
        except UndefinedMetricError as exc:
            self._failures.append((key, exc))
            value = None
        self._values[key] = value
        return value

    def notes(self) -> list[str]:
        """Why each null metric is null, one line per cause, in the order they were met."""
        groups: dict[int, tuple[list[str], UndefinedMetricError]] = {}
        for key, exc in self._failures:
            groups.setdefault(id(exc), ([], exc))[0].append(key)
        return [f"{' and '.join(keys)}{self.suffix} {'are' if len(keys) > 1 else 'is'} null: {exc}"
                for keys, exc in groups.values()]


__all__ = ["EvalScope", "EvalVideo"]
