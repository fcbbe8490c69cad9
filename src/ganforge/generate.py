"""Using a trained run: ``g = ganforge.load(RUN)``, then ``g.sample(n)``, ``g.sample_images(n)``,
``g.interpolate(...)``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .config import Config
from .errors import GanforgeError
from .nets import build_nets
from .train import checkpoint as ck
from .utils import make_grid, pick_device, to_pil, to_uint8


class TrainedGAN:
    """A generator rebuilt from a run's ``config.json`` and its latest (or a chosen) checkpoint
    (the EMA generator when the run kept one)."""

    def __init__(self, cfg: Config, G: torch.nn.Module, device: torch.device, step: int,
                 checkpoint: Path, class_names: list[str] | None = None):
        self.cfg = cfg
        self.G = G.eval()
        self.device = device
        self.step = step
        self.checkpoint = checkpoint
        self.num_classes = cfg.model.num_classes
        self.class_names = class_names or [str(i) for i in range(self.num_classes)]

    @property
    def is_vector(self) -> bool:
        return self.cfg.model.resolution == 0

    def labels(self, n: int, c: int | str | torch.Tensor | None = None,
               seed: int | None = None) -> torch.Tensor | None:
        """Class labels for ``n`` samples: all ``c`` (an index or a class name), the given
        tensor, or (``c=None``) balanced over the classes. None for unconditional runs."""
        if not self.num_classes:
            if c is not None:
                raise GanforgeError("this run is unconditional: drop --class (train with a "
                                    "conditional preset such as cgan, acgan or projection)")
            return None
        if isinstance(c, torch.Tensor):
            return c.long()
        if c is None:
            return torch.arange(n) % self.num_classes
        if isinstance(c, str) and c in self.class_names:
            c = self.class_names.index(c)
        try:
            k = int(c)
        except (TypeError, ValueError):
            k = -1
        if not 0 <= k < self.num_classes:
            raise GanforgeError(f"unknown class {c!r}: this run knows {self.num_classes} classes "
                                f"(0..{self.num_classes - 1}: {', '.join(self.class_names)})")
        return torch.full((n,), k, dtype=torch.long)

    @property
    def latent_dim(self) -> int:
        return self.cfg.model.latent_dim

    def noise(self, n: int, seed: int | None = None) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        return torch.randn(n, self.latent_dim, generator=g)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, c: torch.Tensor | None = None,
                 batch_size: int = 256) -> torch.Tensor:
        """Samples for latent codes ``z`` [N, latent_dim] (and labels ``c`` [N]): images float
        [N, C, R, R] in [-1, 1], or vectors [N, D], on the CPU."""
        if c is None and self.num_classes:
            c = self.labels(z.shape[0])
        out = []
        for i in range(0, z.shape[0], batch_size):
            ci = c[i:i + batch_size].to(self.device) if c is not None else None
            out.append(self.G(z[i:i + batch_size].to(self.device), ci).float().cpu())
        if not out:
            m = self.cfg.model
            shape = (0, m.channels) if self.is_vector else (0, m.channels, m.resolution,
                                                            m.resolution)
            return torch.empty(shape)
        return torch.cat(out)

    def sample(self, n: int, seed: int | None = None, c: int | str | None = None,
               batch_size: int = 256) -> torch.Tensor:
        """``n`` samples (of class ``c`` for conditional runs; balanced over classes when None):
        float [n, C, R, R] in [-1, 1] (or [n, D] vectors), on the CPU; reproducible with
        ``seed``."""
        return self.generate(self.noise(n, seed), self.labels(n, c), batch_size)

    def discriminator(self) -> torch.nn.Module:
        """The run's D from the same checkpoint (for rejection sampling), in eval mode."""
        if getattr(self, "_D", None) is None:
            from .losses import PROBABILISTIC

            if self.cfg.train.loss not in PROBABILISTIC:
                raise GanforgeError(f"rejection sampling needs a D trained with a probabilistic "
                                    f"loss (nonsaturating or minimax); this run used "
                                    f"{self.cfg.train.loss}")
            if self.cfg.model.pack > 1:
                raise GanforgeError("rejection sampling needs a D that judges one sample at a "
                                    "time: this run packs samples (pack > 1)")
            _, D = build_nets(self.cfg.model)
            ck.load_net(D, self.checkpoint, "D")
            self._D = D.to(self.device).eval()
        return self._D

    @torch.no_grad()
    def sample_rejection(self, n: int, seed: int | None = None, c: int | str | None = None,
                         percentile: float = 80.0, burn_in: int = 10_000,
                         batch_size: int = 1000, max_tries: int = 100) -> torch.Tensor:
        """Discriminator rejection sampling (Azadi et al. 2019): draw samples and keep each with
        probability ``sigmoid(F(x) - gamma)``, ``F(x) = d(x) - d_max - log(1 - exp(d(x) -
        d_max - 1e-6))`` where ``d`` is D's logit (``exp(d)`` estimates p_data / p_G for a D
        trained with a probabilistic loss), ``d_max`` its maximum over ``burn_in`` samples and
        ``gamma`` the ``percentile`` of F over them (higher: stricter, fewer bad samples,
        more draws). Uses the run's D from the same checkpoint."""
        if not 0 <= percentile < 100:
            raise GanforgeError(f"rejection percentile must be in [0, 100), got {percentile}")
        D = self.discriminator()
        gen = torch.Generator().manual_seed(seed if seed is not None else 0)

        def draw(m: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
            z = torch.randn(m, self.latent_dim, generator=gen)
            labels = self.labels(m, c)
            x = self.generate(z, labels, batch_size)
            logits = torch.cat([D(x[i:i + batch_size].to(self.device),
                                  labels[i:i + batch_size].to(self.device)
                                  if labels is not None else None).float().cpu()
                                for i in range(0, m, batch_size)])
            return x, labels, logits.double()

        _, _, burn = draw(burn_in)
        d_max = burn.max()

        def f(d: torch.Tensor) -> torch.Tensor:
            delta = (d - d_max).clamp(max=0)
            return delta - torch.log1p(-torch.exp(delta - 1e-6))

        gamma = torch.quantile(f(burn), percentile / 100)
        kept: list[torch.Tensor] = []
        total = 0
        for _ in range(max_tries):
            x, _, d = draw(batch_size)
            accept = torch.sigmoid(f(d) - gamma) > torch.rand(d.shape[0], generator=gen,
                                                               dtype=torch.float64)
            kept.append(x[accept])
            total += int(accept.sum())
            if total >= n:
                break
        else:
            raise GanforgeError(f"rejection sampling kept only {total} of {n} samples after "
                                f"{max_tries * batch_size} draws: lower the percentile")
        self.last_acceptance = total / (len(kept) * batch_size)
        return torch.cat(kept)[:n]

    def sample_images(self, n: int, seed: int | None = None, c: int | str | None = None
                      ) -> list:
        """``n`` samples as PIL images."""
        if self.is_vector:
            raise GanforgeError("this run generates vectors, not images: use sample()")
        return [to_pil(x) for x in to_uint8(self.sample(n, seed, c))]

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
        if self.is_vector:
            raise GanforgeError("interpolate makes image GIFs; this run generates vectors")
        c = self.labels(rows)
        c = c.repeat(z.shape[0]) if c is not None else None
        imgs = to_uint8(self.generate(z.flatten(0, 1), c))
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
         ) -> TrainedGAN | Translator:
    """Load a run for use: a :class:`TrainedGAN` (sampling) for noise-to-image runs, a
    :class:`Translator` for image-to-image ones. ``checkpoint`` picks a ``step_*`` folder
    (or ``best``)."""
    run = Path(run)
    cfg = Config.load(run / "config.json") if run.is_dir() else None
    if cfg is None:
        raise GanforgeError(f"run folder {run} does not exist: pass the --out folder of a run")
    if cfg.data.task != "none":
        return load_translator(run, device, checkpoint)
    path = Path(checkpoint) if checkpoint else ck.find_checkpoint(run)
    if not path.is_absolute() and not path.exists():
        path = ck.ckpt_dir(run) / path
    if not ck.is_complete(path, ("G",)):
        raise GanforgeError(f"{path} is not a complete checkpoint of {run}")
    dev = pick_device(device)
    G, _ = build_nets(cfg.model)
    ck.load_net(G, path, "G_ema" if (path / "G_ema.safetensors").is_file() else "G")
    step = int(ck.load_state(path).get("step", 0))
    names = None
    if (run / "classes.json").is_file():
        try:
            names = [str(x) for x in json.loads((run / "classes.json").read_text())]
        except (ValueError, OSError):
            names = None
    return TrainedGAN(cfg, G.to(dev), dev, step, path, names)


