"""DCGAN (Radford et al. 2015), as in the seed note, for any power-of-two resolution >= 8, square
or H x W with a power-of-two aspect ratio (a 4ah x 4aw base map: :func:`~.layers.aspect`).

G: z -> 4x4 (ConvTranspose 4,1,0) -> doubling ConvTranspose(4,2,1) + BatchNorm + ReLU blocks
-> ConvTranspose to C channels + tanh. D mirrors it with strided Conv(4,2,1) + LeakyReLU(0.2),
BatchNorm on every block but the first, down to features [N, C4, 4, 4] (4ah x 4aw); these are
flattened to h [N, C4*16] and a :class:`~ganforge.nets.layers.DHead` gives the logit (its
bias-free linear over h is the seed's final 4x4 conv, the same 1 x C4*16 weights). No sigmoid:
the losses use the numerically stable with-logits forms. Weights ~ N(0, 0.02), BatchNorm gain
~ N(1, 0.02). At 32x32 with the default widths this is exactly the seed's 512-256-128 net.

Options (ModelConfig): g_cond concat/cbn, d_cond concat/aux/projection, mbstd (before the head),
pack (D's first conv takes channels * pack), norm_d=False (no BatchNorm in D, for WGAN-GP; the
convs that lose their BatchNorm get a bias instead).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from ..config import ModelConfig
from .layers import (
    D_CONDS,
    G_CONDS,
    LABEL_DIM,
    ConcatLabel,
    CondSequential,
    DHead,
    MinibatchStd,
    aspect,
    batch_norm,
    channels_at,
    cond_classes,
    need_labels,
)


def _widths(resolution: int, base: int, cmax: int) -> list[int]:
    # widths of the feature maps at 4, 8, ..., resolution/2
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"dcgan: resolution={resolution} must be a power of two >= 8")
    return [channels_at(2**i, base, cmax) for i in range(2, int(math.log2(resolution)))]


class Generator(nn.Module):
    """``G(z [N, latent_dim], c [N] | None) -> images [N, channels, H, W]`` in [-1, 1]."""

    def __init__(self, latent_dim: int = 100, resolution: int | str = 32, channels: int = 3,
                 channel_base: int = 2048, channel_max: int = 512, num_classes: int = 0,
                 cond: str = "none"):
        super().__init__()
        k = cond_classes(cond, num_classes, G_CONDS, "g_cond")
        self.latent_dim, self.cond = latent_dim, cond
        # concat: z [N, latent_dim] -> [N, latent_dim + E]
        self.label = ConcatLabel(k, (min(latent_dim, LABEL_DIM),)) if cond == "concat" else None
        k_bn = k if cond == "cbn" else 0
        s, ah, aw = aspect(resolution)
        w = _widths(s, channel_base, channel_max)
        zin = latent_dim + (self.label.extra if self.label is not None else 0)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(zin, w[0], (4 * ah, 4 * aw), 1, 0, bias=False),  # -> 4ah x 4aw
            batch_norm(w[0], k_bn),
            nn.ReLU(True),
        ]
        for cin, cout in itertools.pairwise(w):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False),
                       batch_norm(cout, k_bn), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(w[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = CondSequential(*layers)
        init_weights(self)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if self.cond != "none":
            c = need_labels(c, z.shape[0], f"G (g_cond={self.cond})")
        if self.label is not None:
            z = self.label(z, c)
        return self.main(z.view(z.shape[0], -1, 1, 1), c)  # [N, C, H, W]


class Discriminator(nn.Module):
    """``D(x [N, channels*pack, H, W], c [N] | None, with_aux=False) -> logits [N]``, or
    ``(logits [N], class logits [N, K])`` when built with ``cond="aux"`` and ``with_aux=True``.
    With ``pack > 1``, x is :func:`~ganforge.nets.layers.pack` ed and N is the packed batch."""

    def __init__(self, resolution: int | str = 32, channels: int = 3, channel_base: int = 2048,
                 channel_max: int = 512, num_classes: int = 0, cond: str = "none",
                 mbstd: int = 0, pack: int = 1, norm: bool = True):
        super().__init__()
        k = cond_classes(cond, num_classes, D_CONDS, "d_cond")
        if pack > 1 and cond != "none":
            raise ValueError("pack > 1 works with an unconditional D only (d_cond=none)")
        self.cond, self.resolution = cond, resolution
        s, ah, aw = aspect(resolution)
        # concat: one label channel [N, 1, H, W] appended to x
        self.label = (ConcatLabel(k, (1, s * ah, s * aw)) if cond == "concat" else None)
        w = _widths(s, channel_base, channel_max)[::-1]  # widths at s/2, ..., 4
        cin = channels * pack + (1 if self.label is not None else 0)
        layers: list[nn.Module] = [nn.Conv2d(cin, w[0], 4, 2, 1, bias=False),
                                   nn.LeakyReLU(0.2, True)]
        for ci, co in itertools.pairwise(w):
            layers += [nn.Conv2d(ci, co, 4, 2, 1, bias=not norm)]
            layers += [nn.BatchNorm2d(co)] if norm else []
            layers += [nn.LeakyReLU(0.2, True)]
        self.features = nn.Sequential(*layers)  # -> [N, w[-1], 4ah, 4aw]
        self.mbstd = MinibatchStd(mbstd) if mbstd > 0 else None  # -> [N, w[-1] + 1, ...]
        feat = (w[-1] + (1 if self.mbstd is not None else 0)) * 16 * ah * aw
        self.head = DHead(feat, k, cond, bias=False)
        init_weights(self)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, with_aux: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.label is not None:
            x = self.label(x, need_labels(c, x.shape[0], "D (d_cond=concat)"))
        h = self.features(x)
        if self.mbstd is not None:
            h = self.mbstd(h)
        return self.head(h.flatten(1), c, with_aux)  # h: [N, C4*16*ah*aw]

    def input_blocks(self) -> list[list[nn.Module]]:
        """D's layers nearest the input, one group per resolution (highest first): FreezeD
        keeps the first K groups fixed; the last module of a group outputs its features."""
        groups: list[list[nn.Module]] = []
        for m in self.features:  # a group starts at each strided conv
            if isinstance(m, nn.Conv2d):
                groups.append([])
            groups[-1].append(m)
        return groups


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) weights for convs, linears and the projection embedding; BatchNorm gain
    N(1, 0.02). Label tables (concat, CBN gamma/beta) keep their own init."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, DHead) and m.embed is not None:
            nn.init.normal_(m.embed.weight, 0.0, 0.02)


# the ModelConfig keys this family reads (beyond arch and the shape taken from the data)
OPTIONS = ("latent_dim", "g_channel_base", "g_channel_max", "d_channel_base", "d_channel_max",
           "g_cond", "d_cond", "mbstd", "pack", "spectral_norm", "norm_d")


def build(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    g = Generator(cfg.latent_dim, cfg.resolution, cfg.channels, cfg.g_channel_base,
                  cfg.g_channel_max, cfg.num_classes, cfg.g_cond)
    d = Discriminator(cfg.resolution, cfg.channels, cfg.d_channel_base, cfg.d_channel_max,
                      cfg.num_classes, cfg.d_cond, cfg.mbstd, cfg.pack, cfg.norm_d)
    return g, d

