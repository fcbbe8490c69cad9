"""Plain ``nn.Module`` networks, one file per family, registered by name.

Each entry of :data:`NETS` builds ``(G, D)`` from a :class:`ganforge.config.ModelConfig` whose
``resolution`` and ``channels`` have been filled in. Conventions: ``G(z, c=None)`` takes
z of shape [N, latent_dim] and returns images [N, C, R, R] in [-1, 1]; ``D(x, c=None)`` returns
logits of shape [N].
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..config import ModelConfig
from . import dcgan

NETS: dict[str, Callable[[ModelConfig], tuple[nn.Module, nn.Module]]] = {
    "dcgan": dcgan.build,
}


def build_nets(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    if cfg.resolution <= 0 or cfg.channels <= 0:
        raise ValueError("ModelConfig.resolution and .channels must be set before building nets")
    return NETS[cfg.arch](cfg)


def channels_at(res: int, base: int, cmax: int) -> int:
    """Width of a layer working at ``res`` x ``res`` (StyleGAN's channel_base/channel_max)."""
    return max(1, min(cmax, base // res))
