"""What a run shows and records: a progress bar, epoch lines, metrics.jsonl and TensorBoard."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..utils import atomic_write_text, write_failure


class RunLogger:
    """Metrics to ``RUN/metrics.jsonl`` and ``RUN/tb/``; a live bar on a terminal."""

    def __init__(self, run: Path, total_steps: int | None, start_step: int,
                 console: Console | None = None, tensorboard: bool = True, quiet: bool = False,
                 files: bool = True):
        self.run = Path(run)
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.quiet = quiet
        # files=False (ranks other than 0 of a multi-process run): no metrics.jsonl
        self.jsonl = None
        if files:
            try:
                self.jsonl = open(self.run / "metrics.jsonl", "a", buffering=1)
            except OSError as e:
                raise (write_failure(e, self.run / "metrics.jsonl") or e) from None
        self.tb = None
        self._excepthook = None
        if tensorboard:
            self._quiet_tb_thread()
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run / "tb"), purge_step=start_step or None)
            except Exception as e:  # noqa: BLE001 - TensorBoard is optional at run time
                self.console.print(f"[yellow]TensorBoard logging off ({e})[/yellow]")
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
            TimeElapsedColumn(), TextColumn("<"), TimeRemainingColumn(),
            TextColumn("{task.fields[stats]}"), console=self.console,
            disable=quiet or not self.console.is_terminal, transient=False,
        )
        self.task = self.progress.add_task("train", total=total_steps, completed=start_step,
                                           stats="")
        self.progress.start()
        self._last_line = 0.0

    def step(self, step: int) -> None:
        self.progress.update(self.task, completed=step)

    def log(self, step: int, kimg: float, scalars: dict[str, float]) -> None:
        row = {"step": step, "kimg": round(kimg, 4), "time": round(time.time(), 3),
               **{k: (v if math.isfinite(v) else None) for k, v in scalars.items()}}
        if self.jsonl is not None:
            try:  # strict JSON: inf/nan written as null; line-buffered, so written now
                self.jsonl.write(json.dumps(row) + "\n")
            except OSError as e:
                raise (write_failure(e, self.run / "metrics.jsonl") or e) from None
        if self.tb is not None:
            self._tb(lambda tb: [tb.add_scalar(k.replace("(", "_").replace(")", ""), v, step)
                                 for k, v in scalars.items() if math.isfinite(v)])
        self.progress.update(self.task, stats=format_stats(scalars))

    def image(self, tag: str, grid_uint8: torch.Tensor, step: int) -> None:
        if self.tb is not None:
            self._tb(lambda tb: tb.add_image(tag, grid_uint8, step))

    def _tb(self, write) -> None:
        """TensorBoard is optional: a disk that refuses its events turns it off (one warning
        line) and the run goes on with metrics.jsonl."""
        try:
            write(self.tb)
        except Exception as e:  # noqa: BLE001 - sorted below: write failures only
            failed = write_failure(e, self.run / "tb")
            if failed is None:
                raise
            self.tb = None
            self.warn(f"TensorBoard logging off: {failed.what} - training goes on without it")

    def warn(self, text: str) -> None:
        """One warning line (shown even when quiet: something the user must know)."""
        self.progress.console.print(f"warning: {text}", markup=False, highlight=False)

    def _quiet_tb_thread(self) -> None:
        """TensorBoard writes events from its own thread, which prints a traceback when the
        disk refuses them before the next call raises the same error here: keep it quiet."""
        previous = threading.excepthook

        def hook(args):
            if type(args.thread).__name__ == "_AsyncWriterThread" and isinstance(
                    args.exc_value, Exception) and write_failure(args.exc_value, self.run):
                return
            previous(args)

        self._excepthook = previous
        threading.excepthook = hook

    def line(self, text: str, throttle: float = 0.0) -> None:
        """A permanent line above the bar; with ``throttle``, at most one per that many seconds."""
        now = time.monotonic()
        if throttle and now - self._last_line < throttle:
            return
        self._last_line = now
        if not self.quiet:
            self.progress.console.print(text)

    def close(self) -> None:
        self.progress.stop()
        if self.jsonl is not None:
            try:
                self.jsonl.close()
            except OSError:  # every line was written (and checked) as it came
                pass
        if self.tb is not None:
            self._tb(lambda tb: tb.close())
        if self._excepthook is not None:
            threading.excepthook, self._excepthook = self._excepthook, None


_GRID = re.compile(r"step_(\d{8})\.png")


def grid_stride(n: int, keep: int) -> int:
    """The spacing (1, 2, 4 ... grids) at which at most ``keep`` of grids 1..n are kept."""
    stride = 1
    while keep and n // stride > keep:
        stride *= 2
    return stride


def thin_samples(folder: Path, keep: int, every: int) -> int:
    """Keep at most ``keep`` sample grids ``step_NNNNNNNN.png`` in ``folder`` (0: all): the
    newest, and the others at an even spacing over the whole run (every second one of them
    goes each time the count doubles). Returns how many were deleted."""
    if not keep or not every:
        return 0
    try:
        grids = sorted((int(m.group(1)), p) for p in Path(folder).iterdir()
                       if (m := _GRID.fullmatch(p.name)))
    except OSError:
        return 0
    if len(grids) <= keep:
        return 0
    stride = grid_stride(grids[-1][0] // every, keep - 1) * every
    gone = 0
    for step, path in grids[:-1]:
        if step % stride:
            path.unlink(missing_ok=True)
            gone += 1
    return gone


def trim_metrics(run: Path, step: int) -> int:
    """Drop the lines of ``RUN/metrics.jsonl`` logged after ``step`` (the checkpoint a run
    resumes from: those steps are trained again) and a line cut short by a crash; returns how
    many went. The file is rewritten atomically, and only when something goes."""
    path = Path(run) / "metrics.jsonl"
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return 0
    kept = []
    for line in lines:
        try:
            row = json.loads(line)
            if int(row["step"]) <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            pass
    if len(kept) < len(lines):
        atomic_write_text(path, "".join(x + "\n" for x in kept))
    return len(lines) - len(kept)


def format_stats(s: dict[str, float]) -> str:
    keys = [("D_loss", "D"), ("G_loss", "G"), ("D(x)", "D(x)"), ("D(G(z))", "D(G(z))")]
    parts = [f"{label} {s[k]:.3f}" for k, label in keys if k in s]
    if "img/s" in s:
        parts.append(f"{s['img/s']:.0f} img/s")
    return "  ".join(parts)