# --- image-to-image runs ------------------------------------------------------------------


class Translator:
    """A trained image-to-image run (Pix2Pix, CycleGAN, SRGAN) rebuilt from its run folder.

    ``translate(x)`` maps float images [N, C_in, H, W] in [-1, 1] to outputs of any size the
    net accepts: inputs are reflect-padded to the net's size multiple and the output cropped
    back, so images of any size work. ``upscale(x, tile)`` is the super-resolution form, tiled
    with overlap for big images."""

    def __init__(self, cfg: Config, recipe, device: torch.device, step: int, checkpoint: Path):
        self.cfg = cfg
        self.recipe = recipe
        self.device = device
        self.step = step
        self.checkpoint = checkpoint
        self.kind = cfg.train.recipe  # pix2pix, cyclegan or srgan
        for net in recipe.nets().values():
            net.eval()

    @property
    def in_channels(self) -> int:
        return self.cfg.model.in_channels

    @property
    def out_channels(self) -> int:
        return self.cfg.model.channels

    def _net(self, direction: str):
        if self.kind == "cyclegan":
            if direction not in ("AtoB", "BtoA"):
                raise GanforgeError(f"--direction {direction!r}: use AtoB or BtoA")
            return self.recipe.G if direction == "AtoB" else self.recipe.F
        if direction != "AtoB":
            raise GanforgeError(f"a {self.kind} run translates one way only: drop --direction "
                                f"(CycleGAN runs translate both ways)")
        return self.recipe.G

    def channels_for(self, direction: str = "AtoB") -> tuple[int, int]:
        """(input channels, output channels) of a direction."""
        i, o = self.in_channels, self.out_channels
        return (o, i) if direction == "BtoA" else (i, o)

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        net = self._net(direction)
        m = getattr(net, "size_multiple", 1)
        h, w = x.shape[-2:]
        ph, pw = (-h) % m, (-w) % m
        x = x.to(self.device).float()
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode=mode)
        y = net(x).float()
        s = y.shape[-1] // x.shape[-1]  # 1, or the SR scale
        return y[..., :h * s, :w * s].clamp(-1, 1).cpu()

    @torch.no_grad()
    def upscale(self, x: torch.Tensor, tile: int = 0, overlap: int = 8) -> torch.Tensor:
        """Super-resolve [N, C, h, w] -> [N, C, h*s, w*s]; with ``tile`` > 0, in tiles of that
        many input pixels overlapping by ``overlap`` (each output pixel comes from the tile
        where it lies farthest from an edge)."""
        if self.kind != "srgan":
            raise GanforgeError(f"upscale needs a super-resolution run (srgan); this one is "
                                f"{self.kind}: use `ganforge translate`")
        h, w = x.shape[-2:]
        if not tile or (h <= tile and w <= tile):
            return self.translate(x)
        s = self.cfg.data.scale
        step = max(1, tile - 2 * overlap)
        out = torch.zeros(x.shape[0], self.out_channels, h * s, w * s)
        for y0 in range(0, h, step):
            for x0 in range(0, w, step):
                ya, xa = max(0, y0 - overlap), max(0, x0 - overlap)
                yb, xb = min(h, y0 + step + overlap), min(w, x0 + step + overlap)
                part = self.translate(x[..., ya:yb, xa:xb])
                y1, x1 = min(h, y0 + step), min(w, x0 + step)
                out[..., y0 * s:y1 * s, x0 * s:x1 * s] = part[
                    ..., (y0 - ya) * s:(y1 - ya) * s, (x0 - xa) * s:(x1 - xa) * s]
        return out


