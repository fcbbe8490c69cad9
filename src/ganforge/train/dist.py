"""Multi-process training from torchrun's environment (``torchrun --nproc_per_node N -m
ganforge train ...``, or ``ganforge train --nproc N``).

Data parallelism without a DDP wrapper: every rank holds the same nets (same seed, and rank 0's
weights broadcast at the start), computes its slice of each global batch, and the trainer
all-reduces (averages) the gradients of exactly the parameters a phase's optimiser steps,
right before that step. So the D pass inside the G step never syncs D's gradients, no
parameter is ever "unused", and N processes with global batch B follow the same trajectory as
one process with batch B (up to float summation order; BatchNorm statistics are per rank
unless ``sync_bn`` is on). Rank 0 alone logs, samples, evaluates and checkpoints.

gloo on CPU, NCCL on CUDA (each rank on ``cuda:LOCAL_RANK``); multi-node through torchrun's
rendezvous arguments (``--nnodes``, ``--node_rank``, ``--rdzv_endpoint``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import GanforgeError


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_env() -> DistInfo:
    """The torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK), or a single process."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise GanforgeError("WORLD_SIZE / RANK / LOCAL_RANK must be integers: start "
                            "multi-process runs with torchrun") from None
    return DistInfo(rank, world, local)


def init(info: DistInfo, device: torch.device) -> torch.device:
    """Join the process group (once) and return this rank's device."""
    if not info.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend=backend)
        except Exception as e:  # a half-set environment, an unreachable rendezvous
            why = " ".join(str(e).split())[:120]
            raise GanforgeError(f"cannot join the process group ({why}): start multi-process "
                                f"runs with torchrun or `ganforge train --nproc N`") from None
    return device


def broadcast_module(module: torch.nn.Module, info: DistInfo) -> None:
    if info.enabled:
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)


def average_gradients(params: list[torch.nn.Parameter], info: DistInfo) -> None:
    """Average the gradients of ``params`` over the ranks, in one flat buffer."""
    if not info.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= info.world
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True when ``flag`` is true on any rank (stop rules agree across ranks)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def rank0_value(value: float, info: DistInfo, device: torch.device) -> float:
    """Rank 0's ``value`` on every rank (a schedule's progress: clocks differ between ranks,
    and every rank must step with the same learning rate)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
