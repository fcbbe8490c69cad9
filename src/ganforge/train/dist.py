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

A rank that dies or hangs: every collective runs under the process group's timeout
(``dist_timeout``), so the other ranks never wait forever; a collective that fails (a peer's
connection closed, the timeout passed) becomes :class:`PeerLost`, which the trainer turns into
one line naming the last complete checkpoint and the resume command. Under torchrun the agent
also stops the other ranks as soon as one exits; with ``--max-restarts N`` it starts them all
again and the trainer resumes from the run's last checkpoint (:func:`restart_count`).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from datetime import timedelta

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


class PeerLost(GanforgeError):
    """A collective failed: another rank died, or did not answer within ``dist_timeout``."""

    def __init__(self, cause: str) -> None:
        self.cause = cause
        super().__init__(f"the process group failed ({cause}): another process of the run "
                         f"died or stopped answering")


# how gloo, NCCL and c10d word a lost peer or a timeout
_PEER_WORDS = ("connection closed", "connection reset", "broken pipe", "timed out", "timeout",
               "nccl", "gloo", "processgroup", "c10d", "socket", "peer")


def echo_of_rank0() -> GanforgeError:
    """The error of a rank that stops because rank 0 refused the run: rank 0 prints why, the
    CLI prints nothing for the others (``quiet``) and every process exits 2."""
    e = GanforgeError("rank 0 refused this run (its error says why)")
    e.quiet = True
    return e


def peer_failure(e: BaseException) -> PeerLost | None:
    """``e`` as :class:`PeerLost` when it is a failed collective, else None."""
    if isinstance(e, PeerLost):
        return e
    dist_error = getattr(dist, "DistError", ())
    if not (isinstance(e, dist_error) or (isinstance(e, RuntimeError) and any(
            w in str(e).lower() for w in _PEER_WORDS))):
        return None
    text = re.sub(r"\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", " ".join(str(e).split()))
    text = re.split(r"(?<=[a-z0-9\]])\. ", text)[0].rstrip(".")
    return PeerLost(text[:140] or type(e).__name__)


def _collective(fn):
    """Run a collective; a failure of the process group becomes :class:`PeerLost`."""
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RuntimeError as e:
            lost = peer_failure(e)
            if lost is None:
                raise
            raise lost from None
    return wrapped


def restart_count() -> int:
    """How many times torchrun restarted this run's processes (``--max-restarts``)."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def restarts_left() -> int:
    """How many more times torchrun will restart this run's processes when one fails."""
    try:
        return max(0, int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) - restart_count())
    except ValueError:
        return 0


def _restart_store(info: DistInfo, timeout: float) -> dict:
    """After a torchrun restart, the processes' keys under a prefix of their own: torchrun's
    agent serves one store to every attempt, and the keys of the attempt that failed (the old
    processes' addresses) made the new ones connect to dead ports (gloo: "connectFullMesh
    failed ... Connection refused"; pytorch/pytorch#135712)."""
    attempt = restart_count()
    if not attempt or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return {}
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                          info.world, is_master=False, timeout=timedelta(seconds=timeout))
    return {"store": dist.PrefixStore(f"ganforge/attempt_{attempt}", store),
            "rank": info.rank, "world_size": info.world}


def init(info: DistInfo, device: torch.device, timeout: float = 600.0) -> torch.device:
    """Join the process group (once, every collective under ``timeout`` seconds) and return
    this rank's device."""
    if not info.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout),
                                    **_restart_store(info, timeout))
        except Exception as e:  # a half-set environment, an unreachable rendezvous
            why = " ".join(str(e).split())[:120]
            raise GanforgeError(f"cannot join the process group ({why}): start multi-process "
                                f"runs with torchrun or `ganforge train --nproc N`") from None
    return device


@_collective
def broadcast_module(module: torch.nn.Module, info: DistInfo) -> None:
    if info.enabled:
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)


@_collective
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


@_collective
def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True when ``flag`` is true on any rank (stop rules agree across ranks)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


@_collective
def max_rank(value: int, info: DistInfo, device: torch.device) -> int:
    """The largest ``value`` over the ranks."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


@_collective
def rank0_value(value: float, info: DistInfo, device: torch.device) -> float:
    """Rank 0's ``value`` on every rank (a schedule's progress: clocks differ between ranks,
    and every rank must step with the same learning rate)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


@_collective
def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
