"""Plain ``nn.Module`` networks, one file per family, registered by name.

Each entry of :data:`NETS` builds ``(G, D)`` from a :class:`ganforge.config.ModelConfig` whose
``resolution`` and ``channels`` have been filled in (``resolution`` is unused, may be 0, for the
vector families in :data:`VECTOR_ARCHS`). Conventions, for every family:

- ``G(z, c=None)``: z float [N, latent_dim], c int64 labels [N] (needed when ``g_cond`` is not
  none, ignored otherwise) -> images [N, C, H, W] in [-1, 1], or vectors [N, C] (``mlp``).
  ``resolution`` is a side (H = W) or ``"HxW"``: non-square for the families of
  :data:`ganforge.config.NON_SQUARE` only (a 4ah x 4aw base map: :func:`.layers.aspect`).
- ``D(x, c=None, with_aux=False)`` -> logits [N]; with ``d_cond="aux"`` and ``with_aux=True``
  -> ``(logits [N], class_logits [N, num_classes])``. With ``pack = m > 1`` D takes
  ``layers.pack(x, m)`` ([N/m, C*m, H, W]) and returns [N/m] logits.

Shared pieces (conditioning, D's head, minibatch std, packing, spectral norm) live in
:mod:`ganforge.nets.layers`; ``build_nets`` applies ``ModelConfig.spectral_norm`` to any family.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..config import NON_SQUARE, ModelConfig
from ..errors import GanforgeError
from . import biggan, dcgan, mlp, r3gan, resnet, stylegan2
from .layers import apply_spectral_norm, channels_at

NETS: dict[str, Callable[[ModelConfig], tuple[nn.Module, nn.Module]]] = {
    "dcgan": dcgan.build,
    "resnet": resnet.build,
    "mlp": mlp.build,
    "stylegan2": stylegan2.build,
    "biggan": biggan.build,
    "r3gan": r3gan.build,
}

# the ModelConfig keys each family reads (beyond arch and the shape filled in from the data)
NET_OPTIONS: dict[str, tuple[str, ...]] = {
    "dcgan": dcgan.OPTIONS,
    "resnet": resnet.OPTIONS,
    "mlp": mlp.OPTIONS,
    "stylegan2": stylegan2.OPTIONS,
    "biggan": biggan.OPTIONS,
    "r3gan": r3gan.OPTIONS,
}

# the g_cond and d_cond values each family builds
NET_CONDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    name: (mod.G_CONDS, mod.D_CONDS) for name, mod in (
        ("dcgan", dcgan), ("resnet", resnet), ("mlp", mlp), ("stylegan2", stylegan2),
        ("biggan", biggan), ("r3gan", r3gan))}

VECTOR_ARCHS = {"mlp"}  # families for vector data [N, C]: no resolution


class NetConfigError(GanforgeError, ValueError):
    """A model config a net family cannot build (the CLI prints it as one line)."""


def build_nets(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    """``(G, D)`` for ``cfg``, with spectral norm on G and/or D as ``cfg.spectral_norm`` says."""
    if cfg.arch not in NETS:
        raise ValueError(f"unknown arch '{cfg.arch}': use one of {', '.join(sorted(NETS))}")
    h, w = cfg.size
    if cfg.channels <= 0 or (min(h, w) <= 0 and cfg.arch not in VECTOR_ARCHS):
        raise ValueError("ModelConfig.resolution and .channels must be set before building nets")
    if h != w and cfg.arch not in NON_SQUARE:
        raise NetConfigError(f"resolution={cfg.resolution}: arch={cfg.arch} builds square images "
                             f"only (non-square: arch={', '.join(NON_SQUARE)})")
    if cfg.spectral_norm not in ("none", "d", "g", "both"):
        raise ValueError(f"spectral_norm={cfg.spectral_norm!r}: use none, d, g or both")
    try:
        g, d = NETS[cfg.arch](cfg)
    except ValueError as e:  # a config the family cannot build: one line for the user
        raise NetConfigError(str(e)) from None
    if cfg.spectral_norm in ("g", "both"):
        apply_spectral_norm(g)
    if cfg.spectral_norm in ("d", "both"):
        apply_spectral_norm(d)
    return g, d


__all__ = ["NETS", "VECTOR_ARCHS", "build_nets", "channels_at"]
