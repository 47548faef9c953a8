"""Resume state: ``RUN/train_state.safetensors`` and the training log it goes with.

The state holds the last weights, the AdamW state, the sampler's queues and both
random generators (the sampler / augmentation generator and the global one that draws
dropout), so ``fit --resume`` continues exactly where the saved step left off.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from patchvad.errors import CheckpointError
from patchvad.io.files import atomic_path, atomic_write_text
from patchvad.model.model import AnomalyModel
from patchvad.training.data import BalancedSampler

STATE_FILE = "train_state.safetensors"
FORMAT = "patchvad-train-state/1"


def save_state(path: Path, model: AnomalyModel, opt: torch.optim.Optimizer, gen: torch.Generator,
               sampler: BalancedSampler, info: dict) -> None:
    """Write the resume state atomically; ``info`` (JSON) holds the step and the selection so far."""
    tensors = {f"model.{k}": v for k, v in model.tensors().items()}
    sd = opt.state_dict()
    for idx, st in sd["state"].items():
        for key, val in st.items():
            tensors[f"opt.{idx}.{key}"] = torch.as_tensor(val).detach().cpu().contiguous()
    tensors["rng.torch"] = gen.get_state().clone()
    tensors["rng.global"] = torch.get_rng_state().clone()          # dropout (the same on every rank)
    for c in (0, 1):
        tensors[f"sampler.perm{c}"] = torch.as_tensor(sampler.perm[c], dtype=torch.int64).contiguous()
    meta = {"format": FORMAT, "param_groups": json.dumps(sd["param_groups"]),
            "sampler_pos": json.dumps(sampler.pos), "info": json.dumps(info)}
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
    except Exception as exc:    # safetensors raises its own error type for I/O failures
        raise CheckpointError(f"cannot write the training state ({exc})", path=path) from exc


def load_state(path: Path, model: AnomalyModel, opt: torch.optim.Optimizer, gen: torch.Generator,
               sampler: BalancedSampler) -> dict:
    """Restore what :func:`save_state` wrote into the given objects; returns its ``info``."""
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:    # safetensors raises several types
        raise CheckpointError(f"cannot read the training state ({exc})", path=path) from None
    if meta.get("format") != FORMAT:
        raise CheckpointError("not a patchvad training state", path=path)
    model.load_tensors({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, source=path)
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    gen.set_state(tensors["rng.torch"])
    if "rng.global" in tensors:
        torch.set_rng_state(tensors["rng.global"])
    sampler.perm = [tensors[f"sampler.perm{c}"].numpy() for c in (0, 1)]
    sampler.pos = json.loads(meta["sampler_pos"])
    return json.loads(meta["info"])


def _log_step(line: str) -> int:
    """Step of a train_log.jsonl line (0 for records without one, e.g. setup)."""
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, TypeError, AttributeError):
        return 0


def trim_log(log_path: Path, step: int) -> None:
    """Keep the records of ``log_path`` up to ``step``.

    A killed run may have logged steps after its last saved state; the resumed run
    logs them again, so every step appears once.
    """
    kept = [line for line in log_path.read_text(encoding="utf-8").splitlines()
            if line.strip() and _log_step(line) <= step]
    atomic_write_text(log_path, "".join(line + "\n" for line in kept))


__all__ = ["FORMAT", "STATE_FILE", "load_state", "save_state", "trim_log"]