def load_translator(run: str | Path, device: str = "auto",
                    checkpoint: str | Path | None = None) -> Translator:
    from .recipes import RECIPES

    run = Path(run)
    cfg = Config.load(run / "config.json") if run.is_dir() else None
    if cfg is None:
        raise GanforgeError(f"run folder {run} does not exist: pass the --out folder of a run")
    if cfg.data.task == "none":
        raise GanforgeError(f"{run} is a {cfg.preset} run that generates from noise: use "
                            f"`ganforge sample` (translate/upscale need a pix2pix, cyclegan or "
                            f"srgan run)")
    path = Path(checkpoint) if checkpoint else ck.find_checkpoint(run)
    if not path.is_absolute() and not path.exists():
        path = ck.ckpt_dir(run) / path
    if not ck.is_complete(path):
        raise GanforgeError(f"{path} is not a complete checkpoint of {run}")
    dev = pick_device(device)
    import copy

    build_cfg = copy.deepcopy(cfg)
    build_cfg.train.content = "pixel"  # the VGG of the content loss is not needed to run G
    recipe = RECIPES[cfg.train.recipe](build_cfg)
    for name, net in recipe.nets().items():
        if name.startswith("D"):
            continue  # discriminators are not needed to translate
        ck.load_net(net, path, name)
        net.to(dev)
    step = int(ck.load_state(path).get("step", 0))
    return Translator(cfg, recipe, dev, step, path)
