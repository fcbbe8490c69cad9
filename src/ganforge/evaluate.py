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


def _split_metric(metrics: str | tuple[str, ...] | None, name: str
                  ) -> tuple[str | tuple[str, ...] | None, bool]:
    """``(the other metrics, whether name is asked for)``; the others None when only name is
    (ppl and copy run beside the feature metrics, not through them)."""
    if metrics is None:
        return None, False
    names = [x.strip().lower() for x in (metrics.split(",") if isinstance(metrics, str)
                                         else metrics)]
    if name not in names:
        return metrics, False
    rest = tuple(x for x in names if x and x != name)
    return rest or None, True


def _parse(metrics: str | tuple[str, ...] | None) -> tuple[str, ...]:
    try:
        return parse_metrics(metrics)
    except GanforgeError as e:
        raise GanforgeError(f"{e}, or ppl (a run's perceptual path length), copy "
                            f"(memorisation of the training images) or cas (classification "
                            f"accuracy score of a conditional run)") from None


def _stats_metrics(metrics: str | tuple[str, ...] | None) -> tuple[str, ...]:
    """The metrics a --ref-stats evaluation computes: fid (and ppl, which needs no data)."""
    rest, want_ppl = _split_metric(metrics, "ppl")
    names = ("fid",) if rest is None else _parse(rest)
    if names != ("fid",):
        other = ",".join(x for x in names if x != "fid")
        raise GanforgeError(f"--ref-stats gives FID only ({other} need the real images' "
                            f"features): use --metrics fid, or --real/--data for the others")
    return names + (("ppl",) if want_ppl else ())


def test_split_of(source: str) -> str:
    """The held-out split of a training set ``source``: ``NAME:test`` for a torchvision set; for
    a folder named train/training, its sibling test/, val/, valid/ or validation/."""
    from .data.sources import TORCHVISION_NAMES, builtin_key

    text = str(source).strip()
    key = builtin_key(text)[0]
    if key in TORCHVISION_NAMES:
        return f"{key}:test"
    if key == "digits":
        raise GanforgeError("--reference test: the built-in digits have no test split (the run "
                            "trained on all 1,797 images): pass --reference DIR of held-out "
                            "images")
    path = Path(text).expanduser()
    if path.is_dir() and path.resolve().name.lower() in ("train", "training"):
        for name in ("test", "val", "valid", "validation"):
            sib = path.resolve().parent / name
            if sib.is_dir():
                return str(sib)
    raise GanforgeError(f"--reference test: no test split found for {text} (looked for a "
                        f"sibling test/ or val/ folder of a train/ folder): pass --reference "
                        f"DIR of held-out images")


def resolve_reference(reference: str, train_source: str) -> tuple[str | None, str | None]:
    """``--reference``: ``train`` (the run's training data), ``test`` (its held-out split), an
    ``.npz`` statistics file or a dataset. Returns (the real images' spec, or the statistics
    file)."""
    ref = str(reference).strip()
    if not ref:
        raise GanforgeError("--reference is empty: use train, test, a statistics .npz or a "
                            "dataset (folder, zip or built-in name)")
    if ref.lower() == "train":
        return train_source, None
    if ref.lower() == "test":
        return test_split_of(train_source), None
    if any(ch in ref for ch in ("/", "\\", "~", ".")) and not Path(ref).expanduser().exists():
        raise GanforgeError(f"--reference {ref}: no such file or folder (use train, test, a "
                            f"statistics .npz or a dataset)")
    if ref.lower().endswith(".npz"):
        return None, ref
    return ref, None


def _stats_features(ref_stats: str | Path, features: str, log: Log | None = None) -> str:
    """``--features auto`` against a statistics file: the features its metadata names (files
    written by ``--save-stats``); else ``features`` unchanged."""
    from .metrics.stats import load_stats

    if (features or "auto").strip() != "auto":
        return features
    meta = load_stats(ref_stats)[2] or {}
    spec = meta.get("features_spec")
    if not isinstance(spec, str) or not spec or spec == "auto":
        return features
    if spec.endswith(".safetensors") and not Path(spec).is_file():
        raise GanforgeError(f"--ref-stats {ref_stats} was made with the features {spec}, which "
                            f"is not there any more: pass --features FILE (the same network)")
    if log is not None:
        log(f"features: {spec} (named by {ref_stats})")
    return spec


