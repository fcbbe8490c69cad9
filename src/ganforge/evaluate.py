"""What ``ganforge eval`` runs: a trained run (its samples against its data, or its held-out
pairs for image-to-image runs) or two folders of images, scored by
:mod:`ganforge.metrics.evaluate` on a chosen feature space; a run's perceptual path length by
:mod:`ganforge.metrics.ppl`."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .errors import GanforgeError
from .metrics.evaluate import (
    Log,
    evaluate_images,
    parse_metrics,
    score_features,
)


def _sample_uint8(g, n: int, seed: int, batch_size: int = 500) -> tuple[torch.Tensor,
                                                                        torch.Tensor | None]:
    from .utils import to_uint8

    labels = g.labels(n)
    z = g.noise(n, seed)
    parts = [to_uint8(g.generate(z[i:i + batch_size],
                                 labels[i:i + batch_size] if labels is not None else None))
             for i in range(0, n, batch_size)]
    return torch.cat(parts), labels


PPL_MAX_PAIRS = 10_000  # ppl walks min(--n, this) latent pairs (the paper: 100,000)


def _split_ppl(metrics: str | tuple[str, ...] | None
               ) -> tuple[str | tuple[str, ...] | None, bool]:
    """``(the other metrics, whether ppl is asked for)``; the others None when only ppl is."""
    if metrics is None:
        return None, False
    names = [x.strip().lower() for x in (metrics.split(",") if isinstance(metrics, str)
                                         else metrics)]
    if "ppl" not in names:
        return metrics, False
    rest = tuple(x for x in names if x and x != "ppl")
    return rest or None, True


def _parse(metrics: str | tuple[str, ...] | None) -> tuple[str, ...]:
    try:
        return parse_metrics(metrics)
    except GanforgeError as e:
        raise GanforgeError(f"{e}, or ppl (a run's perceptual path length)") from None


def _ppl_metrics(g, n: int, seed: int, log: Log | None = None) -> tuple[dict[str, float], dict]:
    """PPL in z (every noise-to-image run) and in w (StyleGAN runs): min(n, PPL_MAX_PAIRS)
    pairs, end-points, eps 1e-4, fixed per-pixel noise; labels drawn uniformly, one per pair.
    Returns the metrics and the report keys naming the setup."""
    from .metrics.ppl import EPSILON, lerp, path_lengths, ppl, ppl_distance, slerp_norm, slerp_unit

    pairs, G, dev = min(n, PPL_MAX_PAIRS), g.G, g.device
    distance, name = ppl_distance(dev, g.cfg.model.resolution)

    def draw_z(m: int, gen: torch.Generator):
        z = torch.randn(2 * m, g.latent_dim, generator=gen).to(dev)
        c = (torch.randint(0, g.num_classes, (m,), generator=gen).to(dev)
             if g.num_classes else None)
        return z[:m], z[m:], c

    def draw_w(m: int, gen: torch.Generator):
        a, b, c = draw_z(m, gen)
        ws = G.mapping(torch.cat([a, b]), None if c is None else torch.cat([c, c]))
        return ws[:m], ws[m:], c

    def render_z(z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        if g.is_style:
            return G.synthesis(G.mapping(z, c), noise_mode="const").float()
        return G(z, c).float()

    def render_w(ws: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return G.synthesis(ws, noise_mode="const").float()

    walks = {"z": (draw_z, render_z, slerp_unit if g.is_style else slerp_norm)}
    if g.is_style:
        walks["w"] = (draw_w, render_w, lerp)
    m: dict[str, float] = {}
    for space, (draw, render, interp) in walks.items():
        t0 = time.perf_counter()
        r = ppl(path_lengths(draw, render, distance, pairs, interp, seed=seed))
        m[f"ppl_{space}"], m[f"ppl_{space}_std"] = r["ppl"], r["std"]
        if log is not None:
            log(f"ppl in {space}: {pairs} pairs in {time.perf_counter() - t0:.1f}s")
    return m, {"ppl_distance": name, "ppl_pairs": pairs, "ppl_sampling": "end",
               "ppl_epsilon": EPSILON}


# long: the three kinds of run (image-to-image, vectors, images) each end in a report of
# the same shape; kept side by side so the reports stay alike
def evaluate_run(run: str | Path, data: str | None = None, metrics: tuple[str, ...] | None = None,
                 n: int = 10_000, features: str = "auto", inception_weights: str | None = None,
                 seed: int = 0, device: str = "auto", checkpoint: str | None = None,
                 log: Log | None = None) -> dict:
    """Evaluate a run's generator (its EMA copy when kept) against ``data`` (default: the data
    it was trained on). Image runs: the chosen feature metrics; vector runs: mode metrics
    (ring8/grid25) and precision/recall/density/coverage on the raw points. Returns the report
    that ``ganforge eval`` prints and writes to ``RUN/eval.json``."""
    from .generate import load
    from .utils import pick_device

    if n < 10:
        raise GanforgeError(f"--n {n}: evaluate at least 10 samples (10,000 is standard)")
    metrics, want_ppl = _split_ppl(metrics)
    g = load(run, device=device, checkpoint=checkpoint)
    if want_ppl and (hasattr(g, "translate") or g.is_vector):
        kind = ("translates images (no latent walk)" if hasattr(g, "translate")
                else "generates vectors, not images")
        raise GanforgeError(f"--metrics ppl measures a noise-to-image generator; this run "
                            f"{kind}: drop ppl from --metrics")
    if hasattr(g, "translate"):  # an image-to-image run: held-out paired metrics
        from .train.batches import load_data
        from .train.evaluator import heldout_metrics

        cfg = g.cfg
        if data:
            cfg.data.source = data
        t0 = time.perf_counter()
        pairs = load_data(cfg, log=None)
        m = heldout_metrics(g, pairs, g.device, n, baseline=True)
        held = len(pairs.test_a if hasattr(pairs, "a") else pairs.test_images
                   if hasattr(pairs, "test_images") else pairs.test_source)
        return {"run": str(run), "checkpoint": g.checkpoint.name, "step": g.step,
                "data": cfg.data.source, "task": cfg.data.task, "n": n,
                "heldout": held, "features": "pixels (paired metrics on held-out examples)",
                "metrics": m, "seconds": round(time.perf_counter() - t0, 1)}
    source = data or g.cfg.data.source
    report: dict = {"run": str(run), "checkpoint": g.checkpoint.name, "step": g.step,
                    "data": source, "n": n, "seed": seed}
    t0 = time.perf_counter()
    if g.is_vector:
        from .data import load_vectors
        from .metrics.modes import mode_metrics

        real = load_vectors(source)
        if real.x.shape[1] != g.cfg.model.channels:
            raise GanforgeError(f"{source} has {real.x.shape[1]}-d points, the run makes "
                                f"{g.cfg.model.channels}-d ones: pass the run's kind of data")
        fake = g.sample(n, seed=seed)
        m: dict[str, float] = {}
        if real.modes is not None:
            m.update(mode_metrics(fake, real.modes, real.mode_std))
        sub = real.x[torch.randperm(real.x.shape[0],
                                    generator=torch.Generator().manual_seed(0))[:n]]
        wanted = _parse(metrics) if metrics else ("pr", "dc")
        m.update(score_features(sub, fake, tuple(w for w in wanted if w in ("pr", "dc", "fid",
                                                                              "kid")),
                                bootstrap=False, seed=seed))
        report.update(features="raw coordinates", metrics=m)
    elif metrics is not None or not want_ppl:
        from .data import load_dataset
        from .metrics.features import feature_space

        metrics = _parse(metrics)
        cfgm = g.cfg.model
        real = load_dataset(source, resolution=cfgm.resolution, channels=cfgm.channels,
                            log=None)
        space = feature_space(features, source, inception_weights,
                              str(pick_device(device)), log=log)
        fake, labels = _sample_uint8(g, n, seed)
        m = evaluate_images(space, real.images, fake, metrics, real.labels, real.class_names,
                            labels if g.num_classes else None, n_real=n, seed=seed, log=log)
        report.update(features=space.name, metrics=m)
    else:  # ppl only: no real data, no feature network
        report.update(features="none (ppl only)", metrics={})
    if want_ppl:
        m, setup = _ppl_metrics(g, n, seed, log)
        report["metrics"].update(m)
        report.update(setup)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def _first_image_size(folder: Path) -> int | None:
    from PIL import Image

    exts = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
    for p in sorted(Path(folder).rglob("*")):
        if p.suffix.lower() in exts and p.is_file():
            try:
                with Image.open(p) as im:
                    return min(im.size)
            except Exception:
                continue
    return None


def evaluate_folders(real: str | Path, fake: str | Path, metrics: tuple[str, ...] | None = None,
                     features: str = "auto", inception_weights: str | None = None,
                     resolution: int | None = None, n: int | None = None, seed: int = 0,
                     device: str = "auto", log: Log | None = None) -> dict:
    """Compare two image sets (folders, zips or built-in names): ``fake`` against ``real``.
    Both are loaded at ``resolution`` (default: the first fake image's shorter side)."""
    from .data import load_dataset
    from .metrics.features import feature_space
    from .utils import pick_device

    if _split_ppl(metrics)[1]:
        raise GanforgeError("--metrics ppl walks a generator's latent space: evaluate a run "
                            "(`ganforge eval RUN --metrics ppl`), not two image sets")
    metrics = _parse(metrics)
    if resolution is None:
        resolution = _first_image_size(Path(fake)) if Path(fake).is_dir() else None
        resolution = resolution or 32
    t0 = time.perf_counter()
    r = load_dataset(str(real), resolution=resolution, log=log)
    f = load_dataset(str(fake), resolution=resolution, channels=r.channels, log=log)
    space = feature_space(features, str(real), inception_weights, str(pick_device(device)),
                          log=log)
    fi = f.images
    if n is not None and n < fi.shape[0]:
        fi = fi[torch.randperm(fi.shape[0], generator=torch.Generator().manual_seed(seed))[:n]]
    m = evaluate_images(space, r.images, fi, metrics, r.labels, r.class_names, None,
                        n_real=None, seed=seed, log=log)
    return {"real": str(real), "fake": str(fake), "n_real": len(r), "n_fake": int(fi.shape[0]),
            "resolution": resolution, "features": space.name, "metrics": m,
            "seconds": round(time.perf_counter() - t0, 1)}
