"""torch.distributed under torchrun: the device of each process, process-group set-up and
the reductions training needs.

Without torchrun (no WORLD_SIZE > 1 in the environment) everything here is a no-op, so the
same code runs on one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def pick_device(name: str, world: World) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name} was asked for, but torch sees no CUDA device")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"device: {name} was asked for, but torch sees {torch.cuda.device_count()} GPUs "
            f"(cuda:0..cuda:{torch.cuda.device_count() - 1})"
        )
    if device.type == "cuda" and world.distributed:
        device = torch.device("cuda", world.local_rank)
    elif device.type == "cuda" and device.index is None:
        # torch.cuda.set_device refuses an index-less device (torch 2.11, seen on an H200)
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def init(use_cuda: bool) -> World:
    """Joins the process group torchrun describes (NCCL on CUDA, gloo on the CPU)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shutdown(world: World, together: bool) -> None:
    """Leaves the process group. `together`: every rank gets here (a finished or a stopped
    run), so they first wait for each other; a rank that tears down while another still
    talks to it (rank 0 writing the report) can abort the process on the way out."""
    if world.distributed and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()


def barrier(world: World) -> None:
    """Waits until every rank gets here."""
    if world.distributed:
        dist.barrier()


def all_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """The element-wise sum over ranks (in place; returned for chaining)."""
    if world.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def share_buffers(module: torch.nn.Module, world: World) -> None:
    """Gives every rank rank 0's buffers (batch-norm statistics), so all ranks hold the model
    that rank 0 checkpoints."""
    if world.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)
