"""Using a trained run: ``g = ganforge.load(RUN)``, then ``g.sample(n)``, ``g.sample_images(n)``,
``g.interpolate(...)``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from . import checkpoint as ck
from .config import Config
from .errors import GanforgeError
from .nets import build_nets
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

    @property
    def is_style(self) -> bool:
        """Whether G splits into a mapping network and a synthesis network (StyleGAN2)."""
        return hasattr(self.G, "mapping") and hasattr(self.G, "synthesis")

    def check_truncation(self, truncation: float | None) -> None:
        if truncation is None:
            return
        if self.is_style and not 0 <= truncation <= 2:
            raise GanforgeError(f"--truncation {truncation}: StyleGAN's psi goes from 0 (the "
                                "mean image) to 1 (no truncation), up to 2 to extrapolate; "
                                "use a value in [0, 1]")
        if not self.is_style and truncation <= 0:
            raise GanforgeError(f"--truncation {truncation}: the latent threshold must be > 0 "
                                "(e.g. 0.5 to 2; smaller = closer to typical samples)")

    def noise(self, n: int, seed: int | None = None, truncation: float | None = None
              ) -> torch.Tensor:
        """``n`` latent codes [n, latent_dim] from N(0, I), reproducible with ``seed``.

        ``truncation`` for generators without a mapping network (BigGAN, DCGAN, ...): the
        truncation trick of BigGAN (Brock et al. 2019), every component beyond +-truncation
        redrawn until it falls inside. StyleGAN runs truncate in w instead (:meth:`generate`).
        """
        self.check_truncation(truncation)
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        z = torch.randn(n, self.latent_dim, generator=g)
        if truncation is not None and not self.is_style:
            for _ in range(1000):
                out = z.abs() > truncation
                if not out.any():
                    break
                z[out] = torch.randn(int(out.sum()), generator=g)
            else:  # pragma: no cover - needs a threshold far below 0.01
                z = z.clamp(-truncation, truncation)
        return z

    def _g(self, z: torch.Tensor, c: torch.Tensor | None, truncation: float | None,
           noise_mode: str = "random") -> torch.Tensor:
        if self.is_style:
            return self.G(z, c, truncation_psi=1.0 if truncation is None else truncation,
                          noise_mode=noise_mode)
        return self.G(z, c)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, c: torch.Tensor | None = None,
                 batch_size: int = 256, truncation: float | None = None,
                 noise_mode: str = "random") -> torch.Tensor:
        """Samples for latent codes ``z`` [N, latent_dim] (and labels ``c`` [N]): images float
        [N, C, H, W] in [-1, 1], or vectors [N, D], on the CPU. ``truncation`` (StyleGAN
        runs): w = w_avg + psi (w - w_avg); other runs truncate z when it is drawn
        (:meth:`noise`). ``noise_mode`` (StyleGAN runs): random, const or none per-pixel
        noise."""
        self.check_truncation(truncation)
        if c is None and self.num_classes:
            c = self.labels(z.shape[0])
        out = []
        for i in range(0, z.shape[0], batch_size):
            ci = c[i:i + batch_size].to(self.device) if c is not None else None
            out.append(self._g(z[i:i + batch_size].to(self.device), ci, truncation,
                               noise_mode).float().cpu())
        if not out:
            m = self.cfg.model
            shape = (0, m.channels) if self.is_vector else (0, m.channels, *m.size)
            return torch.empty(shape)
        return torch.cat(out)

    def sample(self, n: int, seed: int | None = None, c: int | str | None = None,
               batch_size: int = 256, truncation: float | None = None) -> torch.Tensor:
        """``n`` samples (of class ``c`` for conditional runs; balanced over classes when None):
        float [n, C, H, W] in [-1, 1] (or [n, D] vectors), on the CPU; reproducible with
        ``seed``. ``truncation``: psi for StyleGAN runs (1 = off), the latent threshold for
        the others (see :meth:`noise`)."""
        return self.generate(self.noise(n, seed, truncation), self.labels(n, c), batch_size,
                             truncation)

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
            if not (self.checkpoint / "D.safetensors").is_file() \
                    and (self.checkpoint / "model.safetensors").is_file():
                raise GanforgeError("rejection sampling needs the run's D; a Hub model folder "
                                    "holds the generator only: use the run folder")
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
                    seed: int | None = None, space: str = "z",
                    truncation: float | None = None) -> list:
        """A looping walk through ``points`` random latent codes (``frames`` a leg) for
        ``rows`` walks at once; returns PIL frames, each a row of ``rows`` images. ``space``:
        ``z`` (slerp between latent codes) or ``w`` (StyleGAN runs: lerp between the mapped
        latents, the smoother walk of the StyleGAN papers). StyleGAN runs use fixed per-pixel
        noise so only the latent moves."""
        if points < 2 or frames < 1 or rows < 1:
            raise GanforgeError("interpolate needs points >= 2, frames >= 1 and rows >= 1")
        if space not in ("z", "w"):
            raise GanforgeError(f"--space {space!r}: use z or w")
        if space == "w" and not self.is_style:
            raise GanforgeError(f"--space w needs a StyleGAN run (its mapping network makes w); "
                                f"this run's generator is {self.cfg.model.arch}: use --space z")
        if self.is_vector:
            raise GanforgeError("interpolate makes image GIFs; this run generates vectors")
        keys = self.noise(rows * points, seed, truncation)
        c = self.labels(rows)
        mode = "const" if self.is_style else "random"
        if space == "w":
            with torch.no_grad():
                ck_ = c.repeat_interleave(points).to(self.device) if c is not None else None
                psi = 1.0 if truncation is None else truncation
                keys = self.G.mapping(keys.to(self.device), ck_, psi)[:, 0].float().cpu()
        keys = keys.view(rows, points, -1)
        zs = []
        for p in range(points):
            a, b = keys[:, p], keys[:, (p + 1) % points]
            for f in range(frames):
                zs.append(torch.lerp(a, b, f / frames) if space == "w"
                          else slerp(a, b, f / frames))
        z = torch.stack(zs)  # [T, rows, latent or w_dim]
        c = c.repeat(z.shape[0]) if c is not None else None
        if space == "w":
            ws = z.flatten(0, 1)[:, None].expand(-1, self.G.num_ws, -1)
            imgs = to_uint8(self.synthesize(ws, noise_mode=mode))
        else:
            imgs = to_uint8(self.generate(z.flatten(0, 1), c, truncation=truncation,
                                          noise_mode=mode))
        imgs = imgs.view(z.shape[0], rows, *imgs.shape[1:])
        nrow = math.ceil(math.sqrt(rows))
        return [to_pil(make_grid(frame, nrow=nrow)) for frame in imgs]

    @torch.no_grad()
    def synthesize(self, ws: torch.Tensor, batch_size: int = 256,
                   noise_mode: str = "random") -> torch.Tensor:
        """StyleGAN runs: images [N, C, H, W] in [-1, 1] (CPU) from per-layer latents ws
        [N, num_ws, w_dim]."""
        if not self.is_style:
            raise GanforgeError(f"this run's generator ({self.cfg.model.arch}) has no w space: "
                                "train with --preset stylegan2-small or stylegan2")
        return torch.cat([self.G.synthesis(ws[i:i + batch_size].to(self.device),
                                           noise_mode=noise_mode).float().cpu()
                          for i in range(0, ws.shape[0], batch_size)])

    @torch.no_grad()
    def style_mix(self, rows: int = 4, cols: int = 4, seed: int | None = None,
                  layers: list[int] | None = None, truncation: float | None = None,
                  c: int | str | None = None) -> torch.Tensor:
        """The style-mixing figure of the StyleGAN papers as one uint8 grid
        [C, (rows+1)*H, (cols+1)*W] (plus the grid's padding): the top row shows the ``cols``
        column sources, the left column the ``rows`` row sources, and cell (i, j) row source i
        with column source j's ws on ``layers`` (default: the coarse half of the layers, which
        carries pose and shape; the fine layers carry colour and texture). Fixed per-pixel
        noise."""
        if not self.is_style:
            raise GanforgeError(f"style mixing needs a StyleGAN run (arch=stylegan2, e.g. "
                                f"--preset stylegan2-small); this run's generator is "
                                f"{self.cfg.model.arch}")
        if rows < 1 or cols < 1:
            raise GanforgeError("style mixing needs rows >= 1 and cols >= 1")
        num_ws = self.G.num_ws
        layers = list(range(num_ws // 2)) if layers is None else list(layers)
        bad = [i for i in layers if not 0 <= i < num_ws]
        if bad or not layers:
            raise GanforgeError(f"--layers: this generator has layers 0..{num_ws - 1} "
                                f"(got {bad or 'none'})")
        z = self.noise(rows + cols, seed)
        labels = self.labels(rows + cols, c)
        psi = 1.0 if truncation is None else truncation
        self.check_truncation(truncation)
        ws = self.G.mapping(z.to(self.device),
                            labels.to(self.device) if labels is not None else None, psi)
        row_ws, col_ws = ws[:rows], ws[rows:]
        mixed = row_ws[:, None].repeat(1, cols, 1, 1)  # [rows, cols, L, w]
        mixed[:, :, layers] = col_ws[None, :, layers]
        src = to_uint8(self.synthesize(ws, noise_mode="const"))
        cells = to_uint8(self.synthesize(mixed.flatten(0, 1), noise_mode="const"))
        blank = torch.full_like(src[:1], 255)
        grid = [blank, src[rows:]]
        for i in range(rows):
            grid += [src[i:i + 1], cells[i * cols:(i + 1) * cols]]
        return make_grid(torch.cat(grid), nrow=cols + 1)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between rows of ``a`` and ``b`` (falls back to lerp if parallel)."""
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((an * bn).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    lerp = (1 - t) * a + t * b
    sl = (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b
    return torch.where(so.abs() < 1e-6, lerp, sl)


def _open_run(run: Path, checkpoint: str | Path | None, nets: tuple[str, ...] = ()
              ) -> tuple[Config, Path]:
    """The run's config (its names checked) and the checkpoint folder to load: ``checkpoint``
    (a ``step_*`` folder or ``best``, in the run or a path) or the latest."""
    from .options import check_names

    if not run.is_dir():
        raise GanforgeError(f"run folder {run} does not exist: pass the --out folder of a run")
    cfg = Config.load(run / "config.json")
    check_names(cfg)
    path = Path(checkpoint) if checkpoint else ck.find_checkpoint(run)
    if not path.is_absolute() and not path.exists():
        path = ck.ckpt_dir(run) / path
    if not ck.is_complete(path, nets):
        raise GanforgeError(f"{path} is not a complete checkpoint of {run}")
    return cfg, path


def _load_hub(run: str | Path, device: str, checkpoint: str | Path | None
              ) -> TrainedGAN | Translator | None:
    """A Hub model folder or ``hf:OWNER/NAME`` spec loaded (see :mod:`ganforge.hub_folder`);
    None when ``run`` is neither (a run folder)."""
    from . import hub_folder as hub

    if not (hub.is_spec(run) or hub.is_hub_folder(run)):
        return None
    if checkpoint:
        raise GanforgeError(f"{run} is a Hub model with one set of weights: drop --checkpoint "
                            f"(checkpoints are chosen when exporting the run)")
    folder = hub.resolve(run)
    cfg, block = hub.read_folder(folder)
    dev = pick_device(device)
    if cfg.data.task != "none":
        from .nets.img2img import build_generators

        gens = build_generators(cfg)
        hub.load_weights(folder, gens)
        return Translator(cfg, {k: net.to(dev) for k, net in gens.items()}, dev,
                          block.get("step", 0), folder)
    G, _ = build_nets(cfg.model)
    hub.load_weights(folder, {"G": G})
    return TrainedGAN(cfg, G.to(dev), dev, block.get("step", 0), folder, hub.class_names(folder))


def load(run: str | Path, device: str = "auto", checkpoint: str | Path | None = None
         ) -> TrainedGAN | Translator:
    """Load a run for use: a :class:`TrainedGAN` (sampling) for noise-to-image runs, a
    :class:`Translator` for image-to-image ones. ``checkpoint`` picks a ``step_*`` folder
    (or ``best``). ``run`` may also be a Hub model folder (``ganforge export RUN --format
    hub``) or ``"hf:OWNER/NAME[@REVISION]"`` (downloaded; see :mod:`ganforge.hub`)."""
    hub = _load_hub(run, device, checkpoint)
    if hub is not None:
        return hub
    run = Path(run)
    if run.is_dir() and Config.load(run / "config.json").data.task != "none":
        return load_translator(run, device, checkpoint)
    cfg, path = _open_run(run, checkpoint, ("G",))
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

    def __init__(self, cfg: Config, generators: dict[str, torch.nn.Module],
                 device: torch.device, step: int, checkpoint: Path):
        self.cfg = cfg
        self.generators = generators  # {"G"}, or {"G", "F"} for CycleGAN
        self.G, self.F = generators["G"], generators.get("F")
        self.device = device
        self.step = step
        self.checkpoint = checkpoint
        self.kind = cfg.train.recipe  # pix2pix, cyclegan or srgan
        self.scale = cfg.data.scale if self.kind == "srgan" else 1
        for net in generators.values():
            net.eval()

    def nets(self) -> dict[str, torch.nn.Module]:
        return dict(self.generators)

    def lowres(self, hr: torch.Tensor, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """SR runs: the low-resolution side of ``hr`` as the run made it in training."""
        from .data.pairs import lowres

        return lowres(hr, self.scale, self.cfg.train.degrade, generator)

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
            return self.G if direction == "AtoB" else self.F
        if direction != "AtoB":
            raise GanforgeError(f"a {self.kind} run translates one way only: drop --direction "
                                f"(CycleGAN runs translate both ways)")
        return self.G

    def channels_for(self, direction: str = "AtoB") -> tuple[int, int]:
        """(input channels, output channels) of a direction."""
        i, o = self.in_channels, self.out_channels
        return (o, i) if direction == "BtoA" else (i, o)

    @property
    def tile(self) -> int:
        """Window side of a run trained on crops of photos (gray2color / edges2image at native
        size): images are translated in windows of its training crop; 0 = whole images."""
        c = self.cfg
        if self.kind == "pix2pix" and c.data.task in ("gray2color", "edges2image"):
            return int(c.train.crop)
        return 0

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        from .nets.img2img import padded_call, tiled_translate

        net = self._net(direction)
        x = x.to(self.device).float()

        def run(t: torch.Tensor) -> torch.Tensor:
            return padded_call(net, t).float()

        if self.tile:
            return tiled_translate(run, x, self.tile).clamp(-1, 1)
        return run(x).clamp(-1, 1).cpu()

    @torch.no_grad()
    def upscale(self, x: torch.Tensor, tile: int = 0, overlap: int = 8) -> torch.Tensor:
        """Super-resolve [N, C, h, w] -> [N, C, h*s, w*s]; with ``tile`` > 0, in tiles of that
        many input pixels overlapping by ``overlap`` (each output pixel comes from the tile
        where it lies farthest from an edge)."""
        if self.kind != "srgan":
            raise GanforgeError(f"upscale needs a super-resolution run (srgan); this one is "
                                f"{self.kind}: use `ganforge translate`")
        from .nets.img2img import tiled_upscale

        return tiled_upscale(self.translate, x, self.cfg.data.scale, tile, overlap)


def load_translator(run: str | Path, device: str = "auto",
                    checkpoint: str | Path | None = None) -> Translator:
    from .nets.img2img import build_generators

    hub = _load_hub(run, device, checkpoint)
    if isinstance(hub, TrainedGAN):
        raise GanforgeError(f"{run} is a {hub.cfg.preset} model that generates from noise: use "
                            f"`ganforge sample` (translate/upscale need a pix2pix, cyclegan or "
                            f"srgan model)")
    if hub is not None:
        return hub
    run = Path(run)
    if run.is_dir() and (cfg := Config.load(run / "config.json")).data.task == "none":
        raise GanforgeError(f"{run} is a {cfg.preset} run that generates from noise: use "
                            f"`ganforge sample` (translate/upscale need a pix2pix, cyclegan or "
                            f"srgan run)")
    cfg, path = _open_run(run, checkpoint)
    dev = pick_device(device)
    gens = build_generators(cfg)  # the generators only: no discriminator, no VGG
    for name, net in gens.items():
        # the generator EMA (ema > 0) is what a run samples with, as for noise-to-image runs
        ema = name == "G" and (path / "G_ema.safetensors").is_file()
        ck.load_net(net, path, "G_ema" if ema else name)
        net.to(dev)
    step = int(ck.load_state(path).get("step", 0))
    return Translator(cfg, gens, dev, step, path)
