"""Distribution metrics of generated images against real ones, on a chosen feature space.

:func:`score_features` is the numerics (FID with its bootstrap std, KID, IS,
precision/recall, density/coverage, class coverage, conditional accuracy) on features already
extracted; :func:`real_features` extracts (and caches) the real side; :mod:`ganforge.evaluate`
is what ``ganforge eval`` runs on them.

Real features are cached under ``ganforge_home()/cache/features`` by (dataset content hash,
feature weights, resolution, sample count), so a second evaluation against the same data only
extracts the fakes.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import GanforgeError
from .classes import class_coverage
from .features import FeatureSpace
from .frechet import frechet_distance, gaussian_stats
from .isc import inception_score
from .kid import kid
from .prdc import density_coverage, precision_recall

Log = Callable[[str], None]

METRIC_NAMES = ("fid", "kid", "is", "pr", "dc", "classes")
DEFAULT_METRICS = ("fid", "kid", "is", "pr", "dc", "classes")
# metric -> True when higher is better (what eval_metric may pick the best checkpoint by)
HIGHER_IS_BETTER = {"fid": False, "kid": False, "class_kl": False, "reverse_kl": False,
             "is": True, "precision": True, "recall": True, "density": True, "coverage": True,
             "classes_covered": True, "cond_acc": True, "modes": True, "high_quality": True,
             "l1": False, "psnr": True, "ssim": True, "cycle": False, "psnr_y": True,
             "ssim_y": True}
BOOTSTRAP_MAX_DIM = 512  # bootstrap the FID only where a covariance + eigh is cheap
BOOTSTRAP_ROUNDS = 50


def parse_metrics(spec: str | tuple[str, ...] | None) -> tuple[str, ...]:
    if spec is None:
        return DEFAULT_METRICS
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip().lower() for n in names if n.strip()]
    alias = {"precision": "pr", "recall": "pr", "density": "dc", "coverage": "dc",
             "isc": "is", "class": "classes"}
    names = [alias.get(n, n) for n in names]
    bad = [n for n in names if n not in METRIC_NAMES]
    if bad or not names:
        raise GanforgeError(f"unknown metric {bad[0] if bad else spec!r}: use any of "
                            f"{','.join(METRIC_NAMES)} (comma-separated)")
    return tuple(dict.fromkeys(names))


def content_hash(images: torch.Tensor, labels: torch.Tensor | None = None) -> str:
    h = hashlib.sha256()
    h.update(str(tuple(images.shape)).encode())
    step = 4096
    for i in range(0, images.shape[0], step):
        h.update(images[i:i + step].contiguous().numpy().tobytes())
    if labels is not None:
        h.update(labels.contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def _cache_dir() -> Path:
    from ..data.dataset import ganforge_home

    return ganforge_home() / "cache" / "features"


def real_features(space: FeatureSpace, images: torch.Tensor, n: int | None = None,
                  labels: torch.Tensor | None = None, cache: bool = True, log: Log | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features (and class probabilities) of ``n`` real images (a seeded random subset when
    the set is bigger; all when ``n`` is None), from the cache when they were computed before."""
    from safetensors.torch import load_file, save

    from ..utils import atomic_write_bytes

    n_total = images.shape[0]
    n = n_total if n is None else min(int(n), n_total)
    key = hashlib.sha256(f"{content_hash(images, labels)}|{space.key}|{images.shape[-1]}|{n}"
                         .encode()).hexdigest()[:24]
    path = _cache_dir() / f"{key}.safetensors"
    if cache and path.is_file():
        try:
            t = load_file(str(path))
            return t["features"], t.get("probs")
        except Exception:  # a broken cache file is recomputed
            pass
    idx = torch.randperm(n_total, generator=torch.Generator().manual_seed(0))[:n]
    idx = idx.sort().values
    t0 = time.perf_counter()
    feats, probs = space(images[idx])
    if log is not None:
        log(f"real features: {n} images in {time.perf_counter() - t0:.1f}s (cached)")
    if cache:
        tensors = {"features": feats.contiguous()}
        if probs is not None:
            tensors["probs"] = probs.contiguous()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, save(tensors))
    return feats, probs


