"""MLP G and D for vector data (2-D toy mixtures and the like). ``ModelConfig.channels`` is the
vector size; ``resolution`` is not used (0 for vector data).

G: ``layers`` x (Linear(hidden) + ReLU), then Linear to ``channels``, no output activation.
With ``g_cond=cbn`` a :class:`~ganforge.nets.layers.CondBatchNorm` (1-d) follows each hidden
Linear (the plain G has no BatchNorm to replace); ``concat`` appends a label embedding to z.
D: ``layers`` x (Linear(hidden) + LeakyReLU(0.2)) -> h [N, hidden] -> DHead. ``d_cond=concat``
appends an ``min(hidden, 64)``-wide label embedding to x; ``mbstd`` adds its feature in front of
the last hidden layer; ``pack`` multiplies the input size. Default PyTorch init.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ModelConfig
from .layers import (
    D_CONDS,
    G_CONDS,
    LABEL_DIM,
    ConcatLabel,
    CondBatchNorm,
    CondSequential,
    DHead,
    MinibatchStd,
    cond_classes,
    need_labels,
)


class MixtureLatent(nn.Module):
    """Turns z ~ N(0, I) [N, d] into a draw from a mixture of ``k`` equally likely narrow
    Gaussians ``N(mu_j, std^2 I)`` with fixed centres ``mu_j ~ N(0, I)`` (a buffer, saved with
    G): a latent space made of separate blobs, so G can send each blob to one mode of
    disconnected data without spending latent mass on bridges between them (the cause of most
    off-mode samples on ring8 / grid25; cf. DeLiGAN, Gurumurthy et al. 2017, and Khayatkhoei et
    al. 2018 on disconnected manifolds). A deterministic map of z: the component is
    ``floor(k * Phi(z_0))``, and z_0's position inside its bin, mapped back through Phi^-1,
    joins z_1.. as the blob's own standard-normal noise. So sampling, seeds and resume stay
    those of a plain N(0, I) latent."""

    def __init__(self, dim: int, k: int, std: float, seed: int = 1234):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.k, self.std = k, std
        self.register_buffer("centers", torch.randn(k, dim, generator=gen))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        u = 0.5 * (1 + torch.erf(z[:, 0].double() / math.sqrt(2)))  # uniform in (0, 1)
        pos = u * self.k
        idx = pos.floor().long().clamp(0, self.k - 1)
        frac = (pos - idx).clamp(1e-9, 1 - 1e-9)  # uniform in (0, 1), independent of idx
        eps0 = (torch.erfinv(2 * frac - 1) * math.sqrt(2)).to(z.dtype)
        eps = torch.cat([eps0[:, None], z[:, 1:]], dim=1)
        return self.centers[idx].to(z.dtype) + self.std * eps


class Generator(nn.Module):
    """``G(z [N, latent_dim], c [N] | None) -> vectors [N, channels]`` (no output activation).
    With ``latent_mixture = k > 0`` z first goes through :class:`MixtureLatent`."""

    def __init__(self, latent_dim: int = 2, channels: int = 2, hidden: int = 128,
                 layers: int = 3, num_classes: int = 0, cond: str = "none",
                 latent_mixture: int = 0, latent_mixture_std: float = 0.1):
        super().__init__()
        k = cond_classes(cond, num_classes, G_CONDS, "g_cond")
        self.latent_dim, self.cond = latent_dim, cond
        self.prior = (MixtureLatent(latent_dim, latent_mixture, latent_mixture_std)
                      if latent_mixture > 0 else None)
        self.label = ConcatLabel(k, (min(latent_dim, LABEL_DIM),)) if cond == "concat" else None
        width = latent_dim + (self.label.extra if self.label is not None else 0)
        mods: list[nn.Module] = []
        for _ in range(layers):
            mods.append(nn.Linear(width, hidden))
            if cond == "cbn":
                mods.append(CondBatchNorm(hidden, k, dim=1))
            mods.append(nn.ReLU(True))
            width = hidden
        mods.append(nn.Linear(width, channels))
        self.main = CondSequential(*mods)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if self.cond != "none":
            c = need_labels(c, z.shape[0], f"G (g_cond={self.cond})")
        if self.prior is not None:
            z = self.prior(z)
        if self.label is not None:
            z = self.label(z, c)
        return self.main(z, c)  # [N, channels]


class Discriminator(nn.Module):
    """``D(x [N, channels*pack], c [N] | None, with_aux=False) -> logits [N]``, or
    ``(logits [N], class logits [N, K])`` when built with ``cond="aux"`` and ``with_aux=True``."""

    def __init__(self, channels: int = 2, hidden: int = 128, layers: int = 3,
                 num_classes: int = 0, cond: str = "none", mbstd: int = 0, pack: int = 1):
        super().__init__()
        k = cond_classes(cond, num_classes, D_CONDS, "d_cond")
        if pack > 1 and cond != "none":
            raise ValueError("pack > 1 works with an unconditional D only (d_cond=none)")
        self.cond = cond
        self.label = ConcatLabel(k, (min(hidden, LABEL_DIM),)) if cond == "concat" else None
        width = channels * pack + (self.label.extra if self.label is not None else 0)
        mods: list[nn.Module] = []
        for i in range(layers):
            if i == layers - 1 and mbstd > 0:
                mods.append(MinibatchStd(mbstd))  # [N, width] -> [N, width + 1]
                width += 1
            mods += [nn.Linear(width, hidden), nn.LeakyReLU(0.2, True)]
            width = hidden
        self.features = nn.Sequential(*mods)  # -> h [N, hidden]
        self.head = DHead(hidden, k, cond, bias=True)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, with_aux: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.label is not None:
            x = self.label(x, need_labels(c, x.shape[0], "D (d_cond=concat)"))
        return self.head(self.features(x), c, with_aux)


# the ModelConfig keys this family reads (beyond arch and the vector size taken from the data)
OPTIONS = ("latent_dim", "hidden", "layers", "latent_mixture", "latent_mixture_std", "g_cond",
           "d_cond", "mbstd", "pack", "spectral_norm")


def build(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    g = Generator(cfg.latent_dim, cfg.channels, cfg.hidden, cfg.layers, cfg.num_classes,
                  cfg.g_cond, cfg.latent_mixture, cfg.latent_mixture_std)
    d = Discriminator(cfg.channels, cfg.hidden, cfg.layers, cfg.num_classes, cfg.d_cond,
                      cfg.mbstd, cfg.pack)
    return g, d
