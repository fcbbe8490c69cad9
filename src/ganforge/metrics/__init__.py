"""Metrics.

Modules: ``modes`` (mode coverage of 2-D mixtures, PacGAN's definitions), ``frechet`` (FID's
Fréchet distance), ``kid``, ``isc`` (Inception Score), ``prdc`` (precision/recall,
density/coverage), ``classes`` (class coverage), ``paired`` (L1, PSNR, SSIM, LPIPS),
``features`` (Inception and classifier feature spaces), ``classifier`` (the small classifier
behind offline features), ``selfsup`` (self-supervised feature nets for unlabelled folders),
``evaluate`` (the pipeline behind ``ganforge eval``).
"""

from __future__ import annotations

from .frechet import fid_from_features, frechet_distance
from .isc import inception_score
from .kid import kid
from .modes import mode_metrics
from .paired import paired_metrics
from .prdc import density_coverage, precision_recall

__all__ = ["density_coverage", "fid_from_features", "frechet_distance",
           "inception_score", "kid", "mode_metrics", "paired_metrics", "precision_recall"]
