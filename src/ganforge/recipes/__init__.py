"""Training schemes: which nets, which optimisers, which phases, the losses of each phase.

A recipe never calls ``backward``: each :class:`Phase` returns a dict of scalars whose ``"loss"``
entry the one training loop (:mod:`ganforge.train`) backpropagates into the phase's optimiser.
"""

from __future__ import annotations

from .base import Phase, Scalars
from .gan import GANRecipe
from .img2img import CycleGANRecipe, Pix2PixRecipe, SRGANRecipe

RECIPES: dict[str, type] = {
    "gan": GANRecipe,
    "pix2pix": Pix2PixRecipe,
    "cyclegan": CycleGANRecipe,
    "srgan": SRGANRecipe,
}

__all__ = ["RECIPES", "Phase", "Scalars"]
