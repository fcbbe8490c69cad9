"""Image-to-image nets: Pix2Pix's U-Net and PatchGAN, CycleGAN's ResNet generator, SRGAN's
SRResNet and discriminator, and the VGG19 feature extractor of SRGAN's content loss.

Plain ``nn.Module`` s over float NCHW images in [-1, 1]; no losses, no training code. These nets
map an image to an image (or a logit map), so they do not follow the ``G(z, c)`` / ``D(x, c)``
form of :mod:`ganforge.nets`; the img2img recipes build them directly.

``norm`` is ``"batch"`` (BatchNorm2d) or ``"instance"`` (InstanceNorm2d without affine
parameters or running statistics, as in the pix2pix/CycleGAN code). A conv followed by a norm
has no bias (a bias before a norm is cancelled by its mean subtraction).
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..errors import GanforgeError

NORMS = ("batch", "instance")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    raise GanforgeError(f"norm={kind!r}: use one of {', '.join(NORMS)}")


def _init_normal(module: nn.Module) -> None:
    """pix2pix/CycleGAN init: convs N(0, 0.02), BatchNorm gain N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _check_size(x: torch.Tensor, multiple: int, what: str) -> None:
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise GanforgeError(f"{what}: input {h}x{w} must have both sides divisible by {multiple}")


