"""Metrics during training (``eval_every``): score the sampling generator every N steps on a
fixed set of latent codes, log the numbers, and keep the best checkpoint by one metric.

Image runs use the feature metrics of :mod:`ganforge.metrics.evaluate` on ``eval_features``
(``auto``: Inception when its weights are at hand, the digits classifier on digits); vector
runs use the mode metrics (ring8/grid25) and precision/recall/density/coverage on the points.
"""

from __future__ import annotations

import torch

from ..config import Config
from ..errors import GanforgeError
from ..metrics.evaluate import HIGHER_IS_BETTER
from ..utils import to_uint8


class PeriodicEval:
    def __init__(self, cfg: Config, data, device: torch.device, log=None):
        from ..metrics.evaluate import parse_metrics

        t = cfg.train
        self.cfg = cfg
        self.metric = t.eval_metric
        self.higher_better = HIGHER_IS_BETTER[self.metric]
        self.n = t.eval_n
        self.vector = hasattr(data, "dim")
        self.device = device
        gen = torch.Generator().manual_seed(t.seed + 3)
        k = cfg.model.num_classes
        self.z = torch.randn(self.n, cfg.model.latent_dim, generator=gen)
        self.c = (torch.arange(self.n) % k) if k else None
        if self.vector:
            self.metrics = ("pr", "dc")
            self.modes, self.mode_std = data.modes, data.mode_std
            sub = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
            self.real = data.x[sub[:self.n]].float()
            self.name = "raw coordinates"
        else:
            from ..metrics.evaluate import real_features
            from ..metrics.features import feature_space

            self.metrics = parse_metrics("fid,kid,pr,dc,classes,is")
            self.space = feature_space(t.eval_features, cfg.data.source, None, str(device),
                                       log=log)
            self.real, self.real_probs = real_features(self.space, data.images, self.n,
                                                       data.labels, log=log)
            same = (self.space.class_names is not None
                    and list(self.space.class_names) == list(data.class_names))
            self.hist = (torch.bincount(data.labels.long(), minlength=data.num_classes).double()
                         if same and data.labels is not None else None)
            self.same_classes = same
            self.name = self.space.name
        self.best: dict | None = None

    @torch.no_grad()
    def __call__(self, G: torch.nn.Module) -> dict[str, float]:
        from ..metrics.evaluate import score_features

        was = G.training
        G.eval()
        outs = []
        try:
            for i in range(0, self.n, 500):
                c = self.c[i:i + 500].to(self.device) if self.c is not None else None
                outs.append(G(self.z[i:i + 500].to(self.device), c).float().cpu())
        finally:
            G.train(was)
        fake = torch.cat(outs)
        if self.vector:
            from ..metrics.modes import mode_metrics

            m = mode_metrics(fake, self.modes, self.mode_std) if self.modes is not None else {}
            m.update(score_features(self.real, fake, self.metrics, bootstrap=False))
        else:
            ff, fp = self.space(to_uint8(fake))
            m = score_features(self.real, ff, self.metrics, self.real_probs, fp, self.hist,
                               self.c if self.same_classes else None, bootstrap=False)
        if self.metric not in m:
            raise GanforgeError(f"eval_metric={self.metric} is not computed for this run "
                                f"(got {', '.join(sorted(m))}): pick one of those")
        return m

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best["value"] if self.higher_better else value < self.best["value"]


