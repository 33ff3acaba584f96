"""Multi-process training glue: read torchrun's environment, start the process group, reduce small tensors.

Launched by ``torchrun`` (``WORLD_SIZE > 1``), each process joins the default group: gloo on CPU, nccl on
GPU. Single-process runs touch none of ``torch.distributed``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # we started the process group, so we end it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup() -> Dist:
    """Join the process group when torchrun's ``WORLD_SIZE`` > 1; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world <= 1:
        return Dist(device=device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if cuda else "gloo", rank=rank, world_size=world)
    return Dist(world, rank, local_rank, device, owns)


def teardown(d: Dist) -> None:
    if d.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(d: Dist, values: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` over all processes (returned as a new tensor; unchanged when single-process)."""
    if not d.enabled:
        return values
    out = values.detach().clone().to(d.device)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(values.device)


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()
