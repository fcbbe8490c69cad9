"""DCGAN (Radford et al. 2015), as in the seed note, for any power-of-two resolution >= 8.

G: z -> 4x4 (ConvTranspose 4,1,0) -> doubling ConvTranspose(4,2,1) + BatchNorm + ReLU blocks
-> ConvTranspose to C channels + tanh. D mirrors it with strided Conv(4,2,1) + LeakyReLU(0.2),
BatchNorm on every block but the first, and a final 4x4 conv to one logit (no sigmoid: the
losses use the numerically stable with-logits forms). Weights ~ N(0, 0.02), BatchNorm gain
~ N(1, 0.02). At 32x32 with the default widths this is exactly the seed's 512-256-128 net.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ModelConfig


def _widths(resolution: int, base: int, cmax: int) -> list[int]:
    from . import channels_at

    # widths of the feature maps at 4, 8, ..., resolution/2
    return [channels_at(2**i, base, cmax) for i in range(2, int(math.log2(resolution)))]


class Generator(nn.Module):
    def __init__(self, latent_dim: int = 100, resolution: int = 32, channels: int = 3,
                 channel_base: int = 2048, channel_max: int = 512):
        super().__init__()
        self.latent_dim = latent_dim
        w = _widths(resolution, channel_base, channel_max)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, w[0], 4, 1, 0, bias=False),  # -> [N, w0, 4, 4]
            nn.BatchNorm2d(w[0]),
            nn.ReLU(True),
        ]
        for cin, cout in zip(w[:-1], w[1:]):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(w[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.main(z.view(z.shape[0], -1, 1, 1))  # [N, C, R, R]


class Discriminator(nn.Module):
    def __init__(self, resolution: int = 32, channels: int = 3, channel_base: int = 2048,
                 channel_max: int = 512):
        super().__init__()
        w = _widths(resolution, channel_base, channel_max)[::-1]  # widths at R/2, ..., 4
        layers: list[nn.Module] = [nn.Conv2d(channels, w[0], 4, 2, 1, bias=False),
                                   nn.LeakyReLU(0.2, True)]
        for cin, cout in zip(w[:-1], w[1:]):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout),
                       nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(w[-1], 1, 4, 1, 0, bias=False)]  # -> [N, 1, 1, 1]
        self.main = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.main(x).view(-1)  # logits [N]


def init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def build(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    g = Generator(cfg.latent_dim, cfg.resolution, cfg.channels, cfg.g_channel_base,
                  cfg.g_channel_max)
    d = Discriminator(cfg.resolution, cfg.channels, cfg.d_channel_base, cfg.d_channel_max)
    return g, d
