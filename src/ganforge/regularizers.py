"""Discriminator regularisers as pure functions (no optimiser, no backward)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def _grad_norm2(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Per-sample squared L2 norm of d(sum outputs)/d inputs, keeping the graph: [N]."""
    (grad,) = torch.autograd.grad(outputs.sum(), inputs, create_graph=True)
    return grad.flatten(1).pow(2).sum(1)


def gradient_penalty(d: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor, gen: torch.Generator | None = None,
                     center: float = 1.0) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(||grad D(x_hat)|| - center)^2] on random points
    x_hat between real and fake samples (two-sided penalty for ``center=1``)."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, generator=gen, device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    norm = (_grad_norm2(d(x_hat), x_hat) + 1e-12).sqrt()
    return (norm - center).pow(2).mean()


def r1_penalty(d: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): E[||grad D(x)||^2] on real data. Multiply by gamma / 2."""
    x = real.detach().requires_grad_(True)
    return _grad_norm2(d(x), x).mean()


@torch.no_grad()
def clip_weights(net: nn.Module, clip: float) -> None:
    """The original WGAN's weight clipping of every parameter to [-clip, clip]."""
    for p in net.parameters():
        p.clamp_(-clip, clip)
