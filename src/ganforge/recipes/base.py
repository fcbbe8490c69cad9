"""The contract between a training scheme and the one training loop: :class:`Recipe` (every
method the loop calls, with its default) and the :class:`Phase` objects it hands the loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..config import Config

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


class Recipe:
    """A training scheme: its nets (built from the config, whose shape the data filled in),
    their optimisers, the phases of a step, and what the loop shows and keeps of it.

    The loop calls only these methods, on every recipe alike; the defaults here are what a
    recipe without that need does. ``G`` is the generator that samples (the loop keeps its
    EMA when ``ema > 0``); ``notes`` are lines the loop shows once at the start."""

    img2img = False  # trains on image pairs or two domains (else: noise -> samples)
    health_checks = False  # the loop's collapse / D-overpowering checks apply to it
    OPTIONS: tuple[str, ...] = ()  # TrainConfig keys read beyond options.COMMON_TRAIN
    MODEL_OPTIONS: tuple[str, ...] = ()  # ModelConfig keys read (image-to-image nets)
    G: nn.Module

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.notes: list[str] = []

    def nets(self) -> dict[str, nn.Module]:
        """Every net the run trains and checkpoints, by name (``G`` among them)."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def phases(self) -> list[Phase]:
        raise NotImplementedError

    def to(self, device: torch.device) -> None:
        for net in self.nets().values():
            net.to(device)

    def state_dict(self) -> dict:
        """What the recipe learns besides weights (saved in checkpoints)."""
        return {}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        pass

    def evaluated(self, step: int, improved: bool, progress: float) -> str | None:
        """Told after each periodic evaluation; a line to log, or None."""
        return None

    def preview_inputs(self, batches, generator: torch.Generator, device: torch.device
                       ) -> dict[str, torch.Tensor | None]:
        """The fixed inputs of the run's sample grids (the same in every grid)."""
        return batches.fixed(8)

    def preview(self, G: nn.Module, fixed: dict) -> torch.Tensor:
        """The samples of a grid from ``fixed`` (:meth:`preview_inputs`); ``G`` samples (the
        EMA generator when there is one)."""
        raise NotImplementedError

    def standing_inputs(self, n: int, generator: torch.Generator, device: torch.device
                        ) -> tuple | None:
        """Arguments of ``G`` for a batch that measures the EMA generator's BatchNorm
        statistics on its own outputs; None where they are not measured that way."""
        return None

    def compile_probe(self, device: torch.device) -> Callable[[], torch.Tensor] | None:
        """A forward through every trained net on dummy data (-> a scalar to backpropagate),
        to check ``compile``; None where compiling is not supported."""
        return None


__all__ = ["Phase", "Recipe", "Scalars"]
