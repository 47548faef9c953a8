"""The one place where frames and snippets meet.

A video of ``F`` frames is cut into snippets of ``snippet_len`` frames every
``stride`` frames, starting at frame 0; the last partial snippet is padded by
repeating its last frame. Scores of snippets become scores of frames only through
:meth:`SnippetMap.to_frames`, and the map is stored with the features, never
re-derived from a guess about how features were extracted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


def covers(last_start: int, snippet_len: int, frame_count: int) -> bool:
    """A snippet starting at ``last_start`` reaches the last of ``frame_count`` frames (no more snippets)."""
    return last_start + snippet_len >= frame_count


@dataclass(frozen=True)
class SnippetMap:
    """Frames <-> snippets of one video.

    Attributes:
        frame_count: ``F``, the number of decoded frames of the video.
        starts: ``(T,)`` int64, first frame of each snippet.
        snippet_len: frames per snippet ``L``.
        stride: frames between snippet starts.
    """

    frame_count: int
    starts: np.ndarray
    snippet_len: int
    stride: int

    @classmethod
    def build(cls, frame_count: int, snippet_len: int = 16, stride: int | None = None) -> "SnippetMap":
        """Snippets every ``stride`` frames from 0 until every frame is covered."""
        stride = snippet_len if stride is None else stride
        if frame_count < 1:
            raise ValueError(f"frame_count must be >= 1, got {frame_count}")
        if snippet_len < 1 or stride < 1 or stride > snippet_len:
            raise ValueError(f"need 1 <= stride <= snippet_len, got stride={stride}, len={snippet_len}")
        starts = [0]
        while not covers(starts[-1], snippet_len, frame_count):
            starts.append(starts[-1] + stride)
        return cls(int(frame_count), np.asarray(starts, dtype=np.int64), int(snippet_len), int(stride))

    @property
    def num_snippets(self) -> int:
        """``T``, the number of snippets."""
        return int(self.starts.shape[0])

    @property
    def frame_to_snippet(self) -> np.ndarray:
        """``(F,)`` int64: the snippet each frame takes its score from.

        With overlapping snippets a frame belongs to the latest snippet that starts at
        or before it (its most recent evidence; this is also what streaming sees).
        """
        frames = np.arange(self.frame_count)
        return np.searchsorted(self.starts, frames, side="right") - 1

    def to_frames(self, snippet_values: np.ndarray) -> np.ndarray:
        """Expand ``(T, ...)`` per-snippet values to ``(F, ...)`` per-frame values.

        Raises:
            ValueError: the first axis is not ``T`` (never truncates or pads silently).
        """
        values = np.asarray(snippet_values)
        if values.shape[0] != self.num_snippets:
            raise ValueError(f"{values.shape[0]} snippet values for a map of {self.num_snippets} snippets")
        return values[self.frame_to_snippet]

    def snippet_frames(self, t: int) -> tuple[int, int]:
        """``[first, last]`` real frames of snippet ``t`` (inclusive; padding excluded)."""
        first = int(self.starts[t])
        return first, min(first + self.snippet_len, self.frame_count) - 1

    def to_dict(self) -> dict:
        """The map as JSON-ready values (:meth:`from_dict` reads them back)."""
        return {"frame_count": self.frame_count, "snippet_len": self.snippet_len, "stride": self.stride,
                "starts": self.starts.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "SnippetMap":
        """The map :meth:`to_dict` wrote."""
        return cls(int(d["frame_count"]), np.asarray(d["starts"], dtype=np.int64), int(d["snippet_len"]),
                   int(d["stride"]))


def iter_snippets(frames: Iterable[np.ndarray], snippet_len: int, stride: int | None = None
                  ) -> Iterator[tuple[int, np.ndarray, int]]:
    """Group a frame stream into snippets of ``snippet_len`` frames.

    The stream form of :meth:`SnippetMap.build` (the frame count is known only at the
    end): the same starts; the last partial snippet is padded by repeating its last frame.

    Yields:
        ``(start_frame, snippet, n_real)`` with ``snippet`` of shape ``(L, ...)`` and
        ``n_real`` the number of real (unpadded) frames in it.
    """
    stride = snippet_len if stride is None else stride
    if snippet_len < 1 or stride < 1 or stride > snippet_len:
        raise ValueError("need 1 <= stride <= snippet_len")
    buffer: list[np.ndarray] = []     # frames from ``start`` on
    start = 0
    last_end = 0                      # one past the last frame covered by a yielded snippet
    for frame in frames:
        buffer.append(frame)
        if len(buffer) == snippet_len:
            yield start, np.stack(buffer), snippet_len
            last_end = start + snippet_len
            start += stride
            buffer = buffer[stride:]
    total = start + len(buffer)
    if buffer and not covers(last_end - snippet_len, snippet_len, total):
        n_real = len(buffer)
        yield start, np.stack(buffer + [buffer[-1]] * (snippet_len - n_real)), n_real
