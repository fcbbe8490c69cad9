"""What a run shows and records: a progress bar, epoch lines, metrics.jsonl and TensorBoard."""

from __future__ import annotations

import json
import math
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


class RunLogger:
    """Metrics to ``RUN/metrics.jsonl`` and ``RUN/tb/``; a live bar on a terminal."""

    def __init__(self, run: Path, total_steps: int | None, start_step: int,
                 console: Console | None = None, tensorboard: bool = True, quiet: bool = False,
                 files: bool = True):
        self.run = Path(run)
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.quiet = quiet
        # files=False (ranks other than 0 of a multi-process run): no metrics.jsonl
        self.jsonl = open(self.run / "metrics.jsonl", "a", buffering=1) if files else None
        self.tb = None
        if tensorboard:
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
            self.jsonl.write(json.dumps(row) + "\n")  # strict JSON: inf/nan written as null
        if self.tb is not None:
            for k, v in scalars.items():
                if math.isfinite(v):
                    self.tb.add_scalar(k.replace("(", "_").replace(")", ""), v, step)
        self.progress.update(self.task, stats=format_stats(scalars))

    def image(self, tag: str, grid_uint8: torch.Tensor, step: int) -> None:
        if self.tb is not None:
            self.tb.add_image(tag, grid_uint8, step)

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
            self.jsonl.close()
        if self.tb is not None:
            self.tb.close()


def format_stats(s: dict[str, float]) -> str:
    keys = [("D_loss", "D"), ("G_loss", "G"), ("D(x)", "D(x)"), ("D(G(z))", "D(G(z))")]
    parts = [f"{label} {s[k]:.3f}" for k, label in keys if k in s]
    if "img/s" in s:
        parts.append(f"{s['img/s']:.0f} img/s")
    return "  ".join(parts)
