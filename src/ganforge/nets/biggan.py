"""BigGAN G and D (Brock et al. 2019, "Large Scale GAN Training for High Fidelity Natural Image
Synthesis"), pure PyTorch, for any power-of-two resolution 32..512. Widths from the resolution:
``channels_at(r, base, max)``.

G: z [N, latent_dim] is split into ``num_blocks + 1`` chunks (hierarchical latent; ``num_blocks =
log2(R) - 2`` up-sampling blocks from 4x4). Chunk 0 -> linear -> [N, C4, 4, 4]; chunk ``i + 1``
conditions block ``i``. A conditional G (``g_cond=cbn``, ``num_classes > 0``) has one
shared class embedding ``nn.Embedding(K, shared_dim)``; block ``i``'s conditioning vector is
``y_i = cat(shared(c), z_{i+1})`` (unconditional: ``y_i = z_{i+1}``). Every BatchNorm of a block
is a :class:`HierCondBatchNorm`: ``BN(x) * (1 + gain(y)) + bias(y)`` with bias-free linears. Block:
cBN-ReLU-up-conv3x3-cBN-ReLU-conv3x3, shortcut up + conv1x1. Output: BN-ReLU-conv3x3-tanh.

D: residual down-sampling blocks (the first: conv-ReLU-conv-avgpool, shortcut avgpool-conv1x1; the
others: ReLU-conv-ReLU-conv-avgpool, shortcut conv1x1-avgpool; hidden width = output width, as
BigGAN's "wide" D) down to 4x4, one more block at 4x4 without down-sampling, ReLU, global sum
pooling -> h [N, C4] -> :class:`~ganforge.nets.layers.DHead` (none, aux or projection).
``mbstd`` goes in front of that last block.

Self-attention (SAGAN, Zhang et al. 2019; :class:`SelfAttention`) on the feature maps of
resolution ``attention`` in both nets: in G after the block that outputs that resolution, in D
after the block that outputs it (= before the block that takes it as input). Allowed: 8..R/2
(:func:`attention_resolutions`); 0 = off.

Init as BigGAN (``G_init = D_init = ortho``): orthogonal weights for every conv, linear and
embedding, zero biases; attention's gamma starts at 0. Spectral norm is not built in: BigGAN
uses it on G and D, so set ``ModelConfig.spectral_norm=both`` (``build_nets`` wraps every conv
and linear, the cBN gain/bias linears included, and D's projection embedding; G's shared
embedding is left alone, as in BigGAN).

Deviations from the paper / the reference code (ajbrock/BigGAN-PyTorch), all deliberate:

- BigGAN only, not BigGAN-deep; nearest-neighbour x2 up-sampling (as the reference code).
- Widths come from ``channel_base / channel_max`` instead of the ``ch`` multipliers
  (BigGAN-128 is ``ch=96``: 16ch at 4x4 down to 1ch at 128x128).
- ``latent_dim`` need not be divisible by ``num_blocks + 1``: the remainder goes to the first
  chunk (the input linear); the reference code drops it. ``latent_dim >= num_blocks + 1``.
- D has the extra 4x4 block of the reference code at every resolution, and also offers
  ``aux`` (AC-GAN) heads; ``d_cond=concat`` is not supported. ``pack > 1`` needs an
  unconditional D.
- The input linear sees chunk 0 only (as the reference code), not the class embedding.
- Plain ``nn.BatchNorm2d`` (no cross-replica BN, no "standing statistics"); PyTorch's spectral
  norm (eps 1e-12, one power iteration per step). The truncation trick, G's EMA and orthogonal
  regularisation belong to sampling / the training loop, not to these modules.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from . import resnet
from .layers import DHead, MinibatchStd, channels_at, cond_classes, need_labels

G_CONDS = ("none", "cbn")  # G conditioning: shared class embedding + conditional BatchNorm
D_CONDS = ("none", "aux", "projection")  # D conditioning this family supports


def check_resolution(resolution: int) -> int:
    """``log2(resolution)``; ValueError unless it is a power of two in 32..512."""
    if not (32 <= resolution <= 512) or resolution & (resolution - 1):
        raise ValueError(f"biggan: resolution={resolution} must be a power of two in 32..512")
    return int(math.log2(resolution))


def attention_resolutions(resolution: int) -> list[int]:
    """Feature-map resolutions where both G and D can hold the attention block: 8..R/2."""
    n = check_resolution(resolution)
    return [2**i for i in range(3, n)]


def _check_attention(attention: int, resolution: int) -> int:
    ok = attention_resolutions(resolution)
    if attention and attention not in ok:
        raise ValueError(f"biggan: attention={attention} has no block at resolution {resolution}:"
                         f" use 0 (off) or one of {', '.join(map(str, ok))}")
    return attention


def z_chunks(latent_dim: int, num_blocks: int) -> list[int]:
    """Sizes of the ``num_blocks + 1`` latent chunks; the remainder goes to the first."""
    slots = num_blocks + 1
    if latent_dim < slots:
        raise ValueError(f"biggan: latent_dim={latent_dim} must be >= {slots} (one z chunk for the"
                         f" input and one for each of the {num_blocks} G blocks)")
    size = latent_dim // slots
    return [size + latent_dim % slots] + [size] * num_blocks


def init_weights(module: nn.Module) -> None:
    """BigGAN's ``ortho`` init: orthogonal conv / linear / embedding weights, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            nn.init.orthogonal_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class HierCondBatchNorm(nn.Module):
    """BigGAN's conditional BatchNorm: ``BN(x) * (1 + gain(y)) + bias(y)``.

    ``BatchNorm2d(affine=False)``; ``gain`` / ``bias`` are ``nn.Linear(cond_dim, C, bias=False)``
    on the conditioning vector y [N, cond_dim] (shared class embedding + z chunk).
    """

    def __init__(self, num_features: int, cond_dim: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Linear(cond_dim, num_features, bias=False)
        self.bias = nn.Linear(cond_dim, num_features, bias=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], -1, 1, 1)
        return self.bn(x) * (1 + self.gain(y)).view(shape) + self.bias(y).view(shape)


