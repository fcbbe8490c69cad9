"""Perceptual path length (Karras et al. 2019, StyleGAN; computed as stylegan2-ada-pytorch's
``metrics/perceptual_path_length.py`` does): for latent pairs (a, b), the length
``d(G(x(t)), G(x(t + eps))) / eps**2`` of a step ``eps`` along the walk ``x`` from a to b
(slerp in z, lerp in w), ``d`` a perceptual distance; PPL is the mean of the lengths between
their 1st and 99th percentiles. Lower: the generator's images change more evenly along
latent walks.

Pure: the caller says how to draw latent pairs and how to render a latent
(:func:`ganforge.evaluate.evaluate_run` does it for trained runs).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import GanforgeError
from . import perceptual
from .perceptual import Distance

# draw(m, generator) -> (a [m, ...], b [m, ...], labels [m] shared by both ends, or None)
Draw = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]
# render(latents [N, ...], labels [N] | None) -> images [N, C, H, W] in [-1, 1]
Render = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
# interpolate(a, b, t) with t broadcastable to a ([m, 1, ...])
Interpolate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

EPSILON = 1e-4
SAMPLING = ("end", "full")
LPIPS_MIN_SIZE = 64  # smaller images are upsampled (bilinear) before LPIPS
LPIPS_MAX_SIZE = 256  # bigger ones are box-downsampled, as the reference does


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``a + t (b - a)``: the walk in w."""
    return a + t * (b - a)


def slerp_unit(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The reference's z walk: rows of ``a`` and ``b`` normalised, then the great-circle point
    at fraction ``t`` of the angle between them (on the unit sphere). For generators whose
    mapping network normalises z (StyleGAN)."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    d = (a * b).sum(dim=-1, keepdim=True)
    p = t * torch.acos(d.clamp(-1.0, 1.0))
    c = b - d * a
    c = c / c.norm(dim=-1, keepdim=True)
    out = a * torch.cos(p) + c * torch.sin(p)
    return out / out.norm(dim=-1, keepdim=True)


def slerp_norm(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """:func:`slerp_unit` of the directions times the lerp of the norms: the walk keeps z at
    N(0, I) size, for generators without a mapping network (DCGAN, BigGAN, ...)."""
    r = lerp(a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True), t)
    return slerp_unit(a, b, t) * r


def pixel_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared difference per image [N] of two batches [N, C, H, W] in [-1, 1]."""
    return (a.float() - b.float()).square().flatten(1).mean(1)


def _lpips_size(x: torch.Tensor) -> torch.Tensor:
    """``x`` with its shorter side brought into [LPIPS_MIN_SIZE, LPIPS_MAX_SIZE], the aspect
    ratio kept (H x W images)."""
    h, w = x.shape[-2:]
    r = min(h, w)
    if r < LPIPS_MIN_SIZE:
        return F.interpolate(x.float(), size=(h * LPIPS_MIN_SIZE // r, w * LPIPS_MIN_SIZE // r),
                             mode="bilinear", align_corners=False)
    if r > LPIPS_MAX_SIZE:
        if r % LPIPS_MAX_SIZE == 0 and max(h, w) % r == 0:
            return F.avg_pool2d(x.float(), r // LPIPS_MAX_SIZE)
        return F.interpolate(x.float(), size=(h * LPIPS_MAX_SIZE // r, w * LPIPS_MAX_SIZE // r),
                             mode="area")
    return x


def ppl_distance(device: str | torch.device = "cpu", resolution: int | None = None
                 ) -> tuple[Distance, str]:
    """``(d, name)``: LPIPS-VGG16 (images whose shorter side, ``resolution``, is under 64 px
    upsampled to 64, over 256 px downsampled to 256) when torchvision's VGG16 weights are in
    torch's hub cache, else :func:`pixel_mse`; ``name`` says which, and where the missing
    weights go."""
    got = perceptual.perceptual_distance(device)
    if got is None:
        url, path = perceptual.backbone_path("vgg")
        return pixel_mse, (f"pixel MSE on [-1, 1] (LPIPS-VGG16 weights missing: download "
                           f"{url} to {path})")
    d, name = got

    def resized(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return d(_lpips_size(a), _lpips_size(b))

    if resolution is not None and resolution < LPIPS_MIN_SIZE:
        name += f" on images upsampled {resolution} -> {LPIPS_MIN_SIZE} px (bilinear)"
    elif resolution is not None and resolution > LPIPS_MAX_SIZE:
        name += f" on images downsampled {resolution} -> {LPIPS_MAX_SIZE} px"
    return resized, name


@torch.no_grad()
def path_lengths(draw: Draw, render: Render, distance: Distance, n: int,
                 interpolate: Interpolate = lerp, epsilon: float = EPSILON,
                 sampling: str = "end", batch_size: int = 64, seed: int = 0) -> torch.Tensor:
    """Lengths [n] (float64, CPU) of ``n`` latent pairs: ``draw(m, gen)`` gives m pairs'
    end-points a, b and their shared labels; with x(t) = ``interpolate(a, b, t)`` and t = 0
    (``sampling="end"``) or t ~ U(0, 1) (``"full"``), a pair's length is
    ``distance(render(x(t)), render(x(t + epsilon))) / epsilon**2``. ``seed`` seeds ``gen``."""
    if n < 1 or batch_size < 1 or not epsilon > 0:
        raise GanforgeError(f"path lengths need n >= 1, batch_size >= 1 and epsilon > 0 "
                            f"(got {n}, {batch_size}, {epsilon})")
    if sampling not in SAMPLING:
        raise GanforgeError(f"sampling={sampling!r}: use end (t = 0) or full (t ~ U(0, 1))")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, n, batch_size):
        m = min(batch_size, n - i)
        a, b, c = draw(m, gen)
        t = torch.rand(m, generator=gen, dtype=torch.float64)
        t = (t if sampling == "full" else torch.zeros_like(t)).view(m, *[1] * (a.dim() - 1))
        # the eps step in float64 on the CPU (mps has no float64), then the net's dtype
        ad, bd = a.cpu().double(), b.cpu().double()
        x = torch.cat([interpolate(ad, bd, t), interpolate(ad, bd, t + epsilon)])
        x = x.to(a.device, a.dtype)
        img = render(x, None if c is None else torch.cat([c, c]))
        out.append(distance(img[:m], img[m:]).flatten().cpu().double() / epsilon ** 2)
    return torch.cat(out)


def ppl(lengths: torch.Tensor | np.ndarray) -> dict[str, float]:
    """PPL of per-pair ``lengths`` as the reference computes it: the mean (and std) of those
    in [1st percentile ("lower"), 99th percentile ("higher")]; ``kept`` of ``n``. NaN when a
    length is not finite."""
    x = np.asarray(lengths.cpu() if isinstance(lengths, torch.Tensor) else lengths,
                   dtype=np.float64).ravel()
    if x.size == 0:
        raise GanforgeError("ppl: no path lengths")
    if not np.isfinite(x).all():
        return {"ppl": float("nan"), "std": float("nan"), "kept": 0, "n": int(x.size)}
    lo = np.percentile(x, 1, method="lower")
    hi = np.percentile(x, 99, method="higher")
    kept = x[(x >= lo) & (x <= hi)]
    return {"ppl": float(kept.mean()), "std": float(kept.std()), "kept": int(kept.size),
            "n": int(x.size)}


__all__ = ["EPSILON", "SAMPLING", "Draw", "Interpolate", "Render", "lerp", "path_lengths",
           "pixel_mse", "ppl", "ppl_distance", "slerp_norm", "slerp_unit"]
