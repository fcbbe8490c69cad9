"""GAN losses as pure functions of discriminator outputs ("logits").

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


def d_wasserstein(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[D(G(z))] - E[D(x)]: the critic's side of the Wasserstein-1 estimate (Arjovsky 2017)."""
    return fake.mean() - real.mean()


def g_wasserstein(fake: torch.Tensor) -> torch.Tensor:
    """-E[D(G(z))]."""
    return -fake.mean()


def d_hinge(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))] (Lim & Ye 2017; Miyato et al. 2018)."""
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def d_least_squares(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """0.5 E[(D(x) - 1)^2] + 0.5 E[D(G(z))^2] (LSGAN, Mao et al. 2017, a=0, b=c=1)."""
    return 0.5 * (real - 1).pow(2).mean() + 0.5 * fake.pow(2).mean()


def g_least_squares(fake: torch.Tensor) -> torch.Tensor:
    """0.5 E[(D(G(z)) - 1)^2]."""
    return 0.5 * (fake - 1).pow(2).mean()


class Loss(NamedTuple):
    d: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g: Callable[[torch.Tensor], torch.Tensor]


LOSSES: dict[str, Loss] = {
    "nonsaturating": Loss(d_bce, g_nonsaturating),
    "minimax": Loss(d_bce, g_minimax),
    "wasserstein": Loss(d_wasserstein, g_wasserstein),
    "hinge": Loss(d_hinge, g_wasserstein),  # G's hinge loss is -E[D(G(z))]
    "lsgan": Loss(d_least_squares, g_least_squares),
}

# losses whose D output is a probability logit, so sigmoid(D) reads as D(x)
PROBABILISTIC = {"nonsaturating", "minimax"}
