"""Files written safely and read safely.

* Atomic writes: everything is written to a temporary file in the target folder and
  renamed into place, so a killed process never leaves a half-written file under
  the final name.
* A restricted unpickler that admits plain builtins only (dataset annotation pickles
  come from the internet; a pickle is code).
* Paths from manifests are resolved and must stay inside their root.
"""

from __future__ import annotations

import _compat_pickle
import contextlib
import contextvars
import hashlib
import io
import json
import os
import pickle
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from patchvad.errors import PatchvadError, UnsafeFileError

#: True inside :func:`one_sync`: atomic writes skip their own fsync (one sync at the end).
_DEFER_SYNC = contextvars.ContextVar("patchvad_defer_sync", default=False)


@contextlib.contextmanager
def one_sync() -> Iterator[None]:
    """Atomic writes inside skip their per-file ``fsync``; one ``os.sync()`` at the end makes them durable.

    For stages that write many small files and then a completion marker (``test``
    writes five files per video, then ``inference.json``): each file is still renamed
    into place whole (a killed process leaves old or new files, never half of one), and
    the marker, written after the block with its own fsync, is durable only after
    everything before it. A power cut inside the block can leave files without their
    data, but never the marker, so the stage is redone. (On a CPU-bound machine the
    per-file fsyncs cost seconds per test run.)
    """
    token = _DEFER_SYNC.set(True)
    try:
        yield
    finally:
        _DEFER_SYNC.reset(token)
        os.sync()


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    The temporary file lives in the same folder so the final ``os.replace`` is atomic
    on POSIX. On any exception the temporary file is removed and ``target`` is left
    as it was (an earlier version stays intact). The data is flushed to disk before the
    rename (fsync), except inside :func:`one_sync`.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(target.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if not _DEFER_SYNC.get():
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    try:
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise PatchvadError(f"cannot write file ({exc.strerror or exc})", path=target) from exc


def atomic_write_text(target: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``target`` atomically."""
    atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_save_npy(target: str | Path, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy`` (no pickles) to ``target`` atomically."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(target, buf.getvalue())


def load_npy(path: str | Path, mmap: bool = False) -> np.ndarray:
    """Load a ``.npy`` file without pickles; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise PatchvadError("file not found", path=path)
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise PatchvadError(f"not a readable .npy array ({exc})", path=path) from exc


def text_lines(text: str) -> list[str]:
    r"""Lines of ``text`` split at ``\n``, ``\r\n`` or ``\r`` only.

    ``str.splitlines`` also splits at form feeds, ``\x1c``-``\x1e``, NEL and U+2028, which
    text editors do not: line numbers in error messages would point at the wrong line.
    """
    return _LINE_BREAK.split(text)


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


# --- restricted unpickling ---------------------------------------------------------

_SAFE_BUILTINS = frozenset(
    {"dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str", "bytes",
     "bytearray", "bool", "NoneType", "slice", "range"}
)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global except a few plain builtin types.

    Protocol-0 annotation pickles of builtins (lists, dicts, numbers, strings) load;
    anything that names a function or class (``os.system``, ``numpy...``) is refused
    before it can run. The admitted types are handed out wrapped, so a pickle cannot
    make them allocate without bound either (``bytes(10**15)``,
    ``list(range(10**15))``: a few bytes of pickle, a machine's memory).
    """

    #: Largest size a pickle may ask an admitted constructor for (elements or bytes).
    MAX_ITEMS = 1 << 26

    def find_class(self, module: str, name: str) -> Any:
        """The callable a pickle names: an admitted builtin (size-bounded) or latin-1 bytes; else refused.

        Raises:
            pickle.UnpicklingError: any other global.
        """
        if module == "__builtin__":          # Python 2 names of the same types (xrange, unicode, long)
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), ("builtins", name))
        if module == "builtins" and name in _SAFE_BUILTINS:
            import builtins

            return _bounded(getattr(builtins, name) if name != "NoneType" else type(None), self.MAX_ITEMS)
        if (module, name) == ("_codecs", "encode"):     # how protocols 0-2 store bytes
            return _latin1_bytes
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")


def _latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode`` as pickle uses it for bytes (``str`` -> latin-1), and nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"global '_codecs.encode' is not allowed with ({type(text).__name__}, "
                                     f"{encoding!r})")
    return text.encode("latin1")


def _requested_size(kind: type, arg: Any) -> int | None:
    """How many items (or bytes) ``kind(arg)`` would allocate, when the pickle alone cannot bound it."""
    if isinstance(arg, range):
        try:
            return len(arg)
        except OverflowError:                 # longer than sys.maxsize
            return sys.maxsize
    if kind in (bytes, bytearray) and isinstance(arg, int):
        return arg
    return None


def _bounded(kind: type, limit: int) -> Any:
    """``kind`` as a callable that refuses arguments asking for more than ``limit`` items."""

    def make(*args: Any, **kwargs: Any) -> Any:
        for arg in (*args, *kwargs.values()):
            size = _requested_size(kind, arg)
            if size is not None and size > limit:
                raise pickle.UnpicklingError(f"global 'builtins.{kind.__name__}' is not allowed with a size of "
                                             f"{size} (limit {limit})")
        return kind(*args, **kwargs)

    make.__name__ = kind.__name__
    return make


def safe_pickle_load(path: str | Path) -> Any:
    """Load a pickle that may contain only builtin containers and scalars.

    Raises:
        UnsafeFileError: the pickle names any other global (it would run code), or
            asks a builtin for an unbounded amount of memory.
        PatchvadError: the file is missing or not a pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise PatchvadError("file not found", path=path)
    try:
        with open(path, "rb") as fh:
            return RestrictedUnpickler(fh, encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        if "is not allowed" in str(exc):
            raise UnsafeFileError(f"refused to unpickle: {exc}", path=path) from exc
        raise PatchvadError(f"not a readable pickle ({exc})", path=path) from exc
    except OSError as exc:
        raise PatchvadError(f"cannot read ({exc.strerror or exc})", path=path) from exc
    except Exception as exc:  # EOF, bad opcodes, recursion, memory: all "not a pickle we read"
        raise PatchvadError(f"not a readable pickle ({type(exc).__name__}: {exc})", path=path) from exc


# --- paths ------------------------------------------------------------------------


def resolve_inside(root: str | Path, relative: str, source: str | Path | None = None,
                   line: int | None = None) -> Path:
    """Resolve ``relative`` against ``root`` and refuse anything that leaves ``root``.

    Absolute paths, ``..`` escapes, symlinks pointing out of the root, paths that name
    the root itself (``.``, ``videos/..``) and paths that are not file names at all (a
    NUL byte, a name too long for the file system) are refused with an
    :class:`UnsafeFileError` naming ``source`` (the manifest) and ``line``.
    """
    root_resolved = Path(root).resolve()
    if relative is None or str(relative).strip() == "":
        raise UnsafeFileError("empty path", path=source, line=line)
    if "\x00" in str(relative):
        raise UnsafeFileError(f"path {str(relative)!r} contains a NUL byte", path=source, line=line)
    rel = Path(relative)
    if rel.is_absolute():
        raise UnsafeFileError(f"absolute path '{relative}' is not allowed; paths are relative to "
                              f"the dataset root", path=source, line=line)
    try:
        candidate = (root_resolved / rel).resolve()
    except (OSError, RuntimeError, ValueError) as exc:   # too long, a symlink loop
        raise UnsafeFileError(f"path '{relative}' cannot be resolved ({exc})", path=source, line=line) from None
    if candidate == root_resolved:
        raise UnsafeFileError(f"path '{relative}' names the dataset root itself, not a file in it",
                              path=source, line=line)
    if root_resolved not in candidate.parents:
        raise UnsafeFileError(f"path '{relative}' leaves the dataset root {root_resolved}",
                              path=source, line=line)
    return candidate