class SelfAttention(nn.Module):
    """SAGAN self-attention, [N, C, H, W] -> [N, C, H, W] (H, W even): ``x + gamma * o(...)``.

    theta / phi: 1x1 convs to C/8, g: 1x1 conv to C/2 (all bias-free, as BigGAN); phi and g
    are 2x2 max-pooled, so each of the H*W queries attends over H*W/4 keys. ``gamma`` starts at 0.
    """

    def __init__(self, ch: int):
        super().__init__()
        c8, c2 = max(1, ch // 8), max(1, ch // 2)
        self.theta = nn.Conv2d(ch, c8, 1, bias=False)
        self.phi = nn.Conv2d(ch, c8, 1, bias=False)
        self.g = nn.Conv2d(ch, c2, 1, bias=False)
        self.o = nn.Conv2d(c2, ch, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        theta = self.theta(x).flatten(2)  # [N, C/8, HW]
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)  # [N, C/8, HW/4]
        g = F.max_pool2d(self.g(x), 2).flatten(2)  # [N, C/2, HW/4]
        beta = torch.softmax(torch.bmm(theta.transpose(1, 2), phi), dim=-1)  # [N, HW, HW/4]
        o = torch.bmm(g, beta.transpose(1, 2)).view(n, -1, h, w)  # [N, C/2, H, W]
        return x + self.gamma * self.o(o)


class GBlock(nn.Module):
    """Up-sampling residual block: ([N, cin, r, r], y [N, cond_dim]) -> [N, cout, 2r, 2r]."""

    def __init__(self, cin: int, cout: int, cond_dim: int):
        super().__init__()
        self.b1 = HierCondBatchNorm(cin, cond_dim)
        self.c1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.b2 = HierCondBatchNorm(cout, cond_dim)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.c_sc = nn.Conv2d(cin, cout, 1, 1, 0)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.c1(_up(F.relu(self.b1(x, y))))
        h = self.c2(F.relu(self.b2(h, y)))
        return h + self.c_sc(_up(x))


def DBlock(cin: int, cout: int, down: bool = True, optimized: bool = False) -> nn.Module:
    """D's residual block: the SNGAN one (:class:`ganforge.nets.resnet.DBlock`) with hidden
    width ``cout`` (BigGAN's wide D); its weights are re-initialised by :func:`init_weights`."""
    return resnet.DBlock(cin, cout, down=down, optimized=optimized, hidden=cout)


class Generator(nn.Module):
    """``G(z [N, latent_dim], c [N] | None) -> images [N, channels, R, R]`` in [-1, 1].

    ``num_classes > 0`` makes G class-conditional (shared embedding of size ``shared_dim``);
    ``attention``: resolution of the self-attention block (0 = off). ``z_chunks``: sizes of the
    latent chunks (input linear, then block 0, 1, ...).
    """

    def __init__(self, latent_dim: int = 128, resolution: int = 128, channels: int = 3,
                 channel_base: int = 2048, channel_max: int = 512, num_classes: int = 0,
                 shared_dim: int = 128, attention: int = 0):
        super().__init__()
        n = check_resolution(resolution)
        self.attention_res = _check_attention(attention, resolution)
        if num_classes < 0 or (num_classes > 0 and shared_dim < 1):
            raise ValueError(f"biggan G: num_classes={num_classes} must be >= 0 and a conditional"
                             f" G needs shared_dim >= 1 (got {shared_dim})")
        self.latent_dim, self.num_classes, self.resolution = latent_dim, num_classes, resolution
        num_blocks = n - 2
        self.z_chunks = z_chunks(latent_dim, num_blocks)
        self.shared = nn.Embedding(num_classes, shared_dim) if num_classes > 0 else None
        cond_dim = self.z_chunks[1] + (shared_dim if num_classes > 0 else 0)
        w = [channels_at(2**i, channel_base, channel_max) for i in range(2, n + 1)]  # 4 .. R
        self.w0 = w[0]
        self.linear = nn.Linear(self.z_chunks[0], 16 * w[0])  # -> [N, w0, 4, 4]
        self.blocks = nn.ModuleList(GBlock(a, b, cond_dim) for a, b in itertools.pairwise(w))
        # block i outputs resolution 2**(i + 3)
        self.attn_index = int(math.log2(attention)) - 3 if attention else -1
        self.attention = (SelfAttention(w[self.attn_index + 1]) if attention else None)
        self.bn = nn.BatchNorm2d(w[-1])
        self.out = nn.Conv2d(w[-1], channels, 3, 1, 1)
        init_weights(self)

    def split_z(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """z [N, latent_dim] -> its chunks (see ``z_chunks``)."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"biggan G: z must be [N, {self.latent_dim}], got {list(z.shape)}")
        return torch.split(z, self.z_chunks, dim=1)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        zs = self.split_z(z)
        if self.shared is not None:
            c = need_labels(c, z.shape[0], "G (biggan, conditional)")
            y = self.shared(c).to(z.dtype)  # [N, shared_dim]
            conds = [torch.cat([y, zi], dim=1) for zi in zs[1:]]  # [N, shared_dim + chunk]
        else:
            conds = list(zs[1:])
        h = self.linear(zs[0]).view(z.shape[0], self.w0, 4, 4)
        for i, block in enumerate(self.blocks):
            h = block(h, conds[i])
            if i == self.attn_index:
                h = self.attention(h)
        return torch.tanh(self.out(F.relu(self.bn(h))))  # [N, C, R, R]


class Discriminator(nn.Module):
    """``D(x [N, channels*pack, R, R], c [N] | None, with_aux=False) -> logits [N]``, or
    ``(logits [N], class logits [N, K])`` when built with ``cond="aux"`` and ``with_aux=True``.
    ``attention``: resolution of the self-attention block (0 = off)."""

    def __init__(self, resolution: int = 128, channels: int = 3, channel_base: int = 2048,
                 channel_max: int = 512, num_classes: int = 0, cond: str = "none",
                 mbstd: int = 0, pack: int = 1, attention: int = 0):
        super().__init__()
        if cond not in D_CONDS:
            raise ValueError(f"biggan D: d_cond={cond!r} not supported, use none, aux or "
                             "projection")
        k = cond_classes(cond, num_classes, D_CONDS, "d_cond")
        if pack > 1 and cond != "none":
            raise ValueError("pack > 1 works with an unconditional D only (d_cond=none)")
        n = check_resolution(resolution)
        self.attention_res = _check_attention(attention, resolution)
        self.cond = cond
        w = [channels_at(2**i, channel_base, channel_max) for i in range(n - 1, 1, -1)]  # R/2..4
        blocks = [DBlock(channels * pack, w[0], down=True, optimized=True)]  # -> R/2
        blocks += [DBlock(a, b, down=True) for a, b in itertools.pairwise(w)]  # -> [N, C4, 4, 4]
        self.blocks = nn.ModuleList(blocks)
        # block i outputs resolution R / 2**(i + 1)
        self.attn_index = n - 1 - int(math.log2(attention)) if attention else -1
        self.attention = SelfAttention(w[self.attn_index]) if attention else None
        self.mbstd = MinibatchStd(mbstd) if mbstd > 0 else None  # -> [N, C4 + 1, 4, 4]
        self.last = DBlock(w[-1] + (1 if self.mbstd is not None else 0), w[-1], down=False)
        self.head = DHead(w[-1], k, cond, bias=True)
        init_weights(self)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, with_aux: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i == self.attn_index:
                h = self.attention(h)
        if self.mbstd is not None:
            h = self.mbstd(h)
        h = F.relu(self.last(h)).sum(dim=(2, 3))  # global sum pooling -> [N, C4]
        return self.head(h, c, with_aux)

    def input_blocks(self) -> list[list[nn.Module]]:
        """D's layers nearest the input, one group per resolution (highest first): FreezeD
        keeps the first K groups fixed; the last module of a group outputs its features."""
        return [[b] + ([self.attention] if i == self.attn_index else [])
                for i, b in enumerate(self.blocks)]


# the ModelConfig keys this family reads (beyond arch and the shape taken from the data)
OPTIONS = ("latent_dim", "g_channel_base", "g_channel_max", "d_channel_base", "d_channel_max",
           "g_cond", "d_cond", "mbstd", "pack", "spectral_norm", "attention", "shared_dim")


def build(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    """``(G, D)``: ``g_cond=cbn`` a conditional G (shared embedding + cBN);
    ``d_cond`` none, aux or projection; ``attention`` and ``shared_dim`` from the config."""
    kg = cond_classes(cfg.g_cond, cfg.num_classes, G_CONDS, "g_cond")
    g = Generator(cfg.latent_dim, cfg.resolution, cfg.channels, cfg.g_channel_base,
                  cfg.g_channel_max, kg, cfg.shared_dim, cfg.attention)
    d = Discriminator(cfg.resolution, cfg.channels, cfg.d_channel_base, cfg.d_channel_max,
                      cfg.num_classes, cfg.d_cond, cfg.mbstd, cfg.pack, cfg.attention)
    return g, d
