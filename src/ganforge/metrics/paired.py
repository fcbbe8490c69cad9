"""Paired metrics for image-to-image translation and super-resolution: output vs target.

Inputs: two image batches of the same shape ``[N, C, H, W]``, float in [-1, 1] (the nets'
range) or uint8. Every metric is computed per image on the [0, 1] scale and averaged.

* ``l1``: mean absolute error on [0, 1] (lower is better);
* ``psnr``: 10 log10(1 / MSE) in dB (higher is better; identical images are capped at 100 dB);
* ``ssim``: structural similarity (Wang et al. 2004; 11x11 Gaussian window, sigma 1.5) through
  torchmetrics (higher is better, 1 for identical images);
* ``lpips``: learned perceptual distance (Zhang et al. 2018; AlexNet) through torchmetrics,
  only when its ImageNet backbone weights are in torch's cache (:func:`lpips` raises a
  one-line error saying where to put them otherwise).
"""

from __future__ import annotations

import torch

from ..errors import GanforgeError

PSNR_CAP = 100.0


def _unit(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x.double() / 255.0
    return ((x.double() + 1) / 2).clamp(0, 1)


def _pair(output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if output.shape != target.shape or output.ndim != 4:
        raise GanforgeError(f"paired metrics need two [N, C, H, W] batches of the same shape, "
                            f"got {tuple(output.shape)} and {tuple(target.shape)}")
    return _unit(output), _unit(target)


def l1(output: torch.Tensor, target: torch.Tensor) -> float:
    a, b = _pair(output, target)
    return float((a - b).abs().mean())


def psnr(output: torch.Tensor, target: torch.Tensor) -> float:
    a, b = _pair(output, target)
    mse = ((a - b) ** 2).flatten(1).mean(1)
    per_image = torch.where(mse > 0, 10 * torch.log10(1 / mse.clamp_min(1e-30)),
                            torch.full_like(mse, PSNR_CAP)).clamp(max=PSNR_CAP)
    return float(per_image.mean())


def ssim(output: torch.Tensor, target: torch.Tensor) -> float:
    from torchmetrics.functional.image import structural_similarity_index_measure

    a, b = _pair(output, target)
    if min(a.shape[-2:]) < 11:
        raise GanforgeError(f"SSIM needs images of at least 11x11 pixels, got "
                            f"{a.shape[-2]}x{a.shape[-1]}")
    return float(structural_similarity_index_measure(a.float(), b.float(), data_range=1.0,
                                                     reduction="elementwise_mean"))


_LPIPS: dict[str, torch.nn.Module] = {}


def lpips(output: torch.Tensor, target: torch.Tensor) -> float:
    """LPIPS (AlexNet). Needs torchvision's AlexNet ImageNet weights in torch's hub cache."""
    a, b = _pair(output, target)
    if "alex" not in _LPIPS:
        from torchvision.models import AlexNet_Weights

        url = AlexNet_Weights.IMAGENET1K_V1.url
        path = torch.hub.get_dir() + "/checkpoints/" + url.rsplit("/", 1)[-1]
        try:
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            _LPIPS["alex"] = LearnedPerceptualImagePatchSimilarity("alex").eval()
        except Exception as e:  # download failure: offline
            raise GanforgeError(f"LPIPS needs the AlexNet weights ({type(e).__name__}): "
                                f"download {url} to {path}") from None
    if a.shape[1] == 1:
        a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
    with torch.no_grad():
        return float(_LPIPS["alex"](a.float() * 2 - 1, b.float() * 2 - 1))


PAIRED = {"l1": l1, "psnr": psnr, "ssim": ssim, "lpips": lpips}


def paired_metrics(output: torch.Tensor, target: torch.Tensor,
                   names: tuple[str, ...] = ("l1", "psnr", "ssim")) -> dict[str, float]:
    unknown = [n for n in names if n not in PAIRED]
    if unknown:
        raise GanforgeError(f"unknown paired metric {unknown[0]!r}: use any of "
                            f"{', '.join(PAIRED)}")
    return {n: PAIRED[n](output, target) for n in names}
