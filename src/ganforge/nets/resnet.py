"""ResNet G and D in the SNGAN style (Miyato et al. 2018; Mimicry's SNGAN), any power-of-two
resolution >= 8 (used at 32, 64, 128), square or H x W with a power-of-two aspect ratio (maps of
(r*ah) x (r*aw) at level r: :func:`~.layers.aspect`; 4x4 below stands for 4ah x 4aw). Widths
from the level: ``channels_at(r, base, max)``.

G: linear z -> [N, C4, 4, 4]; one up-sampling residual block per doubling
(BN-ReLU-up-conv3x3-BN-ReLU-conv3x3, shortcut up + conv1x1) to R; BN-ReLU-conv3x3-tanh.
``g_cond=cbn`` makes every BatchNorm class-conditional; ``concat`` appends a label embedding to z.

D (no BatchNorm): an optimised first block R -> R/2 (conv-ReLU-conv-avgpool, shortcut
avgpool-conv1x1), down-sampling blocks (ReLU-conv-ReLU-conv-avgpool, shortcut conv1x1-avgpool)
down to 4x4, one more block at 4x4 without down-sampling (as Mimicry's SNGAN-128 D; one rule at
every resolution, where the SNGAN-32 paper net stops at 8x8), ReLU, global sum pooling -> h
[N, C4] -> :class:`~ganforge.nets.layers.DHead`. ``mbstd`` goes in front of that last block.

Init as in Mimicry: xavier_uniform with gain sqrt(2) for the residual 3x3 convs, 1 for the 1x1
shortcuts, G's input linear, G's output conv and D's head. Spectral norm is not built in: it
comes from ``ModelConfig.spectral_norm`` (``build_nets``), ``d`` for SNGAN.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .layers import (
    D_CONDS,
    G_CONDS,
    LABEL_DIM,
    ConcatLabel,
    DHead,
    MinibatchStd,
    aspect,
    batch_norm,
    channels_at,
    cond_classes,
    need_labels,
)

_GAIN = math.sqrt(2.0)


def _check_resolution(resolution: int) -> int:
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"resnet: resolution={resolution} must be a power of two >= 8")
    return int(math.log2(resolution))


def _norm(bn: nn.Module, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    return bn(x, c) if getattr(bn, "takes_labels", False) else bn(x)


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class GBlock(nn.Module):
    """Up-sampling residual block: [N, cin, r, r] -> [N, cout, 2r, 2r]."""

    def __init__(self, cin: int, cout: int, num_classes: int = 0):
        super().__init__()
        self.b1 = batch_norm(cin, num_classes)
        self.c1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.b2 = batch_norm(cout, num_classes)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.c_sc = nn.Conv2d(cin, cout, 1, 1, 0)
        nn.init.xavier_uniform_(self.c1.weight, _GAIN)
        nn.init.xavier_uniform_(self.c2.weight, _GAIN)
        nn.init.xavier_uniform_(self.c_sc.weight, 1.0)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.c1(_up(F.relu(_norm(self.b1, x, c))))
        h = self.c2(F.relu(_norm(self.b2, h, c)))
        return h + self.c_sc(_up(x))


class DBlock(nn.Module):
    """Residual block of D: [N, cin, r, r] -> [N, cout, r/2, r/2] (or r with down=False).

    ``optimized``: the first block, on the image (no ReLU before the first conv, shortcut pools
    before its 1x1 conv)."""

    def __init__(self, cin: int, cout: int, down: bool = True, optimized: bool = False,
                 hidden: int | None = None):
        super().__init__()
        self.down, self.optimized = down, optimized
        if hidden is None:  # as in the SNGAN / Mimicry code (BigGAN's wide D passes cout)
            hidden = cout if optimized else cin
        self.c1 = nn.Conv2d(cin, hidden, 3, 1, 1)
        self.c2 = nn.Conv2d(hidden, cout, 3, 1, 1)
        learn_sc = optimized or down or cin != cout
        self.c_sc = nn.Conv2d(cin, cout, 1, 1, 0) if learn_sc else None
        nn.init.xavier_uniform_(self.c1.weight, _GAIN)
        nn.init.xavier_uniform_(self.c2.weight, _GAIN)
        if self.c_sc is not None:
            nn.init.xavier_uniform_(self.c_sc.weight, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.optimized else F.relu(x)
        h = self.c2(F.relu(self.c1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.optimized:
            s = self.c_sc(F.avg_pool2d(s, 2))
        else:
            if self.c_sc is not None:
                s = self.c_sc(s)
            if self.down:
                s = F.avg_pool2d(s, 2)
        return h + s


class Generator(nn.Module):
    """``G(z [N, latent_dim], c [N] | None) -> images [N, channels, H, W]`` in [-1, 1]."""

    def __init__(self, latent_dim: int = 128, resolution: int | str = 32, channels: int = 3,
                 channel_base: int = 2048, channel_max: int = 512, num_classes: int = 0,
                 cond: str = "none"):
        super().__init__()
        k = cond_classes(cond, num_classes, G_CONDS, "g_cond")
        s, ah, aw = aspect(resolution)
        n = _check_resolution(s)
        self.latent_dim, self.cond = latent_dim, cond
        self.label = ConcatLabel(k, (min(latent_dim, LABEL_DIM),)) if cond == "concat" else None
        k_bn = k if cond == "cbn" else 0
        w = [channels_at(2**i, channel_base, channel_max) for i in range(2, n + 1)]  # 4 .. R
        zin = latent_dim + (self.label.extra if self.label is not None else 0)
        self.w0, self.base = w[0], (4 * ah, 4 * aw)
        self.linear = nn.Linear(zin, 16 * ah * aw * w[0])  # -> [N, w0, 4ah, 4aw]
        self.blocks = nn.ModuleList(GBlock(a, b, k_bn) for a, b in itertools.pairwise(w))
        self.bn = batch_norm(w[-1], k_bn)
        self.out = nn.Conv2d(w[-1], channels, 3, 1, 1)
        nn.init.xavier_uniform_(self.linear.weight, 1.0)
        nn.init.xavier_uniform_(self.out.weight, 1.0)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if self.cond != "none":
            c = need_labels(c, z.shape[0], f"G (g_cond={self.cond})")
        if self.label is not None:
            z = self.label(z, c)
        h = self.linear(z).view(z.shape[0], self.w0, *self.base)
        for block in self.blocks:
            h = block(h, c)
        return torch.tanh(self.out(F.relu(_norm(self.bn, h, c))))  # [N, C, H, W]


class Discriminator(nn.Module):
    """``D(x [N, channels*pack, H, W], c [N] | None, with_aux=False) -> logits [N]``, or
    ``(logits [N], class logits [N, K])`` when built with ``cond="aux"`` and ``with_aux=True``."""

    def __init__(self, resolution: int | str = 32, channels: int = 3, channel_base: int = 2048,
                 channel_max: int = 512, num_classes: int = 0, cond: str = "none",
                 mbstd: int = 0, pack: int = 1):
        super().__init__()
        k = cond_classes(cond, num_classes, D_CONDS, "d_cond")
        if pack > 1 and cond != "none":
            raise ValueError("pack > 1 works with an unconditional D only (d_cond=none)")
        s, ah, aw = aspect(resolution)
        n = _check_resolution(s)
        self.cond = cond
        self.label = ConcatLabel(k, (1, s * ah, s * aw)) if cond == "concat" else None
        w = [channels_at(2**i, channel_base, channel_max) for i in range(n - 1, 1, -1)]  # R/2..4
        cin = channels * pack + (1 if self.label is not None else 0)
        blocks = [DBlock(cin, w[0], down=True, optimized=True)]  # -> [N, w0, R/2, R/2]
        blocks += [DBlock(a, b, down=True) for a, b in itertools.pairwise(w)]  # -> [N, C4, 4, 4]
        self.blocks = nn.Sequential(*blocks)
        self.mbstd = MinibatchStd(mbstd) if mbstd > 0 else None  # -> [N, C4 + 1, 4, 4]
        self.last = DBlock(w[-1] + (1 if self.mbstd is not None else 0), w[-1], down=False)
        self.head = DHead(w[-1], k, cond, bias=True)
        nn.init.xavier_uniform_(self.head.linear.weight, 1.0)
        if self.head.aux is not None:
            nn.init.xavier_uniform_(self.head.aux.weight, 1.0)
        if self.head.embed is not None:
            nn.init.xavier_uniform_(self.head.embed.weight, 1.0)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, with_aux: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.label is not None:
            x = self.label(x, need_labels(c, x.shape[0], "D (d_cond=concat)"))
        h = self.blocks(x)
        if self.mbstd is not None:
            h = self.mbstd(h)
        h = F.relu(self.last(h)).sum(dim=(2, 3))  # global sum pooling -> [N, C4]
        return self.head(h, c, with_aux)

    def input_blocks(self) -> list[list[nn.Module]]:
        """D's layers nearest the input, one group per resolution (highest first): FreezeD
        keeps the first K groups fixed; the last module of a group outputs its features."""
        return [[b] for b in self.blocks]


# the ModelConfig keys this family reads (beyond arch and the shape taken from the data)
OPTIONS = ("latent_dim", "g_channel_base", "g_channel_max", "d_channel_base", "d_channel_max",
           "g_cond", "d_cond", "mbstd", "pack", "spectral_norm")


def build(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    g = Generator(cfg.latent_dim, cfg.resolution, cfg.channels, cfg.g_channel_base,
                  cfg.g_channel_max, cfg.num_classes, cfg.g_cond)
    d = Discriminator(cfg.resolution, cfg.channels, cfg.d_channel_base, cfg.d_channel_max,
                      cfg.num_classes, cfg.d_cond, cfg.mbstd, cfg.pack)
    return g, d
