"""What every recipe hands the training loop: its phases (:class:`Phase`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Scalars = dict[str, torch.Tensor]


@dataclass
class Phase:
    name: str  # shown in logs, e.g. "D" or "G"
    opt: str  # the optimiser stepped after this phase (a key of recipe.optimizers())
    fn: Callable[[dict], Scalars]  # ctx -> {"loss": tensor, other scalars to log}
    trainable: tuple[str, ...]  # nets whose parameters need gradients in this phase
    interval: int = 1  # run on steps where step % interval == 0
    repeat: int = 1  # times in a row per step (n_critic for the D phase)
    fresh_batch: bool = False  # fetch a new batch of real data before each repeat
    after: Callable[[], None] | None = None  # run after each optimiser step (weight clipping)
    # run only where when(step, progress) is true (progress: 0 -> 1 over the run, see Trainer)
    when: Callable[[int, float], bool] | None = None


__all__ = ["Phase", "Scalars"]
