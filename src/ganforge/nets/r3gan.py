"""R3GAN (Huang, Gokaslan, Kuleshov & Tompkin, "The GAN is dead; long live the GAN! A Modern
GAN Baseline", NeurIPS 2024): the "config E" G and D of the paper, a minimal modern ResNet
(ResNeXt-style bottleneck blocks, no normalisation, fix-up init), after the reference code
github.com/brownvc/R3GAN (``R3GAN/Networks.py``, ``Resamplers.py``, ``FusedOperators.py``).
The paper's training scheme (relativistic pairing loss + R1 + R2, Adam with beta1 = 0, cosine
schedules of lr / gamma / beta2 / EMA / augmentation) belongs to the recipe, not to this file.

Both nets are stacks of stages, one per resolution 4, 8, .., R (H x W images: the levels of
the shorter side, each map (r*ah) x (r*aw), the 4x4 bases below 4ah x 4aw:
:func:`~ganforge.nets.layers.aspect`); the stage at r is
``channels_at(r, base, max)`` wide (the paper's CIFAR-10: 768 everywhere, i.e. base >= 24576,
max 768; FFHQ-256: 768 up to 32 then 384, 192, 96: base 24576, max 768).

- Residual block at width w (``blocks`` per stage): 1x1 conv w -> w*expansion, bias + leaky
  ReLU(0.2), grouped 3x3 conv (``groups = w*expansion // group_channels``; the paper's
  cardinality 96 at width 768 x expansion 2 is group_channels 16), bias + leaky ReLU, 1x1 conv
  back to w; ``x + branch(x)``, no normalisation anywhere. Convs carry no bias: the bias lives
  in front of each leaky ReLU (the reference's ``BiasedActivation``), initialised to 0.
- Init (the reference's "MSR initializer"): weights ~ N(0, gain / sqrt(fan_in)), fan_in =
  (in_channels / groups) * k * k. Inside a block gain = sqrt(2 / (1 + 0.2^2)) * L^(-1/4), L the
  number of residual blocks in the whole net (the variance-scaling parameter, exponent
  -1 / (2m - 2) for m = 3 layers per branch); the branch's last 1x1 conv is zero, so every
  block is the identity at init (fix-up style). Every other layer uses gain 1.
- G: z [N, latent_dim] (with ``g_cond=concat``: ``[z, embed(c)]``, embed dim latent_dim, as the
  reference) -> 4x4 "generative basis": a learned [C4, 4, 4] tensor (init N(0, 1)) times a
  bias-free linear projection of z, per channel -> blocks at 4x4; each later stage: 1x1 conv to
  the new width (only when the width changes, before resampling), x2 upsampling, blocks; at R a
  1x1 conv to image channels. The output is linear: NO tanh, as the reference; images in
  [-1, 1] are only approximately produced (learned from the data), so clamp when converting to
  uint8 (the toolkit's uint8 edges do).
- D: 1x1 conv from image channels (no activation after it, as the reference); stages at R,
  R/2, .., 8: blocks, then x2 downsampling and a 1x1 conv to the next width (when it changes);
  the 4x4 stage: blocks, then the "discriminative basis": a depthwise 4x4 valid conv [N, C4, 4,
  4] -> [N, C4] and a bias-free linear to 1 logit (unconditional) or to C4 features projected
  onto a class embedding, ``sum(h * embed(c))`` (``d_cond=projection``, the reference's only
  conditional D; no separate unconditional term, embed init N(0, 1/sqrt(C4 * K))).
- Resampling: the reference's interpolative [1, 2, 1] low-pass filter, i.e. the separable
  [1, 3, 3, 1] / 8 kernel (bilinear), applied exactly as its ``upfirdn2d.upsample2d`` /
  ``downsample2d`` (zero padding at the borders): a depthwise transposed conv (stride 2, gain
  4) to upsample and a depthwise conv (stride 2) to downsample, in plain PyTorch.

Deviations from the reference code, all deliberate:

1. Widths come from ``channels_at(r, channel_base, channel_max)`` and ``blocks`` /
   ``group_channels`` / ``expansion`` are the same at every stage (the reference takes free
   per-stage lists of widths, blocks and cardinalities; its presets fit this rule: every
   preset has 2 blocks per stage and 16 channels per group).
2. Class labels are int64 indices into ``nn.Embedding`` tables instead of one-hot vectors
   through a bias-free ``nn.Linear`` (the same function; the tables are initialised like the
   reference's MSR-initialised linears: G's N(0, 1/sqrt(K)), D's N(0, 1/sqrt(C4 * K))).
3. D's projection embedding has D's own 4x4 width (the reference uses G's 4x4 width, equal
   in every preset).
4. Image channels come from the data (the reference hard-codes 3); PacGAN ``pack`` is accepted
   for an unconditional D (input channels x pack), as in the other families.
5. No per-stage bf16 (the reference runs the high-resolution stages in bfloat16): precision is
   the training loop's business (autocast). No fused CUDA bias_act / upfirdn2d: plain PyTorch,
   the same maths (the reference's own "Reference" Python variants).
6. The resampling filter's kernel is a non-persistent buffer (not in the checkpoint).
7. R3GAN has no minibatch-std layer (``mbstd`` is not read: refused). ``spectral_norm`` other
   than ``none`` is refused (ValueError): R3GAN uses none, and the spectral norm of the zero-
   initialised last conv of every branch is 0, so the normalised weight would be NaN.

Conditioning supported: ``g_cond`` none / concat, ``d_cond`` none / projection (ValueError for
the others); D has no auxiliary classifier (``with_aux=True`` raises ValueError).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .layers import ConcatLabel, aspect, channels_at, cond_classes, need_labels

G_CONDS = ("none", "concat")  # G conditioning this family supports
D_CONDS = ("none", "projection")  # D conditioning this family supports
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0 / (1.0 + LRELU_SLOPE**2))  # the reference's BiasedActivation.Gain
LOWPASS_TAPS = (1.0, 2.0, 1.0)  # the reference's ResamplingFilter


def check_resolution(resolution: int) -> int:
    """``log2(resolution)``; ValueError unless it is a power of two >= 8."""
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"r3gan: resolution={resolution} must be a power of two >= 8")
    return int(math.log2(resolution))


def msr_init_(layer: nn.Module, gain: float = 1.0) -> nn.Module:
    """The reference's MSR initializer: ``weight ~ N(0, gain / sqrt(fan_in))`` (all zeros for
    ``gain == 0``), fan_in = ``weight.shape[1] * kernel area`` (per group); bias to 0."""
    w = layer.weight
    fan_in = w.shape[1] * w[0, 0].numel()
    with torch.no_grad():
        if gain == 0:
            w.zero_()
        else:
            w.normal_(0.0, gain / math.sqrt(fan_in))
        if getattr(layer, "bias", None) is not None:
            layer.bias.zero_()
    return layer


def conv(cin: int, cout: int, k: int, groups: int = 1, gain: float = 1.0) -> nn.Conv2d:
    """Bias-free 'same' conv, MSR-initialised."""
    return msr_init_(nn.Conv2d(cin, cout, k, padding=(k - 1) // 2, groups=groups, bias=False),
                     gain)


class BiasedLeakyReLU(nn.Module):
    """``leaky_relu(x + bias, 0.2)`` with a per-channel bias (init 0), no output gain."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.bias.to(x.dtype).view(1, -1, 1, 1), LRELU_SLOPE)


