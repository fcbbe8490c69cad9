"""Schedules over training progress, a number in [0, 1]: the larger of step / max_steps,
batches / (epochs x batches per epoch) and elapsed / max_time, so a run on a time budget follows
the same curve as a run on a step budget. Pure functions."""

from __future__ import annotations

import math

SHAPES = ("none", "linear", "cosine")


def ramp(progress: float, shape: str = "cosine", start: float = 0.0) -> float:
    """How far a schedule has gone from its start value (0) to its end value (1) at
    ``progress``: 0 until ``start``, then linearly or along a half cosine to 1 at progress 1
    (``none``: always 0)."""
    if shape == "none":
        return 0.0
    if shape not in SHAPES:
        raise ValueError(f"schedule shape {shape!r}: use one of {', '.join(SHAPES)}")
    q = min(max((progress - start) / max(1.0 - start, 1e-12), 0.0), 1.0)
    return q if shape == "linear" else 0.5 * (1.0 - math.cos(math.pi * q))


def interpolate(begin: float, end: float, progress: float, shape: str = "cosine",
                start: float = 0.0) -> float:
    """The scheduled value at ``progress``: ``begin`` until ``start``, ``end`` at the end."""
    return begin + (end - begin) * ramp(progress, shape, start)
