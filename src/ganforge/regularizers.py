"""Regularisers as pure functions (no optimiser, no backward)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


def grad_norm2(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
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
    norm = (grad_norm2(d(x_hat), x_hat) + 1e-12).sqrt()
    return (norm - center).pow(2).mean()


def r1_penalty(d: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): E[||grad D(x)||^2] on real data. Multiply by gamma / 2."""
    x = real.detach().requires_grad_(True)
    return grad_norm2(d(x), x).mean()


def lecam_penalty(real: torch.Tensor, fake: torch.Tensor, anchors: torch.Tensor
                  ) -> torch.Tensor:
    """LeCam regularisation (Tseng et al. 2021, the official code's one-sided form):
    ``E[relu(D(x) - a_F)^2] + E[relu(a_R - D(G(z)))^2]`` with ``anchors = (a_R, a_F)`` the moving
    averages of D's outputs on real and fake data. It keeps D's predictions from drifting apart
    on a small set (a bound on the LeCam divergence); the recipe keeps the anchors."""
    a_real, a_fake = anchors[0].detach(), anchors[1].detach()
    return (torch.relu(real - a_fake).square().mean()
            + torch.relu(a_real - fake).square().mean())


@torch.no_grad()
def clip_weights(net: nn.Module, clip: float) -> None:
    """The original WGAN's weight clipping of every parameter to [-clip, clip]."""
    for p in net.parameters():
        p.clamp_(-clip, clip)


def path_lengths(img: torch.Tensor, ws: torch.Tensor,
                 gen: torch.Generator | None = None) -> torch.Tensor:
    """StyleGAN2's path lengths (Karras et al. 2020): ``||J_w^T y||_2`` per sample [N] for a
    random image-space direction ``y ~ N(0, I) / sqrt(H * W)``, with J_w the Jacobian of the
    images [N, C, H, W] with respect to the per-layer latents ``ws`` [N, L, w_dim] (the norm
    over w_dim is averaged over the L layers, as in the official code). Keeps the graph: the
    penalty ``(lengths - running_mean)^2`` is backpropagated into G."""
    y = torch.randn(img.shape, generator=gen, device=img.device, dtype=img.dtype)
    y = y / math.sqrt(img.shape[2] * img.shape[3])
    (grad,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
    return grad.float().square().sum(2).mean(1).sqrt()


def ortho_penalty(net: nn.Module, skip: tuple[str, ...] = ("embed", "shared")) -> torch.Tensor:
    """BigGAN's orthogonal regularisation (Brock et al. 2019): the sum over weight matrices W
    (conv kernels flattened to [out, in*k*k]) of ``||W W^T * (1 - I)||_F^2``, which pushes the
    filters towards orthogonality without constraining their norms. 1-D parameters (biases,
    gains) and embeddings (names containing any of ``skip``) are left out, as in the paper's
    code. With spectral norm the penalty applies to the stored (unnormalised) weight."""
    total = None
    for name, p in net.named_parameters():
        if p.dim() < 2 or not p.requires_grad or any(s in name for s in skip):
            continue
        w = p.flatten(1).float()
        gram = w @ w.t()
        off = gram - torch.diag_embed(torch.diagonal(gram))
        term = off.square().sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total
