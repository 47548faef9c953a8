"""torch.distributed helpers shared by extraction and training (``torchrun``).

One process per rank, started by ``torchrun`` (or ``python -m torch.distributed.run``),
which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and the
rendezvous variables. :func:`session` joins the process group from that environment
(``gloo`` on CPU, ``nccl`` for CUDA devices) and leaves it again; without those
variables, or with ``WORLD_SIZE=1``, it yields a single-process :class:`Context` and
every helper below is a no-op that returns its input unchanged, so the same code
runs in one process exactly as it did before.

Collectives take and return CPU tensors; under ``nccl`` they travel through the
rank's GPU. Only the main rank (0) writes shared files: :meth:`Context.write_json` /
:meth:`Context.write_text` write atomically there and do nothing elsewhere.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from patchvad.io.files import atomic_write_json, atomic_write_text


def env_layout() -> tuple[int, int, int, int]:
    """``(rank, world_size, local_rank, local_world_size)`` from the torchrun environment."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    return (int(os.environ.get("RANK", 0)), world, int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("LOCAL_WORLD_SIZE", world)))


def threads_per_process(threads: int | None = None) -> int:
    """CPU threads for this process: ``threads``, else the cores split between this node's ranks."""
    _, _, _, local_world = env_layout()
    return int(threads) if threads else max(1, (os.cpu_count() or 1) // max(1, local_world))


@dataclass(frozen=True)
class Context:
    """Where this process stands in the job.

    Attributes:
        rank, world_size: global position; local_rank: on this node.
        backend: ``gloo`` / ``nccl``, or None in a single process.
        device: the device collectives run on (the rank's GPU under ``nccl``, else CPU).
        owned: this context created the process group (and :func:`session` destroys it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = torch.device("cpu")
    owned: bool = False

    @property
    def distributed(self) -> bool:
        """More than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """This is rank 0, the process that writes files and logs."""
        return self.rank == 0

    # -- collectives (no-ops in one process) -----------------------------------------
    def barrier(self) -> None:
        """Wait until every rank reaches this call."""
        if self.distributed:
            torch.distributed.barrier()

    def broadcast_(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        """Overwrite ``tensor`` (in place) with rank ``src``'s; returns it.

        Any dtype: 16-bit types travel as their bytes (gloo has no 16-bit broadcast; exact).
        """
        if not self.distributed:
            return tensor
        as_bytes = tensor.element_size() == 2
        if self.device.type == "cpu" and tensor.device.type == "cpu" and tensor.is_contiguous():
            torch.distributed.broadcast(tensor.view(torch.uint8) if as_bytes else tensor, src)
            return tensor
        buf = tensor.detach().to(self.device).contiguous()
        torch.distributed.broadcast(buf.view(torch.uint8) if as_bytes else buf, src)
        tensor.copy_(buf.to(tensor.device))
        return tensor

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks (a new CPU tensor; the input is left alone)."""
        if not self.distributed:
            return tensor
        buf = tensor.detach().to(self.device, copy=True).contiguous()
        torch.distributed.all_reduce(buf, op=torch.distributed.ReduceOp.SUM)
        return buf.cpu()

    def all_reduce_mean(self, values: list[float]) -> list[float]:
        """Mean over ranks of a list of floats (same length and order on every rank)."""
        if not self.distributed:
            return list(values)
        total = self.all_reduce_sum(torch.tensor(values, dtype=torch.float64))
        return (total / self.world_size).tolist()

    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``tensor`` (same shape and dtype everywhere), in rank order, on CPU."""
        if not self.distributed:
            return [tensor]
        buf = tensor.detach().to(self.device).contiguous()
        out = [torch.empty_like(buf) for _ in range(self.world_size)]
        torch.distributed.all_gather(out, buf)
        return [t.cpu() for t in out]

    def merge_owned(self, tensor: torch.Tensor) -> torch.Tensor:
        """Combine a tensor whose entries are each filled by exactly ONE rank (zeros elsewhere).

        Exact: ``x + 0 + ... + 0 == x`` in any summation order. Returns float64.
        """
        return self.all_reduce_sum(tensor.to(torch.float64))

    # -- files ------------------------------------------------------------------------
    def write_json(self, path: str | Path, obj: Any) -> None:
        """Atomic write on the main rank only."""
        if self.is_main:
            atomic_write_json(path, obj)

    def write_text(self, path: str | Path, text: str) -> None:
        """Atomic write on the main rank only."""
        if self.is_main:
            atomic_write_text(path, text)


SINGLE = Context()
"""The context of a plain single-process run."""


def current() -> Context:
    """The context of an already initialised process group (or :data:`SINGLE`)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return SINGLE
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    backend = str(torch.distributed.get_backend())
    _, _, local_rank, _ = env_layout()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    return Context(rank=rank, world_size=world, local_rank=local_rank, backend=backend, device=device, owned=False)


def init(device: str | torch.device = "cpu") -> Context:
    """Join the process group described by the torchrun environment.

    ``nccl`` when ``device`` is CUDA (each rank takes ``cuda:LOCAL_RANK``), ``gloo``
    otherwise. A group that already exists is used as it is; ``WORLD_SIZE`` unset or 1
    gives :data:`SINGLE`.
    """
    ctx = current()
    if ctx.distributed:
        return ctx
    rank, world, local_rank, _ = env_layout()
    if world <= 1:
        return SINGLE
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(local_rank)
    backend = "nccl" if cuda else "gloo"
    torch.distributed.init_process_group(backend=backend)
    return Context(rank=rank, world_size=world, local_rank=local_rank, backend=backend,
                   device=torch.device("cuda", local_rank) if cuda else torch.device("cpu"), owned=True)


def shutdown(ctx: Context, ok: bool = True) -> None:
    """Leave the process group if ``ctx`` created it.

    ``ok``: the job ended normally on this rank; the ranks then meet at a barrier and
    free what still refers to the group (a DistributedDataParallel reducer) before it
    goes, so no rank tears its connections down under a peer that still uses them.
    After an error there is no barrier (the peers may never arrive; torchrun stops them).
    """
    if ctx.owned and torch.distributed.is_initialized():
        if ok:
            gc.collect()
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()


@contextlib.contextmanager
def session(device: str | torch.device = "cpu") -> Iterator[Context]:
    """Join the torchrun process group for the body of a ``with`` block, and leave it afterwards.

    Example::

        with session(device) as ctx:
            ...
    """
    ctx = init(device)
    try:
        yield ctx
    except BaseException:
        shutdown(ctx, ok=False)
        raise
    shutdown(ctx)


def rank_device(device: str, ctx: Context) -> str:
    """``cuda`` -> ``cuda:LOCAL_RANK`` under a distributed run; anything else unchanged."""
    if ctx.distributed and device.startswith("cuda"):
        return f"cuda:{ctx.local_rank}"
    return device


__all__ = ["Context", "SINGLE", "current", "env_layout", "init", "rank_device", "session", "shutdown",
           "threads_per_process"]