def _features_spec(features: str, space) -> str:
    """What ``--features`` to pass to get ``space`` again (kept in a statistics file)."""
    spec = (features or "auto").strip()
    if spec == "auto":
        return "inception" if space.key.startswith("inception") else "digits"
    path = Path(spec).expanduser()
    for p in (path, path.with_suffix(".safetensors")):
        if p.is_file():
            return str(p.resolve())
    return spec


def _load_ref(path: str | Path, space, resolution: int | str
              ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The reference statistics, checked against the features and resolution in use, and the
    report keys naming them."""
    from .metrics.stats import check_stats, load_stats

    mu, sigma, meta = load_stats(path)
    note = check_stats(path, meta, space.key, space.name, resolution)
    extra: dict = {"ref_stats": str(path), "n_real": (meta or {}).get("n")}
    if note:
        extra["ref_stats_note"] = note
    return mu, sigma, extra


def _fid_vs_ref(ref: tuple[torch.Tensor, torch.Tensor, dict], space, fake: torch.Tensor
                ) -> dict[str, float]:
    from .metrics.frechet import frechet_distance, gaussian_stats
    from .metrics.stats import check_dim

    mu, sigma, extra = ref
    ff, _ = space(fake)
    check_dim(extra["ref_stats"], mu, ff)
    return {"fid": frechet_distance(mu, sigma, *gaussian_stats(ff))}


def _columns(cfg, spec: str) -> dict[str, str]:
    """The run's ``image_column`` / ``label_column`` when ``spec`` is its own ``hf:`` training
    data (another set finds its columns itself)."""
    d = cfg.data
    return ({"image_column": d.image_column, "label_column": d.label_column}
            if spec == d.source else {})


def save_real_stats(real: str | Path, out: str | Path, features: str = "auto",
                    inception_weights: str | None = None, resolution: int | None = None,
                    device: str = "auto", log: Log | None = None,
                    resize: str = "legacy") -> dict:
    """Write the FID statistics (mu, sigma) of every image of ``real`` to ``out`` (.npz, the
    format of pytorch-fid and clean-fid, plus ganforge's metadata)."""
    from .data import load_dataset
    from .metrics.evaluate import real_features
    from .metrics.features import feature_space
    from .metrics.frechet import gaussian_stats
    from .metrics.stats import save_stats
    from .utils import pick_device

    if resolution is None:
        resolution = (_first_image_size(Path(real)) if Path(real).is_dir() else None) or 32
    r = load_dataset(str(real), resolution=resolution, log=log)
    if len(r) < 2:
        raise GanforgeError(f"--real {real}: {len(r)} image(s); statistics need at least 2")
    space = feature_space(features, str(real), inception_weights, str(pick_device(device)),
                          log=log, resize=resize)
    feats, _ = real_features(space, r.images, None, r.labels, log=log)
    mu, sigma = gaussian_stats(feats)
    path = save_stats(out, mu, sigma, {"features": space.name, "features_key": space.key,
                                       "features_spec": _features_spec(features, space),
                                       "resize": resize,
                                       "resolution": resolution, "channels": r.channels,
                                       "n": len(r), "source": str(real)})
    return {"real": str(real), "stats": str(path), "n_real": len(r), "resolution": resolution,
            "features": space.name, "dim": int(mu.shape[0]), "resize": resize}


def _ppl_metrics(g, n: int, seed: int, log: Log | None = None) -> tuple[dict[str, float], dict]:
    """PPL in z (every noise-to-image run) and in w (StyleGAN runs): min(n, PPL_MAX_PAIRS)
    pairs, end-points, eps 1e-4, fixed per-pixel noise; labels drawn uniformly, one per pair.
    Returns the metrics and the report keys naming the setup."""
    from .metrics.ppl import EPSILON, lerp, path_lengths, ppl, ppl_distance, slerp_norm, slerp_unit

    pairs, G, dev = min(n, PPL_MAX_PAIRS), g.G, g.device
    distance, name = ppl_distance(dev, min(g.cfg.model.size))

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



CAS_STEPS = 1000  # classifier steps (batch 64), for the synthetic and the real classifier alike
CAS_MAX_SAMPLES = 10_000
CAS_HOLDOUT = 0.2  # share of each class held out of the training set when no test set is given


def _labels_as_run(ds, names: list[str], what: str) -> torch.Tensor:
    """``ds``'s labels as the run's class indices (matched by class name)."""
    if ds.labels is None or not ds.class_names:
        raise GanforgeError(f"--metrics cas: the {what} {ds.name} has no class labels: give a "
                            f"folder with one sub-folder per class of the run "
                            f"({', '.join(names[:6])}{'...' if len(names) > 6 else ''})")
    missing = [c for c in ds.class_names if c not in names]
    if missing:
        raise GanforgeError(f"--metrics cas: the {what} {ds.name} has classes the run does not "
                            f"know ({', '.join(missing[:4])}); the run's are "
                            f"{', '.join(names[:6])}{'...' if len(names) > 6 else ''}")
    table = torch.tensor([names.index(c) for c in ds.class_names])
    return table[ds.labels.long()]


def _cas_report(g, train_source: str, test_source: str | None, n: int, seed: int,
                device: str, log: Log | None = None) -> tuple[dict[str, float], dict]:
    """Classification Accuracy Score (Ravuri & Vinyals 2019): the held-out accuracy of a
    classifier trained on ``min(n, 10,000)`` class-balanced samples alone (``cas``), beside the
    same classifier trained on the real training images (``cas_real``); same steps for both.
    Test set: ``test_source``, else 20% of each class of the training set, held out (the
    real classifier then trains on the other 80%; the generator saw every image)."""
    from .data import load_dataset
    from .metrics.cas import accuracy_of_training_on
    from .utils import pick_device

    if not g.num_classes:
        raise GanforgeError("--metrics cas trains a classifier on a conditional run's samples; "
                            "this run is unconditional: drop cas (or train a conditional "
                            "preset such as small-data-cond)")
    cfgm, names, dev = g.cfg.model, list(g.class_names), str(pick_device(device))

    def load(spec: str):
        return load_dataset(spec, resolution=cfgm.resolution, channels=cfgm.channels, log=None,
                            fit=g.cfg.data.fit, **_columns(g.cfg, spec))

    train = load(train_source)
    ty = _labels_as_run(train, names, "training set")
    tx = train.images
    if test_source is None:
        gen = torch.Generator().manual_seed(0)
        held = []
        for k in ty.unique():
            idx = torch.nonzero(ty == k).flatten()
            idx = idx[torch.randperm(len(idx), generator=gen)]
            held.append(idx[:max(1, round(CAS_HOLDOUT * len(idx)))] if len(idx) > 1 else idx[:0])
        test_idx = torch.cat(held).sort().values
        keep = torch.ones(len(ty), dtype=torch.bool)
        keep[test_idx] = False
        ex, ey, tx, ty = tx[test_idx], ty[test_idx], tx[keep], ty[keep]
        test_name = f"{train_source} (20% of each class held out here; the generator saw them)"
    else:
        test = load(test_source)
        ex, ey = test.images, _labels_as_run(test, names, "test set")
        test_name = test_source
    if len(ey) < 1 or len(ty) < 2:
        raise GanforgeError(f"--metrics cas: {len(ty)} training and {len(ey)} test images: too "
                            f"few (give a bigger labelled --reference)")
    t0 = time.perf_counter()
    fake, labels = _sample_uint8(g, min(n, CAS_MAX_SAMPLES), seed)
    synth = accuracy_of_training_on(fake, labels, ex, ey, g.num_classes, steps=CAS_STEPS,
                                    seed=seed, device=dev)
    real = accuracy_of_training_on(tx, ty, ex, ey, g.num_classes, steps=CAS_STEPS, seed=seed,
                                   device=dev)
    if log is not None:
        log(f"cas: 2 classifiers of {CAS_STEPS} steps in {time.perf_counter() - t0:.1f}s")
    return {"cas": synth, "cas_real": real}, {
        "cas_test": test_name, "cas_test_images": len(ey), "cas_real_images": len(ty),
        "cas_samples": int(fake.shape[0]), "cas_steps": CAS_STEPS}


def _copy_report(g, run: str | Path, features: str, inception_weights: str | None,
                 device: str, n: int, seed: int, fake: torch.Tensor | None = None,
                 space=None, log: Log | None = None, resize: str = "legacy"
                 ) -> tuple[dict[str, float], dict]:
    """The copy (memorisation) metrics of ``n`` samples against the run's own training set
    (never --data: memorisation is about the images the run saw), and ``RUN/copies.png``: the
    worst cases by pixel ratio, each row a sample beside its 3 nearest training images in
    pixel space. ``fake``/``space``: the samples and feature space already made, if any."""
    from .data import load_dataset
    from .metrics.copy import COPY_THRESHOLD, copies_grid, copy_metrics
    from .metrics.evaluate import real_features
    from .metrics.features import feature_space
    from .utils import pick_device, save_grid

    source, cfgm = g.cfg.data.source, g.cfg.model
    train = load_dataset(source, resolution=cfgm.resolution, channels=cfgm.channels, log=None,
                         fit=g.cfg.data.fit, **_columns(g.cfg, source))
    if len(train) < 2:
        raise GanforgeError(f"--metrics copy: the training data {source} has {len(train)} "
                            f"image(s); the copy metric needs at least 2")
    dev = str(pick_device(device))
    if space is None:
        space = feature_space(features, source, inception_weights, dev, log=log, resize=resize)
    if fake is None:
        fake, _ = _sample_uint8(g, n, seed)
    t0 = time.perf_counter()
    rf, _ = real_features(space, train.images, None, train.labels, log=log)
    ff, _ = space(fake)
    m, det = copy_metrics(ff, rf, fake, train.images, seed=seed, device=dev)
    path = Path(run) / "copies.png"
    worst = det["worst_pixel"]
    save_grid(copies_grid(fake, train.images, worst, det["neighbours_pixel"]), path,
              nrow=1 + det["neighbours_pixel"].shape[1])
    if log is not None:
        log(f"copy: {len(fake)} samples vs {len(train)} training images in "
            f"{time.perf_counter() - t0:.1f}s; wrote {path}")
    return m, {"copy_reference": source, "copy_train_images": len(train),
               "copy_threshold": COPY_THRESHOLD, "copy_features": space.name,
               "copy_typical_feat": det["typical_feat"],
               "copy_typical_pixel": det["typical_pixel"],
               "copy_worst_pixel": worst, "copy_worst_feat": det["worst_feat"],
               "copies": str(path)}

# long: the three kinds of run (image-to-image, vectors, images) each end in a report of
# the same shape; kept side by side so the reports stay alike
def evaluate_run(run: str | Path, data: str | None = None, metrics: tuple[str, ...] | None = None,
                 n: int = 10_000, features: str = "auto", inception_weights: str | None = None,
                 seed: int = 0, device: str = "auto", checkpoint: str | None = None,
                 log: Log | None = None, ref_stats: str | Path | None = None,
                 reference: str | None = None, resize: str | None = None) -> dict:
    """Evaluate a run's generator (its EMA copy when kept) against ``data`` (default: the data
    it was trained on; ``reference``: ``train``, ``test`` (its held-out split), a stats .npz or
    a dataset, in place of ``data``/``ref_stats``). Image runs: the chosen feature metrics;
    vector runs: mode metrics (ring8/grid25) and precision/recall/density/coverage on the raw
    points; ``cas``: :func:`_cas_report`. Returns the report
    that ``ganforge eval`` prints and writes to ``RUN/eval.json``."""
    from .generate import load
    from .utils import pick_device

    if n < 10:
        raise GanforgeError(f"--n {n}: evaluate at least 10 samples (10,000 is standard)")
    metrics, want_copy = _split_metric(metrics, "copy")
    metrics, want_cas = _split_metric(metrics, "cas")
    g = load(run, device=device, checkpoint=checkpoint)
    if reference is not None:
        if hasattr(g, "translate"):
            raise GanforgeError("--reference picks a noise-to-image or vector run's real side; "
                                "this run translates images and is scored on its held-out "
                                "pairs: drop --reference (--data SPEC for other pairs)")
        if data or ref_stats:
            raise GanforgeError("--reference replaces --data and --ref-stats: give one of them")
        data, ref_stats = resolve_reference(reference, g.cfg.data.source)
    if ref_stats is not None:
        if want_cas:
            raise GanforgeError("--metrics cas tests a classifier on labelled real images, not "
                                "on statistics: drop cas or the .npz reference")
        metrics = _stats_metrics(metrics)
    metrics, want_ppl = _split_metric(metrics, "ppl")
    if want_ppl and (hasattr(g, "translate") or g.is_vector):
        kind = ("translates images (no latent walk)" if hasattr(g, "translate")
                else "generates vectors, not images")
        raise GanforgeError(f"--metrics ppl measures a noise-to-image generator; this run "
                            f"{kind}: drop ppl from --metrics")
    if want_cas and (hasattr(g, "translate") or g.is_vector):
        kind = "translates images" if hasattr(g, "translate") else "generates vectors"
        raise GanforgeError(f"--metrics cas trains a classifier on a conditional run's samples;"
                            f" this run {kind}: drop cas from --metrics")
    if want_copy and (hasattr(g, "translate") or g.is_vector):
        kind = "translates images" if hasattr(g, "translate") else "generates vectors"
        raise GanforgeError(f"--metrics copy compares a noise-to-image run's samples with its "
                            f"training images; this run {kind}: drop copy from --metrics")
    if ref_stats is not None and (hasattr(g, "translate") or g.is_vector):
        raise GanforgeError("--ref-stats scores a noise-to-image run's samples; this run "
                            + ("translates images" if hasattr(g, "translate")
                               else "generates vectors") + ": drop --ref-stats")
    if resize is not None and (hasattr(g, "translate") or g.is_vector or (
            metrics is None and not want_copy and (want_ppl or want_cas))):
        raise GanforgeError(f"--resize {resize} sets how images reach a feature network; this "
                            f"evaluation uses none: drop --resize")
    resize = resize or "legacy"
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
    if reference is not None:
        report["reference"] = reference
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
    elif metrics is not None or not (want_ppl or want_copy or want_cas):
        from .data import load_dataset
        from .metrics.features import feature_space

        metrics = _parse(metrics)
        cfgm = g.cfg.model
        if ref_stats is not None:
            features = _stats_features(ref_stats, features, log)
        space = feature_space(features, source, inception_weights,
                              str(pick_device(device)), log=log, resize=resize)
        ref = None if ref_stats is None else _load_ref(ref_stats, space, cfgm.resolution)
        if ref is None:
            real = load_dataset(source, resolution=cfgm.resolution, channels=cfgm.channels,
                                log=None, fit=g.cfg.data.fit, **_columns(g.cfg, source))
        fake, labels = _sample_uint8(g, n, seed)
        if ref is not None:
            report.update(ref[2], data=str(ref_stats))
            m = _fid_vs_ref(ref, space, fake)
        else:
            m = evaluate_images(space, real.images, fake, metrics, real.labels,
                                real.class_names, labels if g.num_classes else None,
                                n_real=n, seed=seed, log=log)
        report.update(features=space.name, resize=resize, metrics=m)
    else:  # ppl, copy and/or cas only: no other metric
        report.update(features="none (ppl only)" if want_ppl and not (want_copy or want_cas)
                      else "none", metrics={})
    if want_copy:
        same = metrics is not None and source == g.cfg.data.source
        m, extra = _copy_report(g, run, features, inception_weights, device, n, seed,
                                fake if metrics is not None else None,
                                space if same else None, log, resize)
        report["metrics"].update(m)
        report.update(extra)
        if metrics is None:
            report["features"] = extra["copy_features"]
    if want_cas:
        test = None if source == g.cfg.data.source and reference in (None, "train") else source
        m, extra = _cas_report(g, g.cfg.data.source, test, n, seed, device, log)
        report["metrics"].update(m)
        report.update(extra)
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


def evaluate_folders(real: str | Path | None, fake: str | Path,
                     metrics: tuple[str, ...] | None = None,
                     features: str = "auto", inception_weights: str | None = None,
                     resolution: int | None = None, n: int | None = None, seed: int = 0,
                     device: str = "auto", log: Log | None = None,
                     ref_stats: str | Path | None = None, resize: str = "legacy") -> dict:
    """Compare two image sets (folders, zips or built-in names): ``fake`` against ``real``.
    Both are loaded at ``resolution`` (default: the first fake image's shorter side). With
    ``ref_stats`` (and ``real`` None): the FID of ``fake`` against those statistics."""
    if ref_stats is not None:
        return _folder_vs_stats(fake, ref_stats, metrics, features, inception_weights,
                                resolution, n, seed, device, log, resize)
    from .data import load_dataset
    from .metrics.features import feature_space
    from .utils import pick_device

    if _split_metric(metrics, "ppl")[1]:
        raise GanforgeError("--metrics ppl walks a generator's latent space: evaluate a run "
                            "(`ganforge eval RUN --metrics ppl`), not two image sets")
    if _split_metric(metrics, "copy")[1]:
        raise GanforgeError("--metrics copy compares a run's samples with its training set: "
                            "evaluate a run (`ganforge eval RUN --metrics copy`), not two "
                            "image sets")
    metrics = _parse(metrics)
    if resolution is None:
        resolution = _first_image_size(Path(fake)) if Path(fake).is_dir() else None
        resolution = resolution or 32
    t0 = time.perf_counter()
    r = load_dataset(str(real), resolution=resolution, log=log)
    f = load_dataset(str(fake), resolution=resolution, channels=r.channels, log=log)
    space = feature_space(features, str(real), inception_weights, str(pick_device(device)),
                          log=log, resize=resize)
    fi = f.images
    if n is not None and n < fi.shape[0]:
        fi = fi[torch.randperm(fi.shape[0], generator=torch.Generator().manual_seed(seed))[:n]]
    m = evaluate_images(space, r.images, fi, metrics, r.labels, r.class_names, None,
                        n_real=None, seed=seed, log=log)
    return {"real": str(real), "fake": str(fake), "n_real": len(r), "n_fake": int(fi.shape[0]),
            "resolution": resolution, "features": space.name, "resize": resize, "metrics": m,
            "seconds": round(time.perf_counter() - t0, 1)}


def _folder_vs_stats(fake: str | Path, ref_stats: str | Path,
                     metrics: tuple[str, ...] | None, features: str,
                     inception_weights: str | None, resolution: int | None, n: int | None,
                     seed: int, device: str, log: Log | None, resize: str = "legacy") -> dict:
    from .data import load_dataset
    from .metrics.features import feature_space
    from .utils import pick_device

    if _split_metric(metrics, "ppl")[1]:
        raise GanforgeError("--metrics ppl walks a generator's latent space: evaluate a run "
                            "(`ganforge eval RUN --metrics ppl`), not an image set")
    _stats_metrics(metrics)
    if resolution is None:
        resolution = (_first_image_size(Path(fake)) if Path(fake).is_dir() else None) or 32
    t0 = time.perf_counter()
    features = _stats_features(ref_stats, features, log)
    space = feature_space(features, None, inception_weights, str(pick_device(device)),
                          log=log, resize=resize)
    ref = _load_ref(ref_stats, space, resolution)
    f = load_dataset(str(fake), resolution=resolution, log=log)
    fi = f.images
    if n is not None and n < fi.shape[0]:
        fi = fi[torch.randperm(fi.shape[0], generator=torch.Generator().manual_seed(seed))[:n]]
    m = _fid_vs_ref(ref, space, fi)
    return {"real": str(ref_stats), "fake": str(fake), **ref[2], "n_fake": int(fi.shape[0]),
            "resolution": resolution, "features": space.name, "resize": resize, "metrics": m,
            "seconds": round(time.perf_counter() - t0, 1)}
