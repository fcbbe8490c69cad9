"""Training schemes: which nets, which optimisers, which phases, the losses of each phase.

A recipe never calls ``backward``: each :class:`Phase` returns a dict of scalars whose ``"loss"``
entry the one training loop (:mod:`ganforge.train`) backpropagates into the phase's optimiser.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .gan import GANRecipe
from .img2img import CycleGANRecipe, Pix2PixRecipe, SRGANRecipe

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


RECIPES: dict[str, type] = {
    "gan": GANRecipe,
    "pix2pix": Pix2PixRecipe,
    "cyclegan": CycleGANRecipe,
    "srgan": SRGANRecipe,
}
