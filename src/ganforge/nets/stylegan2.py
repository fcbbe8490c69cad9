"""StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN"),
pure PyTorch, no custom CUDA ops, for any power-of-two resolution 32..1024, square or H x W
with a power-of-two aspect ratio (the constant input and D's last map are then 4ah x 4aw, the
widths those of the shorter side: :func:`~ganforge.nets.layers.aspect`).

G = mapping network (z [, class] -> w, with a tracked ``w_avg`` for the truncation trick)
+ synthesis network (constant 4x4 input, modulated/demodulated 3x3 convs, per-layer noise,
skip architecture: a toRGB at every resolution, upsampled and summed). D = residual network
(fromRGB, blocks of two 3x3 convs + downsample with a 1x1 skip, summed * 1/sqrt(2)), minibatch
std, a 3x3 conv and two equalised linears -> logits [N] (+ a projection term when conditional).
Every weight uses the equalised learning rate (stored N(0, 1) / lr_mul, scaled at run time).

Deviations from the official code (NVlabs/stylegan2-ada-pytorch), all deliberate:

- Resampling: bilinear x2 upsampling (``F.interpolate``, align_corners=False) before the 3x3
  conv and for the skip images, and 2x2 average pooling (a box filter) before D's downsampling
  convs, instead of the [1, 3, 3, 1] FIR filter with upfirdn2d / transposed convs.
- G's output is linear (no tanh), as in StyleGAN; the toolkit treats images as [-1, 1], which
  the generator learns. Clamp (or not) at the edges when converting to uint8.
- The class embedding of a conditional G is an ``nn.Embedding`` (the official code uses an
  equalised linear on one-hot labels: the same thing); D's projection term is
  ``<embed(c), h> / sqrt(dim h)`` (Miyato & Koyama 2018, scaled as the official cmap).
- No conv_clamp / fp16-specific paths. Modulated convs run unfused (scale the input by the
  styles, one shared conv, scale the output by the demodulation), as the official code trains;
  ``ModulatedConv2d.fused = True`` picks the grouped conv with per-sample weights instead.
- Regularisers (lazy R1, path-length), style mixing and the G EMA belong to the recipe
  (``ganforge.recipes.gan``) / the training loop, not to these modules. ``w_avg`` is
  updated (EMA 0.995) on every mapping forward in train mode.
- The equalised layers are not ``nn.Conv2d`` / ``nn.Linear``, so ``spectral_norm`` in the
  config has no effect on them (StyleGAN2 does not use it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, image_size
from .layers import MinibatchStd, aspect, channels_at, cond_classes, need_labels

G_CONDS = ("none", "concat")  # G conditioning: the class embedding joins z in the mapping net
D_CONDS = ("none", "projection")  # D conditioning this family supports
NOISE_MODES = ("random", "const", "none")
_SQRT2 = math.sqrt(2.0)


def check_resolution(resolution: int) -> int:
    """``log2(resolution)``; ValueError unless it is a power of two in 32..1024."""
    if not (32 <= resolution <= 1024) or resolution & (resolution - 1):
        raise ValueError(f"stylegan2: resolution={resolution} must be a power of two in 32..1024")
    return int(math.log2(resolution))


def _act(x: torch.Tensor, activation: str | None) -> torch.Tensor:
    # "lrelu": leaky ReLU(0.2) scaled by sqrt(2) to keep the signal's scale (StyleGAN's gain)
    return F.leaky_relu(x, 0.2) * _SQRT2 if activation == "lrelu" else x


def _check_act(activation: str | None) -> str | None:
    if activation not in (None, "lrelu"):
        raise ValueError(f"activation={activation!r}: use None or 'lrelu'")
    return activation


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: weight stored ~ N(0, 1) / lr_mul, used as
    ``weight * lr_mul / sqrt(in_features)``; bias stored as ``bias_init / lr_mul``, used times
    lr_mul (so the effective initial bias is ``bias_init``). ``activation``: None or "lrelu"."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 lr_mul: float = 1.0, activation: str | None = None, bias_init: float = 0.0):
        super().__init__()
        self.activation = _check_act(activation)
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = (nn.Parameter(torch.full((out_features,), bias_init / lr_mul))
                     if bias else None)
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias * self.lr_mul if self.bias is not None else None
        return _act(F.linear(x, self.weight * self.weight_gain, b), self.activation)

    def extra_repr(self) -> str:
        o, i = self.weight.shape
        return f"{i}, {o}, lr_mul={self.lr_mul}, activation={self.activation}"


class EqualConv2d(nn.Module):
    """Conv2d (stride 1, 'same' padding) with equalised learning rate: weight ~ N(0, 1) / lr_mul,
    used times ``lr_mul / sqrt(in * k * k)``. ``down=True`` halves the resolution first with a
    2x2 average pool (a box filter in place of StyleGAN2's FIR filter)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 lr_mul: float = 1.0, activation: str | None = None, down: bool = False):
        super().__init__()
        self.activation = _check_act(activation)
        self.weight = nn.Parameter(
            torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = lr_mul / math.sqrt(in_channels * kernel_size**2)
        self.lr_mul, self.down, self.padding = lr_mul, down, kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = F.avg_pool2d(x, 2)
        b = self.bias * self.lr_mul if self.bias is not None else None
        x = F.conv2d(x, self.weight * self.weight_gain, b, padding=self.padding)
        return _act(x, self.activation)


class MappingNetwork(nn.Module):
    """``(z [N, z_dim], c [N] | None, truncation_psi) -> w [N, w_dim]``.

    z is normalised by its second moment; with ``num_classes > 0`` a class embedding
    [N, w_dim], normalised the same way, is concatenated. Then ``num_layers`` EqualLinear
    (lr_mul 0.01) + lrelu. In train mode every forward updates ``w_avg`` (EMA, beta 0.995);
    the truncation trick returns ``w_avg + psi * (w - w_avg)``.
    """

    def __init__(self, z_dim: int, w_dim: int, num_layers: int = 8, lr_mul: float = 0.01,
                 num_classes: int = 0, w_avg_beta: float = 0.995):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MappingNetwork: num_layers={num_layers} must be >= 1")
        self.z_dim, self.w_dim, self.num_classes = z_dim, w_dim, num_classes
        self.w_avg_beta = w_avg_beta
        self.embed = nn.Embedding(num_classes, w_dim) if num_classes > 0 else None
        dims = [z_dim + (w_dim if num_classes > 0 else 0)] + [w_dim] * num_layers
        self.layers = nn.Sequential(*[
            EqualLinear(dims[i], dims[i + 1], lr_mul=lr_mul, activation="lrelu")
            for i in range(num_layers)])
        self.register_buffer("w_avg", torch.zeros(w_dim))

    @staticmethod
    def normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
        return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None,
                truncation_psi: float = 1.0) -> torch.Tensor:
        x = self.normalize(z)
        if self.embed is not None:
            c = need_labels(c, z.shape[0], "G (conditional mapping)")
            x = torch.cat([x, self.normalize(self.embed(c).to(x.dtype))], dim=1)
        w = self.layers(x)  # [N, w_dim]
        if self.training:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().float().mean(dim=0).lerp(self.w_avg,
                                                                      self.w_avg_beta))
        if truncation_psi != 1.0:
            w = self.w_avg.to(w.dtype).lerp(w, truncation_psi)
        return w


