"""Training health: sample diversity (mode collapse), D overpowering G, and for vector data
with known modes the mode-coverage metrics, computed every ``health_every`` steps.

What it watches: the mean pairwise distance of the fixed-z samples, as a share of the real
data's ("diversity"); a share under ``collapse_ratio`` (25%) is a collapse. It says nothing
during warm-up (the first ``warmup_steps`` steps and the first ``warmup_progress`` of the run),
when every generator still makes near-identical samples. It warns each time the samples
collapse anew (with the step), reminds at the end of a run that is still collapsed, and its
advice names only what the run does not use yet.
"""

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


def collapse_advice(cfg: Config, vector: bool) -> str:
    """What could help a collapsing run, leaving out what its config already does."""
    t, m = cfg.train, cfg.model
    tips = []
    if vector:
        if cfg.preset != "toy":
            tips.append("--preset toy (R1, EMA, lr decay)")
    else:
        if cfg.preset not in ("r3gan-small", "r3gan"):
            tips.append("--preset r3gan-small (relativistic loss + R1/R2, the most stable)")
        if not t.diffaug and t.ada_target == 0 and t.ada_p == 0:
            tips.append("diffaug=color,translation,cutout (small sets)")
    if t.r1 == 0 and t.gp == 0 and t.r2 == 0:
        tips.append("r1=1")
    if t.lecam == 0 and not vector:
        tips.append("lecam=0.3")
    if m.pack == 1 and m.d_cond == "none":
        tips.append("pack=2..4")
    if t.loss != "rpgan":
        tips.append("loss=rpgan r1=1 r2=1")
    tips.append(f"a lower lr_g (now {t.lr_g:g})")
    return "; ".join(tips[:4])


class HealthMonitor:
    """Warn on each collapse of the samples (diversity under ``collapse_ratio`` of the real
    data's) after warm-up, and when D overpowers G for ``patience`` checks in a row
    (D(x) > 0.99 and D(G(z)) < 0.01, for probability-valued D)."""

    def __init__(self, data, cfg: Config, device: torch.device, collapse_ratio: float = 0.25,
                 patience: int = 3, warmup_steps: int = 200, warmup_progress: float = 0.05):
        self.cfg = cfg
        self.collapse_ratio = collapse_ratio
        self.patience = patience
        self.warmup_steps = warmup_steps
        self.warmup_progress = warmup_progress
        self.vector = hasattr(data, "dim")
        g = torch.Generator().manual_seed(0)
        n = min(len(data), 256 if not self.vector else 2500)
        idx = torch.randperm(len(data), generator=g)[:n]
        if self.vector:
            real = data.x[idx].float()
        else:
            real = data.take(idx).float() / 127.5 - 1  # a set on disk: read, not mapped
        self.real_diversity = diversity(real[:256]) or 1.0
        self.modes = getattr(data, "modes", None)
        self.mode_std = getattr(data, "mode_std", None)
        self.overpowered = 0
        self.collapsed_since: int | None = None  # the step of the collapse under way, if any

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

    def warming_up(self, step: int, progress: float) -> bool:
        return step < self.warmup_steps or progress < self.warmup_progress

    def check(self, step: int, stats: dict[str, float], progress: float = 1.0) -> list[str]:
        """Warnings for this health check (none during warm-up)."""
        if self.warming_up(step, progress):
            return []
        warnings = []
        div = stats.get("diversity")
        if div is not None:
            if div < self.collapse_ratio and self.collapsed_since is None:
                self.collapsed_since = step
                warnings.append(
                    f"samples are collapsing: their diversity is {div:.0%} of the real data's "
                    f"(mode collapse); try {collapse_advice(self.cfg, self.vector)}")
            elif div >= self.collapse_ratio:
                self.collapsed_since = None
        if self.cfg.train.loss in PROBABILISTIC and "D(x)" in stats and "D(G(z))" in stats:
            if stats["D(x)"] > 0.99 and stats["D(G(z))"] < 0.01:
                self.overpowered += 1
                if self.overpowered == self.patience:
                    warnings.append(self._overpowered_advice())
            else:
                self.overpowered = 0
        return warnings

    def _overpowered_advice(self) -> str:
        t, m = self.cfg.train, self.cfg.model
        tips = []
        if t.lr_d >= t.lr_g:
            tips.append("lr_d lower than lr_g")
        if m.spectral_norm not in ("d", "both"):
            tips.append("spectral_norm=d")
        if t.r1 == 0:
            tips.append("r1=1")
        if not t.diffaug and t.ada_target == 0 and not self.vector:
            tips.append("diffaug=color,translation,cutout")
        tips = tips or ["a smaller D (d_channel_max)"]
        return (f"D overpowers G (D(x) > 0.99, D(G(z)) < 0.01 for {self.patience} checks): G "
                f"gets no useful gradient; try {', '.join(tips)}")

    def final(self, step: int) -> list[str]:
        """At the end of a run: a reminder when the samples are still collapsed."""
        if self.collapsed_since is None:
            return []
        return [f"the samples have stayed collapsed since step {self.collapsed_since} (to step "
                f"{step}): do not trust this run's samples; try "
                f"{collapse_advice(self.cfg, self.vector)}"]
