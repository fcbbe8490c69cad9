"""Using a trained run: ``g = ganforge.load(RUN)``, then ``g.sample(n)``, ``g.sample_images(n)``,
``g.interpolate(...)``."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .config import Config
from .errors import GanforgeError
from .nets import build_nets
from .train import checkpoint as ck
from .utils import make_grid, pick_device, to_pil, to_uint8


class TrainedGAN:
    """A generator rebuilt from a run's ``config.json`` and its latest (or a chosen) checkpoint."""

    def __init__(self, cfg: Config, G: torch.nn.Module, device: torch.device, step: int,
                 checkpoint: Path):
        self.cfg = cfg
        self.G = G.eval()
        self.device = device
        self.step = step
        self.checkpoint = checkpoint

    @property
    def latent_dim(self) -> int:
        return self.cfg.model.latent_dim

    def noise(self, n: int, seed: int | None = None) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        return torch.randn(n, self.latent_dim, generator=g)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Images for latent codes ``z`` [N, latent_dim]: float [N, C, R, R] in [-1, 1], on CPU."""
        out = []
        for i in range(0, z.shape[0], batch_size):
            out.append(self.G(z[i:i + batch_size].to(self.device)).float().cpu())
        if not out:
            return torch.empty(0, self.cfg.model.channels, self.cfg.model.resolution,
                               self.cfg.model.resolution)
        return torch.cat(out)

    def sample(self, n: int, seed: int | None = None, batch_size: int = 256) -> torch.Tensor:
        """``n`` samples: float [n, C, R, R] in [-1, 1] on the CPU; reproducible with ``seed``."""
        return self.generate(self.noise(n, seed), batch_size)

    def sample_images(self, n: int, seed: int | None = None) -> list:
        """``n`` samples as PIL images."""
        return [to_pil(x) for x in to_uint8(self.sample(n, seed))]

    def interpolate(self, points: int = 4, frames: int = 16, rows: int = 4,
                    seed: int | None = None) -> list:
        """A looping walk through ``points`` random latent codes (slerp, ``frames`` a leg) for
        ``rows`` walks at once; returns PIL frames, each a row of ``rows`` images."""
        if points < 2 or frames < 1 or rows < 1:
            raise GanforgeError("interpolate needs points >= 2, frames >= 1 and rows >= 1")
        keys = self.noise(rows * points, seed).view(rows, points, -1)
        zs = []
        for p in range(points):
            a, b = keys[:, p], keys[:, (p + 1) % points]
            for f in range(frames):
                zs.append(slerp(a, b, f / frames))
        z = torch.stack(zs)  # [T, rows, latent]
        imgs = to_uint8(self.generate(z.flatten(0, 1)))
        imgs = imgs.view(z.shape[0], rows, *imgs.shape[1:])
        nrow = math.ceil(math.sqrt(rows))
        return [to_pil(make_grid(frame, nrow=nrow)) for frame in imgs]


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between rows of ``a`` and ``b`` (falls back to lerp if parallel)."""
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((an * bn).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    lerp = (1 - t) * a + t * b
    sl = (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b
    return torch.where(so.abs() < 1e-6, lerp, sl)


def load(run: str | Path, device: str = "auto", checkpoint: str | Path | None = None
         ) -> TrainedGAN:
    """Load a run's generator for sampling. ``checkpoint`` picks a ``step_*`` folder."""
    run = Path(run)
    cfg = Config.load(run / "config.json") if run.is_dir() else None
    if cfg is None:
        raise GanforgeError(f"run folder {run} does not exist: pass the --out folder of a run")
    path = Path(checkpoint) if checkpoint else ck.find_checkpoint(run)
    if not path.is_absolute() and not path.exists():
        path = ck.ckpt_dir(run) / path
    if not ck.is_complete(path, ("G",)):
        raise GanforgeError(f"{path} is not a complete checkpoint of {run}")
    dev = pick_device(device)
    G, _ = build_nets(cfg.model)
    ck.load_net(G, path, "G")
    step = int(ck.load_state(path).get("step", 0))
    return TrainedGAN(cfg, G.to(dev), dev, step, path)