@torch.no_grad()
def patch_sr_metrics(G, lowres, data, device: torch.device, n: int | None = None,
                     baseline: bool = False, tile: int = 128) -> dict[str, float]:
    """Super-resolution of whole held-out images at native size (the training images when
    none are held out; at most ``n``): each image cut to a multiple of the scale, made small
    by ``lowres``, upscaled by ``G`` in tiles (bounded memory), outputs rounded to 8 bits.
    Means over the images of L1 / PSNR / SSIM (RGB) and ``psnr_y`` / ``ssim_y`` (the SR
    papers' protocol: luma, ``scale`` pixels cut from each border); with ``baseline``, the
    same for bicubic upsampling (``..._bicubic``)."""
    import torch.nn.functional as F

    from ..metrics.paired import paired_metrics, sr_metrics
    from ..nets.img2img import tiled_upscale

    s = data.scale
    imgs = (data.test_images or data.images)[:n]
    sums: dict[str, float] = {}
    for i, img in enumerate(imgs):
        h, w = img.shape[-2:]
        hr = img[None, :, :h - h % s, :w - w % s].float().div(127.5).sub(1.0)
        lr = lowres(hr.to(device), torch.Generator().manual_seed(i))  # degrade: repeatable
        outs = {"": tiled_upscale(G, lr, s, tile)}
        if baseline:
            outs["_bicubic"] = F.interpolate(lr, scale_factor=s, mode="bicubic",
                                             align_corners=False).float().cpu()
        for suffix, out in outs.items():
            q = out.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
            m = paired_metrics(q, img[None, :, :hr.shape[-2], :hr.shape[-1]])
            m.update(sr_metrics(q, img[None, :, :hr.shape[-2], :hr.shape[-1]], shave=s))
            for k, v in m.items():
                sums[k + suffix] = sums.get(k + suffix, 0.0) + v
    return {k: v / len(imgs) for k, v in sums.items()}


@torch.no_grad()
def patch_translation_metrics(G, data, device: torch.device, n: int | None = None,
                              baseline: bool = False) -> dict[str, float]:
    """gray2color / edges2image of whole held-out images at native size (the training images
    when none are held out; at most ``n``), translated in windows of the training crop
    (:func:`~ganforge.nets.img2img.tiled_translate`: what the net saw in training, bounded
    memory), outputs rounded to 8 bits. Means over the images of L1 / PSNR / SSIM; with
    ``baseline``, the same for the input itself (the gray copy; the edge map)
    (``..._copy_input``)."""
    from ..metrics.paired import paired_metrics
    from ..nets.img2img import padded_call, tiled_translate

    held = bool(data.test_images)
    imgs = (data.test_images if held else data.images)[:n]
    srcs = (data.test_sources if held else data.sources)[:n]
    sums: dict[str, float] = {}
    for img, src in zip(imgs, srcs):
        x = src[None].float().div(127.5).sub(1.0).to(device)
        outs = {"": tiled_translate(lambda t: padded_call(G, t), x, data.crop)}
        if baseline:
            outs["_copy_input"] = x.expand(-1, img.shape[0], -1, -1).float().cpu()
        for suffix, out in outs.items():
            q = out[..., :img.shape[-2], :img.shape[-1]].clamp(-1, 1).add(1).mul(127.5)
            m = paired_metrics(q.round().to(torch.uint8), img[None])
            for k, v in m.items():
                sums[k + suffix] = sums.get(k + suffix, 0.0) + v
    return {k: v / len(imgs) for k, v in sums.items()}


@torch.no_grad()
def heldout_metrics(recipe, data, device: torch.device, n: int | None = None,
                    batch_size: int = 64, baseline: bool = False,
                    G: torch.nn.Module | None = None) -> dict[str, float]:
    """Image-to-image metrics on the held-out examples (the training ones when none are held
    out): L1 / PSNR / SSIM of the outputs against the targets for aligned pairs and
    super-resolution (whole images at native size for patch-trained SR:
    :func:`patch_sr_metrics`), and the cycle reconstruction error (mean L1 on [0, 1] over both
    directions) for two domains. With ``baseline``, the same metrics of the naive answer:
    the input itself (channel-matched) for translation, bicubic upsampling for SR. ``G``: the
    generator to score (e.g. its EMA; the recipe's own by default; not for two domains)."""
    from .batches import is_patches

    nets = list(recipe.nets().values()) + ([G] if G is not None else [])
    was = [m.training for m in nets]
    for m in nets:
        m.eval()
    G = G if G is not None else recipe.G
    try:
        if is_patches(data):
            if data.task != "lowres2highres":
                return patch_translation_metrics(G, data, device, n, baseline)
            return patch_sr_metrics(G, recipe.lowres, data, device, n, baseline)
        if hasattr(data, "a"):
            return _cycle_metrics(recipe, data, device, n, batch_size)
        return _paired_metrics(recipe, G, data, device, n, batch_size, baseline)
    finally:
        for m, w in zip(nets, was):
            m.train(w)