def lowpass_kernel(taps: tuple[float, ...] = LOWPASS_TAPS) -> torch.Tensor:
    """The interpolative resampling kernel [k, k], sum 1: ``taps * [1, 1]`` (a convolution:
    [1, 2, 1] -> [1, 3, 3, 1]), outer product with itself, normalised."""
    t = torch.tensor(taps, dtype=torch.float64)
    f = F.conv1d(F.pad(t.view(1, 1, -1), (1, 1)), torch.ones(1, 1, 2, dtype=torch.float64))
    f = f.view(-1)
    k = torch.outer(f, f)
    return (k / k.sum()).float()


class Resample(nn.Module):
    """x2 up- or down-sampling with the low-pass kernel (upfirdn2d semantics, zero padding).

    up: [N, C, H, W] -> [N, C, 2H, 2W], a depthwise transposed conv (stride 2, kernel x 4);
    down: [N, C, H, W] -> [N, C, H/2, W/2], a depthwise conv (stride 2); ``groups = C``. The
    [1, 3, 3, 1] kernel makes these bilinear interpolation (zero-padded at the borders, unlike
    ``F.interpolate``, which clamps); padding 1 reproduces the reference's sizes.
    """

    def __init__(self, up: bool):
        super().__init__()
        self.up = up
        k = lowpass_kernel()
        self.padding = len(LOWPASS_TAPS) // 2
        self.register_buffer("kernel", (k * 4 if up else k)[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        # one depthwise conv, every channel filtered alike (much faster on CPUs than the
        # reference's [N*C, 1, H, W] reshape, the same result)
        k = self.kernel.to(x.dtype).expand(c, 1, *self.kernel.shape[2:]).contiguous()
        if self.up:
            return F.conv_transpose2d(x, k, stride=2, padding=self.padding, groups=c)
        return F.conv2d(x, k, stride=2, padding=self.padding, groups=c)

    def extra_repr(self) -> str:
        return "up" if self.up else "down"


class ResidualBlock(nn.Module):
    """``x + conv1x1(act(gconv3x3(act(conv1x1(x)))))``: [N, w, r, r] -> [N, w, r, r].

    Bottleneck width ``w * expansion``, ``groups = w * expansion // group_channels``. The last
    conv is zero at init (the block starts as the identity); the other two use the MSR gain
    ``LRELU_GAIN * num_blocks ** (-1/4)``, ``num_blocks`` the residual blocks of the whole net.
    """

    def __init__(self, width: int, expansion: int, group_channels: int, num_blocks: int):
        super().__init__()
        hidden = width * expansion
        if hidden % group_channels:
            raise ValueError(f"r3gan: width {width} x expansion {expansion} = {hidden} is not a "
                             f"multiple of group_channels={group_channels}")
        self.groups = hidden // group_channels
        gain = LRELU_GAIN * num_blocks ** (-1.0 / (2 * 3 - 2))  # 3 linear layers per branch
        self.conv1 = conv(width, hidden, 1, gain=gain)
        self.act1 = BiasedLeakyReLU(hidden)
        self.conv2 = conv(hidden, hidden, 3, groups=self.groups, gain=gain)
        self.act2 = BiasedLeakyReLU(hidden)
        self.conv3 = conv(hidden, width, 1, gain=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.act1(self.conv1(x)))  # [N, w*e, r, r]
        return x + self.conv3(self.act2(y))


class GenerativeBasis(nn.Module):
    """G's 4x4 input: ``basis [C, 4, 4] * linear(z) [N, C, 1, 1]`` -> [N, C, 4, 4] (``size``:
    4ah x 4aw for H x W images)."""

    def __init__(self, in_features: int, channels: int, size: tuple[int, int] = (4, 4)):
        super().__init__()
        self.basis = nn.Parameter(torch.randn(channels, *size))
        self.linear = msr_init_(nn.Linear(in_features, channels, bias=False))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.basis[None].to(z.dtype) * self.linear(z)[:, :, None, None]


class DiscriminativeBasis(nn.Module):
    """D's 4x4 output: depthwise 4x4 valid conv [N, C, 4, 4] -> [N, C], then a bias-free
    linear -> [N, out_features] (``size``: 4ah x 4aw for H x W images)."""

    def __init__(self, channels: int, out_features: int, size: tuple[int, int] = (4, 4)):
        super().__init__()
        self.basis = msr_init_(nn.Conv2d(channels, channels, size, groups=channels, bias=False))
        self.linear = msr_init_(nn.Linear(channels, out_features, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.basis(x).flatten(1))


class UpTransition(nn.Module):
    """G's stage entry: 1x1 conv cin -> cout (if they differ), then x2 upsampling:
    [N, cin, r, r] -> [N, cout, 2r, 2r]."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = conv(cin, cout, 1) if cin != cout else None
        self.resample = Resample(up=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resample(self.conv(x) if self.conv is not None else x)


class DownTransition(nn.Module):
    """D's stage exit: x2 downsampling, then 1x1 conv cin -> cout (if they differ):
    [N, cin, r, r] -> [N, cout, r/2, r/2]."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.resample = Resample(up=False)
        self.conv = conv(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resample(x)
        return self.conv(x) if self.conv is not None else x


def _check_sizes(blocks: int, group_channels: int, expansion: int) -> None:
    if blocks < 1 or group_channels < 1 or expansion < 1:
        raise ValueError(f"r3gan: blocks={blocks}, group_channels={group_channels} and "
                         f"expansion={expansion} must all be >= 1")


class Generator(nn.Module):
    """``G(z [N, latent_dim], c [N] | None) -> images [N, channels, H, W]``, linear output
    (no tanh: [-1, 1] is learned, as in the reference)."""

    def __init__(self, latent_dim: int = 64, resolution: int | str = 32, channels: int = 3,
                 channel_base: int = 24576, channel_max: int = 768, blocks: int = 2,
                 group_channels: int = 16, expansion: int = 2, num_classes: int = 0,
                 cond: str = "none"):
        super().__init__()
        k = cond_classes(cond, num_classes, G_CONDS, "r3gan g_cond")
        s, ah, aw = aspect(resolution)
        n = check_resolution(s)
        _check_sizes(blocks, group_channels, expansion)
        self.latent_dim, self.num_classes, self.cond = latent_dim, k, cond
        self.label = None
        if cond == "concat":  # [z, embed(c)], embed dim = latent_dim as the reference
            self.label = ConcatLabel(k, (latent_dim,))
            nn.init.normal_(self.label.embed.weight, 0.0, 1.0 / math.sqrt(k))
        w = [channels_at(2**i, channel_base, channel_max) for i in range(2, n + 1)]  # 4 .. R
        total = blocks * len(w)  # the variance-scaling parameter

        def res_blocks(width: int) -> list[nn.Module]:
            return [ResidualBlock(width, expansion, group_channels, total) for _ in range(blocks)]

        zin = latent_dim * (2 if self.label is not None else 1)
        stages = [nn.Sequential(GenerativeBasis(zin, w[0], (4 * ah, 4 * aw)),
                                *res_blocks(w[0]))]  # [N, C4, 4ah, 4aw]
        stages += [nn.Sequential(UpTransition(w[i - 1], w[i]), *res_blocks(w[i]))
                   for i in range(1, len(w))]  # -> [N, w_r, r, r]
        self.stages = nn.ModuleList(stages)
        self.out = conv(w[-1], channels, 1)  # -> [N, channels, H, W], no activation

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if self.label is not None:
            z = self.label(z, need_labels(c, z.shape[0], "G (g_cond=concat)"))  # [N, 2*latent]
        h = z
        for stage in self.stages:
            h = stage(h)
        return self.out(h)


class Discriminator(nn.Module):
    """``D(x [N, channels*pack, H, W], c [N] | None, with_aux=False) -> logits [N]``."""

    def __init__(self, resolution: int | str = 32, channels: int = 3, channel_base: int = 24576,
                 channel_max: int = 768, blocks: int = 2, group_channels: int = 16,
                 expansion: int = 2, num_classes: int = 0, cond: str = "none", pack: int = 1):
        super().__init__()
        k = cond_classes(cond, num_classes, D_CONDS, "r3gan d_cond")
        s, ah, aw = aspect(resolution)
        n = check_resolution(s)
        _check_sizes(blocks, group_channels, expansion)
        if pack > 1 and cond != "none":
            raise ValueError("r3gan: pack > 1 works with an unconditional D only (d_cond=none)")
        self.cond, self.num_classes = cond, k
        w = [channels_at(2**i, channel_base, channel_max) for i in range(n, 1, -1)]  # R .. 4
        total = blocks * len(w)

        def res_blocks(width: int) -> list[nn.Module]:
            return [ResidualBlock(width, expansion, group_channels, total) for _ in range(blocks)]

        self.from_rgb = conv(channels * pack, w[0], 1)  # -> [N, w_R, R, R], no activation
        stages = [nn.Sequential(*res_blocks(w[i]), DownTransition(w[i], w[i + 1]))
                  for i in range(len(w) - 1)]  # -> [N, C4, 4, 4]
        out = w[-1] if cond == "projection" else 1
        stages.append(nn.Sequential(*res_blocks(w[-1]),
                                    DiscriminativeBasis(w[-1], out, (4 * ah, 4 * aw))))
        self.stages = nn.ModuleList(stages)  # the last one -> [N, out]
        self.embed = None
        if cond == "projection":
            self.embed = nn.Embedding(k, out)
            nn.init.normal_(self.embed.weight, 0.0, 1.0 / math.sqrt(out * k))

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, with_aux: bool = False
                ) -> torch.Tensor:
        if with_aux:
            raise ValueError("r3gan: D has no auxiliary classifier (with_aux=True needs "
                             "d_cond=aux, which r3gan does not support)")
        if self.embed is not None:
            c = need_labels(c, x.shape[0], "D (d_cond=projection)")
        h = self.from_rgb(x)
        for stage in self.stages:
            h = stage(h)  # last: [N, out]
        if self.embed is not None:
            return (h * self.embed(c).to(h.dtype)).sum(dim=1)  # projection only, [N]
        return h.view(-1)

    def input_blocks(self) -> list[list[nn.Module]]:
        """D's layers nearest the input, one group per resolution (highest first): FreezeD
        keeps the first K groups fixed; the last module of a group outputs its features."""
        stages = [[s] for s in self.stages[:-1]]  # the last stage is the 4x4 head
        return [[self.from_rgb] + stages[0]] + stages[1:] if stages else [[self.from_rgb]]


# the ModelConfig keys this family reads (beyond arch and the shape taken from the data)
OPTIONS = ("latent_dim", "g_channel_base", "g_channel_max", "d_channel_base", "d_channel_max",
           "g_cond", "d_cond", "pack", "blocks", "group_channels", "expansion")


def build(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    if cfg.spectral_norm != "none":  # sigma of a zero weight is 0: NaN from the first step
        raise ValueError(f"r3gan: spectral_norm={cfg.spectral_norm!r} is not supported (use none):"
                         " the zero-initialised residual branches would divide by zero")
    g = Generator(cfg.latent_dim, cfg.resolution, cfg.channels, cfg.g_channel_base,
                  cfg.g_channel_max, cfg.blocks, cfg.group_channels, cfg.expansion,
                  cfg.num_classes, cfg.g_cond)
    d = Discriminator(cfg.resolution, cfg.channels, cfg.d_channel_base, cfg.d_channel_max,
                      cfg.blocks, cfg.group_channels, cfg.expansion, cfg.num_classes,
                      cfg.d_cond, cfg.pack)
    return g, d