class ModulatedConv2d(nn.Module):
    """``(x [N, in, H, W], w [N, w_dim]) -> [N, out, H', W']``, H' = 2H with ``up=True``.

    Per-sample style ``s = affine(w)`` [N, in] (equalised linear, bias init 1) scales the
    weight's input channels; with ``demodulate`` each output channel's weight is rescaled to
    unit L2 norm, so unit-variance inputs give ~unit-variance outputs. Implemented as one
    grouped conv (groups = N). ``up=True``: bilinear x2 upsample then the conv (instead of
    StyleGAN2's transposed conv + FIR filter). No bias, noise or activation here.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, w_dim: int,
                 demodulate: bool = True, up: bool = False):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.demodulate, self.up, self.padding = demodulate, up, kernel_size // 2
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(
            torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)

    fused = False  # one grouped conv with per-sample weights, or (default) scale-conv-scale

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        styles = self.affine(w)  # [N, in]
        if not self.fused:
            # the same result as the grouped conv, as the official code trains: scale the input
            # channels by the styles, run ONE conv with the shared weight over the batch, then
            # demodulate the outputs: much faster on CPUs than a conv per sample
            weight = self.weight * self.weight_gain  # [out, in, k, k]
            xs = x * styles.to(x.dtype)[:, :, None, None]
            if self.up:
                xs = F.interpolate(xs, scale_factor=2, mode="bilinear", align_corners=False)
            y = F.conv2d(xs, weight.to(x.dtype), padding=self.padding)
            if self.demodulate:  # 1 / ||W * s|| per sample and output channel: [N, out]
                d = (styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt()
                y = y * d.to(y.dtype)[:, :, None, None]
            return y
        weight = self.weight[None] * self.weight_gain * styles[:, None, :, None, None]
        if self.demodulate:  # weight [N, out, in, k, k]
            d = (weight.square().sum(dim=(2, 3, 4)) + 1e-8).rsqrt()  # [N, out]
            weight = weight * d[:, :, None, None, None]
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        h, wd = x.shape[2:]
        y = F.conv2d(x.reshape(1, n * self.in_channels, h, wd),
                     weight.reshape(n * self.out_channels, *weight.shape[2:]).to(x.dtype),
                     padding=self.padding, groups=n)
        return y.reshape(n, self.out_channels, *y.shape[2:])


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv + per-pixel noise (learned strength, init 0) + bias + lrelu.
    ``resolution``: the side of its square output, or its (H, W)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int,
                 resolution: int | tuple[int, int], up: bool = False):
        super().__init__()
        self.resolution, self.size = resolution, image_size(resolution)
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("noise_const", torch.randn(*self.size))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random",
                noise: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv(x, w)  # [N, out, H, W]
        if noise is not None:  # explicit maps [N or 1, 1, H, W] or [H, W] (projection)
            x = x + noise.to(x.dtype) * self.noise_strength
        elif noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, *self.size, device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * self.noise_strength
        return _act(x + self.bias.view(1, -1, 1, 1).to(x.dtype), "lrelu")


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels, no demodulation, + bias; linear output."""

    def __init__(self, in_channels: int, channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias.view(1, -1, 1, 1).to(x.dtype)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis net. The 4x4 block: learned constant + one conv; the
    others: upsampling conv + conv. Both end with a toRGB (skip architecture). Uses
    ``num_conv + 1`` ws: the toRGB's w is shared with the next block's first conv.
    ``resolution``: the side of its square output, or its (H, W) (4ah x 4aw for the first)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int,
                 resolution: int | tuple[int, int], channels: int):
        super().__init__()
        self.resolution = resolution
        size = image_size(resolution)
        self.first = min(size) == 4
        if self.first:
            self.const = nn.Parameter(torch.randn(out_channels, *size))
            self.convs = nn.ModuleList([SynthesisLayer(out_channels, out_channels, w_dim,
                                                       resolution)])
        else:
            self.convs = nn.ModuleList([
                SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True),
                SynthesisLayer(out_channels, out_channels, w_dim, resolution)])
        self.num_conv = len(self.convs)
        self.torgb = ToRGB(out_channels, channels, w_dim)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                noise_mode: str = "random", noise: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        # ws [N, num_conv + 1, w_dim]; noise: None or one map per conv
        if self.first:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
        for i, layer in enumerate(self.convs):
            x = layer(x, ws[:, i], noise_mode, None if noise is None else noise[i])
        y = self.torgb(x, ws[:, self.num_conv])
        if img is not None:
            img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
            y = img + y
        return x, y


