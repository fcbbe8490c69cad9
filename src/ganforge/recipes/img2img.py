"""Image-to-image recipes on the one trainer: Pix2Pix, CycleGAN and SRGAN.

Each builds its own nets (from :mod:`ganforge.nets.img2img`) and reads batches of pairs
(:mod:`ganforge.data.pairs`): ``{"source", "target"}`` for aligned pairs and super-resolution,
``{"a", "b"}`` for CycleGAN's unpaired domains. Like :class:`~ganforge.recipes.gan.GANRecipe`
they return losses and never call ``backward``.

* :class:`Pix2PixRecipe` (Isola et al. 2017): U-Net G, PatchGAN D judging (source, image)
  pairs, cGAN loss + ``l1_weight`` x L1 to the target, D's loss halved.
* :class:`CycleGANRecipe` (Zhu et al. 2017): ResNet generators G: A -> B and F: B -> A,
  PatchGAN D_A and D_B, least-squares loss, cycle loss (``cycle_weight``), identity loss
  (``identity_weight`` x ``cycle_weight``), a history pool of ``pool_size`` fakes for D.
* :class:`SRGANRecipe` (Ledig et al. 2017): SRResNet G, the SRGAN D; a warm-up of pixel MSE
  only (SRResNet: the first ``warmup`` share of the run's progress, or ``warmup_steps``
  steps), then content loss (VGG19 relu5_4 features, or pixel MSE when the weights are
  missing or ``content=pixel``) + ``adv_weight`` x adversarial loss. Low-resolution inputs
  are made on the fly from (random crops of) the high-resolution targets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..data.pairs import lowres
from ..losses import LOSSES
from .base import Phase, Recipe


def _to_channels(x: torch.Tensor, c: int) -> torch.Tensor:
    """Gray <-> colour for preview grids (repeat, or average the channels)."""
    if x.shape[1] == c:
        return x
    return x.expand(-1, c, -1, -1) if x.shape[1] == 1 else x.mean(1, keepdim=True)


def _adam(params, lr: float, t) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, betas=(t.beta1, t.beta2))


def _g_and_d(G: nn.Module, D: nn.Module, t) -> dict[str, torch.optim.Optimizer]:
    """One Adam for G (lr_g) and one for D (lr_d), the recipes' usual pair."""
    return {"D": _adam(D.parameters(), t.lr_d, t), "G": _adam(G.parameters(), t.lr_g, t)}


