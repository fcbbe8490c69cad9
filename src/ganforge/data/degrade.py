"""Real-world degradations for super-resolution training (``degrade=realesrgan``).

A clean bicubic downsample is what the SR papers train and score on, but a camera or web photo
was blurred by a lens, resized by software, made noisy by a sensor and compressed as JPEG,
often twice. A net trained only on clean downsamples sharpens that noise and those blocks.
Real-ESRGAN (Wang et al. 2021, "Training Real-World Blind Super-Resolution with Pure Synthetic
Data") makes the low-resolution side of each training pair by a *second-order* chain of random
degradations; :func:`realesrgan` follows its recipe and its parameter ranges:

1. blur (isotropic or anisotropic Gaussian of random size, width and angle, or a sinc
   filter), random resize (up, down or keep; area, bilinear or bicubic), Gaussian or Poisson
   noise (colour or grey), JPEG;
2. the same chain once more with milder ranges (the blur skipped with probability 0.2);
3. a resize to the target size, then a sinc filter (ringing, probability 0.8) and JPEG in
   random order.

Everything is drawn from the caller's ``torch.Generator``, sample by sample, so a training run
stays exactly resumable and held-out scores are repeatable. JPEG goes through Pillow
(libjpeg), on the CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DEGRADES = ("none", "realesrgan")

# Real-ESRGAN's ranges (first order, second order)
_BLUR_SIGMA = ((0.2, 3.0), (0.2, 1.5))
_RESIZE_P = ((0.2, 0.7, 0.1), (0.3, 0.4, 0.3))  # up, down, keep
_RESIZE_RANGE = ((0.15, 1.5), (0.3, 1.2))
_NOISE_SIGMA = ((1.0, 30.0), (1.0, 25.0))  # on [0, 255]
_POISSON_SCALE = ((0.05, 3.0), (0.05, 2.5))
_JPEG_Q = ((30, 95), (30, 95))
_SINC_P = (0.1, 0.1)
_SECOND_BLUR_P = 0.8
_FINAL_SINC_P = 0.8
_MODES = ("area", "bilinear", "bicubic")


def _u(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _choice(g: torch.Generator, probs: tuple[float, ...]) -> int:
    return int(torch.multinomial(torch.tensor(probs), 1, generator=g))


def gaussian_kernel(size: int, sx: float, sy: float, theta: float) -> torch.Tensor:
    """A ``size`` x ``size`` Gaussian kernel with axes ``sx``, ``sy`` rotated by ``theta``,
    summing to 1."""
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * x + s * y, -s * x + c * y
    k = torch.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    return k / k.sum()


def sinc_kernel(size: int, cutoff: float) -> torch.Tensor:
    """A circular low-pass (2-D sinc, ``cutoff`` in radians per pixel, < pi) of odd ``size``,
    summing to 1: the ringing and overshoot of sharpened or resampled images."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    d = torch.sqrt(x**2 + y**2)
    k = cutoff * torch.special.bessel_j1(cutoff * d) / (2 * math.pi * d.clamp_min(1e-12))
    k[d == 0] = cutoff**2 / (4 * math.pi)
    return (k / k.sum()).float()


