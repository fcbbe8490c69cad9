"""GAN losses as pure functions of discriminator logits.

Each entry of :data:`LOSSES` pairs a D loss ``d(real_logits, fake_logits)`` with a G loss
``g(fake_logits)``. All use the numerically stable with-logits forms (``softplus``), so
``log D(x) = -softplus(-l)`` and ``log(1 - D(x)) = -softplus(l)`` for a logit ``l``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F


def d_bce(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """-E[log D(x)] - E[log(1 - D(G(z)))]: the seed's D loss (BCE on real=1, fake=0)."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_nonsaturating(fake: torch.Tensor) -> torch.Tensor:
    """-E[log D(G(z))]: strong gradients early in training (Goodfellow et al. 2014, sec. 3)."""
    return F.softplus(-fake).mean()


def g_minimax(fake: torch.Tensor) -> torch.Tensor:
    """E[log(1 - D(G(z)))]: the original minimax objective, minimised by G."""
    return -F.softplus(fake).mean()


class Loss(NamedTuple):
    d: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g: Callable[[torch.Tensor], torch.Tensor]


LOSSES: dict[str, Loss] = {
    "nonsaturating": Loss(d_bce, g_nonsaturating),
    "minimax": Loss(d_bce, g_minimax),
}
