"""Weights of optional backbones from the Hugging Face hub (``huggingface_hub``).

Every hub backbone loads its weights through :func:`download` and
:func:`load_state_dict`, so the error messages and the offline behaviour are the same
for all of them:

* the optional dependency missing -> :class:`~patchvad.errors.ConfigError` naming the
  extra to install (``pip install 'patchvad[clip]'``);
* the file cannot be had (no network, a missing repository, a file that is not in
  the cache while offline) -> :class:`~patchvad.errors.FeatureError` naming the
  repository and file.

``HF_HUB_OFFLINE=1`` (read at call time, not at import time) loads from the local
cache only; ``HF_HUB_CACHE`` (also read at call time) chooses the cache folder.
Files are downloaded once and then read from the cache.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType

import torch

from patchvad.errors import ConfigError, FeatureError

_TRUE = {"1", "on", "yes", "true"}


def require(module: str, extra: str, backbone: str) -> ModuleType:
    """Import an optional dependency or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"backbone '{backbone}' needs the optional package '{module}', which is not installed: "
                          f"pip install 'patchvad[{extra}]'") from exc


def offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) as set now."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE


def cache_dir() -> str | None:
    """``HF_HUB_CACHE`` as set now (None: huggingface_hub's default, ``$HF_HOME/hub``)."""
    return os.environ.get("HF_HUB_CACHE") or None


def hub_kwargs() -> dict:
    """The cache and offline arguments every hub call of patchvad passes."""
    return {"cache_dir": cache_dir(), "local_files_only": offline()}


def download_error(repo_id: str, what: str, exc: BaseException) -> FeatureError:
    """The error to raise when ``what`` of ``repo_id`` cannot be fetched: the cause and what to do."""
    hint = ("HF_HUB_OFFLINE is set and the file is not in the local cache: download it once with network "
            "access (or copy the cache, HF_HOME / HF_HUB_CACHE), then rerun" if offline() else
            "check the network connection and the repository name, or set HF_HUB_OFFLINE=1 to use the local "
            "cache only")
    return FeatureError(f"cannot get the weights of '{repo_id}' ({what}) from the Hugging Face hub: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} -- {hint}")


def download(repo_id: str, filenames: Iterable[str], extra: str, backbone: str) -> Path:
    """Local path of the first of ``filenames`` the repository has (downloaded once, then cached).

    ``filenames`` lists the same weights in order of preference (safetensors first,
    then a pickle the way the original library falls back to it).

    Raises:
        ConfigError: ``huggingface_hub`` is not installed.
        FeatureError: none of the files can be had.
    """
    hub = require("huggingface_hub", extra, backbone)
    from huggingface_hub.errors import EntryNotFoundError

    names = list(filenames)
    last: BaseException | None = None
    for name in names:
        try:
            return Path(hub.hf_hub_download(repo_id=repo_id, filename=name, **hub_kwargs()))
        except EntryNotFoundError as exc:     # not in this repository (or not cached offline): try the next
            last = exc
        except Exception as exc:  # network, authentication, missing repository...
            raise download_error(repo_id, name, exc) from exc
    assert last is not None
    raise download_error(repo_id, " or ".join(names), last) from last


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a pickle loaded with ``weights_only=True``."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise FeatureError(f"cannot read the weights: {type(exc).__name__}: {exc}", path=path) from exc
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FeatureError("not a state dict of tensors", path=path)
    return dict(state)


def state_hash(state: Mapping[str, torch.Tensor]) -> str:
    """Short SHA-256 (16 hex) of a model's weights: names, dtypes, shapes and bytes, in name order.

    The same weights give the same hash whatever file format they came in.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def check_keys(got: Iterable[str], want: Iterable[str], ignored: Iterable[str], source: str) -> None:
    """Strict key check of a converted checkpoint: nothing missing, nothing unexpected.

    Raises:
        FeatureError: with the first few missing and unexpected names.
    """
    got, want, ignored = set(got), set(want), set(ignored)
    missing = sorted(want - got)
    unexpected = sorted(got - want - ignored)
    if missing or unexpected:
        raise FeatureError(f"the checkpoint does not fit the architecture: {len(missing)} missing "
                           f"{missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}", path=source)
