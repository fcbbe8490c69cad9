"""The noise-to-sample GAN family on one scheme: ``n_critic`` D steps (each on a fresh batch),
then a G step on the fakes of the last D step (the seed's order), plus a lazy R1 phase.

Everything the zoo varies is an option of this recipe: the loss (minimax, non-saturating,
Wasserstein, hinge, least squares, relativistic pairing), WGAN weight clipping, WGAN-GP, R1 and
R2 (in the D step, or lazily in their own phase), LeCam regularisation, DiffAugment, adaptive
augmentation (ADA), PacGAN packing, conditioning (cGAN, AC-GAN, projection), and for the
high-fidelity generators StyleGAN2's style mixing and lazy path-length regularisation and
BigGAN's orthogonal regularisation. The nets decide their own architecture.
"""

from __future__ import annotations

import torch
import torch.distributed as tdist
import torch.nn.functional as F
from torch import nn

from ..ada import AdaController, ada_augment
from ..augment import diff_augment
from ..config import Config
from ..losses import LOSSES, PROBABILISTIC
from ..nets import VECTOR_ARCHS, build_nets
from ..regularizers import (
    clip_weights,
    grad_norm2,
    gradient_penalty,
    lecam_penalty,
    ortho_penalty,
    path_lengths,
    r1_penalty,
)
from ..schedules import interpolate
from .base import Phase, Recipe