def fid_bootstrap_std(real: torch.Tensor, fake: torch.Tensor, rounds: int = BOOTSTRAP_ROUNDS,
                      seed: int = 0) -> float:
    """Standard deviation of the FID over ``rounds`` resamplings (with replacement) of both
    sets: the spread due to the finite sample counts. (A percentile interval would mislead:
    resampling duplicates rows, which shifts every bootstrap FID upwards.)"""
    g = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(rounds):
        r = real[torch.randint(0, real.shape[0], (real.shape[0],), generator=g)]
        f = fake[torch.randint(0, fake.shape[0], (fake.shape[0],), generator=g)]
        vals.append(frechet_distance(*gaussian_stats(r), *gaussian_stats(f)))
    return float(torch.tensor(vals, dtype=torch.float64).std())


def score_features(real: torch.Tensor, fake: torch.Tensor, metrics: tuple[str, ...],
                   real_probs: torch.Tensor | None = None,
                   fake_probs: torch.Tensor | None = None,
                   data_hist: torch.Tensor | None = None,
                   fake_labels: torch.Tensor | None = None,
                   bootstrap: bool = True, seed: int = 0) -> dict[str, float]:
    """Every requested metric on features ``real`` [N, F] and ``fake`` [M, F]. Metrics that
    need class probabilities (is, classes) are skipped when the space has none."""
    out: dict[str, float] = {}
    real, fake = real.float(), fake.float()
    if "fid" in metrics:
        out["fid"] = frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))
        if bootstrap and real.shape[1] <= BOOTSTRAP_MAX_DIM:
            out["fid_std"] = fid_bootstrap_std(real, fake, seed=seed)
    if "kid" in metrics:
        out["kid"], out["kid_std"] = kid(real, fake, seed=seed)
    if "is" in metrics and fake_probs is not None:
        splits = 10 if fake_probs.shape[0] >= 10 else 1
        out["is"], out["is_std"] = inception_score(fake_probs, splits)
    if "pr" in metrics:
        out.update(precision_recall(real, fake))
    if "dc" in metrics:
        out.update(density_coverage(real, fake))
    if "classes" in metrics and fake_probs is not None:
        hist = data_hist
        if hist is None and real_probs is not None:
            hist = torch.bincount(real_probs.argmax(1), minlength=real_probs.shape[1]).double()
        if hist is not None:
            out.update(class_coverage(fake_probs, hist))
        if fake_labels is not None:
            out["cond_acc"] = float((fake_probs.argmax(1) == fake_labels).double().mean())
    return out


def _data_hist(labels: torch.Tensor | None, num_classes: int) -> torch.Tensor | None:
    if labels is None:
        return None
    return torch.bincount(labels.long(), minlength=num_classes).double()


def evaluate_images(space: FeatureSpace, real_images: torch.Tensor, fake_images: torch.Tensor,
                    metrics: tuple[str, ...], real_labels: torch.Tensor | None = None,
                    class_names: list[str] | None = None, fake_labels: torch.Tensor | None = None,
                    n_real: int | None = None, seed: int = 0, cache: bool = True,
                    log: Log | None = None) -> dict[str, float]:
    rf, rp = real_features(space, real_images, n_real, real_labels, cache=cache, log=log)
    ff, fp = space(fake_images)
    # the data's class shares count only when the space's classes are the data's classes
    same_classes = (space.class_names is not None and class_names is not None
                    and list(space.class_names) == list(class_names))
    hist = _data_hist(real_labels, len(class_names)) if same_classes else None
    return score_features(rf, ff, metrics, rp, fp, hist,
                          fake_labels if same_classes else None, seed=seed)


def finite_json(d: dict) -> dict:
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in d.items()}
