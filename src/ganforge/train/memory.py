"""Will one training step fit in memory? Measured before the first step, not guessed.

A paper preset sized for a GPU (R3GAN's CIFAR-10 setup: batch 512 through 768-wide nets with
R1 and R2) needs tens of GiB for one step; on a CPU the kernel then kills the process without a
word. Before training, :func:`probe_step_bytes` runs every phase of the recipe once on a few
samples through a *fresh copy* of the recipe (the run's nets, optimisers and random streams are
not touched) and counts the bytes autograd keeps for backward, per sample. With the memory
free on the device (``MemAvailable`` on Linux, ``cudaMemGetInfo`` on CUDA),
:func:`fit_micro_batch` picks the largest micro-batch that fits: the trainer then accumulates
gradients over micro-batches (``batch_gpu``, as stylegan2-ada's ``--batch-gpu``) so the batch
and the optimisation stay the same, and says so; when not even one sample fits, it stops with a
one-line error before any work is done.
"""

from __future__ import annotations

import torch

# peak of one step / bytes saved for backward: the backward pass holds gradients of the
# activations beside them, and allocators round up. Measured on CPU (peak resident memory of
# two steps over the probe's saved bytes, weights and optimiser state included in the peak;
# docs/memory_probe_cpu.jsonl): r3gan 1.02, r3gan-small 1.18, srgan-small 1.21, dcgan 2.38
# (77 MiB saved: weights and Adam state dominate), stylegan2-small 0.44
PEAK_FACTOR = 2.0
# the share of the free memory a step may use (the rest: data, Python, the OS's page cache)
USABLE = 0.7


def available_bytes(device: torch.device) -> int | None:
    """Memory free for this process on ``device``, or None when it cannot be read."""
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
            return int(free)
        except RuntimeError:
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class _Saved:
    """``saved_tensors_hooks`` that add up the bytes of the distinct non-parameter storages
    autograd keeps for backward."""

    def __init__(self, params: set[int]):
        self.params, self.seen, self.bytes = params, set(), 0

    def pack(self, t: torch.Tensor):
        try:
            s = t.untyped_storage()
            key = s.data_ptr()
            if key not in self.params and key not in self.seen and key != 0:
                self.seen.add(key)
                self.bytes += s.nbytes()
        except (RuntimeError, NotImplementedError):  # tensors without storage
            pass
        return t

    @staticmethod
    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t


def probe_step_bytes(recipe, batch: dict[str, torch.Tensor], ctx: dict) -> int:
    """Bytes autograd keeps for backward per sample, the most of any phase, when every phase
    of ``recipe`` (a fresh one: its nets are trained for one step here) runs on ``batch``."""
    n = next(iter(batch.values())).shape[0]
    nets = recipe.nets()
    params = {p.untyped_storage().data_ptr() for net in nets.values() for p in net.parameters()}
    params |= {b.untyped_storage().data_ptr() for net in nets.values() for b in net.buffers()}
    ctx = dict(ctx, batch=batch, micro_batches=1, batch_index=1)
    most = 0
    for phase in recipe.phases():
        for name, net in nets.items():
            net.requires_grad_(name in phase.trainable)
        saved = _Saved(params)
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
            out = phase.fn(ctx)
        out["loss"].float().backward()
        for net in nets.values():
            net.zero_grad(set_to_none=True)
        most = max(most, saved.bytes)
    return most // n


def static_bytes(nets: dict[str, torch.nn.Module]) -> int:
    """Weights, their gradients and Adam's two moments: 4x the parameters' bytes (an upper
    bound: the EMA copy has no gradients, other optimisers keep less)."""
    return 4 * sum(p.numel() * p.element_size() for net in nets.values()
                   for p in net.parameters())


def fit_micro_batch(local_batch: int, per_sample: int, static: int, free: int) -> int:
    """The largest divisor of ``local_batch`` whose step fits in ``free`` bytes (0: none fits;
    ``local_batch``: the whole batch fits)."""
    budget = free * USABLE - static
    for m in sorted((d for d in range(1, local_batch + 1) if local_batch % d == 0),
                    reverse=True):
        if m * per_sample * PEAK_FACTOR <= budget:
            return m
    return 0


def gib(b: float) -> str:
    return f"{b / 2**30:.1f} GiB"
