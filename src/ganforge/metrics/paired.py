"""Paired metrics for image-to-image translation and super-resolution: output vs target.

Inputs: two image batches of the same shape ``[N, C, H, W]``, float in [-1, 1] (the nets'
range) or uint8. Every metric is computed per image on the [0, 1] scale and averaged.

* ``l1``: mean absolute error on [0, 1] (lower is better);
* ``psnr``: 10 log10(1 / MSE) in dB (higher is better; identical images are capped at 100 dB);
* ``ssim``: structural similarity (Wang et al. 2004; 11x11 Gaussian window, sigma 1.5) through
  torchmetrics (higher is better, 1 for identical images);
* ``psnr_y``, ``ssim_y`` (:func:`sr_metrics`): the super-resolution papers' protocol, PSNR and
  SSIM of the luma Y (ITU-R BT.601, ``16 + 65.481 R + 128.553 G + 24.966 B`` on [0, 255], as
  MATLAB's ``rgb2ycbcr``; gray images are their own Y) with ``shave`` pixels (the scale) cut
  from every border;
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


def y_channel(x: torch.Tensor) -> torch.Tensor:
    """Luma Y on [0, 255] (float64 ``[N, 1, H, W]``) of RGB or gray images (see the module
    docstring); inputs in [-1, 1] or uint8."""
    u = _unit(x)
    if u.shape[1] == 1:
        return u * 255.0
    r, g, b = u[:, 0:1], u[:, 1:2], u[:, 2:3]
    return 16.0 + 65.481 * r + 128.553 * g + 24.966 * b


def sr_metrics(output: torch.Tensor, target: torch.Tensor, shave: int = 0) -> dict[str, float]:
    """``psnr_y`` and ``ssim_y`` of one batch (the SR papers' protocol, module docstring):
    outputs are rounded to 8 bits first, as a saved image would be."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    if output.shape != target.shape or output.ndim != 4:
        raise GanforgeError(f"sr_metrics needs two [N, C, H, W] batches of the same shape, "
                            f"got {tuple(output.shape)} and {tuple(target.shape)}")
    a, b = y_channel(output).round(), y_channel(target).round()
    if shave:
        a, b = a[..., shave:-shave, shave:-shave], b[..., shave:-shave, shave:-shave]
    if min(a.shape[-2:]) < 11:
        raise GanforgeError(f"sr_metrics: {a.shape[-2]}x{a.shape[-1]} pixels left after the "
                            f"{shave}-pixel border: too small (SSIM needs 11x11)")
    mse = ((a - b) ** 2).flatten(1).mean(1)
    per = torch.where(mse > 0, 10 * torch.log10(255.0**2 / mse.clamp_min(1e-30)),
                      torch.full_like(mse, PSNR_CAP)).clamp(max=PSNR_CAP)
    ssim_y = structural_similarity_index_measure(a.float(), b.float(), data_range=255.0,
                                                 reduction="elementwise_mean")
    return {"psnr_y": float(per.mean()), "ssim_y": float(ssim_y)}


def checkerboard(x: torch.Tensor, block: int = 8) -> float:
    """Energy of period-2 patterns in images (the checkerboard artefact of transposed and
    sub-pixel convolutions), on the luma Y in [0, 255]. For each of the three period-2 signs
    ``(-1)^j`` (columns), ``(-1)^i`` (rows) and ``(-1)^(i+j)`` (checkerboard): the image is
    high-passed with ``[1, -2, 1] / 4`` along the sign's axes (gain 1 at that frequency, 0 for
    constants and straight ramps), multiplied by the sign, and averaged over ``block`` x
    ``block`` tiles (edges and texture mostly cancel there, a regular alternation does not).
    Returns the mean square of those tile averages summed over the three signs: ~0 for smooth
    images (bicubic upsampling), ``a^2`` for a +-a checkerboard of Y."""
    y = y_channel(x)
    if min(y.shape[-2:]) < block + 2:
        raise GanforgeError(f"checkerboard needs images of at least {block + 2} pixels a side")
    k = torch.tensor([1.0, -2.0, 1.0], dtype=y.dtype) / 4
    fx = torch.nn.functional.conv2d(y, k.view(1, 1, 1, 3))[..., 1:-1, :]  # [N, 1, H-2, W-2]
    fy = torch.nn.functional.conv2d(y, k.view(1, 1, 3, 1))[..., :, 1:-1]
    fxy = torch.nn.functional.conv2d(fx, k.view(1, 1, 3, 1), padding=(1, 0))
    h, w = fx.shape[-2:]
    i = torch.arange(h, dtype=y.dtype).view(-1, 1)
    j = torch.arange(w, dtype=y.dtype).view(1, -1)
    total = 0.0
    for f, sign in ((fx, (1 - 2 * (j % 2)).expand(h, w)), (fy, (1 - 2 * (i % 2)).expand(h, w)),
                    (fxy, 1 - 2 * ((i + j) % 2))):
        tiles = torch.nn.functional.avg_pool2d(f * sign, block)
        total += float((tiles**2).mean())
    return total


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
