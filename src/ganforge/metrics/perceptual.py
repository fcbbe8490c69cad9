"""The perceptual distance of the StyleGAN papers' path length and projector: LPIPS (Zhang et al.
2018) on VGG16 features, through torchmetrics (its learned linear heads ship inside
torchmetrics; the VGG16 ImageNet backbone is torchvision's, looked up in torch's hub cache).

:func:`perceptual_distance` returns a callable ``d(a, b) -> [N]`` on float images in [-1, 1]
(gray images repeated to RGB; gradients flow to the inputs) and its name, or ``None`` when the
backbone weights are missing and cannot be downloaded: callers then use their stated fallback.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path

import torch

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_NETS: dict[tuple[str, str], torch.nn.Module] = {}


def backbone_path(net: str = "vgg") -> tuple[str, Path]:
    """``(url, path in torch's hub cache)`` of the ImageNet backbone of an LPIPS net."""
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    url = {"vgg": VGG16_Weights, "alex": AlexNet_Weights}[net].IMAGENET1K_V1.url
    return url, Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def lpips_net(net: str = "vgg", device: str | torch.device = "cpu") -> torch.nn.Module | None:
    """torchmetrics' LPIPS module (per-sample distances [N, 1, 1, 1]) with ``net`` ("vgg" or
    "alex") as its backbone, frozen, on ``device``; None when the backbone's weights are
    neither cached nor downloadable (one attempt)."""
    key = (net, str(device))
    if key in _NETS:
        return _NETS[key]
    url, path = backbone_path(net)
    if not path.is_file():
        try:  # one attempt, quiet (torch.hub announces it on stdout); fails fast offline
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True,
                                                   map_location="cpu")
        except Exception:  # noqa: BLE001 - offline, or a bad file: the caller's fallback
            return None
    try:
        from torchmetrics.functional.image.lpips import _LPIPS

        module = _LPIPS(pretrained=True, net=net).eval().requires_grad_(False)
    except Exception:  # noqa: BLE001 - a damaged cache file: the caller's fallback
        return None
    _NETS[key] = module.to(device)
    return _NETS[key]


def perceptual_distance(device: str | torch.device = "cpu"
                        ) -> tuple[Distance, str] | None:
    """``(d, name)``: ``d(a, b)`` the LPIPS-VGG16 distance per sample [N] of two float image
    batches [N, C, H, W] in [-1, 1] (C = 1 or 3); None when the VGG16 weights are missing."""
    net = lpips_net("vgg", device)
    if net is None:
        return None

    def d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape[1] == 1:
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        return net(a.float(), b.float()).flatten()

    return d, "LPIPS (VGG16)"


__all__ = ["Distance", "backbone_path", "lpips_net", "perceptual_distance"]
