"""Metrics, registered by name in :data:`METRICS` (the CLI looks them up there).

Modules: ``modes`` (mode coverage of 2-D mixtures, PacGAN's definitions), ``frechet`` (the
Fréchet distance of FID), ``classifier`` (a small image classifier for feature metrics).
"""

from __future__ import annotations

from collections.abc import Callable

from .modes import mode_metrics

METRICS: dict[str, Callable[..., dict[str, float]]] = {
    "modes": mode_metrics,  # (samples [N, D], modes [M, D], std) -> modes, high_quality, ...
}

__all__ = ["METRICS", "mode_metrics"]