def _cycle_metrics(recipe, data, device: torch.device, n: int | None, batch_size: int
                   ) -> dict[str, float]:
    """Mean L1 on [0, 1] of A -> B -> A and B -> A -> B on the held-out images."""
    from ..metrics.paired import l1

    ta = data.test_a if len(data.test_a) else data.a
    tb = data.test_b if len(data.test_b) else data.b
    ta, tb = ta[:n], tb[:n]
    errs = []
    for imgs, fwd, back in ((ta, recipe.G, recipe.F), (tb, recipe.F, recipe.G)):
        rec = []
        for i in range(0, len(imgs), batch_size):
            x = imgs[i:i + batch_size].to(device).float() / 127.5 - 1
            rec.append(back(fwd(x)).float().cpu())
        errs.append(l1(torch.cat(rec), imgs.float() / 127.5 - 1))
    return {"cycle": sum(errs) / 2, "cycle_a": errs[0], "cycle_b": errs[1]}


def _paired_metrics(recipe, G, data, device: torch.device, n: int | None, batch_size: int,
                    baseline: bool) -> dict[str, float]:
    """L1 / PSNR / SSIM of ``G``'s outputs against the held-out targets (and the SR
    protocol's luma figures), and with ``baseline`` those of the naive answer."""
    import torch.nn.functional as F

    from ..metrics.paired import paired_metrics, sr_metrics

    src = data.test_source if len(data.test_source) else data.source
    tgt = data.test_target if len(data.test_target) else data.target
    src, tgt = src[:n], tgt[:n]
    sr = getattr(recipe, "scale", 1) > 1  # super-resolution: the sources are made here
    outs, base = [], []
    for i in range(0, len(tgt), batch_size):
        t = tgt[i:i + batch_size].to(device).float() / 127.5 - 1
        if sr:  # a fixed draw per batch: degrade=realesrgan scores repeat
            s = recipe.lowres(t, torch.Generator().manual_seed(i))
        else:
            s = src[i:i + batch_size].to(device).float() / 127.5 - 1
        outs.append(G(s).float().clamp(-1, 1).cpu())
        if baseline:
            if sr:
                b = F.interpolate(s, size=t.shape[-2:], mode="bicubic", align_corners=False)
            else:
                b = s if s.shape[1] == t.shape[1] else (
                    s.expand(-1, t.shape[1], -1, -1) if s.shape[1] == 1
                    else s.mean(1, keepdim=True))
            base.append(b.float().clamp(-1, 1).cpu())
    target = tgt.float() / 127.5 - 1
    scale = getattr(recipe, "scale", 1)
    y_ok = sr and tgt.shape[-1] - 2 * scale >= 11  # the SR protocol fits these images

    def scores(x: torch.Tensor) -> dict[str, float]:
        m = paired_metrics(x, target)
        if y_ok:
            m.update(sr_metrics(x, tgt, shave=scale))
        return m

    out = scores(torch.cat(outs))
    if baseline:
        name = "bicubic" if sr else "copy_input"
        out.update({f"{k}_{name}": v for k, v in scores(torch.cat(base)).items()})
    return out


class PairedEval:
    """``eval_every`` for image-to-image runs: held-out paired metrics, best checkpoint."""

    def __init__(self, cfg: Config, recipe, data, device: torch.device):
        self.recipe, self.data, self.device = recipe, data, device
        self.n = cfg.train.eval_n
        self.unpaired = hasattr(data, "a")
        metric = cfg.train.eval_metric  # one the recipe computes: options.check_eval_metric
        self.metric = metric
        self.higher_better = HIGHER_IS_BETTER[metric]
        self.best: dict | None = None

    def __call__(self, G) -> dict[str, float]:
        return heldout_metrics(self.recipe, self.data, self.device, self.n,
                               G=None if self.unpaired else G)

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best["value"] if self.higher_better else value < self.best["value"]


def make_evaluator(cfg: Config, recipe, data, device: torch.device, log=None):
    """The periodic evaluation of a run (``eval_every``): held-out paired metrics for the
    image-to-image recipes, distribution metrics of samples for the others."""
    if recipe.img2img:
        return PairedEval(cfg, recipe, data, device)
    return PeriodicEval(cfg, data, device, log=log)
