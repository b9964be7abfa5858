"""Multi-process training through ``torchrun`` and PyTorch DDP (an existing engine).

``torchrun --nproc_per_node=K -m sbrun ...`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``;
each process trains a replica on its own batches (seeded by rank), gradients are
all-reduced by :class:`torch.nn.parallel.DistributedDataParallel`, and only rank 0
evaluates, logs and writes files. Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Initialise the process group when launched by torchrun; returns the rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def wrap(nets: nn.ModuleDict, info: DistInfo, device: torch.device) -> nn.ModuleDict:
    """DDP-wrapped views of ``nets`` (sharing parameters) for the training forward pass."""
    if not info.enabled:
        return nets
    ids = [device.index] if device.type == "cuda" else None
    return nn.ModuleDict({
        k: nn.parallel.DistributedDataParallel(m, device_ids=ids)
        for k, m in nets.items()
    })


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank (e.g. the run directory)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup(info: DistInfo) -> None:
    """Wait for every rank, then tear the process group down."""
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
