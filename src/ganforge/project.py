"""Projection of real images into a trained generator (GAN inversion): ``ganforge project`` and
:func:`project` (exported as ``ganforge.project_images``; ``ganforge.project`` is this module).

The optimisation follows the projector of StyleGAN2-ADA (Karras et al. 2020, NVlabs'
``projector.py``), written anew here:

- **StyleGAN2 runs, spaces w and w+** (default w): the latent starts at ``w_avg``, the mean
  of 10,000 mapped w (of the requested class for conditional runs), one w for every layer (w)
  or one per layer (w+). Adam (betas 0.9, 0.999), learning rate 0.1 with a cosine ramp-up over
  the first 5% of the steps and ramp-down over the last 25%. Gaussian noise is added to w,
  ``w_std * 0.05 * max(0, 1 - t / 0.75)^2`` at progress t (``w_std``: the root of the total
  variance of the 10,000 w, as the reference), so it vanishes after 75% of the steps. The
  per-layer noise maps are optimised too, one per image and layer (started from the run's
  fixed noise, renormalised to mean 0 / std 1 after every step), under the reference's noise
  regulariser (weight 1e5): the squared autocorrelation at a shift of one pixel, horizontal
  and vertical, of each map and of its 2x2-average-pooled versions down to 8x8. As in the
  reference, the optimised maps only help the fit: the reconstruction (and the PSNR/SSIM) is
  the latent rendered with the run's fixed noise, exactly what ``ganforge edit`` renders from
  the saved latent; the maps are in :attr:`Projection.noise`.
- **Other noise-to-image generators (DCGAN, ResNet, BigGAN, R3GAN), space z** (also allowed
  for StyleGAN2 runs, through the mapping network): z starts at the closest of 256 seeded
  draws (pixel MSE of their samples), then the same Adam schedule and decaying latent noise
  (scale ``sqrt(latent_dim) * 0.05``, the total std of N(0, I)), plus a prior penalty
  ``0.01 * (mean(z^2) - 1)^2`` per image that keeps ``||z||^2`` near ``latent_dim``.

**Distance**: LPIPS on VGG16 features (Zhang et al. 2018; ``metrics.perceptual``), images above
256 pixels area-downsampled to 256 as the reference does, when its weights are found;
otherwise (or with ``distance="pixel"``) the stated fallback: pixel MSE on [-1, 1] (weight 1)
plus 0.1 times the D-feature distance, the mean over D's :meth:`input_blocks` groups of the
squared difference of the features normalised to unit length over channels at each pixel
(summed over channels, averaged over pixels). Runs whose D packs samples, or whose checkpoint
has no D, use the pixel MSE alone (said in the log). The name of the distance used is in
:attr:`Projection.distance` and the CLI's report.

Every reconstruction is scored against its target with PSNR and SSIM
(:mod:`ganforge.metrics.paired`, on the [0, 1] scale).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from . import checkpoint as ck
from .directions import render
from .errors import GanforgeError
from .generate import TrainedGAN
from .metrics import paired
from .nets import build_nets
from .utils import to_uint8

SPACES = ("z", "w", "w+")
DISTANCES = ("auto", "lpips", "pixel")
DEFAULT_STEPS = 500  # the reference runs 1000; 500 gets most of the way at half the cost
LR = 0.1
LR_RAMPUP, LR_RAMPDOWN = 0.05, 0.25
LATENT_NOISE, LATENT_NOISE_RAMP = 0.05, 0.75
NOISE_REG = 1e5
W_SAMPLES = 10_000
Z_CANDIDATES = 256
Z_PRIOR = 0.01
D_FEATURE_WEIGHT = 0.1
LPIPS_SIDE = 256

Log = Callable[[str], None]
# d(x, y, c) -> [N]: x the renderings, y the targets, c their labels (D features) or None
Distance = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass
class Projection:
    """The result of :func:`project` for N target images.

    ``latents``: [N, latent_dim] (z), [N, w_dim] (w) or [N, num_ws, w_dim] (w+), CPU, the
    layout of :func:`ganforge.directions.save_latent`; ``reconstructions`` float [N, C, R, R]
    in [-1, 1] (the latents rendered with fixed noise); ``psnr`` and ``ssim`` [N] against the
    targets; ``labels`` the class labels of z latents of conditional runs (else None);
    ``noise`` the optimised per-layer noise maps [N, 1, R, R] (StyleGAN w / w+; else None);
    ``frames`` (when recorded) uint8 [N, C, R, R] reconstructions at ``frame_steps``."""

    latents: torch.Tensor
    space: str
    reconstructions: torch.Tensor
    psnr: torch.Tensor
    ssim: torch.Tensor
    distance: str
    steps: int
    labels: torch.Tensor | None = None
    noise: list[torch.Tensor] | None = None
    frames: list[torch.Tensor] = field(default_factory=list)
    frame_steps: list[int] = field(default_factory=list)


def default_space(g: TrainedGAN) -> str:
    """w for StyleGAN runs, z for the others."""
    return "w" if g.is_style else "z"


def check_run(g: object) -> TrainedGAN:
    """A one-line error unless ``g`` is a noise-to-image run that projection can use."""
    if not isinstance(g, TrainedGAN):
        kind = getattr(g, "kind", "image-to-image")
        raise GanforgeError(f"this is a {kind} run: it translates images instead of "
                            "generating from noise; projection needs a noise-to-image run")
    if g.is_vector:
        raise GanforgeError("this run generates vectors, not images: projection needs an "
                            "image run")
    return g


def check_space(g: TrainedGAN, space: str | None) -> str:
    space = default_space(g) if space is None else space
    if space not in SPACES:
        raise GanforgeError(f"--space {space!r}: use z, w or w+")
    if space != "z" and not g.is_style:
        raise GanforgeError(f"--space {space} needs a StyleGAN run (its mapping network makes "
                            f"w); this run's generator is {g.cfg.model.arch}: use --space z")
    return space


def class_labels(g: TrainedGAN, n: int, c: int | str | torch.Tensor | None
                 ) -> torch.Tensor | None:
    """The labels of ``n`` targets: None for unconditional runs; conditional runs need ``c``."""
    if g.num_classes and c is None:
        raise GanforgeError(f"this run is conditional ({g.num_classes} classes): give the class "
                            f"of the image(s) with --class K (0..{g.num_classes - 1}: "
                            f"{', '.join(g.class_names)})")
    labels = g.labels(n, c)
    if labels is not None and labels.shape != (n,):
        raise GanforgeError(f"give one class label per image: {n} images, labels of shape "
                            f"{list(labels.shape)}")
    return labels


def _check_images(g: TrainedGAN, images: torch.Tensor) -> torch.Tensor:
    m = g.cfg.model
    want = [m.channels, *m.size]
    if images.dim() != 4 or list(images.shape[1:]) != want or images.shape[0] < 1:
        raise GanforgeError(f"projection targets must be float [N, {', '.join(map(str, want))}]"
                            f" in [-1, 1] (this run's channels and resolution), got "
                            f"{list(images.shape)}")
    return images.float()


# --- schedules and regularisers ---------------------------------------------------------------


def lr_ramp(t: float) -> float:
    """The reference's learning-rate factor at progress ``t`` in [0, 1): cosine ramp-up over
    the first 5%, cosine ramp-down over the last 25%."""
    down = min(1.0, (1.0 - t) / LR_RAMPDOWN)
    return (0.5 - 0.5 * math.cos(down * math.pi)) * min(1.0, t / LR_RAMPUP)


def latent_noise(t: float, std: float) -> float:
    """Scale of the noise added to the latent at progress ``t``: ``std * 0.05`` decaying
    quadratically to 0 at 75% of the steps."""
    return std * LATENT_NOISE * max(0.0, 1.0 - t / LATENT_NOISE_RAMP) ** 2


def noise_regularizer(maps: list[torch.Tensor]) -> torch.Tensor:
    """Per image [N]: the squared mean autocorrelation at a one-pixel shift (both axes) of
    every noise map [N, 1, H, W] and of its 2x2-pooled versions down to 8 (shorter side)."""
    total = maps[0].new_zeros(maps[0].shape[0])
    for m in maps:
        while True:
            total = total + (m * torch.roll(m, 1, dims=3)).mean(dim=(1, 2, 3)) ** 2
            total = total + (m * torch.roll(m, 1, dims=2)).mean(dim=(1, 2, 3)) ** 2
            if min(m.shape[2:]) <= 8:
                break
            m = F.avg_pool2d(m, 2)
    return total


@torch.no_grad()
def w_stats(g: TrainedGAN, labels: torch.Tensor | None, n: int = W_SAMPLES, seed: int = 123,
            batch_size: int = 1000) -> tuple[torch.Tensor, float]:
    """``(w_avg [N or 1, w_dim], w_std)``: the mean of ``n`` mapped w (per image's class for
    conditional runs) and the root of their total variance (the reference's scale)."""
    z = torch.randn(n, g.latent_dim, generator=torch.Generator().manual_seed(seed))
    classes = [None] if labels is None else sorted(set(labels.tolist()))
    means, var = {}, 0.0
    for k in classes:
        ws = []
        for i in range(0, n, batch_size):
            zi = z[i:i + batch_size].to(g.device)
            ci = None if k is None else torch.full((zi.shape[0],), k, device=g.device)
            ws.append(g.G.mapping_net(zi, ci).float().cpu())
        w = torch.cat(ws)
        means[k] = w.mean(dim=0)
        var += float((w - means[k]).square().sum(dim=1).mean()) / len(classes)
    avg = (means[None][None] if labels is None
           else torch.stack([means[int(k)] for k in labels]))
    return avg, math.sqrt(var)


# --- distances ---------------------------------------------------------------------------------


def _lpips(device: torch.device) -> tuple[Distance, str] | None:
    from .metrics.perceptual import perceptual_distance

    found = perceptual_distance(device)
    if found is None:
        return None
    d, name = found

    def dist(x: torch.Tensor, y: torch.Tensor, c: torch.Tensor | None = None
             ) -> torch.Tensor:
        if x.shape[-1] > LPIPS_SIDE:
            x = F.interpolate(x, size=(LPIPS_SIDE, LPIPS_SIDE), mode="area")
            y = F.interpolate(y, size=(LPIPS_SIDE, LPIPS_SIDE), mode="area")
        return d(x, y)

    return dist, name


class _StopD(Exception):
    """Raised by the last feature hook: D's layers past its input blocks are not needed."""


def _d_features(g: TrainedGAN, log: Log
                ) -> tuple[Callable[..., list[torch.Tensor]], int] | None:
    """``(f, groups)``: ``f(x, c) -> [features of each input_blocks() group]`` of the run's
    D, or None (said in the log) when the checkpoint has no D or the D packs samples."""
    if g.cfg.model.pack > 1:
        log("the run's D judges packed samples (pack > 1): no D features, pixel MSE alone")
        return None
    if not (Path(g.checkpoint) / "D.safetensors").is_file():
        log(f"no D in {g.checkpoint}: no D features, pixel MSE alone")
        return None
    _, D = build_nets(g.cfg.model)
    ck.load_net(D, Path(g.checkpoint), "D")
    D = D.to(g.device).eval().requires_grad_(False)
    groups = D.input_blocks()
    ends = [grp[-1] for grp in groups]
    feats: list[torch.Tensor] = []

    def hook(module, inputs, output) -> None:
        feats.append(output)
        if module is ends[-1]:
            raise _StopD

    for m in ends:
        m.register_forward_hook(hook)

    def features(x: torch.Tensor, c: torch.Tensor | None) -> list[torch.Tensor]:
        feats.clear()
        try:
            D(x, c.to(g.device) if c is not None else None)
        except _StopD:
            pass
        return list(feats)

    return features, len(groups)


def _unit(f: torch.Tensor) -> torch.Tensor:
    return f / (f.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)


def _pixel(x: torch.Tensor, y: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
    return (x - y).square().flatten(1).mean(1)


def _fallback(g: TrainedGAN, log: Log) -> tuple[Distance, str]:
    found = _d_features(g, log)
    if found is None:
        return _pixel, "pixel MSE"
    features, groups = found

    def dist(x: torch.Tensor, y: torch.Tensor, c: torch.Tensor | None = None
             ) -> torch.Tensor:
        fx = features(x, c)
        with torch.no_grad():
            fy = features(y, c)
        d = sum((_unit(a) - _unit(b)).square().sum(1).flatten(1).mean(1)
                for a, b in zip(fx, fy)) / len(fx)
        return _pixel(x, y) + D_FEATURE_WEIGHT * d

    return dist, (f"pixel MSE + {D_FEATURE_WEIGHT:g} x D features (unit-normalised over "
                  f"channels, mean of D's {groups} input-block groups)")


def make_distance(g: TrainedGAN, distance: str = "auto", log: Log | None = None
                  ) -> tuple[Distance, str]:
    """``(d, name)``: ``d(x, y, c=None) -> [N]`` the projection distance of renderings
    ``x`` to targets ``y`` (labels ``c`` for a conditional D), as the module docstring says."""
    log = log or (lambda _m: None)
    if distance not in DISTANCES:
        raise GanforgeError(f"--distance {distance!r}: use auto, lpips or pixel")
    if distance != "pixel":
        found = _lpips(g.device)
        if found is not None:
            return found
        from .metrics.perceptual import backbone_path

        url, path = backbone_path("vgg")
        if distance == "lpips":
            raise GanforgeError(f"LPIPS needs torchvision's VGG16 weights: download {url} to "
                                f"{path}, or use --distance pixel")
        log(f"LPIPS-VGG16 weights not found ({path}): using the fallback distance")
    return _fallback(g, log)


# --- the optimisation --------------------------------------------------------------------------


def _record(every: int, step: int, steps: int) -> bool:
    return every > 0 and (step % every == 0 or step == steps)


def _noise_start(g: TrainedGAN, n: int) -> list[torch.Tensor]:
    return [layer.noise_const.detach().float()[None, None].repeat(n, 1, 1, 1).to(g.device)
            for layer in g.G.synthesis_net.noise_layers()]


def _z_start(g: TrainedGAN, targets: torch.Tensor, labels: torch.Tensor | None, seed: int
             ) -> torch.Tensor:
    """Per target, the closest (pixel MSE) of 256 seeded z draws' samples."""
    z = g.noise(Z_CANDIDATES, seed)
    start = torch.zeros(targets.shape[0], g.latent_dim)
    for k in ([None] if labels is None else sorted(set(labels.tolist()))):
        which = (torch.ones(targets.shape[0], dtype=torch.bool) if k is None
                 else labels == k)
        cand = g.generate(z, None if k is None else torch.full((Z_CANDIDATES,), k),
                          noise_mode="const")
        d = torch.cdist(targets[which].flatten(1), cand.flatten(1)).square()
        start[which] = z[d.argmin(dim=1)]
    return start


def _synth(g: TrainedGAN, latent: torch.Tensor, space: str, labels: torch.Tensor | None,
           maps: list[torch.Tensor] | None) -> torch.Tensor:
    G = g.G
    if space == "z":
        c = labels.to(g.device) if labels is not None else None
        if g.is_style:
            return G.synthesis(G.mapping(latent, c), noise_mode="const")
        return G(latent, c)
    ws = latent.expand(-1, G.num_ws, -1) if space == "w" else latent
    return G.synthesis(ws, noise=maps)


# long: one optimisation loop as the reference writes it (schedule, latent noise, distance,
# noise regulariser, step, renormalisation, frames), read top to bottom
def _optimise(g: TrainedGAN, targets: torch.Tensor, space: str, labels: torch.Tensor | None,
              steps: int, seed: int, dist: Distance, log: Log, record_every: int,
              w_start: tuple[torch.Tensor, float] | None
              ) -> tuple[torch.Tensor, list[torch.Tensor] | None, list[torch.Tensor],
                         list[int]]:
    n, dev = targets.shape[0], g.device
    gen = torch.Generator().manual_seed(seed)
    if space == "z":
        latent = _z_start(g, targets, labels, seed).to(dev)
        std, maps = math.sqrt(g.latent_dim), None
    else:
        avg, std = w_start
        avg = avg.to(dev).expand(n, -1)[:, None]  # [N, 1, w_dim]
        latent = avg.repeat(1, g.G.num_ws if space == "w+" else 1, 1)
        maps = _noise_start(g, n)
    latent = latent.clone().requires_grad_(True)
    params = [latent] + (maps or [])
    for m in maps or []:
        m.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=LR, betas=(0.9, 0.999))
    x = targets.to(dev)
    frames, frame_steps = [], []

    def snapshot(step: int) -> None:
        with torch.no_grad():
            lat = latent.detach()[:, 0] if space == "w" else latent.detach()
            frames.append(to_uint8(render(g, lat.cpu(), space, labels)))
        frame_steps.append(step)

    if _record(record_every, 0, steps):
        snapshot(0)
    for step in range(steps):
        t = step / steps
        for group in opt.param_groups:
            group["lr"] = LR * lr_ramp(t)
        scale = latent_noise(t, std)
        jitter = torch.randn(latent.shape, generator=gen).to(dev) * scale
        y = _synth(g, latent + jitter, space, labels, maps)
        d = dist(y, x, labels)
        loss = d.sum()
        if maps is not None:
            loss = loss + NOISE_REG * noise_regularizer(maps).sum()
        if space == "z":
            loss = loss + Z_PRIOR * (latent.square().mean(dim=1) - 1).square().sum()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for p, gr in zip(params, grads):
            p.grad = gr if gr is not None else torch.zeros_like(p)
        opt.step()
        if maps is not None:
            with torch.no_grad():
                for m in maps:
                    m -= m.mean(dim=(1, 2, 3), keepdim=True)
                    m *= m.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
        done = step + 1
        if done % max(1, steps // 5) == 0 or done == steps:
            log(f"step {done}/{steps}: distance {float(d.detach().mean()):.4f}")
        if _record(record_every, done, steps):
            snapshot(done)
    out = latent.detach()
    out = out[:, 0] if space == "w" else out
    noise = [m.detach().cpu() for m in maps] if maps is not None else None
    return out.float().cpu(), noise, frames, frame_steps


def scores(reconstructions: torch.Tensor, targets: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image PSNR (dB) and SSIM [N] on the [0, 1] scale (:mod:`ganforge.metrics.paired`)."""
    pairs = list(zip(reconstructions.split(1), targets.split(1)))
    return (torch.tensor([paired.psnr(a, b) for a, b in pairs]),
            torch.tensor([paired.ssim(a, b) for a, b in pairs]))


def project(g: TrainedGAN, images: torch.Tensor, space: str | None = None,
            steps: int = DEFAULT_STEPS, c: int | str | torch.Tensor | None = None,
            seed: int = 0, distance: str = "auto", log: Log | None = None,
            record_every: int = 0, batch_size: int = 8) -> Projection:
    """Project float images [N, C, R, R] in [-1, 1] (the run's channels and resolution) into
    the run ``g``: latents of ``space`` (z, w or w+; default w for StyleGAN runs, z for the
    others) whose renderings match the images, found in ``steps`` steps (the module
    docstring has the method). ``c``: the class of conditional runs (an index or name, or one
    label per image). ``distance``: auto (LPIPS-VGG16 when its weights are found, else the
    fallback), lpips or pixel (the fallback). ``record_every`` > 0 keeps a frame every that
    many steps. Images are optimised ``batch_size`` at a time, each on its own."""
    log = log or (lambda _m: None)
    g = check_run(g)
    space = check_space(g, space)
    if steps < 1:
        raise GanforgeError(f"--steps {steps}: project with at least 1 step")
    if record_every < 0 or batch_size < 1:
        raise GanforgeError("record_every must be >= 0 and batch_size >= 1")
    images = _check_images(g, images)
    labels = class_labels(g, images.shape[0], c)
    dist, name = make_distance(g, distance, log)
    if space == "z":
        log(f"projecting {images.shape[0]} image(s) into z ({g.latent_dim} dims) in {steps} "
            f"steps; distance: {name}")
    else:
        log(f"projecting {images.shape[0]} image(s) into {space} ({g.G.num_ws} layers x "
            f"{g.G.w_dim}) in {steps} steps, per-image noise maps optimised with the "
            f"reconstruction rendered with the run's fixed noise; distance: {name}")
    w_start = w_stats(g, labels) if space != "z" else None
    lat, noise, frames, frame_steps = [], [], [], []
    for i in range(0, images.shape[0], batch_size):
        sl = slice(i, i + batch_size)
        ws = None if w_start is None else (
            w_start[0][sl] if w_start[0].shape[0] > 1 else w_start[0], w_start[1])
        li, ni, fi, frame_steps = _optimise(
            g, images[sl], space, labels[sl] if labels is not None else None, steps,
            seed + i, dist, log, record_every, ws)
        lat.append(li)
        noise.append(ni)
        frames.append(fi)
    latents = torch.cat(lat)
    recon = render(g, latents, space, labels)
    psnr, ssim = scores(recon, images)
    return Projection(
        latents=latents, space=space, reconstructions=recon, psnr=psnr, ssim=ssim,
        distance=name, steps=steps, labels=labels if space == "z" else None,
        noise=([torch.cat(maps) for maps in zip(*noise)] if space != "z" else None),
        frames=[torch.cat(f) for f in zip(*frames)], frame_steps=frame_steps)


project_images = project  # the name ``ganforge`` exports (``ganforge.project`` is this module)


# --- image files ---------------------------------------------------------------------------------


def load_targets(files: list[Path], resolution: int | str, channels: int
                 ) -> tuple[torch.Tensor, list[Path], list[str], list[str]]:
    """Read image files as projection targets: any Pillow mode converted to ``channels`` (RGB
    onto gray -> luma; gray onto RGB -> repeated), other sizes centre-cropped to the aspect
    ratio of ``resolution`` (a side, or ``"HxW"``) and resized (bicubic, antialiased) to it.
    Returns ``(images [N, C, H, W] in [-1, 1], files read, unreadable files named with why,
    notes for the log)``."""
    import numpy as np
    from PIL import Image, ImageOps

    from .config import image_size
    from .data.images import GRAY_MODES, describe_error, to_8bit

    h, w = image_size(resolution)
    arrays, read, failed = [], [], []
    resized = converted = 0
    for f in files:
        try:
            with Image.open(f) as img:
                img.load()
                img = ImageOps.exif_transpose(img)
                gray = img.mode in GRAY_MODES
                img = to_8bit(img, channels)
            converted += gray != (channels == 1)
            if img.size != (w, h):
                resized += 1
                img = ImageOps.fit(img, (w, h), Image.BICUBIC)
            arr = np.array(img, dtype=np.uint8)
        except Exception as e:  # noqa: BLE001 - unreadable / corrupt: skip and name it
            failed.append(f"{f.name} ({describe_error(e)})")
            continue
        arrays.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
        read.append(f)
    notes = []
    if resized:
        notes.append(f"resized {resized} image(s) to {h}x{w} (centre crop to "
                     f"{'a square' if h == w else f'{h}:{w}'}, bicubic with antialiasing)")
    if converted:
        notes.append(f"converted {converted} image(s) to {'gray' if channels == 1 else 'RGB'} "
                     f"(the run's {channels} channel{'s' if channels > 1 else ''})")
    if not arrays:
        return torch.empty(0, channels, h, w), read, failed, notes
    x = torch.from_numpy(np.stack(arrays)).float() / 127.5 - 1
    return x, read, failed, notes


__all__ = ["DEFAULT_STEPS", "Projection", "SPACES", "check_run", "check_space",
           "default_space", "lr_ramp", "load_targets", "make_distance", "noise_regularizer",
           "project", "project_images", "scores", "w_stats"]