def real_of(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The real samples of a batch: images [N, C, R, R] or vectors [N, D]."""
    return batch["image"] if "image" in batch else batch["vector"]


class GANRecipe(Recipe):
    """Noise -> samples: the GAN family (DCGAN, WGAN(-GP), SNGAN, StyleGAN2, BigGAN, R3GAN,
    the MLPs of vector data): ``G`` and ``D`` from :func:`ganforge.nets.build_nets` unless
    given."""

    health_checks = True
    # the TrainConfig keys read beyond ganforge.options.COMMON_TRAIN
    OPTIONS = ("ema", "ema_end", "ema_warmup", "optimizer", "n_critic", "clip", "gp", "r1", "r2",
               "r1_every", "gamma_end", "lecam", "diffaug", "aux_weight", "ada_target", "ada_p",
               "ada_interval", "ada_kimg", "ada_pipeline", "style_mixing", "pl_weight",
               "pl_every", "pl_decay", "pl_batch_shrink", "ortho", "topk", "topk_decay",
               "health_every", "eval_features")

    def __init__(self, cfg: Config, G: nn.Module | None = None, D: nn.Module | None = None):
        super().__init__(cfg)
        if G is None or D is None:
            G, D = build_nets(cfg.model)
        self.G, self.D = G, D
        self.vector = cfg.model.arch in VECTOR_ARCHS  # samples are vectors, not images
        self.loss = LOSSES[cfg.train.loss]
        self.probabilistic = cfg.train.loss in PROBABILISTIC
        self.num_classes = cfg.model.num_classes
        self.conditional = self.num_classes > 0
        self.aux = cfg.model.d_cond == "aux"
        t = cfg.train
        # ADA: p tuned from the sign of D on real images (off when ada_target = 0: p fixed)
        self.ada = (AdaController(t.ada_target, t.ada_interval, t.ada_kimg, t.ada_p)
                    if t.ada_target > 0 else None)
        # a style generator (StyleGAN2) splits into mapping -> ws -> synthesis
        self.style = hasattr(G, "mapping") and hasattr(G, "synthesis")
        self.pl_mean = torch.zeros(())  # running mean of the path lengths
        # R1 / R2 inside the D step (one D forward serves the loss and the penalty) or lazily
        self.gammas = t.r1 > 0 or t.r2 > 0
        self.penalty_in_d = self.gammas and t.r1_every == 1
        # LeCam anchors: moving averages of D's mean output on real and on fake samples
        self.lecam_anchors = torch.zeros(2)
        self._lecam_key: int | None = None  # the batch the anchors are being updated for

    def state_dict(self) -> dict:
        """What the recipe learns besides weights: ADA's p, the mean path length, the LeCam
        anchors."""
        return {"ada": self.ada.state_dict() if self.ada is not None else None,
                "pl_mean": float(self.pl_mean),
                "lecam": [float(v) for v in self.lecam_anchors]}

    def load_state_dict(self, state: dict, device: torch.device | None = None) -> None:
        if self.ada is not None and state.get("ada"):
            self.ada.load_state_dict(state["ada"])
        self.pl_mean = torch.tensor(float(state.get("pl_mean", 0.0)))
        self.lecam_anchors = torch.tensor(state.get("lecam", [0.0, 0.0]), dtype=torch.float32)

    def gamma(self, ctx: dict, which: str) -> float:
        """r1 or r2 at this point of the run (``gamma_end`` schedules both, cosine)."""
        t = self.cfg.train
        base = getattr(t, which)
        return interpolate(base, base * t.gamma_end, ctx.get("progress", 0.0))

    @property
    def ada_p(self) -> float:
        return self.ada.p if self.ada is not None else self.cfg.train.ada_p

    def nets(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def preview_inputs(self, batches, generator: torch.Generator, device: torch.device
                       ) -> dict[str, torch.Tensor | None]:
        """A fixed z (and labels) for the grids: 64 samples, one row of 8 per class for up to
        16 classes; 2,500 points for the scatter plots of vector data."""
        k = self.cfg.model.num_classes
        n = 2500 if self.vector else (8 * k if 0 < k <= 16 else 64)
        z = torch.randn(n, self.cfg.model.latent_dim, generator=generator).to(device)
        return {"z": z, "c": ((torch.arange(n) // 8) % k).to(device) if k else None}

    def preview(self, G: nn.Module, fixed: dict) -> torch.Tensor:
        return G(fixed["z"], fixed["c"])

    def standing_inputs(self, n: int, generator: torch.Generator, device: torch.device
                        ) -> tuple:
        k = self.num_classes
        z = torch.randn(n, self.cfg.model.latent_dim, generator=generator, device=device)
        c = torch.randint(0, k, (n,), generator=generator, device=device) if k else None
        return z, c

    def compile_probe(self, device: torch.device):
        if self.vector:
            return None  # compile is for the image nets for now
        m = self.cfg.model
        z = torch.randn(2, m.latent_dim, device=device)
        c = torch.zeros(2, dtype=torch.long, device=device) if m.num_classes else None
        return lambda: self.D(self.G(z, c), c).float().sum()

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        t = self.cfg.train
        if t.optimizer == "rmsprop":
            return {"D": torch.optim.RMSprop(self.D.parameters(), lr=t.lr_d),
                    "G": torch.optim.RMSprop(self.G.parameters(), lr=t.lr_g)}
        betas = (t.beta1, t.beta2)
        # the fused kernel updates every tensor in one pass (a third of a toy MLP step's time
        # went to the per-tensor Adam loop); falls back where a device lacks it
        fused = _fused_ok(next(self.G.parameters()).device)
        return {"D": torch.optim.Adam(self.D.parameters(), lr=t.lr_d, betas=betas, fused=fused),
                "G": torch.optim.Adam(self.G.parameters(), lr=t.lr_g, betas=betas, fused=fused)}

    def phases(self) -> list:
        t = self.cfg.train
        after = (lambda: clip_weights(self.D, t.clip)) if t.clip > 0 else None
        phases = [
            # G's parameters stay trainable in the D phase so the fakes keep their graph for G
            Phase("D", opt="D", fn=self.d_step, trainable=("D", "G"), repeat=t.n_critic,
                  fresh_batch=True, after=after),
            Phase("G", opt="G", fn=self.g_step, trainable=("G",)),
        ]
        if self.gammas and not self.penalty_in_d:
            phases.append(Phase("Dreg", opt="D", fn=self.r1_step, trainable=("D",),
                                interval=t.r1_every))
        if t.pl_weight > 0:
            phases.append(Phase("Greg", opt="G", fn=self.pl_step, trainable=("G",),
                                interval=t.pl_every))
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
        """What D sees of real and fake samples alike: DiffAugment, then ADA at its p."""
        t = self.cfg.train
        if t.diffaug:
            x = diff_augment(x, t.diffaug)
        p = self.ada_p
        return ada_augment(x, p, pipeline=t.ada_pipeline) if p > 0 else x

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
        if self.style:
            return self.G.synthesis(self.mapping(ctx, n, c)), c
        return self.G(ctx["sample_z"](n), c), c

    def mapping(self, ctx: dict, n: int, c: torch.Tensor | None) -> torch.Tensor:
        """A style generator's per-layer latents ws [n, L, w_dim]; with ``style_mixing`` = p,
        a batch takes, with probability p, a second latent's ws from a random layer on
        (Karras et al. 2019), so neighbouring styles do not learn to depend on each other."""
        ws = self.G.mapping(ctx["sample_z"](n), c)
        prob = self.cfg.train.style_mixing
        if prob > 0:
            # drawn from the step's noise generator: every rank draws the same cut
            u = float(torch.rand((), generator=ctx["noise"], device=ctx["device"]))
            cut = int(torch.randint(1, ws.shape[1], (), generator=ctx["noise"],
                                    device=ctx["device"]))
            z2 = ctx["sample_z"](n)  # drawn either way, so the noise stream does not fork
            if u < prob:
                ws = torch.cat([ws[:, :cut], self.G.mapping(z2, c)[:, cut:]], dim=1)
        return ws

    # -- phases -----------------------------------------------------------------------------

    def d_step(self, ctx: dict) -> dict[str, torch.Tensor]:
        batch = ctx["batch"]
        real = real_of(batch)
        real_c = batch.get("label") if self.conditional else None
        fake, fake_c = self.generate(ctx, real.shape[0])
        if ctx.get("micro_batches", 1) == 1:  # accumulating: G makes its own (frees memory)
            ctx["fake"], ctx["fake_c"] = fake, fake_c  # reused by the G step, as in the seed
        real_in, fake_in = self.augment(real), self.augment(fake.detach())
        t = self.cfg.train
        r1 = self.gamma(ctx, "r1") if self.penalty_in_d else 0.0
        r2 = self.gamma(ctx, "r2") if self.penalty_in_d else 0.0
        if r1 > 0:  # the penalty's gradient is taken at D's input, augmented as D sees it
            real_in = real_in.detach().requires_grad_(True)
        if r2 > 0:
            fake_in = fake_in.detach().requires_grad_(True)
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
        if r1 > 0:
            pen = grad_norm2(real_logits, real_in).mean()
            out["r1"] = pen.detach()
            loss = loss + r1 / 2 * pen
        if r2 > 0:
            pen = grad_norm2(fake_logits, fake_in).mean()
            out["r2"] = pen.detach()
            loss = loss + r2 / 2 * pen
        if t.lecam > 0:
            reg = self.lecam(ctx, real_logits.float(), fake_logits.float())
            out["lecam"] = reg.detach()
            loss = loss + t.lecam * reg
        if self.cfg.train.gp > 0:
            gp = gradient_penalty(lambda x: self.d(x, real_c), real_in, fake_in)
            out["gp"] = gp.detach()
            loss = loss + self.cfg.train.gp * gp
        if self.ada is not None:
            self.ada.accumulate(real_logits.detach())
            self.ada.step(real.shape[0] * _world(), reduce=_all_reduce_sum)
            out["ada_rt"] = torch.tensor(self.ada.rt)
        if self.ada is not None or self.cfg.train.ada_p > 0:
            out["ada_p"] = torch.tensor(self.ada_p)
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
        real_logits = None
        if self.loss.needs_real:  # the relativistic loss pairs each fake with a real
            batch = ctx["batch"]
            real_c = batch.get("label") if self.conditional else None
            real_logits = self.d(self.augment(real_of(batch)), real_c)
        if self.aux:
            logits, cls = self.d(self.augment(fake), c, with_aux=True)
            keep = self.top_k(ctx, logits)
            ce = F.cross_entropy(cls[keep], c[keep])
            out["G_cls"] = ce.detach()
            out["loss"] = (self.loss.g(logits[keep], _pick(real_logits, keep))
                           + self.cfg.train.aux_weight * ce)
        else:
            logits = self.d(self.augment(fake), c)
            keep = self.top_k(ctx, logits)
            out["loss"] = self.loss.g(logits[keep], _pick(real_logits, keep))
        t = self.cfg.train
        if t.ortho > 0:
            ortho = ortho_penalty(self.G)
            out["ortho"] = ortho.detach()
            out["loss"] = out["loss"] + t.ortho * ortho
        return out

    def pl_step(self, ctx: dict) -> dict[str, torch.Tensor]:
        """Lazy path-length regularisation (StyleGAN2): ``pl_weight * (|J_w^T y| - a)^2`` with
        ``a`` the running mean length, on ``batch / pl_batch_shrink`` fakes, every
        ``pl_every`` steps, scaled by ``pl_every``."""
        t = self.cfg.train
        n = max(1, real_of(ctx["batch"]).shape[0] // t.pl_batch_shrink)
        ws = self.mapping(ctx, n, self.sample_labels(ctx, n))
        lengths = path_lengths(self.G.synthesis(ws), ws)
        mean = _all_reduce_sum(lengths.mean().detach().reshape(1)) / _world()
        self.pl_mean = self.pl_mean.to(lengths.device).lerp(mean[0], t.pl_decay)
        penalty = (lengths - self.pl_mean).square().mean()
        return {"loss": penalty * t.pl_weight * t.pl_every, "pl_len": mean[0]}

    def lecam(self, ctx: dict, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """LeCam penalty against the anchors as they stood before this batch; the anchors then
        move towards the batch's mean outputs (decay 0.99, as in the paper; the first batch
        sets them). Micro-batches of one batch share the update, as if the batch came whole."""
        key = ctx.get("batch_index", ctx["step"])
        if self._lecam_key != key:  # a new batch: keep the anchors it is judged against
            self._lecam_key = key
            self._lecam_before = self.lecam_anchors.to(real.device)
            self._lecam_sum, self._lecam_n = torch.zeros(2, device=real.device), 0
        sums = torch.stack([real.detach().sum(), fake.detach().sum()])
        self._lecam_sum = self._lecam_sum + _all_reduce_sum(sums)
        self._lecam_n += real.shape[0] * _world()
        means = self._lecam_sum / self._lecam_n
        before = self._lecam_before
        fresh = not before.any() and ctx["step"] == 0
        self.lecam_anchors = means if fresh else before.lerp(means, 0.01)
        return lecam_penalty(real, fake, before if not fresh else means)

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
        """Lazy R1 / R2: gamma / 2 * E||grad D(x)||^2 on real data (R1, Mescheder et al. 2018)
        and on generated data (R2), every r1_every steps, scaled by r1_every."""
        t = self.cfg.train
        batch = ctx["batch"]
        c = batch.get("label") if self.conditional else None
        out: dict[str, torch.Tensor] = {}
        loss = torch.zeros((), device=ctx["device"])
        r1, r2 = self.gamma(ctx, "r1"), self.gamma(ctx, "r2")
        if r1 > 0:
            penalty = r1_penalty(lambda x: self.d(x, c), self.augment(real_of(batch)))
            out["r1"] = penalty.detach()
            loss = loss + penalty * (r1 / 2) * t.r1_every
        if r2 > 0:
            with torch.no_grad():
                fake, fc = self.generate(ctx, real_of(batch).shape[0])
            penalty = r1_penalty(lambda x: self.d(x, fc), self.augment(fake))
            out["r2"] = penalty.detach()
            loss = loss + penalty * (r2 / 2) * t.r1_every
        out["loss"] = loss
        return out


def _pick(x: torch.Tensor | None, keep: torch.Tensor | slice) -> torch.Tensor | None:
    return None if x is None else x[keep]


def _world() -> int:
    return tdist.get_world_size() if tdist.is_available() and tdist.is_initialized() else 1


def _all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over every process of a multi-process run (``x`` itself otherwise)."""
    if _world() > 1:
        x = x.clone()
        tdist.all_reduce(x)
    return x


def _fused_ok(device: torch.device) -> bool | None:
    """Whether Adam's fused kernel serves parameters on ``device`` (CPU and CUDA do)."""
    return True if device.type in ("cpu", "cuda") else None
