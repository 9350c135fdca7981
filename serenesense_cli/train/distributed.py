"""DistributedDataParallel set-up for ``torchrun --nproc-per-node N serenesense train``.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; without them training runs as a
single process. NCCL on GPUs, gloo on CPUs. Only rank 0 logs and writes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from serenesense_cli.errors import BadInputError

_T = TypeVar("_T")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Only the main process logs, reports progress and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def resolve_device(preference: str, *, local_rank: int = 0) -> torch.device:
    """``auto`` prefers CUDA, then Apple MPS, then the CPU."""
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise BadInputError(
                "--device cuda was asked for, but no CUDA GPU is available",
                hint="use --device auto or --device cpu",
            )
        return torch.device("cuda", local_rank)
    if preference == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise BadInputError("--device mps was asked for, but MPS is not available")
        return torch.device("mps")
    return torch.device("cpu")


def init_distributed(device_preference: str) -> DistContext:
    """Join the torchrun job if there is one; return this process's context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank=local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return DistContext(rank=rank, world=world, local_rank=local_rank, device=device)


def shutdown(context: DistContext) -> None:
    """Leave the process group (safe to call when not distributed)."""
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def launch(
    body: Callable[..., _T], device_preference: str, on_progress: Any, **arguments: Any
) -> _T:
    """``body(context=..., on_progress=..., **arguments)`` in this process's torchrun
    context: joined here and left afterwards; only the main process reports progress."""
    context = init_distributed(device_preference)
    try:
        return body(
            context=context, on_progress=on_progress if context.is_main else None, **arguments
        )
    finally:
        shutdown(context)


def all_reduce_sum(value: torch.Tensor, context: DistContext) -> torch.Tensor:
    """Sum a tensor over ranks (identity in a single process)."""
    if context.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def broadcast_object(value: Any, context: DistContext) -> Any:
    """Rank 0's ``value`` on every rank (e.g. the run folder it created)."""
    if not context.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def wrap_model(model: nn.Module, context: DistContext) -> nn.Module:
    """DDP around ``model`` under torchrun (gradients averaged over ranks), else ``model``."""
    if not context.distributed:
        return model
    device = context.device
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def local_batch_size(batch_size: int, context: DistContext) -> int:
    """This process's share of the global batch, which must split evenly."""
    if batch_size % context.world:
        raise BadInputError(
            f"batch size {batch_size} is not divisible by the {context.world} processes",
            hint="--batch-size is the global batch; choose a multiple of --nproc-per-node",
        )
    return batch_size // context.world


def barrier(context: DistContext) -> None:
    """Wait for every rank."""
    if context.distributed:
        dist.barrier()
