"""One error hierarchy. Every error names the file (and line) it is about.

Users see ``str(err)``: ``<file>[:<line>]: <problem>``. Code deep inside the
package raises these instead of letting a numpy / PyAV / torch traceback escape.
"""

from __future__ import annotations

from pathlib import Path


class PatchvadError(Exception):
    """Base of every error patchvad raises on purpose.

    Args:
        message: what is wrong, in words a user can act on.
        path: the file the problem is in (optional).
        line: 1-based line number in that file (optional).
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
            where += ": "
        super().__init__(where + message)


class VideoError(PatchvadError):
    """A video file is missing, empty, truncated or cannot be decoded."""


class DatasetError(PatchvadError):
    """A dataset folder (manifest, tracks, frame labels) is malformed."""


class FeatureError(PatchvadError):
    """A feature store is missing, incomplete or inconsistent."""


class CheckpointError(PatchvadError):
    """A checkpoint cannot be loaded or does not fit the features."""


class ConfigError(PatchvadError):
    """A configuration value is unknown or out of range."""


class PredictionError(PatchvadError):
    """A predictions folder is malformed (e.g. a score array of the wrong length)."""


class UnsafeFileError(PatchvadError):
    """A file tries to do something unsafe (code in a pickle, a path out of the root)."""