class SynthesisNetwork(nn.Module):
    """``(ws [N, num_ws, w_dim], noise_mode) -> images [N, channels, H, W]``, linear output.

    ``num_ws = 2 * log2(s) - 2`` (s the shorter side); ws[:, i] drives the i-th conv (the
    toRGB of a block uses the w of the next block's first conv, as in the official code), so
    per-layer ws give style mixing. Widths ``min(channel_max, channel_base // res)``.
    """

    def __init__(self, w_dim: int, resolution: int | str, channels: int,
                 channel_base: int = 32768, channel_max: int = 512):
        super().__init__()
        s, ah, aw = aspect(resolution)
        log2 = check_resolution(s)
        self.w_dim, self.resolution, self.channels = w_dim, resolution, channels
        blocks, cin = [], 0
        for res in (2**i for i in range(2, log2 + 1)):
            cout = channels_at(res, channel_base, channel_max)
            size = res if ah == aw == 1 else (res * ah, res * aw)
            blocks.append(SynthesisBlock(cin, cout, w_dim, size, channels))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.num_ws = sum(b.num_conv for b in self.blocks) + 1

    def noise_layers(self) -> list[SynthesisLayer]:
        """The layers that add per-pixel noise, in the order ``forward``'s ``noise`` lists
        their maps."""
        return [layer for block in self.blocks for layer in block.convs]

    def forward(self, ws: torch.Tensor, noise_mode: str = "random",
                noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``noise``: explicit per-pixel noise, one map per :meth:`noise_layers` entry
        ([N or 1, 1, H, W] or [H, W] at its layer's size); when given it replaces
        ``noise_mode``."""
        if noise is not None and len(noise) != sum(b.num_conv for b in self.blocks):
            raise ValueError(f"synthesis: noise needs {len(self.noise_layers())} maps, got "
                             f"{len(noise)}")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode={noise_mode!r}: use one of {', '.join(NOISE_MODES)}")
        if ws.dim() != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"synthesis: ws must be [N, {self.num_ws}, {self.w_dim}], "
                             f"got {list(ws.shape)}")
        x = img = None
        i = 0
        for block in self.blocks:
            maps = None if noise is None else noise[i:i + block.num_conv]
            x, img = block(x, img, ws[:, i:i + block.num_conv + 1], noise_mode, maps)
            i += block.num_conv
        return img


class Generator(nn.Module):
    """``G(z [N, z_dim], c [N] | None) -> images [N, channels, H, W]``.

    The output is linear (no tanh), as in StyleGAN; the toolkit's [-1, 1] range is learned.
    ``mapping`` -> ws [N, num_ws, w_dim] and ``synthesis(ws)`` work separately;
    :meth:`style_mix` mixes two latents at a crossover layer.
    """

    def __init__(self, z_dim: int = 512, w_dim: int = 512, resolution: int | str = 256,
                 channels: int = 3, channel_base: int = 32768, channel_max: int = 512,
                 num_classes: int = 0, mapping_layers: int = 8):
        super().__init__()
        self.z_dim, self.w_dim, self.num_classes = z_dim, w_dim, num_classes
        self.latent_dim = z_dim
        self.synthesis_net = SynthesisNetwork(w_dim, resolution, channels, channel_base,
                                              channel_max)
        self.num_ws = self.synthesis_net.num_ws
        self.mapping_net = MappingNetwork(z_dim, w_dim, mapping_layers, num_classes=num_classes)

    def mapping(self, z: torch.Tensor, c: torch.Tensor | None = None,
                truncation_psi: float = 1.0) -> torch.Tensor:
        """ws [N, num_ws, w_dim] (the same w repeated on every layer)."""
        w = self.mapping_net(z, c, truncation_psi)
        return w[:, None].expand(-1, self.num_ws, -1)

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "random",
                  noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        return self.synthesis_net(ws, noise_mode, noise)

    def style_mix(self, z1: torch.Tensor, z2: torch.Tensor, crossover: int,
                  c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                  noise_mode: str = "random") -> torch.Tensor:
        """Images with z1's ws on layers ``< crossover`` and z2's on the rest."""
        if not 0 <= crossover <= self.num_ws:
            raise ValueError(f"style_mix: crossover={crossover} must be in 0..{self.num_ws}")
        ws1 = self.mapping(z1, c, truncation_psi)
        ws2 = self.mapping(z2, c, truncation_psi)
        return self.synthesis(torch.cat([ws1[:, :crossover], ws2[:, crossover:]], dim=1),
                              noise_mode)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None,
                truncation_psi: float = 1.0, noise_mode: str = "random",
                return_ws: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        ws = self.mapping(z, c, truncation_psi)
        img = self.synthesis(ws, noise_mode)
        return (img, ws) if return_ws else img


class DiscriminatorBlock(nn.Module):
    """Residual D block at ``res``: conv3x3 -> conv3x3 (down), plus a 1x1 down skip; the sum is
    scaled by 1/sqrt(2). [N, cin, R, R] -> [N, cout, R/2, R/2]."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activation="lrelu")
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, activation="lrelu", down=True)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * math.sqrt(0.5)


class Discriminator(nn.Module):
    """``D(x [N, channels*pack, H, W], c [N] | None) -> logits [N]``; residual StyleGAN2 D.

    ``cond="projection"``: adds ``<embed(c), h> / sqrt(dim h)`` on the last features h.
    Minibatch std uses :class:`~ganforge.nets.layers.MinibatchStd` (group ``min(group, N)``,
    falling back to a divisor of N); ``mbstd_group=0`` leaves it out.
    """

    def __init__(self, resolution: int | str = 256, channels: int = 3,
                 channel_base: int = 32768, channel_max: int = 512, num_classes: int = 0,
                 cond: str = "none", mbstd_group: int = 4, pack: int = 1):
        super().__init__()
        s, ah, aw = aspect(resolution)
        log2 = check_resolution(s)
        k = cond_classes(cond, num_classes, D_CONDS, "d_cond")
        self.cond, self.resolution = cond, resolution

        def ch(res: int) -> int:
            return channels_at(res, channel_base, channel_max)

        self.fromrgb = EqualConv2d(channels * pack, ch(s), 1, activation="lrelu")
        self.blocks = nn.Sequential(*[DiscriminatorBlock(ch(2**i), ch(2**(i - 1)))
                                      for i in range(log2, 2, -1)])  # -> [N, ch(4), 4ah, 4aw]
        c4 = ch(4)
        self.mbstd = MinibatchStd(mbstd_group) if mbstd_group > 0 else None  # -> c4 + 1 maps
        self.conv = EqualConv2d(c4 + (self.mbstd is not None), c4, 3, activation="lrelu")
        self.fc = EqualLinear(c4 * 16 * ah * aw, c4, activation="lrelu")
        self.out = EqualLinear(c4, 1)
        self.embed = nn.Embedding(k, c4) if cond == "projection" else None

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, with_aux: bool = False
                ) -> torch.Tensor:
        if with_aux:
            raise ValueError("with_aux=True needs d_cond='aux', which stylegan2 does not offer")
        h = self.blocks(self.fromrgb(x))
        if self.mbstd is not None:
            h = self.mbstd(h)
        h = self.fc(self.conv(h).flatten(1))  # [N, c4]
        out = self.out(h).view(-1)  # [N]
        if self.embed is not None:
            c = need_labels(c, x.shape[0], "D (d_cond=projection)")
            out = out + (self.embed(c).to(h.dtype) * h).sum(dim=1) / math.sqrt(h.shape[1])
        return out

    def input_blocks(self) -> list[list[nn.Module]]:
        """D's layers nearest the input, one group per resolution (highest first): FreezeD
        keeps the first K groups fixed; the last module of a group outputs its features."""
        blocks = [[b] for b in self.blocks]
        return [[self.fromrgb] + blocks[0]] + blocks[1:] if blocks else [[self.fromrgb]]


# the ModelConfig keys this family reads (beyond arch and the shape taken from the data)
OPTIONS = ("latent_dim", "g_channel_base", "g_channel_max", "d_channel_base", "d_channel_max",
           "g_cond", "d_cond", "mbstd", "pack", "mapping_layers")


def build(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    """``(G, D)``: z_dim = w_dim = ``latent_dim``; ``g_cond=concat`` makes the mapping
    network conditional; ``d_cond`` none or projection; ``mbstd`` the minibatch-std group
    (0 = none; the presets use 4, as the paper)."""
    kg = cond_classes(cfg.g_cond, cfg.num_classes, G_CONDS, "g_cond")
    if cfg.d_cond not in D_CONDS:
        raise ValueError(f"stylegan2: d_cond={cfg.d_cond!r} not supported, use none or projection")
    g = Generator(cfg.latent_dim, cfg.latent_dim, cfg.resolution, cfg.channels,
                  cfg.g_channel_base, cfg.g_channel_max, kg, cfg.mapping_layers)
    d = Discriminator(cfg.resolution, cfg.channels, cfg.d_channel_base, cfg.d_channel_max,
                      cfg.num_classes, cfg.d_cond, cfg.mbstd, cfg.pack)
    return g, d
