"""Files written safely and read safely.

* Atomic writes: everything is written to a temporary file in the target folder and
  renamed into place, so a killed process never leaves a half-written file under
  the final name.
* A restricted unpickler that admits plain builtins only (dataset annotation pickles
  come from the internet; a pickle is code).
* Paths from manifests are resolved and must stay inside their root.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from patchvad.errors import PatchvadError, UnsafeFileError


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    The temporary file lives in the same folder so the final ``os.replace`` is atomic
    on POSIX. On any exception the temporary file is removed and ``target`` is left
    as it was (an earlier version stays intact).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(target.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
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
    before it can run.
    """

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle API
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            import builtins

            return getattr(builtins, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")


def safe_pickle_load(path: str | Path) -> Any:
    """Load a pickle that may contain only builtin containers and scalars.

    Raises:
        UnsafeFileError: the pickle names any other global (it would run code).
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
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise PatchvadError(f"not a readable pickle ({exc})", path=path) from exc


# --- paths ------------------------------------------------------------------------


def resolve_inside(root: str | Path, relative: str, source: str | Path | None = None,
                   line: int | None = None) -> Path:
    """Resolve ``relative`` against ``root`` and refuse anything that leaves ``root``.

    Absolute paths, ``..`` escapes and symlinks pointing out of the root are refused
    with an :class:`UnsafeFileError` naming ``source`` (the manifest) and ``line``.
    """
    root_resolved = Path(root).resolve()
    if relative is None or str(relative).strip() == "":
        raise UnsafeFileError("empty path", path=source, line=line)
    rel = Path(relative)
    if rel.is_absolute():
        raise UnsafeFileError(f"absolute path '{relative}' is not allowed; paths are relative to "
                              f"the dataset root", path=source, line=line)
    candidate = (root_resolved / rel).resolve()
    if candidate != root_resolved and root_resolved not in candidate.parents:
        raise UnsafeFileError(f"path '{relative}' leaves the dataset root {root_resolved}",
                              path=source, line=line)
    return candidate
