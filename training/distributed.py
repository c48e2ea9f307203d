"""Several processes (``torchrun --nproc_per_node N -m training.sft|grpo``): process group, data split, gradients.

On the CPU the processes form a gloo group and average gradients after every backward pass, which is
what ``DistributedDataParallel`` does; the averaging is written out (one ``all_reduce`` per parameter
after the micro-batches of a step) rather than through the DDP wrapper because a training step calls the
policy in pieces (the language model, the LM head at labelled positions only, the projector, SAM2's
decoder, and the rollout loop outside any ``forward``), which DDP's forward-bound hooks cannot follow. On
GPUs the same averaging runs over NCCL (every rank holds the whole model: no parameter sharding yet). With
one process everything here is a no-op.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "all_reduce_mean", "average_gradients", "barrier", "init_distributed"]


@dataclass
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); gloo on the CPU, NCCL on GPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_backend())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def average_gradients(params: Iterable[torch.nn.Parameter], info: DistInfo) -> None:
    """Mean of every trainable parameter's gradient over the ranks (a missing gradient counts as zero)."""
    if not info.enabled:
        return
    for param in params:
        if not param.requires_grad:
            continue
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
        param.grad.div_(info.world_size)


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """Mean of a Python number over the ranks (for logs)."""
    if not info.enabled:
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / info.world_size
