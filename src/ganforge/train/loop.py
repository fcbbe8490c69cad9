"""The one training loop for every GAN family.

Each step runs the recipe's phases in order. For each phase (``repeat`` times in a row, on a
fresh batch when the phase asks for one) the loop turns gradients on for the phase's nets only,
asks the phase for its losses, backpropagates ``loss``, steps the phase's optimiser and runs the
phase's ``after`` hook. Around that: the generator EMA, stopping rules, logging, sample grids,
health checks, atomic checkpoints with exact resume, and rollback on divergence.
"""

from __future__ import annotations

import copy
import json
import math
import signal
import threading
import time
import types
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from .. import checkpoint as ck
from ..config import RESUMABLE, Config, parse_duration, resume_changes
from ..errors import GanforgeError
from ..options import check_config, check_eval_metric, check_names
from ..recipes import RECIPES
from ..schedules import interpolate
from ..transfer import InitWeights, frozen_parameters
from ..utils import (
    WriteFailed,
    atomic_write_text,
    format_bytes,
    format_duration,
    free_space,
    pick_device,
    write_failure,
)
from . import dist, memory
from .batches import describe_data, fill_model_shape, load_data, make_batches, save_preview
from .health import HealthMonitor
from .lock import LOCK_FILE, RunLock
from .log import RunLogger, grid_stride, thin_samples, trim_metrics

MAX_ROLLBACKS = 3
# why a run stops, least urgent first (a multi-process run stops for the highest of its ranks)
STOP_REASONS = (None, "max_steps", "epochs", "max_time", "terminated", "interrupt")


@dataclass
class TrainResult:
    run: Path
    step: int
    images_seen: int
    last: dict[str, float]
    stopped_by: str  # max_steps, epochs, max_time, interrupt (Ctrl-C) or terminated (SIGTERM)
    seconds: float


def ema_decay(updates: int, warmup: float, cap: float) -> float:
    """The EMA decay of update number ``updates``: ``(1 + k) / (warmup + k)``, at most ``cap``."""
    return min(cap, (1 + updates) / (warmup + updates))


def _remove_if_only_lock(run: Path) -> None:
    """Remove ``run`` when it holds nothing but its lock file (a run refused at set-up)."""
    try:
        if run.is_dir() and all(p.name == LOCK_FILE for p in run.iterdir()):
            (run / LOCK_FILE).unlink(missing_ok=True)
            run.rmdir()
    except OSError:
        pass


