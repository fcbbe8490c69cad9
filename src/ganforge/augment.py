"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to real and fake images
alike before D, so D cannot memorise a small dataset while G still gets gradients.

Policies: ``color`` (brightness, saturation, contrast), ``translation`` (shift by up to 1/8 of
the side, zero padding), ``cutout`` (a zeroed square of half the side). Images are float NCHW in
[-1, 1]; every random draw takes an optional ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Gen = torch.Generator | None


def _rand(x: torch.Tensor, shape: tuple[int, ...], gen: Gen) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=x.device, dtype=x.dtype)


def color(x: torch.Tensor, gen: Gen = None) -> torch.Tensor:
    n = x.shape[0]
    x = x + (_rand(x, (n, 1, 1, 1), gen) - 0.5)  # brightness
    if x.shape[1] > 1:  # saturation: scale the distance to the per-pixel channel mean
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_rand(x, (n, 1, 1, 1), gen) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # contrast
    return (x - mean) * (_rand(x, (n, 1, 1, 1), gen) + 0.5) + mean


def translation(x: torch.Tensor, gen: Gen = None, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), generator=gen, device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), generator=gen, device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device),
                            indexing="ij")
    gy = (gy.unsqueeze(0) + dy).clamp(-1, h)  # -1 and h land in the zero padding
    gx = (gx.unsqueeze(0) + dx).clamp(-1, w)
    padded = F.pad(x, (1, 1, 1, 1))
    idx = ((gy + 1) * (w + 2) + (gx + 1)).view(n, 1, -1).expand(-1, x.shape[1], -1)
    return padded.flatten(2).gather(2, idx).view_as(x)


def cutout(x: torch.Tensor, gen: Gen = None, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=gen, device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=gen, device=x.device)
    gy = torch.arange(h, device=x.device).view(1, h, 1)
    gx = torch.arange(w, device=x.device).view(1, 1, w)
    # a ch x cw square centred on (cy, cx), clipped at the borders
    inside = ((gy - cy) >= -(ch // 2)) & ((gy - cy) < ch - ch // 2) \
        & ((gx - cx) >= -(cw // 2)) & ((gx - cx) < cw - cw // 2)
    return x * (~inside).unsqueeze(1).to(x.dtype)


POLICIES: dict[str, Callable[..., torch.Tensor]] = {
    "color": color,
    "translation": translation,
    "cutout": cutout,
}


def diff_augment(x: torch.Tensor, policy: str, gen: Gen = None) -> torch.Tensor:
    """Apply the comma-separated ``policy`` (e.g. ``"color,translation,cutout"``) to images."""
    if x.dim() != 4:
        return x  # vector data: nothing to augment
    for name in filter(None, (p.strip() for p in policy.split(","))):
        x = POLICIES[name](x, gen)
    return x
