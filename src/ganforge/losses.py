"""GAN losses as pure functions of discriminator outputs ("logits").

Each entry of :data:`LOSSES` pairs a D loss ``d(real_logits, fake_logits)`` with a G loss
``g(fake_logits, real_logits)``: G's loss sees D's outputs on real data too, which the
relativistic loss needs (the others ignore them; a recipe passes ``real_logits=None`` when
``Loss.needs_real`` is false, sparing a D forward). All use the numerically stable with-logits
forms (``softplus``), so ``log D(x) = -softplus(-l)`` and ``log(1 - D(x)) = -softplus(l)`` for a
logit ``l``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F


def d_bce(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """-E[log D(x)] - E[log(1 - D(G(z)))]: the seed's D loss (BCE on real=1, fake=0)."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_nonsaturating(fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    """-E[log D(G(z))]: strong gradients early in training (Goodfellow et al. 2014, sec. 3)."""
    return F.softplus(-fake).mean()


def g_minimax(fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    """E[log(1 - D(G(z)))]: the original minimax objective, minimised by G."""
    return -F.softplus(fake).mean()


def d_wasserstein(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[D(G(z))] - E[D(x)]: the critic's side of the Wasserstein-1 estimate (Arjovsky 2017)."""
    return fake.mean() - real.mean()


def g_wasserstein(fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    """-E[D(G(z))]."""
    return -fake.mean()


def d_hinge(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))] (Lim & Ye 2017; Miyato et al. 2018)."""
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def d_least_squares(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """0.5 E[(D(x) - 1)^2] + 0.5 E[D(G(z))^2] (LSGAN, Mao et al. 2017, a=0, b=c=1)."""
    return 0.5 * (real - 1).pow(2).mean() + 0.5 * fake.pow(2).mean()


def g_least_squares(fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    """0.5 E[(D(G(z)) - 1)^2]."""
    return 0.5 * (fake - 1).pow(2).mean()


def _pairs(fake: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
    if real is None:
        raise ValueError("the relativistic loss pairs fakes with reals: pass real_logits")
    if real.shape != fake.shape:
        raise ValueError(f"the relativistic loss pairs fakes with reals one to one: got "
                         f"{list(fake.shape)} fake and {list(real.shape)} real logits")
    return fake - real


def d_relativistic(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[f(D(G(z)) - D(x))] with f = softplus: D scores each real above its paired fake
    (RpGAN, Jolicoeur-Martineau 2019; with R1 + R2 the R3GAN loss, Huang et al. 2024)."""
    return F.softplus(_pairs(fake, real)).mean()


def g_relativistic(fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    """E[f(D(x) - D(G(z)))]: G raises each fake above its paired real."""
    return F.softplus(-_pairs(fake, real)).mean()


class Loss(NamedTuple):
    d: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    needs_real: bool = False  # G's loss reads D's logits on real data


LOSSES: dict[str, Loss] = {
    "nonsaturating": Loss(d_bce, g_nonsaturating),
    "minimax": Loss(d_bce, g_minimax),
    "wasserstein": Loss(d_wasserstein, g_wasserstein),
    "hinge": Loss(d_hinge, g_wasserstein),  # G's hinge loss is -E[D(G(z))]
    "lsgan": Loss(d_least_squares, g_least_squares),
    "rpgan": Loss(d_relativistic, g_relativistic, needs_real=True),
}

# losses whose D output is a probability logit, so sigmoid(D) reads as D(x)
PROBABILISTIC = {"nonsaturating", "minimax"}