class Trainer:
    """Trains one run. From construction to the end of :meth:`train`, rank 0 holds the run's
    lock (``RUN/.lock``): a second trainer on the same run is refused in one line."""

    def __init__(self, cfg: Config, run: str | Path, resume: bool = False,
                 data=None, console: Console | None = None,
                 quiet: bool = False, tensorboard: bool = True):
        self.lock = RunLock(Path(run))
        existed = Path(run).exists()
        try:
            self._setup(cfg, run, resume, data, console, quiet, tensorboard)
        except BaseException:
            self.lock.release()
            if not existed:  # refused before any work: leave no folder behind, lock or not
                _remove_if_only_lock(Path(run))
            raise

    # long: the run's set-up in the order it must happen (checks, data, nets, optimisers,
    # batches, memory, previews, evaluation, resume); each step depends on the ones above
    def _setup(self, cfg: Config, run: str | Path, resume: bool, data,
               console: Console | None, quiet: bool, tensorboard: bool) -> None:
        self.cfg = cfg
        self.run = Path(run)
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.quiet = quiet
        self.tensorboard = tensorboard
        t = cfg.train
        self.dist = dist.from_env()
        if self.dist.enabled and t.batch_size % self.dist.world:
            raise GanforgeError(f"batch_size={t.batch_size} must be a multiple of the number "
                                f"of processes ({self.dist.world}): it is the global batch")
        self.device = dist.init(self.dist, pick_device(t.device), parse_duration(t.dist_timeout))
        if not self.dist.main:
            self.quiet, tensorboard, self.tensorboard = True, False, False
        self._take_lock()
        restarted = dist.restart_count() > 0 and not resume and self.run.is_dir()
        if restarted:  # torchrun --max-restarts started the processes again after a failure
            resume = ck.latest_checkpoint(self.run) is not None
            self._say(f"[yellow]restart {dist.restart_count()} of this run's processes: "
                      + ("resuming from its last checkpoint" if resume else
                         "it had no checkpoint yet, starting again") + "[/yellow]")
        refused = None
        if self.run.exists() and not resume and not restarted and self.dist.main and any(
                p.name != LOCK_FILE for p in self.run.iterdir()):
            refused = GanforgeError(f"run folder {self.run} is not empty: resume it with "
                                    f"--resume {self.run} or choose another --out")
        if dist.any_rank(refused is not None, self.dist, self.device):
            raise refused or dist.echo_of_rank0()
        if restarted and not resume and self.dist.main:
            trim_metrics(self.run, 0)
        if resume:  # eval_every may be switched on: its metric is checked for this run too
            self._check_resume()
            check_names(cfg)
            check_eval_metric(cfg)
        else:  # names, and options this run does not read (build_config checks them too)
            check_config(cfg)
        # log=None when quiet: no progress bar while a big set is decoded
        self.data = data if data is not None else load_data(
            cfg, log=None if self.quiet else self._note)
        fill_model_shape(cfg, self.data)
        dist.barrier(self.dist)  # every rank checked the run folder before rank 0 writes to it
        if self.dist.main:
            self.run.mkdir(parents=True, exist_ok=True)
            self.lock.acquire()  # a new run folder: locked as soon as it exists

        torch.manual_seed(t.seed)
        self.recipe = RECIPES[t.recipe](cfg)  # builds its nets (two generators for CycleGAN)
        # parameters that keep their init weights (freeze_d, freeze_mapping)
        self.frozen = frozen_parameters(cfg, self.recipe.nets())
        init = InitWeights(cfg) if t.init and not resume else None  # fine-tuning (--init)
        if init is not None:
            init.load(self.recipe.nets(), self._note)
        self.recipe.to(self.device)
        for note in self.recipe.notes:
            self._say(f"[yellow]{note}[/yellow]")
        self.nets = dict(self.recipe.nets())
        self.G, self.D = self.recipe.G, self.nets.get("D")
        self.speed = self._speed_options()
        self.G_ema = None
        if t.ema > 0:
            self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
            # a compiled G's forward is bound to G itself: the copy runs its own, uncompiled
            self.G_ema._compiled_call_impl = None
            self.nets["G_ema"] = self.G_ema
            if init is not None:  # the source's EMA generator, where it kept one
                init.load({"G_ema": self.G_ema}, self._note)
        self.opts = self.recipe.optimizers()
        self.base_lrs = {k: [g["lr"] for g in o.param_groups] for k, o in self.opts.items()}
        self.phases = self.recipe.phases()
        self.batches = make_batches(self.data, t.batch_size, t.seed, self.device,
                                    xflip=cfg.data.xflip, rank=self.dist.rank,
                                    world=self.dist.world)
        if self.batches.batch_size < t.batch_size:
            self._say(f"[yellow]only {self.batches.n} samples: batch size lowered to "
                      f"{self.batches.batch_size}[/yellow]")
        local = self.batches.batch_size // self.dist.world
        if t.batch_gpu and local % t.batch_gpu:
            raise GanforgeError(f"batch_gpu={t.batch_gpu} must divide the batch of each process "
                                f"({local}): choose a divisor of it")
        if not t.batch_gpu:
            self._fit_memory(local)
        # noise for training comes from its own generator, saved in checkpoints
        self.noise = torch.Generator(device=self.device).manual_seed(t.seed + 1)
        # the inputs of the sample grids, the same in every grid of the run
        self.fixed = self.recipe.preview_inputs(
            self.batches, torch.Generator().manual_seed(t.seed + 2), self.device)
        self.health = (HealthMonitor(self.data, cfg, self.device)
                       if self.recipe.health_checks and self.dist.main else None)
        self.evaluator = None
        if t.eval_every and self.dist.main:  # rank 0 alone evaluates
            from .evaluator import make_evaluator

            self.evaluator = make_evaluator(cfg, self.recipe, self.data, self.device,
                                            log=self._note)
        self.step = 0  # G steps
        self.batch_index = 0  # real batches drawn: the data position
        self.images_seen = 0
        self.train_seconds = 0.0  # training time of the whole run, over every resume
        self._t0: float | None = None  # when this session's training loop started
        self._limits: tuple = (None, None, None)  # max_steps, max_batches, max_seconds
        self.lr_scale = 1.0
        self.rollbacks = 0
        self.ema_updates = 0
        self._ema_beta = t.ema  # the EMA decay of this step (ema_end schedules it)
        self._standing_at = -1  # ema_updates when G_ema's BatchNorm statistics were measured
        self.last: dict[str, float] = {}
        self._interrupted = False
        self._samples_off = False  # set when the disk refused a sample grid
        if resume:
            self._resume()
        if self.dist.main:
            cfg.save(self.run / "config.json")
            if getattr(self.data, "class_names", None):
                atomic_write_text(self.run / "classes.json",
                                  json.dumps(self.data.class_names) + "\n")

    # -- helpers ----------------------------------------------------------------------------

    def _take_lock(self) -> None:
        """Rank 0 locks an existing run folder before reading or writing it; every rank stops
        when it is refused (none waits at a barrier for a rank 0 that left)."""
        refused = None
        if self.dist.main and self.run.exists():
            try:
                self.lock.acquire()
            except GanforgeError as e:
                refused = e
        if dist.any_rank(refused is not None, self.dist, self.device):
            raise refused or dist.echo_of_rank0()

    def _disk_stop(self, e: WriteFailed) -> GanforgeError:
        """The one line for an essential write (checkpoint, metrics.jsonl) the disk refused:
        what failed, where the run can go on from, and how."""
        good = ck.latest_checkpoint(self.run)
        if good is None:
            after = (f"no checkpoint was written yet: {e.fix}, then start again (remove "
                     f"{self.run} first)")
        else:
            after = (f"the last good checkpoint is {good}: {e.fix}, then continue with "
                     f"ganforge train --resume {self.run}")
        return GanforgeError(f"{e.what} at step {self.step}; training stopped; {after}")

    def _peer_stop(self, lost: dist.PeerLost) -> GanforgeError:
        """The one line for a multi-process run whose process group failed: nothing is saved
        (this step's state is half-synced); the run goes on from its last checkpoint."""
        good = ck.latest_checkpoint(self.run)
        again = f"ganforge train --resume {self.run} --nproc {self.dist.world}"
        after = (f"the run keeps its last complete checkpoint {good.name}: continue with "
                 f"{again} (or any other number of processes)" if good is not None else
                 "no checkpoint was written yet: start the run again")
        if dist.restarts_left():  # torchrun --max-restarts starts every process again
            after = (f"torchrun restarts the processes ({dist.restarts_left()} restarts left), "
                     "from " + (f"checkpoint {good.name}" if good is not None else "the start"))
        return GanforgeError(f"process {self.dist.rank}: {lost} at step {self.step} "
                             f"(dist_timeout={self.cfg.train.dist_timeout}); {after}")

    def _check_space(self) -> None:
        """Warn (one line) when the checkpoints to come will not fit in the free space: the
        weights of every net plus the optimisers' state (2 moments a weight for Adam), times
        keep_last + 1 (a new one is written before the oldest goes)."""
        free = free_space(ck.ckpt_dir(self.run))
        if free is None:
            return
        size = sum(v.numel() * v.element_size() for n in self.nets.values()
                   for v in n.state_dict().values())
        for o in self.opts.values():
            for g in o.param_groups:
                moments = 2 if "betas" in g else 1 if g.get("momentum") else 0
                size += sum(p.numel() * p.element_size() * moments for p in g["params"])
        copies = self.cfg.train.keep_last + 1 + (self.evaluator is not None)
        need = size * copies - sum(f.stat().st_size for c in ck.list_checkpoints(self.run)
                                   for f in c.iterdir())
        if need > free:
            self.console.print(
                f"warning: the checkpoints of this run need about {format_bytes(need)} "
                f"({copies} of {format_bytes(size)}) and {ck.ckpt_dir(self.run)} has "
                f"{format_bytes(free)} free: free some space, lower keep_last or use another "
                "--out", markup=False, highlight=False)

    def _say(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text)

    def _note(self, text: str) -> None:
        """Plain text (file names may hold [brackets] that rich would read as markup)."""
        if not self.quiet:
            self.console.print(text, markup=False, highlight=False)

    def _fit_memory(self, local: int) -> None:
        """Measure one step's memory on a copy of the recipe (:mod:`.memory`); when the batch
        does not fit in the free memory, accumulate over micro-batches that do (``batch_gpu``,
        saved with the run), or stop before any work when not even one sample fits."""
        free = memory.available_bytes(self.device)
        if free is None:
            return
        rng = torch.random.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        try:
            recipe = copy.deepcopy(self.recipe)
            probe = torch.Generator(device=self.device).manual_seed(0)
            batch = {k: v[:2] for k, v in self._local(self.batches.get(0)).items()}
            ctx = {"step": 0, "epoch": 0.0, "progress": 0.0, "noise": probe,
                   "device": self.device,
                   "sample_z": lambda n: torch.randn(n, self.cfg.model.latent_dim,
                                                     generator=probe, device=self.device),
                   "randint": lambda high, n: torch.randint(0, high, (n,), generator=probe,
                                                            device=self.device)}
            with self.autocast():
                per_sample = memory.probe_step_bytes(recipe, batch, ctx)
            static = memory.static_bytes(self.nets)
            del recipe
        except Exception:  # noqa: BLE001 - an estimate only: train as asked without it
            return
        finally:
            torch.random.set_rng_state(rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
        fit = memory.fit_micro_batch(local, per_sample, static, free)
        if fit == local:
            return
        need = memory.gib(local * per_sample * memory.PEAK_FACTOR + static)
        if fit == 0:
            raise GanforgeError(
                f"one training step needs about {memory.gib(per_sample * memory.PEAK_FACTOR)} "
                f"per sample beside {memory.gib(static)} of weights and optimiser state, and "
                f"{self.device} has {memory.gib(free)} free: use a smaller model "
                "(g_base/d_base, channel_max) or a device with more memory")
        self.cfg.train.batch_gpu = fit
        self._say(f"[yellow]a batch of {local} needs about {need} for one step and "
                  f"{self.device} has {memory.gib(free)} free: gradients accumulated over "
                  f"{local // fit} micro-batches of {fit} (batch_gpu={fit}; same batch, same "
                  "result for nets without batch statistics)[/yellow]")

    def sample_z(self, n: int) -> torch.Tensor:
        """``n`` latent codes: this rank's slice of the ``n x world`` codes of the step."""
        z = torch.randn(n * self.dist.world, self.cfg.model.latent_dim, generator=self.noise,
                        device=self.device)
        return z[self.dist.rank * n:(self.dist.rank + 1) * n]

    def randint(self, high: int, n: int) -> torch.Tensor:
        """``n`` random integers in [0, high): this rank's slice, like :meth:`sample_z`."""
        c = torch.randint(0, high, (n * self.dist.world,), generator=self.noise,
                          device=self.device)
        return c[self.dist.rank * n:(self.dist.rank + 1) * n]

    def _local(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This rank's slice of a global batch (channels-last images when asked); image and
        vector batches come sliced already (each rank reads only its rows)."""
        if self.dist.enabled and not self.batches.sharded:
            r, w = self.dist.rank, self.dist.world
            batch = {k: v[r * (v.shape[0] // w):(r + 1) * (v.shape[0] // w)]
                     for k, v in batch.items()}
        if self.cfg.train.channels_last:
            batch = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                     for k, v in batch.items()}
        return batch

    # -- speed options ------------------------------------------------------------------------

    def _speed_options(self) -> str:
        """Apply precision / channels-last / compile / SyncBatchNorm; say what was picked."""
        t = self.cfg.train
        dev = self.device
        precision = t.precision
        if precision == "auto":
            fast_bf16 = (dev.type == "cuda" and torch.cuda.is_bf16_supported()) or (
                dev.type == "cpu" and (getattr(torch.cpu, "_is_avx512_bf16_supported",
                                               lambda: False)()
                                       or getattr(torch.cpu, "_is_amx_tile_supported",
                                                  lambda: False)()))
            precision = "bf16" if fast_bf16 else "fp32"
        self.amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        self.scaler = None
        if precision == "fp16":
            self.scaler = torch.amp.GradScaler(dev.type)
        if t.sync_bn and self.dist.enabled:
            for name, net in list(self.nets.items()):
                synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
                if synced is not net:  # a bare BatchNorm module was replaced
                    raise GanforgeError(f"sync_bn: net {name} is a bare BatchNorm")
        for net in self.nets.values():
            dist.broadcast_module(net, self.dist)
        if t.channels_last:
            for net in self.nets.values():
                net.to(memory_format=torch.channels_last)
        said = [precision + (" autocast" if self.amp_dtype is not None else "")]
        if t.channels_last:
            said.append("channels-last")
        if t.compile:
            said.append(self._compile())
        if self.dist.enabled:
            said.append(f"{self.dist.world} processes ({'nccl' if dev.type == 'cuda' else 'gloo'}"
                        f"{', SyncBatchNorm' if t.sync_bn else ''})")
        self.precision = precision
        return ", ".join(said)

    def _compile(self) -> str:
        """torch.compile every trained net, checked on one forward/backward of dummy data; on
        any failure the nets run uncompiled and the log says why."""
        probe = self.recipe.compile_probe(self.device)
        if probe is None:
            return "compile skipped (image GAN nets only for now)"
        saved = {k: copy.deepcopy(n.state_dict()) for k, n in self.nets.items()}
        try:
            for net in self.nets.values():
                net.compile()
            with self.autocast():
                out = probe()
            out.backward()
        except Exception as e:  # noqa: BLE001 - any compiler failure means: run uncompiled
            for net in self.nets.values():
                net._compiled_call_impl = None
            why = " ".join(str(e).split())[:120] or type(e).__name__
            self._say(f"[yellow]torch.compile failed ({why}); training uncompiled[/yellow]")
            return "compile failed, uncompiled"
        finally:
            for k, n in self.nets.items():
                n.load_state_dict(saved[k])
                for p in n.parameters():
                    p.grad = None
        return "compiled"

    def autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def elapsed(self) -> float:
        """Training time of the run so far, in seconds, earlier sessions included."""
        now = time.perf_counter() - self._t0 if self._t0 is not None else 0.0
        return self.train_seconds + now

    def progress(self) -> float:
        """How far the run is, in [0, 1]: the larger of step / max_steps, batches / the
        epochs' batches and elapsed / max_time (every schedule runs on it, so ``max_time``
        works with any preset). 0 before the stop rules are known."""
        max_steps, max_batches, max_seconds = self._limits
        parts = [0.0]
        if max_steps:
            parts.append(self.step / max_steps)
        if max_batches:
            parts.append(self.batch_index / max_batches)
        if max_seconds:
            parts.append(self.elapsed() / max_seconds)
        return min(1.0, max(parts))

    def lr_factor(self, progress: float | None = None) -> float:
        """The learning-rate multiplier now: rollback scale x decay schedule."""
        t = self.cfg.train
        p = self.progress() if progress is None else progress
        return self.lr_scale * interpolate(1.0, t.lr_end, p, t.lr_decay, t.lr_decay_start)

    def _set_lr(self, progress: float | None = None) -> None:
        """Learning rates (and Adam's beta2 when ``beta2_end`` is set) for this point."""
        t = self.cfg.train
        p = self.progress() if progress is None else progress
        factor = self.lr_factor(p)
        beta2 = (interpolate(t.beta2, t.beta2_end, p) if t.beta2_end is not None
                 and t.optimizer == "adam" else None)
        for k, o in self.opts.items():
            for g, lr in zip(o.param_groups, self.base_lrs[k]):
                g["lr"] = lr * factor
                if beta2 is not None and "betas" in g:
                    g["betas"] = (g["betas"][0], beta2)

    def _state(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "noise": self.noise.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "step": self.step,
            "batch_index": self.batch_index,
            "images_seen": self.images_seen,
            "train_seconds": self.elapsed(),
            "lr_scale": self.lr_scale,
            "rollbacks": self.rollbacks,
            "ema_updates": self.ema_updates,
            "last": dict(self.last),
            "best_eval": dict(self.evaluator.best) if self.evaluator and self.evaluator.best
            else None,
            "optimizers": {k: o.state_dict() for k, o in self.opts.items()},
            "recipe": self.recipe.state_dict(),
            "rng": rng,
        }

    def save(self) -> Path | None:
        if not self.dist.main:
            return None  # rank 0 alone writes checkpoints
        self.standing_stats()
        meta = {"arch": self.cfg.model.arch, "step": str(self.step)}
        return ck.save_checkpoint(self.run, self.step, self.nets, self._state(),
                                  keep_last=self.cfg.train.keep_last, meta=meta)

    def _restore(self, path: Path) -> None:
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
            self.batch_index = int(st.get("batch_index", self.step))
            self.images_seen = int(st["images_seen"])
            if self._t0 is None:  # a rollback mid-run keeps counting the time it lost
                self.train_seconds = float(st.get("train_seconds", 0.0))
            self.lr_scale = float(st.get("lr_scale", 1.0))
            self.rollbacks = int(st.get("rollbacks", 0))
            self.ema_updates = int(st.get("ema_updates", 0))
            self._standing_at = -1
            self.last = dict(st.get("last", {}))
            self.recipe.load_state_dict(st.get("recipe") or {}, self.device)
            if self.evaluator is not None and st.get("best_eval"):
                self.evaluator.best = dict(st["best_eval"])
        except (KeyError, ValueError, RuntimeError) as e:
            raise GanforgeError(f"{path}/state.pt does not fit this run ({e}); it was written "
                                "by another model or version") from None
        self._set_lr()

    def _check_resume(self) -> None:
        """Only the :data:`~ganforge.config.RESUMABLE` keys may differ from the saved run."""
        path = self.run / "config.json"
        if not path.is_file():
            return  # _resume says what is missing
        changed = resume_changes(Config.load(path), self.cfg)
        if changed:
            names = [k.split(".", 1)[1] for k in changed]
            raise GanforgeError(
                f"{', '.join(names)} cannot change when resuming {self.run} (the nets, data and "
                f"recipe are fixed by the run); only {', '.join(sorted(RESUMABLE))} can: load "
                "its config (Config.load(run / 'config.json')) and change those, or start a "
                "new run")

    def _resume(self) -> None:
        ck.clean_partial(self.run)
        self._restore(ck.find_checkpoint(self.run))
        if self.dist.main:  # the lines logged after that checkpoint belong to a lost trajectory
            trim_metrics(self.run, self.step)
        self._say(f"resumed {self.run} at step {self.step} ({self.images_seen / 1000:.1f} kimg)")

    @property
    def G_eval(self) -> torch.nn.Module:
        """The generator used for samples and metrics: the EMA one when there is one (with
        its BatchNorm statistics measured, see :meth:`standing_stats`)."""
        if self.G_ema is None:
            return self.G
        self.standing_stats()
        return self.G_ema

    STANDING_BATCHES = 8

    @torch.no_grad()
    def standing_stats(self) -> None:
        """Measure the BatchNorm statistics of the EMA generator on its own outputs.

        G_ema's weights are an average over many steps, but the running means and variances it
        would otherwise carry are the training G's, which has moved on from that average: the
        mismatch grows as a run goes on and costs quality late in it (digits, the former AC-GAN
        default: classifier FID 12.2 -> 8.2 at step 1,200 from this alone). Like BigGAN's "standing
        statistics": reset them, run ``STANDING_BATCHES`` batches of fresh z (and labels)
        through G_ema in train mode, keep the cumulative average. Done before G_ema is used or
        saved, once per EMA update; a no-op for nets without BatchNorm. It draws from its own
        generator (seeded by the run's seed and step), never from the training noise, and the
        next EMA update copies G's statistics back, so training and resume are unchanged."""
        G = self.G_ema
        if G is None or self._standing_at == self.ema_updates:
            return
        self._standing_at = self.ema_updates
        norms = [m for m in G.modules()
                 if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        if not norms:
            return
        gen = torch.Generator(device=self.device).manual_seed(
            self.cfg.train.seed * 1_000_003 + self.step)
        n = max(2, self.cfg.train.batch_size // self.dist.world)
        inputs = [self.recipe.standing_inputs(n, gen, self.device)
                  for _ in range(self.STANDING_BATCHES)]
        if inputs[0] is None:  # a recipe whose generator is not measured this way
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches below
            if isinstance(m, torch.nn.SyncBatchNorm):  # measured by this process alone
                m.forward = types.MethodType(torch.nn.modules.batchnorm._BatchNorm.forward, m)
        G.train()
        try:
            for args in inputs:
                G(*args)
        finally:
            G.eval()
            for m, mom in zip(norms, momenta):
                m.momentum = mom
                m.__dict__.pop("forward", None)

    @torch.no_grad()
    def fixed_samples(self) -> torch.Tensor:
        G = self.G_eval
        was_training = {k: n.training for k, n in self.nets.items()}
        for n in self.nets.values():
            n.eval()
        try:
            return self.recipe.preview(G, self.fixed)
        finally:
            for k, n in self.nets.items():
                n.train(was_training[k])

    def write_samples(self, name: str) -> tuple[Path, torch.Tensor | None]:
        """The fixed-z samples as ``RUN/samples/NAME.png``: an 8x8 grid for images, a scatter
        plot for vectors. Returns (path, uint8 grid or None)."""
        path = self.run / "samples" / f"{name}.png"
        if not self.dist.main or self._samples_off:
            return path, None
        try:
            return path, save_preview(self.fixed_samples(), path, self.data)
        except Exception as e:  # noqa: BLE001 - sorted below: write failures only
            failed = write_failure(e, path)
            if failed is None:
                raise
        self._samples_off = True  # a grid is not worth a run: warn once, train on
        self.console.print(f"warning: sample grids off: {failed.what} - training goes on without "
                           "them", markup=False, highlight=False)
        return path, None

    def stop_rules(self) -> tuple[int | None, int | None]:
        """(last G step, last batch index) allowed by max_steps and epochs."""
        t = self.cfg.train
        steps = t.max_steps
        batches = math.ceil(t.epochs * self.batches.steps_per_epoch) if t.epochs else None
        return steps, batches

    def total_steps(self) -> int | None:
        steps, batches = self.stop_rules()
        n_critic = self.cfg.train.n_critic
        by_epochs = math.ceil(batches / n_critic) if batches is not None else None
        limits = [v for v in (steps, by_epochs) if v is not None]
        return min(limits) if limits else None

    # -- the loop ---------------------------------------------------------------------------

    def train(self) -> TrainResult:
        """Train to the stop rules; the run's lock is released at the end, however it ends.
        A disk that refuses a checkpoint or metrics.jsonl stops the run in one line
        (:meth:`_disk_stop`); one that refuses sample grids or TensorBoard only warns."""
        try:
            if self.dist.main:
                self.lock.acquire()
            return self._train()
        except WriteFailed as e:
            raise self._disk_stop(e) from None
        except Exception as e:  # a collective failed: another rank died or hung
            lost = dist.peer_failure(e) if self.dist.enabled else None
            if lost is None:
                raise
            raise self._peer_stop(lost) from None
        finally:
            self.lock.release()

    # long: the training loop itself, kept in one piece so a step reads top to bottom
    # (stop rules, phases, logging, evaluation, checkpoints, divergence), as nanoGPT's
    def _train(self) -> TrainResult:
        t = self.cfg.train
        max_steps, max_batches = self.stop_rules()
        total = self.total_steps()
        max_seconds = parse_duration(t.max_time) if t.max_time else None
        self._limits = (max_steps, max_batches, max_seconds)
        if total is None and max_seconds is None:
            raise GanforgeError("no stopping rule: set max_steps, epochs or max_time")
        spe = self.batches.steps_per_epoch
        kind = describe_data(self.data, self.batches)
        self._say(
            f"[bold]ganforge[/bold] {self.cfg.preset} on {self.data.name}: {kind}, "
            f"batch {self.batches.batch_size}, {spe} batches/epoch, device {self.device} "
            f"({self.speed}), run {self.run}")
        logger = RunLogger(self.run, total, self.step, self.console, self.tensorboard,
                           self.quiet, files=self.dist.main)
        if self.dist.main:
            self._check_space()
        window, epoch_sums = Meter(), Meter()  # scalars since the last log line / epoch start
        t0 = self._t0 = time.perf_counter()
        t_log, seen_log = t0, self.images_seen
        health_every = t.health_every or t.log_every
        stopped_by = "max_steps"
        ctx: dict = {}
        restore_sigint = self._defer_sigint()
        try:
            while True:
                reason = None
                if self._interrupted:
                    reason = ("terminated" if self._interrupted == "terminated"  # SIGTERM
                              else "interrupt")  # Ctrl-C (or True, set from Python)
                elif max_steps is not None and self.step >= max_steps:
                    reason = "max_steps"
                elif max_batches is not None and self.batch_index >= max_batches:
                    reason = "epochs"
                elif max_seconds is not None and self.elapsed() >= max_seconds:
                    reason = "max_time"
                # every rank stops at the same step, for the same reason (clocks and signals
                # differ between ranks): the most urgent reason of any rank
                code = dist.max_rank(STOP_REASONS.index(reason), self.dist, self.device)
                if code:
                    stopped_by = STOP_REASONS[code]
                    break
                epoch_before = self.batch_index // spe
                progress = dist.rank0_value(self.progress(), self.dist, self.device)
                ctx = {"step": self.step, "epoch": self.batch_index / spe,
                       "progress": progress, "sample_z": self.sample_z,
                       "randint": self.randint, "noise": self.noise, "device": self.device}
                self._set_lr(progress)
                self._ema_beta = self.ema_beta(progress)
                out = self._one_step(ctx)
                window.add(out)
                epoch_sums.add(out)
                self.step += 1
                logger.step(self.step)

                if self.step % t.log_every == 0 or self.step == total:
                    now = time.perf_counter()
                    stats = window.mean()
                    if not self._finite(stats):
                        if self._diverged(stats, logger):
                            window, epoch_sums = Meter(), Meter()
                            continue
                    stats["img/s"] = (self.images_seen - seen_log) / max(now - t_log, 1e-9)
                    if self.health is not None and (self.step % health_every == 0
                                                    or self.step == total):
                        stats.update(self.health.metrics(self))
                        for w in self.health.check(self.step, stats, self.progress()):
                            logger.line(f"[yellow]warning (step {self.step}): {w}[/yellow]")
                    self.last = stats
                    logger.log(self.step, self.images_seen / 1000, stats)
                    window, t_log, seen_log = Meter(), now, self.images_seen
                if self.batch_index // spe > epoch_before:
                    logger.line(f"epoch {self.batch_index // spe:>4} step {self.step:>7} "
                                + _fmt(epoch_sums.mean()), throttle=5.0)
                    epoch_sums = Meter()
                if t.sample_every and self.step % t.sample_every == 0:
                    _, grid = self.write_samples(f"step_{self.step:08d}")
                    if grid is not None:
                        thin_samples(self.run / "samples", t.keep_samples, t.sample_every)
                        # TensorBoard keeps every image it gets: the same thinning, as it goes
                        # (the grids it is sent grow with the log of the run's length)
                        i = self.step // t.sample_every
                        if not t.keep_samples or i % grid_stride(i, t.keep_samples) == 0:
                            logger.image("samples", grid, self.step)
                if self.evaluator is not None and self.step % t.eval_every == 0:
                    self.run_eval(logger)
                if t.checkpoint_every and self.step % t.checkpoint_every == 0:
                    if window.count and not self._finite(window.mean()):
                        if self._diverged(window.mean(), logger):
                            window, epoch_sums = Meter(), Meter()
                            continue
                    self.save()
            if self.health is not None:
                for w in self.health.final(self.step):
                    logger.line(f"[yellow]warning (end): {w}[/yellow]", throttle=0.0)
            # the end of the run is always scored (the "best" checkpoint may be the last)
            stopped_early = stopped_by in ("interrupt", "terminated")
            if (self.evaluator is not None and self.step % t.eval_every and not stopped_early
                    and (not window.count or self._finite(window.mean()))):
                self.run_eval(logger)
        except KeyboardInterrupt:  # a second Ctrl-C: stop mid-step, still save what we have
            stopped_by = "interrupt"
        finally:
            restore_sigint()
            self.batches.close()  # the read-ahead thread of a set on disk
            self.train_seconds = self.elapsed()
            self._t0 = None
            logger.close()
        del ctx
        if window.count:
            stats = window.mean()
            if not self._finite(stats):
                self._diverged(stats, None, allow_rollback=False)
            self.last = stats
        self.save()
        final, _ = self.write_samples("final")
        dist.barrier(self.dist)  # rank 0's last checkpoint is written before anyone returns
        dist.shutdown(self.dist)  # a clean exit of the process group on every rank
        elapsed = time.perf_counter() - t0
        samples = "off (see the warning above)" if self._samples_off else final
        self._say(f"done: {self.step} steps ({self.images_seen / 1000:.1f} kimg) in "
                  f"{format_duration(elapsed)}, stopped by {stopped_by}; samples {samples}; "
                  f"checkpoint {ck.latest_checkpoint(self.run)}")
        return TrainResult(self.run, self.step, self.images_seen, self.last, stopped_by, elapsed)

    def run_eval(self, logger: RunLogger) -> dict[str, float]:
        """Score the sampling generator, log the metrics, keep ``checkpoints/best``."""
        ev = self.evaluator
        t0 = time.perf_counter()
        m = ev(self.G_eval)
        took = time.perf_counter() - t0
        if self.dist.enabled and took > parse_duration(self.cfg.train.dist_timeout) / 2:
            logger.line(f"[yellow]warning: the evaluation took {format_duration(took)}, more "
                        f"than half of dist_timeout={self.cfg.train.dist_timeout} that the "
                        f"other processes wait for it: raise dist_timeout[/yellow]", throttle=0.0)
        value = m[ev.metric]
        if math.isfinite(value) and ev.improved(value):
            ev.best = {"metric": ev.metric, "value": float(value), "step": self.step}
            meta = {"arch": self.cfg.model.arch, "step": str(self.step),
                    "best": f"{ev.metric}={value:.6g}"}
            ck.save_checkpoint(self.run, self.step, self.nets, self._state(), meta=meta,
                               name="best")
        improved = ev.best is not None and ev.best["step"] == self.step
        said = self.recipe.evaluated(self.step, improved, self.progress())
        if said:
            logger.line(said, throttle=0.0)
        logger.log(self.step, self.images_seen / 1000, {f"eval/{k}": float(v)
                                                       for k, v in m.items()})
        best = ev.best
        logger.line(f"eval step {self.step}: " + "  ".join(
            f"{k} {v:.4g}" for k, v in m.items() if k in ("fid", "kid", "precision", "recall",
                                                         "modes", "high_quality", "cond_acc",
                                                         "class_kl", "coverage", "l1", "psnr",
                                                         "ssim", "psnr_y", "ssim_y", "cycle"))
            + (f"  (best {best['metric']} {best['value']:.4g} at step {best['step']})"
               if best else "") + f"  [{time.perf_counter() - t0:.1f}s]", throttle=0.0)
        return m

    def _defer_sigint(self):
        """First Ctrl-C, or SIGTERM (a cluster scheduler's or torchrun's stop, which sends
        SIGKILL a grace period later): finish the current step, checkpoint, stop, so resume
        stays exact. A second Ctrl-C stops mid-step, unless it comes within a second of the
        first (torchrun's agent passes the terminal's Ctrl-C on to its processes, which got it
        already); SIGTERM never does."""
        self._interrupted = False
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        said_at = [0.0]

        def handler(signum, frame):
            now = time.monotonic()
            if self._interrupted:
                if signum == signal.SIGINT and now - said_at[0] > 1.0:
                    raise KeyboardInterrupt
                return
            self._interrupted = "interrupt" if signum == signal.SIGINT else "terminated"
            said_at[0] = now
            if self.dist.main:
                again = "Ctrl-C again to stop now" if signum == signal.SIGINT else "SIGTERM"
                self.console.print(f"[yellow]stopping after this step ({again})...[/yellow]")

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        return lambda: [signal.signal(sig, h) for sig, h in previous.items()]

    def _one_step(self, ctx: dict) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        g_stepped = False
        micro: list[dict] = []  # one context per micro-batch, kept from phase to phase
        for phase in self.phases:
            if self.step % phase.interval or (phase.when is not None and
                                              not phase.when(self.step, ctx["progress"])):
                continue
            for name, net in self.nets.items():
                net.requires_grad_(name in phase.trainable)
            for p in self.frozen:
                p.requires_grad_(False)
            opt = self.opts[phase.opt]
            for _ in range(phase.repeat):
                if phase.fresh_batch or not micro:
                    batch = self._local(self.batches.get(self.batch_index))
                    self.batch_index += 1
                    self.images_seen += self.batches.batch_size
                    chunks = self._micro_batches(batch)
                    if len(micro) != len(chunks):
                        micro = [dict(ctx, micro_batches=len(chunks)) for _ in chunks]
                    for c, chunk in zip(micro, chunks):
                        c["batch"], c["batch_index"] = chunk, self.batch_index
                opt.zero_grad(set_to_none=True)
                scalars = self.backward(phase, micro)
                params = ([p for g in opt.param_groups for p in g["params"]]
                          if self.dist.enabled else [])
                if self.scaler is not None:
                    self.scaler.unscale_(opt)
                    dist.average_gradients(params, self.dist)
                    self.scaler.step(opt)
                    self.scaler.update()
                else:
                    dist.average_gradients(params, self.dist)
                    opt.step()
                if phase.after is not None:
                    phase.after()
            for k, v in scalars.items():
                out[f"{phase.name}_loss" if k == "loss" else k] = v
            g_stepped = g_stepped or phase.opt == "G"
        if g_stepped and self.G_ema is not None:  # once a step, after G's last update
            self._update_ema()
        for name, net in self.nets.items():
            net.requires_grad_(name != "G_ema")
        for p in self.frozen:
            p.requires_grad_(False)
        return out

    def _micro_batches(self, batch: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """``batch`` in pieces of ``batch_gpu`` samples (the whole batch when it is 0)."""
        size = self.cfg.train.batch_gpu
        n = next(iter(batch.values())).shape[0]
        if not size or size >= n:
            return [batch]
        return [{k: v[i:i + size] for k, v in batch.items()} for i in range(0, n, size)]

    def backward(self, phase, micro: list[dict]) -> dict[str, torch.Tensor]:
        """The phase's gradients, accumulated over the micro-batch contexts ``micro``: each
        micro-batch's loss is weighted by its share of the batch, so the gradients equal those
        of the whole batch at once (for nets without batch statistics). Returns the phase's
        scalars, averaged the same way and detached."""
        sizes = [next(iter(c["batch"].values())).shape[0] for c in micro]
        total = sum(sizes)
        scalars: dict[str, torch.Tensor] = {}
        for c, n in zip(micro, sizes):
            w = n / total
            with self.autocast():
                s = phase.fn(c)
            loss = s["loss"].float() * w
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
            for k, v in s.items():
                v = v.detach().float() if w == 1.0 else v.detach().float() * w
                scalars[k] = scalars[k] + v if k in scalars else v
        return scalars

    def ema_beta(self, progress: float) -> float:
        """The EMA decay at this point of the run: ``ema``, moving to ``ema_end`` (cosine)."""
        t = self.cfg.train
        return t.ema if t.ema_end is None else interpolate(t.ema, t.ema_end, progress)

    @torch.no_grad()
    def _update_ema(self) -> None:
        """G_ema <- beta G_ema + (1 - beta) G, beta at most (1 + k) / (ema_warmup + k) after k
        updates (from 2 / (ema_warmup + 1)): a young run's average spans about the last
        1 / (ema_warmup - 1) of its steps (its mean age is k / (ema_warmup - 1)) until the
        scheduled decay caps it, so early weights leave the average as the run goes on."""
        self.ema_updates += 1
        beta = ema_decay(self.ema_updates, self.cfg.train.ema_warmup, self._ema_beta)
        for pe, p in zip(self.G_ema.parameters(), self.G.parameters()):
            pe.lerp_(p, 1 - beta)
        for be, b in zip(self.G_ema.buffers(), self.G.buffers()):
            be.copy_(b)

    @staticmethod
    def _finite(stats: dict[str, float]) -> bool:
        return all(math.isfinite(v) for v in stats.values())

    def _diverged(self, stats: dict[str, float], logger: RunLogger | None,
                  allow_rollback: bool = True) -> bool:
        """Non-finite losses: roll back to the last good checkpoint with halved learning rates
        (``on_divergence=rollback``; returns True), else stop without writing garbage."""
        good = ck.latest_checkpoint(self.run)
        if (allow_rollback and self.cfg.train.on_divergence == "rollback" and good is not None
                and self.rollbacks < MAX_ROLLBACKS):
            rollbacks = self.rollbacks + 1
            scale = self.lr_scale * 0.5
            at = self.step
            self._restore(good)
            self.rollbacks, self.lr_scale = rollbacks, scale
            self._set_lr()
            if logger is not None:
                logger.line(f"[yellow]warning: non-finite loss at step {at}; rolled back to "
                            f"{good.name} with learning rates x{scale:g} (rollback "
                            f"{rollbacks}/{MAX_ROLLBACKS})[/yellow]")
            return True
        kept = f"last good checkpoint kept at {good}" if good else "no checkpoint was written"
        hint = "lower lr_g/lr_d and resume" if self.cfg.train.on_divergence == "stop" else \
            "rollbacks did not help: lower lr_g/lr_d"
        raise GanforgeError(
            f"training diverged at step {self.step} (non-finite loss: {_fmt(stats)}); {kept}; "
            f"{hint}")


class Meter:
    """Running sums of per-step scalar tensors; one host sync when the mean is read."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}  # steps that reported each scalar (lazy phases: fewer)
        self.count = 0

    def add(self, scalars: dict[str, torch.Tensor]) -> None:
        for k, v in scalars.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v
            self.counts[k] = self.counts.get(k, 0) + 1
        self.count += 1

    def mean(self) -> dict[str, float]:
        return {k: float(v) / max(self.counts[k], 1) for k, v in self.sums.items()}


def _fmt(stats: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in stats.items() if k != "img/s")


def train(cfg: Config, run: str | Path, resume: bool = False, **kw) -> TrainResult:
    """Train ``cfg`` into the run folder ``run`` (resuming it when ``resume``)."""
    return Trainer(cfg, run, resume=resume, **kw).train()
