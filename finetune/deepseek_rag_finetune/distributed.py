"""torchrun support: join the process group from environment variables, and a few collective helpers.

``torchrun --nproc_per_node N`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``;
with ``WORLD_SIZE`` > 1 :func:`setup_distributed` joins the group (nccl on CUDA, gloo on CPU). With one
process every helper here is a no-op, so the trainer has one code path.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    owns_group: bool = False  # we initialised the group, so we tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None = None) -> DistributedContext:
    """Join (or reuse) the process group described by the environment; pick this process's device."""
    dist = torch.distributed
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        owns = True
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = 0, 1
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if world > 1 and use_cuda:
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    elif device is None:
        device = "cuda" if use_cuda else "cpu"
    return DistributedContext(rank, world, local_rank, device, owns)


def broadcast_object(value: Any, context: DistributedContext) -> Any:
    """Rank 0's ``value`` on every rank."""
    if context.world_size == 1:
        return value
    box = [value if context.is_main else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def barrier(context: DistributedContext) -> None:
    if context.world_size > 1:
        torch.distributed.barrier()


def teardown(context: DistributedContext) -> None:
    if context.owns_group and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