def _filter(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``x`` [1, C, H, W] convolved with the 2-D kernel ``k`` per channel (edges replicated)."""
    p = k.shape[-1] // 2
    c = x.shape[1]
    xp = F.pad(x, (p, p, p, p), mode="replicate")
    return F.conv2d(xp, k.to(x)[None, None].expand(c, 1, -1, -1), groups=c)


def _blur(x: torch.Tensor, g: torch.Generator, order: int) -> torch.Tensor:
    size = 2 * int(torch.randint(3, 11, (), generator=g)) + 1  # 7..21
    if float(torch.rand((), generator=g)) < _SINC_P[order]:
        cutoff = _u(g, math.pi / 3, math.pi) if size < 13 else _u(g, math.pi / 5, math.pi)
        return _filter(x, sinc_kernel(size, cutoff))
    lo, hi = _BLUR_SIGMA[order]
    sx = _u(g, lo, hi)
    if float(torch.rand((), generator=g)) < 0.5:  # isotropic or anisotropic (Real-ESRGAN: ~45/25)
        k = gaussian_kernel(size, sx, sx, 0.0)
    else:
        k = gaussian_kernel(size, sx, _u(g, lo, hi), _u(g, -math.pi, math.pi))
    return _filter(x, k)


def _resize(x: torch.Tensor, size: tuple[int, int], g: torch.Generator) -> torch.Tensor:
    mode = _MODES[int(torch.randint(0, 3, (), generator=g))]
    kw = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x, size=size, mode=mode, **kw)


def _random_resize(x: torch.Tensor, g: torch.Generator, order: int) -> torch.Tensor:
    kind = _choice(g, _RESIZE_P[order])
    lo, hi = _RESIZE_RANGE[order]
    f = _u(g, 1.0, hi) if kind == 0 else _u(g, lo, 1.0) if kind == 1 else 1.0
    h, w = x.shape[-2:]
    return _resize(x, (max(4, round(h * f)), max(4, round(w * f))), g)


def _noise(x: torch.Tensor, g: torch.Generator, order: int) -> torch.Tensor:
    """Gaussian or Poisson noise on ``x`` in [0, 1]; grey (the same on every channel) 40% of
    the time."""
    grey = float(torch.rand((), generator=g)) < 0.4
    shape = (1, 1, *x.shape[-2:]) if grey else x.shape
    if float(torch.rand((), generator=g)) < 0.5:
        sigma = _u(g, *_NOISE_SIGMA[order]) / 255
        n = torch.randn(shape, generator=g, device=x.device) * sigma
    else:
        scale = _u(g, *_POISSON_SCALE[order])  # basicsr: 256 levels of shot noise, scaled
        base = (x.mean(1, keepdim=True) if grey else x).clamp(0, 1)
        n = (torch.poisson(base * 256, generator=g) / 256 - base) * scale
    return (x + n).clamp(0, 1)


def _jpeg(x: torch.Tensor, g: torch.Generator, order: int) -> torch.Tensor:
    """``x`` [1, C, H, W] in [0, 1] through JPEG at a random quality (Pillow's libjpeg)."""
    import io

    import numpy as np
    from PIL import Image

    if x.shape[1] not in (1, 3):  # JPEG holds grey or RGB
        return x
    q = int(torch.randint(_JPEG_Q[order][0], _JPEG_Q[order][1] + 1, (), generator=g))
    a = (x[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(buf, "JPEG", quality=q)
    y = np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.uint8)
    y = torch.from_numpy(y.copy()).reshape(*x.shape[-2:], -1).permute(2, 0, 1)
    return (y.float() / 255)[None].to(x.device)


def realesrgan_one(hr: torch.Tensor, scale: int, g: torch.Generator) -> torch.Tensor:
    """One high-resolution image ``[1, C, H, W]`` in [0, 1] -> its degraded low-resolution
    version ``[1, C, H / scale, W / scale]`` in [0, 1]."""
    h, w = hr.shape[-2:]
    x = hr.float()
    for order in (0, 1):
        if order == 0 or float(torch.rand((), generator=g)) < _SECOND_BLUR_P:
            x = _blur(x, g, order)
        x = _random_resize(x, g, order)
        x = _noise(x, g, order)
        x = _jpeg(x, g, order)
    target = (h // scale, w // scale)
    sinc = float(torch.rand((), generator=g)) < _FINAL_SINC_P
    size = 2 * int(torch.randint(3, 11, (), generator=g)) + 1
    k = sinc_kernel(size, _u(g, math.pi / 3, math.pi)) if sinc else None
    if float(torch.rand((), generator=g)) < 0.5:  # resize + sinc, then JPEG
        x = _resize(x, target, g)
        x = _filter(x, k) if k is not None else x
        x = _jpeg(x, g, 1)
    else:  # JPEG, then resize + sinc
        x = _jpeg(x, g, 1)
        x = _resize(x, target, g)
        x = _filter(x, k) if k is not None else x
    return x.clamp(0, 1)


def realesrgan(hr: torch.Tensor, scale: int, generator: torch.Generator) -> torch.Tensor:
    """Real-ESRGAN's second-order degradation of a batch ``[N, C, H, W]`` in [-1, 1] (``H``,
    ``W`` divisible by ``scale``): ``[N, C, H / scale, W / scale]`` in [-1, 1], each sample with
    its own random chain drawn from ``generator`` (a CPU generator)."""
    x = hr.detach().float().add(1).div(2)
    out = [realesrgan_one(x[i:i + 1].cpu(), scale, generator) for i in range(len(x))]
    return torch.cat(out).mul(2).sub(1).to(hr.device, hr.dtype)
