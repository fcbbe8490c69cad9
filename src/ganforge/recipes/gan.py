"""The seed's alternating scheme: a D step on real and detached fakes, then a G step on the same
fakes. Serves DCGAN (and, with other nets and losses, the rest of the noise-to-image family)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import Config
from ..losses import LOSSES


class GANRecipe:
    def __init__(self, cfg: Config, G: nn.Module, D: nn.Module):
        self.cfg = cfg
        self.G, self.D = G, D
        self.loss = LOSSES[cfg.train.loss]

    def nets(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        t = self.cfg.train
        betas = (t.beta1, t.beta2)
        return {
            "D": torch.optim.Adam(self.D.parameters(), lr=t.lr_d, betas=betas),
            "G": torch.optim.Adam(self.G.parameters(), lr=t.lr_g, betas=betas),
        }

    def phases(self) -> list:
        from . import Phase

        return [
            Phase("D", opt="D", fn=self.d_step, trainable=("D", "G")),  # G: keep fake's graph
            Phase("G", opt="G", fn=self.g_step, trainable=("G",)),
        ]

    def d_step(self, ctx: dict) -> dict[str, torch.Tensor]:
        real = ctx["batch"]["image"]
        z = ctx["sample_z"](real.shape[0])
        fake = self.G(z)
        ctx["fake"] = fake  # reused by the G step, as in the seed
        real_logits = self.D(real)
        fake_logits = self.D(fake.detach())
        return {
            "loss": self.loss.d(real_logits, fake_logits),
            "D(x)": torch.sigmoid(real_logits.detach()).mean(),
            "D(G(z))": torch.sigmoid(fake_logits.detach()).mean(),
        }

    def g_step(self, ctx: dict) -> dict[str, torch.Tensor]:
        fake = ctx.get("fake")
        if fake is None:
            fake = self.G(ctx["sample_z"](ctx["batch"]["image"].shape[0]))
        return {"loss": self.loss.g(self.D(fake))}