class UNetGenerator(nn.Module):
    """The pix2pix U-Net generator (Isola et al. 2017), ``G(x [N, in, H, W]) -> [N, out, H, W]``
    in [-1, 1], for any H, W divisible by ``size_multiple = 2**depth``.

    Encoder: ``depth`` Conv(4, 2, 1) blocks, LeakyReLU(0.2) before every conv but the first,
    norm after every conv but the outermost and the innermost; widths ``base * 2**i`` capped at
    ``max_channels``. Decoder, innermost first: ReLU, ConvTranspose(4, 2, 1), norm, each block
    but the innermost taking the concatenation [skip, up] of the encoder map at its scale; the
    outermost block ends in a Tanh instead of a norm. Dropout (pix2pix's only noise source) in
    the innermost 3 decoder blocks when ``dropout > 0`` (never in the output block, so for
    ``depth <= 3`` in the ``depth - 1`` others); it is off in eval mode, which makes G
    deterministic there. ``depth = log2(H)`` goes down to 1x1 (pix2pix's 256 px net: depth 8).

    ``output="chroma"`` (gray -> colour: ``in_channels=1``, ``out_channels=3``): the net predicts
    only the two chroma channels Cb, Cr (its Tanh output halved) and the colour image is made
    from them and the input as the luma Y (JPEG's full-range ITU-R 601 YCbCr, the luma the
    gray input was made with), so the brightness of every pixel is the input's. Its last layer
    starts at zero: an untrained net returns the gray input itself (the baseline), and what it
    learns is colour only.
    """

    def __init__(self, in_channels: int, out_channels: int, depth: int, base: int = 64,
                 max_channels: int = 512, dropout: float = 0.5, norm: str = "batch",
                 output: str = "rgb"):
        super().__init__()
        if depth < 2:
            raise GanforgeError(f"UNetGenerator: depth={depth} must be >= 2")
        if output not in ("rgb", "chroma"):
            raise GanforgeError(f"UNetGenerator: output={output!r}: use rgb or chroma")
        if output == "chroma" and (in_channels, out_channels) != (1, 3):
            raise GanforgeError(f"UNetGenerator: output=chroma colours gray images (1 channel "
                                f"in, 3 out), not {in_channels} -> {out_channels}")
        self.output = output
        if not 0.0 <= dropout < 1.0:
            raise GanforgeError(f"UNetGenerator: dropout={dropout} must be in [0, 1)")
        _norm(norm, 1)  # validates norm
        self.depth = depth
        self.size_multiple = 2**depth
        w = [min(base * 2**i, max_channels) for i in range(depth)]  # encoder output widths
        # down[i]: [N, w[i-1], H/2**i, W/2**i] -> [N, w[i], H/2**(i+1), W/2**(i+1)]
        self.down = nn.ModuleList([nn.Conv2d(in_channels, w[0], 4, 2, 1)])
        for i in range(1, depth):
            inner = i == depth - 1
            layers: list[nn.Module] = [nn.LeakyReLU(0.2),
                                       nn.Conv2d(w[i - 1], w[i], 4, 2, 1, bias=inner)]
            self.down.append(nn.Sequential(*layers, *([] if inner else [_norm(norm, w[i])])))
        # up[i]: [N, w[i] (innermost) or 2*w[i] (skip + up), H/2**(i+1)] -> [N, w[i-1], H/2**i]
        self.up = nn.ModuleList()
        for i in range(depth):
            cin = w[i] if i == depth - 1 else 2 * w[i]
            if i == 0:
                c_out = 2 if output == "chroma" else out_channels
                self.up.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(cin, c_out, 4, 2, 1),
                                             nn.Tanh()))
                continue
            layers = [nn.ReLU(), nn.ConvTranspose2d(cin, w[i - 1], 4, 2, 1, bias=False),
                      _norm(norm, w[i - 1])]
            if dropout > 0 and i >= depth - 3:
                layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))
        _init_normal(self)
        if output == "chroma":  # starts as the gray copy
            nn.init.zeros_(self.up[0][1].weight)
            nn.init.zeros_(self.up[0][1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_size(x, self.size_multiple, f"UNetGenerator(depth={self.depth})")
        inp = x
        skips = []
        for down in self.down:
            x = down(x)
            skips.append(x)  # skips[i]: [N, w[i], H/2**(i+1), W/2**(i+1)]
        x = self.up[-1](skips[-1])
        for i in range(self.depth - 2, -1, -1):
            x = self.up[i](torch.cat([skips[i], x], dim=1))
        if self.output == "chroma":
            return ycbcr_to_rgb(inp, 0.5 * x[:, :1], 0.5 * x[:, 1:])
        return x  # [N, out, H, W]


def ycbcr_to_rgb(y: torch.Tensor, cb: torch.Tensor, cr: torch.Tensor) -> torch.Tensor:
    """RGB in [-1, 1] of a luma ``y`` in [-1, 1] and chroma ``cb``, ``cr`` in [-0.5, 0.5]
    (JPEG's full-range ITU-R 601 YCbCr; Y = 0.299 R + 0.587 G + 0.114 B). Not clamped."""
    y01 = (y + 1) * 0.5
    r = y01 + 1.402 * cr
    g = y01 - 0.344136 * cb - 0.714136 * cr
    b = y01 + 1.772 * cb
    return torch.cat([r, g, b], 1) * 2 - 1


def padded_call(net, x: torch.Tensor) -> torch.Tensor:
    """``net(x)`` for any height and width: ``x`` reflect-padded at the bottom and right to
    the net's ``size_multiple``, the output cropped back."""
    m = getattr(net, "size_multiple", 1)
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    y = net(x)
    s = y.shape[-1] // x.shape[-1]  # 1, or a super-resolution scale
    return y[..., :h * s, :w * s]


@torch.no_grad()
def tiled_translate(fn, x: torch.Tensor, tile: int, overlap: int | None = None
                    ) -> torch.Tensor:
    """``fn`` (float ``[N, C, H, W]`` -> ``[N, C', H, W]``) over ``x`` in windows of exactly
    ``tile`` x ``tile`` pixels (the size a patch-trained net saw in training; a side shorter
    than ``tile`` is taken whole) overlapping by at least ``overlap`` (default ``tile // 4``),
    blended with weights that fall linearly to the window edges, so no seam shows and memory
    stays bounded for any image size. Returns float32 on the CPU."""
    h, w = x.shape[-2:]
    if h <= tile and w <= tile:
        return fn(x).float().cpu()
    ov = tile // 4 if overlap is None else overlap
    step = max(1, tile - ov)

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        return sorted(set(list(range(0, n - tile, step)) + [n - tile]))

    def ramp(n: int) -> torch.Tensor:
        i = torch.arange(n, dtype=torch.float32)
        return ((torch.minimum(i, n - 1 - i) + 1) / (ov + 1)).clamp(max=1.0)

    out = weight = None
    for y0 in starts(h):
        for x0 in starts(w):
            th, tw = min(tile, h), min(tile, w)
            part = fn(x[..., y0:y0 + th, x0:x0 + tw]).float().cpu()
            if out is None:
                out = torch.zeros(x.shape[0], part.shape[1], h, w)
                weight = torch.zeros(1, 1, h, w)
            wt = ramp(th)[:, None] * ramp(tw)[None, :]
            out[..., y0:y0 + th, x0:x0 + tw] += part * wt
            weight[..., y0:y0 + th, x0:x0 + tw] += wt
    return out / weight


class PatchDiscriminator(nn.Module):
    """The PatchGAN discriminator of pix2pix (Isola et al. 2017), also CycleGAN's D:
    ``D(x [N, in, H, W]) -> logit map [N, 1, h, w]``, each logit judging one overlapping patch
    of ``receptive_field`` pixels (70 for the default ``n_layers=3``, the 70x70 PatchGAN).

    Conv(4, 2, 1) + LeakyReLU(0.2) (no norm), ``n_layers - 1`` more Conv(4, 2, 1) + norm +
    LeakyReLU with widths doubling up to ``8 * base``, one Conv(4, 1, 1) + norm + LeakyReLU and a
    Conv(4, 1, 1) to 1 channel. No sigmoid. With pix2pix's padding 1 the map is
    ``H // 2**n_layers - 2`` high, so inputs need sides ``>= min_size = 3 * 2**n_layers`` (24 at
    ``n_layers=3``, 12 at ``n_layers=2``: use ``n_layers <= 2`` for 16x16 images).
    """

    def __init__(self, in_channels: int, base: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        if n_layers < 1:
            raise GanforgeError(f"PatchDiscriminator: n_layers={n_layers} must be >= 1")
        self.n_layers = n_layers
        self.min_size = 3 * 2**n_layers
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base, 4, 2, 1), nn.LeakyReLU(0.2)]
        cin = base
        for n in range(1, n_layers + 1):
            cout = base * min(2**n, 8)
            stride = 2 if n < n_layers else 1  # the last of these is the first stride-1 conv
            layers += [nn.Conv2d(cin, cout, 4, stride, 1, bias=False), _norm(norm, cout),
                       nn.LeakyReLU(0.2)]
            cin = cout
        layers.append(nn.Conv2d(cin, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        # walk back from one output pixel: r <- (r - 1) * stride + kernel
        rf = 1
        for stride in [1, 1] + [2] * n_layers:
            rf = (rf - 1) * stride + 4
        self.receptive_field = rf
        _init_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if min(h, w) < self.min_size:
            raise GanforgeError(f"PatchDiscriminator(n_layers={self.n_layers}): input {h}x{w} "
                                f"is smaller than {self.min_size}x{self.min_size}; use fewer "
                                "layers (d_layers) or larger images")
        return self.main(x)  # [N, 1, h // 2**n_layers - 2, w // 2**n_layers - 2]


class ResidualBlock(nn.Module):
    """CycleGAN's residual block: x + (reflect-pad, conv3x3, norm, ReLU, reflect-pad, conv3x3,
    norm)(x), shape-preserving."""

    def __init__(self, channels: int, norm: str = "instance"):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False),
            _norm(norm, channels), nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False),
            _norm(norm, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """The CycleGAN generator (Zhu et al. 2017, after Johnson et al. 2016):
    ``G(x [N, in, H, W]) -> [N, out, H, W]`` in [-1, 1], for H, W divisible by
    ``size_multiple = 2**n_down``.

    Reflect-pad + Conv 7x7 + norm + ReLU; ``n_down`` Conv(3, 2, 1) + norm + ReLU doubling the
    width; ``n_blocks`` :class:`ResidualBlock` s; ``n_down`` ConvTranspose(3, 2, 1,
    output_padding=1) + norm + ReLU halving it; reflect-pad + Conv 7x7 + Tanh. CycleGAN uses
    ``n_blocks=9`` at 256 px and 6 at 128 px.
    """

    def __init__(self, in_channels: int, out_channels: int, base: int = 64, n_blocks: int = 9,
                 n_down: int = 2, norm: str = "instance"):
        super().__init__()
        self.size_multiple = 2**n_down
        layers: list[nn.Module] = [nn.ReflectionPad2d(3),
                                   nn.Conv2d(in_channels, base, 7, bias=False),
                                   _norm(norm, base), nn.ReLU()]
        for i in range(n_down):  # [N, base*2**i, H/2**i] -> [N, base*2**(i+1), H/2**(i+1)]
            c = base * 2**i
            layers += [nn.Conv2d(c, 2 * c, 3, 2, 1, bias=False), _norm(norm, 2 * c), nn.ReLU()]
        layers += [ResidualBlock(base * 2**n_down, norm) for _ in range(n_blocks)]
        for i in range(n_down, 0, -1):  # [N, base*2**i, H/2**i] -> [N, base*2**(i-1), ...]
            c = base * 2**i
            layers += [nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1, bias=False),
                       _norm(norm, c // 2), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(base, out_channels, 7), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        _init_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_size(x, self.size_multiple, "ResnetGenerator")
        return self.main(x)  # [N, out, H, W]


class SRResidualBlock(nn.Module):
    """SRResNet's residual block: x + (conv3x3, BN, PReLU, conv3x3, BN)(x); without the BNs
    when ``norm="none"`` (EDSR's block, Lim et al. 2017)."""

    def __init__(self, n_feats: int, norm: str = "batch"):
        super().__init__()
        bn = norm == "batch"

        def nrm() -> list[nn.Module]:
            return [nn.BatchNorm2d(n_feats)] if bn else []

        self.body = nn.Sequential(
            nn.Conv2d(n_feats, n_feats, 3, 1, 1, bias=not bn), *nrm(), nn.PReLU(n_feats),
            nn.Conv2d(n_feats, n_feats, 3, 1, 1, bias=not bn), *nrm())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def icnr_(weight: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """ICNR initialisation (Aitken et al. 2017) of a conv feeding ``PixelShuffle(factor)``,
    in place: kaiming-normal weights for ``out / factor**2`` channels, each repeated for the
    ``factor**2`` sub-pixel positions, so the shuffled output starts as a nearest-neighbour
    upsampling of one map: no checkerboard at initialisation."""
    out_c = weight.shape[0]
    if out_c % factor**2:
        raise GanforgeError(f"icnr_: {out_c} output channels are not a multiple of "
                            f"{factor**2}")
    sub = torch.empty(out_c // factor**2, *weight.shape[1:])
    nn.init.kaiming_normal_(sub, a=0.25)  # PReLU's initial slope
    with torch.no_grad():  # PixelShuffle takes channel c * f^2 + k to sub-pixel k of map c
        weight.copy_(sub.repeat_interleave(factor**2, dim=0))
    return weight


class SRResNet(nn.Module):
    """SRGAN's generator, SRResNet (Ledig et al. 2017):
    ``G(lr [N, C, h, w]) -> sr [N, C, h*scale, w*scale]`` in [-1, 1], for any h, w.

    Conv 9x9 + PReLU; ``n_blocks`` :class:`SRResidualBlock` s; Conv 3x3 + BN plus a global skip
    from the first PReLU; ``log2(scale)`` x (Conv 3x3 to ``4 * n_feats``, PixelShuffle(2),
    PReLU); Conv 9x9 to C. PReLUs have one slope per channel. The convs before each
    PixelShuffle start with ICNR (:func:`icnr_`) against checkerboard artefacts;
    ``upsample="nearest"`` doubles the resolution by nearest-neighbour resizing and a Conv 3x3
    instead (ESRGAN's resize-conv, Odena et al. 2016: the four sub-pixel phases share one
    kernel, so a period-2 pattern is far harder to learn).

    ``skip``: ``"none"`` is the paper's net (a Tanh on the last conv); ``"bicubic"`` adds the
    bicubic upsampling of the input to the last conv's output (global residual learning, as
    VDSR and most later SR nets), whose weights start at zero, so an untrained net *is*
    bicubic upsampling and training only has to learn the missing detail. Its output is not
    squashed (clamp it to [-1, 1] to save it). ``norm``: ``"batch"`` (the paper) or
    ``"none"`` (no BatchNorm anywhere: EDSR's finding that BN hurts SR, and no train/eval
    mismatch on small batches of crops). The paper takes LR in [0, 1]; here both ends are in
    [-1, 1] like every image in the library.
    """

    SCALES = (2, 4, 8)
    SKIPS = ("bicubic", "none")

    def __init__(self, channels: int, scale: int = 4, n_blocks: int = 16, n_feats: int = 64,
                 skip: str = "none", norm: str = "batch", upsample: str = "pixelshuffle"):
        super().__init__()
        if scale not in self.SCALES:
            raise GanforgeError(f"SRResNet: scale={scale} is not supported: use 2, 4 or 8")
        if skip not in self.SKIPS:
            raise GanforgeError(f"SRResNet: skip={skip!r}: use bicubic or none")
        if norm not in ("batch", "none"):
            raise GanforgeError(f"SRResNet: norm={norm!r}: use batch or none")
        if upsample not in ("pixelshuffle", "nearest"):
            raise GanforgeError(f"SRResNet: upsample={upsample!r}: use pixelshuffle or nearest")
        self.scale, self.skip = scale, skip
        bn = norm == "batch"
        self.head = nn.Sequential(nn.Conv2d(channels, n_feats, 9, 1, 4), nn.PReLU(n_feats))
        self.body = nn.Sequential(*[SRResidualBlock(n_feats, norm) for _ in range(n_blocks)],
                                  nn.Conv2d(n_feats, n_feats, 3, 1, 1, bias=not bn),
                                  *([nn.BatchNorm2d(n_feats)] if bn else []))
        up: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):  # [N, F, h, w] -> [N, F, 2h, 2w]
            if upsample == "nearest":  # resize-conv: the same FLOPs, no sub-pixel phases
                up += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(n_feats, n_feats, 3, 1, 1), nn.PReLU(n_feats)]
                continue
            conv = nn.Conv2d(n_feats, 4 * n_feats, 3, 1, 1)
            icnr_(conv.weight)
            up += [conv, nn.PixelShuffle(2), nn.PReLU(n_feats)]
        last = nn.Conv2d(n_feats, channels, 9, 1, 4)
        if skip == "bicubic":
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.tail = nn.Sequential(*up, last, *([nn.Tanh()] if skip == "none" else []))

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        h = self.head(lr)  # [N, F, h, w]
        out = self.tail(h + self.body(h))  # [N, C, h*scale, w*scale]
        if self.skip == "bicubic":
            out = out + F.interpolate(lr, scale_factor=self.scale, mode="bicubic",
                                      align_corners=False)
        return out


@torch.no_grad()
def tiled_upscale(fn, x: torch.Tensor, scale: int, tile: int = 128,
                  overlap: int = 8) -> torch.Tensor:
    """``fn`` (low-resolution float ``[N, C, h, w]`` -> ``[N, C', h*scale, w*scale]``) over
    ``x`` in tiles of ``tile`` input pixels overlapping by ``overlap``, so memory stays bounded
    for any image size: each output pixel comes from the tile where it lies farthest from an
    edge. ``tile=0`` (or an image no bigger than a tile) runs it whole. Returns float32 on the
    CPU."""
    h, w = x.shape[-2:]
    if not tile or (h <= tile and w <= tile):
        return fn(x).float().cpu()
    # at most a quarter of the tile on each side: tiles advance by at least half a tile (an
    # overlap of 8 on 16-pixel tiles would advance by one pixel: h*w calls of the net)
    overlap = min(overlap, tile // 4)
    step = tile - 2 * overlap
    out = None
    for y0 in range(0, h, step):
        for x0 in range(0, w, step):
            ya, xa = max(0, y0 - overlap), max(0, x0 - overlap)
            yb, xb = min(h, y0 + step + overlap), min(w, x0 + step + overlap)
            part = fn(x[..., ya:yb, xa:xb]).float().cpu()
            if out is None:
                out = torch.zeros(x.shape[0], part.shape[1], h * scale, w * scale)
            y1, x1 = min(h, y0 + step), min(w, x0 + step)
            out[..., y0 * scale:y1 * scale, x0 * scale:x1 * scale] = part[
                ..., (y0 - ya) * scale:(y1 - ya) * scale, (x0 - xa) * scale:(x1 - xa) * scale]
    return out


class SRGANDiscriminator(nn.Module):
    """SRGAN's discriminator (Ledig et al. 2017): ``D(x [N, C, H, W]) -> logits [N]``.

    Eight Conv 3x3 + LeakyReLU(0.2) with widths ``b, b, 2b, 2b, 4b, 4b, 8b, 8b`` and strides
    ``1, 2, 1, 2, 1, 2, 1, 2`` (BatchNorm after all but the first), then
    ``AdaptiveAvgPool2d(1)``, Linear(8b, 1024), LeakyReLU(0.2), Linear(1024, 1); no sigmoid.
    The paper flattens the 6x6 map of its 96x96 crops into the dense layer; the average pool
    here takes any input size (>= 16 px keeps the last map non-trivial).
    """

    def __init__(self, channels: int, base: int = 64):
        super().__init__()
        widths = [base, base, 2 * base, 2 * base, 4 * base, 4 * base, 8 * base, 8 * base]
        layers: list[nn.Module] = []
        cin = channels
        for i, cout in enumerate(widths):
            first = i == 0
            layers.append(nn.Conv2d(cin, cout, 3, 1 + i % 2, 1, bias=first))
            layers += [] if first else [nn.BatchNorm2d(cout)]
            layers.append(nn.LeakyReLU(0.2))
            cin = cout
        self.features = nn.Sequential(*layers)  # -> [N, 8b, H/16, W/16]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Linear(8 * base, 1024), nn.LeakyReLU(0.2),
                                  nn.Linear(1024, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.features(x)).flatten(1)  # [N, 8b]
        return self.head(h).view(-1)  # [N]


# --- VGG19 features for SRGAN's content loss ------------------------------------------------

# torchvision's VGG19 ("E") feature layout: widths, "M" = 2x2 max pool
_VGG19_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                                     512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def unet_depth(side: int) -> int:
    """Downsamplings of a U-Net for images of ``side`` pixels: log2(side) for a power of two
    (down to 1x1), else the most that divide it."""
    depth = 0
    while side % 2 ** (depth + 1) == 0 and 2 ** (depth + 1) <= side:
        depth += 1
    return depth


def build_generators(cfg: Config) -> dict[str, nn.Module]:
    """The generators of an image-to-image run, from its config (shape filled in): ``{"G"}``
    for pix2pix (U-Net) and srgan (SRResNet), ``{"G", "F"}`` (A -> B, B -> A) for cyclegan.
    What the recipes train and what a trained run translates with (no discriminators)."""
    m, kind = cfg.model, cfg.train.recipe
    if kind == "pix2pix":
        depth = m.unet_depth or unet_depth(m.resolution)
        if m.resolution % 2**depth:
            raise GanforgeError(f"unet_depth={depth} needs images (or crops) whose side is a "
                                f"multiple of {2**depth}, not {m.resolution}: lower unet_depth "
                                f"or set it to 0 (picked from the side)")
        output = m.g_output
        if output == "auto":
            output = "chroma" if cfg.data.task == "gray2color" else "rgb"
        return {"G": UNetGenerator(m.in_channels, m.channels, depth, base=m.g_base,
                                   dropout=m.dropout, norm=m.norm, output=output)}
    if kind == "cyclegan":
        ca, cb = m.in_channels, m.channels
        return {"G": ResnetGenerator(ca, cb, base=m.g_base, n_blocks=m.n_blocks, norm=m.norm),
                "F": ResnetGenerator(cb, ca, base=m.g_base, n_blocks=m.n_blocks, norm=m.norm)}
    if kind == "srgan":
        return {"G": SRResNet(m.channels, scale=cfg.data.scale, n_blocks=m.n_blocks,
                              n_feats=m.g_base, skip=m.sr_skip, norm=m.norm,
                              upsample=m.sr_upsample)}
    raise GanforgeError(f"recipe={kind} is not an image-to-image recipe")


def _vgg19_layers() -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of torchvision's ``vgg19().features`` in order: convB_I, reluB_I,
    poolB (block B from 1, conv I from 1 within the block); list index = torchvision index."""
    out: list[tuple[str, nn.Module]] = []
    block, i, cin = 1, 1, 3
    for v in _VGG19_CFG:
        if v == "M":
            out.append((f"pool{block}", nn.MaxPool2d(2, 2)))
            block, i = block + 1, 1
            continue
        assert isinstance(v, int)
        out += [(f"conv{block}_{i}", nn.Conv2d(cin, v, 3, padding=1)),
                (f"relu{block}_{i}", nn.ReLU(inplace=True))]
        cin, i = v, i + 1
    return out


VGG_LAYERS = tuple(name for name, _ in _vgg19_layers())


def _vgg19_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet VGG19 weights (torchvision's ``VGG19_Weights.IMAGENET1K_V1``) from torch's
    hub cache, downloaded there once if missing. Module-level so tests can swap it.

    Raises GanforgeError (one line: the URL and where to put the file) when they cannot be had.
    """
    from torchvision.models import VGG19_Weights

    url = VGG19_Weights.IMAGENET1K_V1.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    cached = path.is_file()  # else the one download attempt below (fails fast offline)
    quiet = contextlib.nullcontext() if cached else contextlib.redirect_stdout(io.StringIO())
    try:  # torch.hub announces a download on stdout: offline, the error below says it all
        with quiet:
            return torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True,
                                                      map_location="cpu")
    except Exception as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if cached:
            raise GanforgeError(f"the VGG19 weights at {path} do not load ({why}): delete the "
                                f"file and download {url} there again") from e
        raise GanforgeError(f"the VGG19 weights are missing and could not be downloaded "
                            f"({why}): download {url} to {path}") from e


class VGGFeatures(nn.Module):
    """Frozen VGG19 (Simonyan & Zisserman 2015) features up to one layer, as in SRGAN's content
    loss (Ledig et al. 2017: VGG22 = ``relu2_2``, VGG54 = ``relu5_4``).

    ``f(x [N, 1 or 3, H, W] in [-1, 1]) -> [N, F, H', W']``: gray images are repeated to RGB,
    then mapped to [0, 1] and normalised with the ImageNet mean/std. Parameters never require
    grad, but gradients flow to ``x``. No dropout or BatchNorm inside, so train/eval mode does
    not matter.
    """

    def __init__(self, layer: str = "relu5_4"):
        super().__init__()
        if layer not in VGG_LAYERS:
            raise GanforgeError(f"vgg_features: unknown layer {layer!r}: use a VGG19 layer name "
                                "such as relu2_2 or relu5_4 (convB_I, reluB_I or poolB)")
        self.layer = layer
        layers = _vgg19_layers()
        self.features = nn.Sequential(*[m for _, m in layers[:VGG_LAYERS.index(layer) + 1]])
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise GanforgeError(f"vgg_features: images need 1 or 3 channels, got {x.shape[1]}")
        x = ((x + 1) / 2 - self.mean) / self.std
        return self.features(x)


def vgg_features(layer: str = "relu5_4", device: str | torch.device = "cpu") -> VGGFeatures:
    """:class:`VGGFeatures` up to ``layer`` with the ImageNet weights, frozen, in eval mode, on
    ``device``. Raises GanforgeError (one line, with the download URL and the path to put the
    file at) when the weights are neither cached nor downloadable.
    """
    net = VGGFeatures(layer)
    n = len(net.features)
    state = {k.removeprefix("features."): v for k, v in _vgg19_state_dict().items()
             if k.startswith("features.") and int(k.split(".")[1]) < n}
    net.features.load_state_dict(state)
    net.requires_grad_(False)
    return net.eval().to(device)