class Pix2PixRecipe(Recipe):
    img2img = True
    kind = "paired"  # batches {"source", "target"}
    # the keys read: TrainConfig beyond ganforge.options.COMMON_TRAIN, and ModelConfig
    OPTIONS = ("ema", "ema_end", "ema_warmup", "l1_weight", "crop")
    MODEL_OPTIONS = ("g_base", "d_base", "d_layers", "dropout", "unet_depth", "g_output", "norm")

    def __init__(self, cfg: Config):
        from ..nets.img2img import PatchDiscriminator, build_generators

        super().__init__(cfg)
        m = cfg.model
        self.G = build_generators(cfg)["G"]
        self.D = PatchDiscriminator(m.in_channels + m.channels, base=m.d_base,
                                    n_layers=m.d_layers, norm=m.norm)
        self.loss = LOSSES[cfg.train.loss]

    def nets(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return _g_and_d(self.G, self.D, self.cfg.train)

    def phases(self) -> list:
        return [Phase("D", opt="D", fn=self.d_step, trainable=("D", "G"), fresh_batch=True),
                Phase("G", opt="G", fn=self.g_step, trainable=("G",))]

    def translate(self, source: torch.Tensor) -> torch.Tensor:
        return self.G(source)

    def d_step(self, ctx: dict) -> dict[str, torch.Tensor]:
        src, tgt = ctx["batch"]["source"], ctx["batch"]["target"]
        fake = self.G(src)
        ctx["fake"] = fake
        real_logits = self.D(torch.cat([src, tgt], 1)).flatten()
        fake_logits = self.D(torch.cat([src, fake.detach()], 1)).flatten()
        loss = 0.5 * self.loss.d(real_logits, fake_logits)  # pix2pix halves D's objective
        return {"loss": loss, "D(x)": torch.sigmoid(real_logits.detach()).mean(),
                "D(G(z))": torch.sigmoid(fake_logits.detach()).mean()}

    def g_step(self, ctx: dict) -> dict[str, torch.Tensor]:
        src, tgt = ctx["batch"]["source"], ctx["batch"]["target"]
        fake = ctx.pop("fake", None)
        if fake is None:
            fake = self.G(src)
        real = self.D(torch.cat([src, tgt], 1)).flatten() if self.loss.needs_real else None
        adv = self.loss.g(self.D(torch.cat([src, fake], 1)).flatten(), real)
        l1 = (fake - tgt).abs().mean()
        return {"loss": adv + self.cfg.train.l1_weight * l1, "G_adv": adv.detach(),
                "L1": l1.detach()}

    @torch.no_grad()
    def preview(self, G: nn.Module, fixed: dict[str, torch.Tensor]) -> torch.Tensor:
        """Rows: 8 sources, their translations by ``G``, the targets."""
        src, tgt = fixed["source"], fixed["target"]
        out = G(src)
        c = tgt.shape[1]
        return torch.cat([_to_channels(src, c), out, tgt])


class ImagePool:
    """The history buffer of Shrivastava et al. 2017 as CycleGAN uses it: once full, each new
    fake is shown to D with probability 1/2, else a random older one it replaces."""

    def __init__(self, size: int):
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, fakes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.size == 0:
            return fakes
        out = []
        for img in fakes.detach():
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
                continue
            coin, idx = torch.rand(2, generator=gen, device=gen.device).tolist()
            if coin > 0.5:
                j = min(int(idx * self.size), self.size - 1)
                out.append(self.images[j].clone())
                self.images[j] = img.clone()
            else:
                out.append(img)
        return torch.stack(out)

    def state(self) -> torch.Tensor | None:
        return torch.stack(self.images).cpu() if self.images else None

    def load(self, t: torch.Tensor | None, device: torch.device) -> None:
        self.images = [x.to(device) for x in t] if t is not None else []


class CycleGANRecipe(Recipe):
    img2img = True
    kind = "unpaired"  # batches {"a", "b"}
    # the keys read: TrainConfig beyond ganforge.options.COMMON_TRAIN (no EMA: its two
    # generators train each other through the cycle), and ModelConfig
    OPTIONS = ("cycle_weight", "identity_weight", "pool_size")
    MODEL_OPTIONS = ("g_base", "d_base", "n_blocks", "d_layers", "norm")

    def __init__(self, cfg: Config):
        from ..nets.img2img import PatchDiscriminator, build_generators

        super().__init__(cfg)
        m = cfg.model
        ca, cb = m.in_channels, m.channels
        gens = build_generators(cfg)
        self.G, self.F = gens["G"], gens["F"]
        self.D_A = PatchDiscriminator(ca, base=m.d_base, n_layers=m.d_layers, norm=m.norm)
        self.D_B = PatchDiscriminator(cb, base=m.d_base, n_layers=m.d_layers, norm=m.norm)
        self.loss = LOSSES[cfg.train.loss]
        self.pool_a = ImagePool(cfg.train.pool_size)
        self.pool_b = ImagePool(cfg.train.pool_size)

    def nets(self) -> dict[str, nn.Module]:
        return {"G": self.G, "F": self.F, "D_A": self.D_A, "D_B": self.D_B}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        t = self.cfg.train
        return {"G": _adam([*self.G.parameters(), *self.F.parameters()], t.lr_g, t),
                "D": _adam([*self.D_A.parameters(), *self.D_B.parameters()], t.lr_d, t)}

    def phases(self) -> list:
        return [Phase("G", opt="G", fn=self.g_step, trainable=("G", "F"), fresh_batch=True),
                Phase("D", opt="D", fn=self.d_step, trainable=("D_A", "D_B"))]

    def translate(self, source: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        return self.G(source) if direction == "AtoB" else self.F(source)

    def g_step(self, ctx: dict) -> dict[str, torch.Tensor]:
        t = self.cfg.train
        a, b = ctx["batch"]["a"], ctx["batch"]["b"]
        fake_b, fake_a = self.G(a), self.F(b)
        ctx["fake_a"], ctx["fake_b"] = fake_a.detach(), fake_b.detach()
        real_b, real_a = ((self.D_B(b).flatten(), self.D_A(a).flatten()) if self.loss.needs_real
                          else (None, None))
        adv = (self.loss.g(self.D_B(fake_b).flatten(), real_b)
               + self.loss.g(self.D_A(fake_a).flatten(), real_a))
        cycle = (self.F(fake_b) - a).abs().mean() + (self.G(fake_a) - b).abs().mean()
        loss = adv + t.cycle_weight * cycle
        out = {"G_adv": adv.detach(), "cycle": cycle.detach()}
        if t.identity_weight > 0 and a.shape[1] == b.shape[1]:
            idt = (self.G(b) - b).abs().mean() + (self.F(a) - a).abs().mean()
            loss = loss + t.cycle_weight * t.identity_weight * idt
            out["identity"] = idt.detach()
        out["loss"] = loss
        return out

    def d_step(self, ctx: dict) -> dict[str, torch.Tensor]:
        a, b = ctx["batch"]["a"], ctx["batch"]["b"]
        gen = ctx["noise"]
        fake_b = self.pool_b.query(ctx.pop("fake_b"), gen)
        fake_a = self.pool_a.query(ctx.pop("fake_a"), gen)
        real_b, fb = self.D_B(b).flatten(), self.D_B(fake_b).flatten()
        real_a, fa = self.D_A(a).flatten(), self.D_A(fake_a).flatten()
        loss = 0.5 * (self.loss.d(real_b, fb) + self.loss.d(real_a, fa))
        return {"loss": loss, "D(x)": 0.5 * (real_a.detach().mean() + real_b.detach().mean()),
                "D(G(z))": 0.5 * (fa.detach().mean() + fb.detach().mean())}

    def state_dict(self) -> dict:
        return {"pool_a": self.pool_a.state(), "pool_b": self.pool_b.state()}

    def load_state_dict(self, st: dict, device: torch.device) -> None:
        self.pool_a.load(st.get("pool_a"), device)
        self.pool_b.load(st.get("pool_b"), device)

    @torch.no_grad()
    def preview(self, G: nn.Module, fixed: dict[str, torch.Tensor]) -> torch.Tensor:
        """Rows: A, G(A), F(G(A)) (the cycle), B, F(B)."""
        a, b = fixed["a"], fixed["b"]
        fake_b = G(a)
        c = b.shape[1]
        return torch.cat([_to_channels(a, c), fake_b, _to_channels(self.F(fake_b), c), b,
                          _to_channels(self.F(b), c)])


class SRGANRecipe(Recipe):
    img2img = True
    kind = "paired"  # batches {"source", "target"}; sources remade from target crops
    # the keys read: TrainConfig beyond ganforge.options.COMMON_TRAIN, and ModelConfig
    OPTIONS = ("ema", "ema_end", "ema_warmup", "adv_weight", "content", "pixel_loss",
               "warmup_steps", "warmup", "warmup_patience", "crop", "degrade")
    MODEL_OPTIONS = ("g_base", "d_base", "n_blocks", "norm", "sr_skip", "sr_upsample")

    def __init__(self, cfg: Config):
        from ..nets.img2img import SRGANDiscriminator, build_generators

        super().__init__(cfg)
        m = cfg.model
        self.scale = cfg.data.scale
        self.G = build_generators(cfg)["G"]
        self.D = SRGANDiscriminator(m.channels, base=m.d_base)
        self.loss = LOSSES[cfg.train.loss]
        self.warm_end: int | None = None  # step at which warmup_patience ended the warm-up
        self.stale = 0  # evaluations since the last best, during the warm-up
        self.vgg = None
        if cfg.train.content == "vgg":
            from ..errors import GanforgeError
            from ..nets.img2img import vgg_features

            try:
                self.vgg = vgg_features("relu5_4")
            except GanforgeError as e:
                self.notes.append(f"{e}; using the pixel ({cfg.train.pixel_loss.upper()}) "
                                  "content loss instead")

    def nets(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def to(self, device: torch.device) -> None:
        super().to(device)
        if self.vgg is not None:
            self.vgg.to(device)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return _g_and_d(self.G, self.D, self.cfg.train)

    def phases(self) -> list:
        warming = self.warming
        return [
            Phase("SRResNet", opt="G", fn=self.pixel_step, trainable=("G",), fresh_batch=True,
                  when=warming),
            Phase("D", opt="D", fn=self.d_step, trainable=("D", "G"), fresh_batch=True,
                  when=lambda step, progress: not warming(step, progress)),
            Phase("G", opt="G", fn=self.g_step, trainable=("G",),
                  when=lambda step, progress: not warming(step, progress)),
        ]

    def warming(self, step: int, progress: float) -> bool:
        """True during the SRResNet phase: ``warmup_steps`` steps, or a share of the run, or
        until held-out evaluations stop improving (``warmup_patience``: :meth:`evaluated`)."""
        t = self.cfg.train
        if self.warm_end is not None and step >= self.warm_end:
            return False
        return step < t.warmup_steps or progress < t.warmup

    def evaluated(self, step: int, improved: bool, progress: float) -> str | None:
        """Told of each held-out evaluation (after step ``step``): with ``warmup_patience``,
        ``warmup_patience`` evaluations in a row without a new best end the SRResNet phase
        (the best generator so far stays in ``checkpoints/best``). Returns a line to log."""
        patience = self.cfg.train.warmup_patience
        if not patience or not self.warming(step, progress):
            return None
        self.stale = 0 if improved else self.stale + 1
        if self.stale < patience:
            return None
        self.warm_end = step
        return (f"SRResNet phase ended at step {step}: held-out {self.cfg.train.eval_metric} "
                f"has not improved for {patience} evaluations (the best is kept in "
                "checkpoints/best); the GAN phase starts")

    def state_dict(self) -> dict:
        return {"warm_end": self.warm_end, "stale": self.stale}

    def load_state_dict(self, st: dict, device: torch.device) -> None:
        self.warm_end, self.stale = st.get("warm_end"), int(st.get("stale", 0))

    def lowres(self, hr: torch.Tensor, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """The low-resolution side of high-resolution ``hr`` (:func:`ganforge.data.pairs.lowres`
        with the run's ``degrade``)."""
        return lowres(hr, self.scale, self.cfg.train.degrade, generator)

    def translate(self, source: torch.Tensor) -> torch.Tensor:
        return self.G(source)

    def _pair(self, ctx: dict) -> tuple[torch.Tensor, torch.Tensor]:
        hr = ctx["batch"]["target"]
        crop = self.cfg.train.crop
        if crop and crop < hr.shape[-1]:
            gen = ctx["noise"]
            n, _, h, w = hr.shape
            ys = torch.randint(0, (h - crop) // self.scale + 1, (n,), generator=gen,
                               device=gen.device) * self.scale
            xs = torch.randint(0, (w - crop) // self.scale + 1, (n,), generator=gen,
                               device=gen.device) * self.scale
            hr = torch.stack([hr[i, :, y:y + crop, x:x + crop]
                              for i, (y, x) in enumerate(zip(ys.tolist(), xs.tolist()))])
        return self.lowres(hr, ctx["noise"]), hr

    def pixel(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """The pixel loss (``pixel_loss``: mse, or l1 as EDSR and most later SR nets)."""
        if self.cfg.train.pixel_loss == "l1":
            return F.l1_loss(sr, hr)
        return F.mse_loss(sr, hr)

    def content(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        if self.vgg is None:
            return self.pixel(sr, hr)
        return F.mse_loss(self.vgg(sr), self.vgg(hr).detach())

    def pixel_step(self, ctx: dict) -> dict[str, torch.Tensor]:
        lr, hr = self._pair(ctx)
        loss = self.pixel(self.G(lr), hr)
        return {"loss": loss, self.cfg.train.pixel_loss.upper(): loss.detach()}

    def d_step(self, ctx: dict) -> dict[str, torch.Tensor]:
        lr, hr = self._pair(ctx)
        sr = self.G(lr)
        ctx["sr"], ctx["hr"] = sr, hr
        real_logits, fake_logits = self.D(hr), self.D(sr.detach())
        return {"loss": self.loss.d(real_logits, fake_logits),
                "D(x)": torch.sigmoid(real_logits.detach()).mean(),
                "D(G(z))": torch.sigmoid(fake_logits.detach()).mean()}

    def g_step(self, ctx: dict) -> dict[str, torch.Tensor]:
        sr, hr = ctx.pop("sr"), ctx.pop("hr")
        content = self.content(sr, hr)
        adv = self.loss.g(self.D(sr), self.D(hr) if self.loss.needs_real else None)
        return {"loss": content + self.cfg.train.adv_weight * adv, "content": content.detach(),
                "G_adv": adv.detach()}

    @torch.no_grad()
    def preview(self, G: nn.Module, fixed: dict[str, torch.Tensor]) -> torch.Tensor:
        """Rows: bicubic-upsampled input, super-resolved output, the high-resolution target."""
        hr = fixed["target"]
        lr = self.lowres(hr)
        up = F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False)
        return torch.cat([up.clamp(-1, 1), G(lr).clamp(-1, 1), hr])
