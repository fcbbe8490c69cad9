"""Training health: sample diversity (mode collapse), D overpowering G, and for vector data
with known modes the mode-coverage metrics, computed every ``health_every`` steps."""

from __future__ import annotations

import torch

from ..config import Config
from ..losses import PROBABILISTIC


def diversity(x: torch.Tensor) -> float:
    """Mean pairwise L2 distance between samples (flattened)."""
    x = x.flatten(1).float()
    d = torch.cdist(x, x)
    n = x.shape[0]
    return float(d.sum() / max(n * (n - 1), 1))


class HealthMonitor:
    """Warn once per episode: when samples collapse (their diversity falls under
    ``collapse_ratio`` of the real data's) and when D overpowers G for ``patience`` checks in a
    row (D(x) > 0.99 and D(G(z)) < 0.01, for probability-valued D)."""

    def __init__(self, data, cfg: Config, device: torch.device, collapse_ratio: float = 0.25,
                 patience: int = 3):
        self.cfg = cfg
        self.collapse_ratio = collapse_ratio
        self.patience = patience
        self.vector = hasattr(data, "dim")
        g = torch.Generator().manual_seed(0)
        n = min(len(data), 256 if not self.vector else 2500)
        idx = torch.randperm(len(data), generator=g)[:n]
        if self.vector:
            real = data.x[idx].float()
        else:
            real = data.images[idx].float() / 127.5 - 1
        self.real_diversity = diversity(real[:256]) or 1.0
        self.modes = getattr(data, "modes", None)
        self.mode_std = getattr(data, "mode_std", None)
        self.overpowered = 0
        self.collapsed = False

    @torch.no_grad()
    def metrics(self, trainer) -> dict[str, float]:
        """Metrics of the fixed-z samples of ``trainer`` (diversity; mode metrics)."""
        fake = trainer.fixed_samples().float().cpu()
        out = {"diversity": diversity(fake[:256]) / self.real_diversity}
        if self.modes is not None:
            from ..metrics.modes import mode_metrics

            m = mode_metrics(fake[:2500], self.modes, self.mode_std)
            out.update({"modes": m["modes"], "high_quality": m["high_quality"],
                        "reverse_kl": m["reverse_kl"]})
        return out

    def check(self, step: int, stats: dict[str, float]) -> list[str]:
        warnings = []
        div = stats.get("diversity")
        if div is not None:
            if div < self.collapse_ratio and not self.collapsed:
                warnings.append(f"samples are collapsing: their diversity is {div:.0%} of the "
                                "real data's (mode collapse); try diffaug, pack=2..4, r1=... or "
                                "a lower lr_g")
            self.collapsed = div < self.collapse_ratio
        if self.cfg.train.loss in PROBABILISTIC and "D(x)" in stats and "D(G(z))" in stats:
            if stats["D(x)"] > 0.99 and stats["D(G(z))"] < 0.01:
                self.overpowered += 1
                if self.overpowered == self.patience:
                    warnings.append("D overpowers G (D(x) > 0.99, D(G(z)) < 0.01 for "
                                    f"{self.patience} checks): G gets no useful gradient; try "
                                    "lr_d lower than lr_g, spectral_norm=d, r1 or diffaug")
            else:
                self.overpowered = 0
        return warnings
