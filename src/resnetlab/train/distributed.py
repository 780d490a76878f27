"""Multi-process training through ``torchrun``: DistributedDataParallel, with rank 0 writing every file.

``torchrun --nproc-per-node N -m resnetlab train ...`` sets RANK, LOCAL_RANK and WORLD_SIZE; each process then
trains on its shard of the same global permutation (``DeviceLoader(rank=, world_size=)``) with a per-process
batch of ``batch_size / N``, so the global batch, and with it the recipe, stays the same.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from resnetlab.errors import UserError


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> Distributed:
    """The process's place in a torchrun job (a single process when the variables are absent)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    return Distributed(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world_size)


def start(info: Distributed, device: torch.device) -> None:
    """Join the process group: NCCL between GPUs, gloo on CPU."""
    if info.enabled and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=info.rank,
                                world_size=info.world_size)


def stop(info: Distributed) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def per_rank_batch(batch_size: int, info: Distributed) -> int:
    if batch_size % info.world_size:
        raise UserError(f"batch size {batch_size} is not divisible by the {info.world_size} processes")
    return batch_size // info.world_size


def sum_across(values: list[float], info: Distributed, device: torch.device) -> list[float]:
    """Element-wise sum over all processes (identity for one process)."""
    if not info.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def any_across(flag: bool, info: Distributed, device: torch.device) -> bool:
    """True on every process when it is true on one: all stop at the same step."""
    return bool(sum_across([float(flag)], info, device)[0]) if info.enabled else flag
