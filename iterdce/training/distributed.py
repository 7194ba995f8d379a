"""torch.distributed set-up for ``torchrun``: NCCL on GPUs, gloo on CPU; one process per device."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from iterdce.core.device import choose_device


@dataclass(frozen=True)
class DistributedContext:
    """Rank, world size and the device of this process."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_preference: str = "auto") -> DistributedContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), else a single-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = choose_device(device_preference)
    if world_size <= 1:
        return DistributedContext(0, 1, device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), device)


def barrier(context: DistributedContext) -> None:
    """Wait for every rank (no-op when not distributed)."""
    if context.enabled:
        dist.barrier()


def mean_over_ranks(value: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """All-reduce mean of a tensor (returns it unchanged when not distributed)."""
    if not context.enabled:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / context.world_size


def shutdown(context: DistributedContext) -> None:
    """Leave the process group."""
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
