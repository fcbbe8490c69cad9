"""The one training loop for every GAN family.

Each step: one batch (a dict), then the recipe's phases in order; for each phase the loop turns
gradients on for the phase's nets only, asks the phase for its losses, backpropagates ``loss``
and steps the phase's optimiser. Around that: stopping rules, logging, sample grids, atomic
checkpoints with exact resume, and a guard against non-finite losses.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from ..config import Config, parse_duration
from ..data import ImageDataset, load_dataset
from ..errors import GanforgeError
from ..nets import build_nets
from ..recipes import RECIPES
from ..utils import format_duration, make_grid, pick_device, save_png, to_uint8
from . import checkpoint as ck
from .batches import Batches
from .log import RunLogger


@dataclass
class TrainResult:
    run: Path
    step: int
    images_seen: int
    last: dict[str, float]
    stopped_by: str  # max_steps, epochs, max_time or interrupt
    seconds: float


def fill_model_shape(cfg: Config, data: ImageDataset) -> None:
    """The nets are built for the data's resolution and channels; record them in the config."""
    cfg.model.resolution = data.resolution
    cfg.model.channels = data.channels
    if cfg.data.channels is None:
        cfg.data.channels = data.channels


class Trainer:
    def __init__(self, cfg: Config, run: str | Path, resume: bool = False,
                 data: ImageDataset | None = None, console: Console | None = None,
                 quiet: bool = False, tensorboard: bool = True):
        self.cfg = cfg
        self.run = Path(run)
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.quiet = quiet
        self.tensorboard = tensorboard
        t = cfg.train
        self.device = pick_device(t.device)
        if self.run.exists() and not resume and any(self.run.iterdir()):
            raise GanforgeError(f"run folder {self.run} is not empty: resume it with "
                                f"--resume {self.run} or choose another --out")
        self.run.mkdir(parents=True, exist_ok=True)

        d = cfg.data
        self.data = data if data is not None else load_dataset(
            d.source, resolution=d.resolution, channels=d.channels, log=self._note)
        if cfg.model.resolution and (cfg.model.resolution, cfg.model.channels) != (
                self.data.resolution, self.data.channels):
            raise GanforgeError(
                f"the data is {self.data.channels}x{self.data.resolution}x{self.data.resolution}"
                f" but the run's nets are {cfg.model.channels}x{cfg.model.resolution}x"
                f"{cfg.model.resolution}: set resolution/channels to match")
        fill_model_shape(cfg, self.data)

        torch.manual_seed(t.seed)
        self.G, self.D = build_nets(cfg.model)
        self.G.to(self.device)
        self.D.to(self.device)
        self.recipe = RECIPES[t.recipe](cfg, self.G, self.D)
        self.nets = self.recipe.nets()
        self.opts = self.recipe.optimizers()
        self.phases = self.recipe.phases()
        self.batches = Batches(self.data, t.batch_size, t.seed, self.device)
        if self.batches.batch_size < t.batch_size:
            self._say(f"[yellow]only {len(self.data)} images: batch size lowered to "
                      f"{self.batches.batch_size}[/yellow]")
        # noise for training comes from its own generator, saved in checkpoints
        self.noise = torch.Generator(device=self.device).manual_seed(t.seed + 1)
        # a fixed z for the sample grids, the same in every grid of the run
        self.fixed_z = torch.randn(64, cfg.model.latent_dim,
                                   generator=torch.Generator().manual_seed(t.seed + 2)
                                   ).to(self.device)
        self.step = 0
        self.images_seen = 0
        self.train_seconds = 0.0
        self.last: dict[str, float] = {}
        self._interrupted = False
        if resume:
            self._resume()
        cfg.save(self.run / "config.json")

    # -- helpers ----------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text)

    def _note(self, text: str) -> None:
        """Plain text (file names may hold [brackets] that rich would read as markup)."""
        if not self.quiet:
            self.console.print(text, markup=False, highlight=False)

    def sample_z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.cfg.model.latent_dim, generator=self.noise,
                           device=self.device)

    def _state(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "noise": self.noise.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "step": self.step,
            "images_seen": self.images_seen,
            "train_seconds": self.train_seconds,
            "last": dict(self.last),
            "optimizers": {k: o.state_dict() for k, o in self.opts.items()},
            "rng": rng,
        }

    def save(self) -> Path:
        meta = {"arch": self.cfg.model.arch, "step": str(self.step)}
        return ck.save_checkpoint(self.run, self.step, self.nets, self._state(),
                                  keep_last=self.cfg.train.keep_last, meta=meta)

    def _resume(self) -> None:
        ck.clean_partial(self.run)
        path = ck.find_checkpoint(self.run)
        for name, net in self.nets.items():
            ck.load_net(net, path, name)
        st = ck.load_state(path)
        try:
            for k, o in self.opts.items():
                o.load_state_dict(st["optimizers"][k])
            torch.set_rng_state(st["rng"]["torch"])
            self.noise.set_state(st["rng"]["noise"])
            if "cuda" in st["rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state(st["rng"]["cuda"], self.device)
            self.step = int(st["step"])
            self.images_seen = int(st["images_seen"])
            self.train_seconds = float(st.get("train_seconds", 0.0))
            self.last = dict(st.get("last", {}))
        except (KeyError, ValueError, RuntimeError) as e:
            raise GanforgeError(f"{path}/state.pt does not fit this run ({e}); it was written "
                                "by another model or version") from None
        self._say(f"resumed {self.run} at step {self.step} ({self.images_seen / 1000:.1f} kimg)")

    def write_samples(self, name: str) -> tuple[Path, torch.Tensor]:
        """The 8x8 grid of the fixed z as ``RUN/samples/NAME.png``; returns (path, uint8 grid)."""
        self.G.eval()
        with torch.no_grad():
            imgs = to_uint8(self.G(self.fixed_z))
        self.G.train()
        grid = make_grid(imgs, nrow=8)
        path = self.run / "samples" / f"{name}.png"
        save_png(grid, path)
        return path, grid

    def stop_steps(self) -> int | None:
        t = self.cfg.train
        limits = []
        if t.max_steps is not None:
            limits.append(t.max_steps)
        if t.epochs is not None:
            limits.append(math.ceil(t.epochs * self.batches.steps_per_epoch))
        return min(limits) if limits else None

    # -- the loop ---------------------------------------------------------------------------

    def train(self) -> TrainResult:
        t = self.cfg.train
        total = self.stop_steps()
        max_seconds = parse_duration(t.max_time) if t.max_time else None
        if total is None and max_seconds is None:
            raise GanforgeError("no stopping rule: set max_steps, epochs or max_time")
        spe = self.batches.steps_per_epoch
        self._say(
            f"[bold]ganforge[/bold] {self.cfg.preset} on {self.data.name}: {len(self.data)} "
            f"images {self.data.channels}x{self.data.resolution}x{self.data.resolution}, "
            f"batch {self.batches.batch_size}, {spe} steps/epoch, device {self.device}, "
            f"run {self.run}")
        logger = RunLogger(self.run, total, self.step, self.console, self.tensorboard,
                           self.quiet)
        window, epoch_sums = Meter(), Meter()  # scalars since the last log line / epoch start
        t0 = time.perf_counter()
        t_log, step_log = t0, self.step
        stopped_by = "max_steps"
        ctx: dict = {}
        restore_sigint = self._defer_sigint()
        try:
            while True:
                if self._interrupted:
                    stopped_by = "interrupt"
                    break
                if total is not None and self.step >= total:
                    stopped_by = "epochs" if t.max_steps is None or total < t.max_steps \
                        else "max_steps"
                    break
                if max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
                    stopped_by = "max_time"
                    break
                ctx = {"batch": self.batches.get(self.step), "step": self.step,
                       "sample_z": self.sample_z}
                out = self._one_step(ctx)
                window.add(out)
                epoch_sums.add(out)
                self.step += 1
                self.images_seen += self.batches.batch_size
                logger.step(self.step)

                if self.step % t.log_every == 0 or self.step == total:
                    now = time.perf_counter()
                    stats = window.mean()
                    if not all(math.isfinite(v) for v in stats.values()):
                        self._diverged(stats)
                    stats["img/s"] = (self.step - step_log) * self.batches.batch_size / max(
                        now - t_log, 1e-9)
                    self.last = stats
                    logger.log(self.step, self.images_seen / 1000, stats)
                    window, t_log, step_log = Meter(), now, self.step
                if self.step % spe == 0:
                    logger.line(f"epoch {self.step // spe:>4} step {self.step:>7} "
                                + _fmt(epoch_sums.mean()), throttle=5.0)
                    epoch_sums = Meter()
                if t.sample_every and self.step % t.sample_every == 0:
                    _, grid = self.write_samples(f"step_{self.step:08d}")
                    logger.image("samples", grid, self.step)
                if t.checkpoint_every and self.step % t.checkpoint_every == 0:
                    self._checkpoint()
        except KeyboardInterrupt:  # a second Ctrl-C: stop mid-step, still save what we have
            stopped_by = "interrupt"
        finally:
            restore_sigint()
            self.train_seconds += time.perf_counter() - t0
            logger.close()
        del ctx
        if window.count:
            self.last = window.mean()
        self._checkpoint()
        final, _ = self.write_samples("final")
        elapsed = time.perf_counter() - t0
        self._say(f"done: {self.step} steps ({self.images_seen / 1000:.1f} kimg) in "
                  f"{format_duration(elapsed)}, stopped by {stopped_by}; samples {final}; "
                  f"checkpoint {ck.latest_checkpoint(self.run)}")
        return TrainResult(self.run, self.step, self.images_seen, self.last, stopped_by, elapsed)

    def _defer_sigint(self):
        """First Ctrl-C: finish the current step, checkpoint, stop (so resume stays exact)."""
        self._interrupted = False
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum, frame):
            if self._interrupted:
                raise KeyboardInterrupt
            self._interrupted = True
            self.console.print("[yellow]stopping after this step (Ctrl-C again to stop "
                               "now)...[/yellow]")

        previous = signal.signal(signal.SIGINT, handler)
        return lambda: signal.signal(signal.SIGINT, previous)

    def _one_step(self, ctx: dict) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for phase in self.phases:
            if self.step % phase.interval:
                continue
            for name, net in self.nets.items():
                net.requires_grad_(name in phase.trainable)
            opt = self.opts[phase.opt]
            opt.zero_grad(set_to_none=True)
            scalars = phase.fn(ctx)
            scalars["loss"].backward()
            opt.step()
            for k, v in scalars.items():
                out[f"{phase.name}_loss" if k == "loss" else k] = v.detach()
        for net in self.nets.values():
            net.requires_grad_(True)
        return out

    def _checkpoint(self) -> None:
        if self.last and not all(math.isfinite(v) for v in self.last.values()):
            return
        self.save()

    def _diverged(self, stats: dict[str, float]) -> None:
        good = ck.latest_checkpoint(self.run)
        kept = f"last good checkpoint kept at {good}" if good else "no checkpoint was written"
        raise GanforgeError(
            f"training diverged at step {self.step} (non-finite loss: {_fmt(stats)}); {kept}; "
            "lower lr_g/lr_d and resume"
        )


class Meter:
    """Running sums of per-step scalar tensors; one host sync when the mean is read."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, scalars: dict[str, torch.Tensor]) -> None:
        for k, v in scalars.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.count += 1

    def mean(self) -> dict[str, float]:
        return {k: float(v) / max(self.count, 1) for k, v in self.sums.items()}


def _fmt(stats: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in stats.items() if k != "img/s")


def train(cfg: Config, run: str | Path, resume: bool = False, **kw) -> TrainResult:
    """Train ``cfg`` into the run folder ``run`` (resuming it when ``resume``)."""
    return Trainer(cfg, run, resume=resume, **kw).train()
