"""The noise-to-sample GAN family on one scheme: ``n_critic`` D steps (each on a fresh batch),
then a G step on the fakes of the last D step (the seed's order), plus a lazy R1 phase.

Everything the zoo varies is an option of this recipe: the loss (minimax, non-saturating,
Wasserstein, hinge, least squares), WGAN weight clipping, WGAN-GP, R1, DiffAugment, PacGAN
packing and conditioning (cGAN, AC-GAN, projection). The nets decide their own architecture.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..augment import diff_augment
from ..config import Config
from ..losses import LOSSES, PROBABILISTIC
from ..regularizers import clip_weights, gradient_penalty, r1_penalty


def real_of(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The real samples of a batch: images [N, C, R, R] or vectors [N, D]."""
    return batch["image"] if "image" in batch else batch["vector"]


class GANRecipe:
    def __init__(self, cfg: Config, G: nn.Module, D: nn.Module):
        self.cfg = cfg
        self.G, self.D = G, D
        self.loss = LOSSES[cfg.train.loss]
        self.probabilistic = cfg.train.loss in PROBABILISTIC
        self.num_classes = cfg.model.num_classes
        self.conditional = self.num_classes > 0
        self.aux = cfg.model.d_cond == "aux"

    def nets(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        t = self.cfg.train
        if t.optimizer == "rmsprop":
            return {"D": torch.optim.RMSprop(self.D.parameters(), lr=t.lr_d),
                    "G": torch.optim.RMSprop(self.G.parameters(), lr=t.lr_g)}
        betas = (t.beta1, t.beta2)
        return {"D": torch.optim.Adam(self.D.parameters(), lr=t.lr_d, betas=betas),
                "G": torch.optim.Adam(self.G.parameters(), lr=t.lr_g, betas=betas)}

    def phases(self) -> list:
        from . import Phase

        t = self.cfg.train
        after = (lambda: clip_weights(self.D, t.clip)) if t.clip > 0 else None
        phases = [
            # G's parameters stay trainable in the D phase so the fakes keep their graph for G
            Phase("D", opt="D", fn=self.d_step, trainable=("D", "G"), repeat=t.n_critic,
                  fresh_batch=True, after=after),
            Phase("G", opt="G", fn=self.g_step, trainable=("G",)),
        ]
        if t.r1 > 0:
            phases.append(Phase("Dreg", opt="D", fn=self.r1_step, trainable=("D",),
                                interval=t.r1_every))
        return phases

    # -- pieces -----------------------------------------------------------------------------

    def sample_labels(self, ctx: dict, n: int) -> torch.Tensor | None:
        if not self.conditional:
            return None
        if "randint" in ctx:  # the trainer's: this rank's slice of the step's labels
            return ctx["randint"](self.num_classes, n)
        return torch.randint(0, self.num_classes, (n,), generator=ctx["noise"],
                             device=ctx["device"])

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        policy = self.cfg.train.diffaug
        return diff_augment(x, policy) if policy else x

    def d(self, x: torch.Tensor, c: torch.Tensor | None, with_aux: bool = False):
        """D on (augmented) samples; PacGAN packs ``pack`` samples into one D input."""
        m = self.cfg.model.pack
        if m > 1:
            from ..nets.layers import pack

            x = pack(x, m)
        if with_aux:
            return self.D(x, c, with_aux=True)
        return self.D(x, c)

    def generate(self, ctx: dict, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        c = self.sample_labels(ctx, n)
        return self.G(ctx["sample_z"](n), c), c

    # -- phases -----------------------------------------------------------------------------

    def d_step(self, ctx: dict) -> dict[str, torch.Tensor]:
        batch = ctx["batch"]
        real = real_of(batch)
        real_c = batch.get("label") if self.conditional else None
        fake, fake_c = self.generate(ctx, real.shape[0])
        ctx["fake"], ctx["fake_c"] = fake, fake_c  # reused by the G step, as in the seed
        real_in, fake_in = self.augment(real), self.augment(fake.detach())
        out: dict[str, torch.Tensor] = {}
        if self.aux:
            real_logits, real_cls = self.d(real_in, real_c, with_aux=True)
            fake_logits = self.d(fake_in, fake_c)
            # D's classifier learns from real images only: trained on fakes too (the paper's
            # form) it can settle on a permuted class map that G then follows
            cls = F.cross_entropy(real_cls, real_c)
            out["D_cls"] = cls.detach()
            loss = self.loss.d(real_logits, fake_logits) + self.cfg.train.aux_weight * cls
            out["acc_real"] = (real_cls.argmax(1) == real_c).float().mean()
        else:
            real_logits = self.d(real_in, real_c)
            fake_logits = self.d(fake_in, fake_c)
            loss = self.loss.d(real_logits, fake_logits)
        if self.cfg.train.gp > 0:
            gp = gradient_penalty(lambda x: self.d(x, real_c), real_in, fake_in)
            out["gp"] = gp.detach()
            loss = loss + self.cfg.train.gp * gp
        score = torch.sigmoid if self.probabilistic else (lambda v: v)
        out["D(x)"] = score(real_logits.detach()).mean()
        out["D(G(z))"] = score(fake_logits.detach()).mean()
        out["loss"] = loss
        return out

    def g_step(self, ctx: dict) -> dict[str, torch.Tensor]:
        fake, c = ctx.pop("fake", None), ctx.pop("fake_c", None)
        if fake is None:
            fake, c = self.generate(ctx, real_of(ctx["batch"]).shape[0])
        out: dict[str, torch.Tensor] = {}
        if self.aux:
            logits, cls = self.d(self.augment(fake), c, with_aux=True)
            keep = self.top_k(ctx, logits)
            ce = F.cross_entropy(cls[keep], c[keep])
            out["G_cls"] = ce.detach()
            out["loss"] = self.loss.g(logits[keep]) + self.cfg.train.aux_weight * ce
        else:
            logits = self.d(self.augment(fake), c)
            out["loss"] = self.loss.g(logits[self.top_k(ctx, logits)])
        return out

    def top_k(self, ctx: dict, logits: torch.Tensor) -> torch.Tensor | slice:
        """Top-k G updates (Sinha et al. 2020): G learns only from the fakes D rates most
        realistic; the kept fraction decays as ``topk_decay ** epoch`` down to ``topk``. With
        PacGAN packing the unit is a packed group, like D's logits."""
        t = self.cfg.train
        if t.topk <= 0:
            return slice(None)
        frac = max(t.topk, t.topk_decay ** ctx.get("epoch", 0.0))
        k = max(1, round(frac * logits.shape[0]))
        if k >= logits.shape[0]:
            return slice(None)
        return logits.detach().topk(k).indices

    def r1_step(self, ctx: dict) -> dict[str, torch.Tensor]:
        """Lazy R1: gamma / 2 * E||grad D(x)||^2, every r1_every steps, scaled by r1_every."""
        t = self.cfg.train
        batch = ctx["batch"]
        c = batch.get("label") if self.conditional else None
        penalty = r1_penalty(lambda x: self.d(x, c), self.augment(real_of(batch)))
        return {"loss": penalty * (t.r1 / 2) * t.r1_every, "r1": penalty.detach()}
