"""Memorisation: how close generated samples come to their nearest *training* image.

For each sample, the **copy ratio** is the distance to its nearest training image divided by
the typical real-to-real nearest-neighbour distance (the median, over training images, of the
distance to their nearest *other* training image). A fresh draw from the data distribution
sits about as far from the training set as training images sit from each other (ratio near
1); a copy sits at 0.

A sample counts as a (near-)copy when its ratio is under ``COPY_THRESHOLD`` = 0.5: closer to a
training image than half the typical real-to-real gap. Why 0.5: for data that is locally
uniform with intrinsic dimension d, the chance that a fresh draw lands that close is
``1 - 2 ** -(0.5 ** d)``; images have d of 10 or more, where that chance is under 0.07%, so
the share under 0.5 of a model that does not copy stays near 0, while it is far from 0 for a
model that reproduces (slightly perturbed) training images.

Computed in two spaces: a feature space (the one ``ganforge eval`` picked) and pixels
(flattened images in [-1, 1], L2). Distances are taken in chunks (``torch.cdist`` on blocks of
queries x references, a running top-k), so 10k samples x 60k training images stay in bounded
memory; the distances of the kept neighbours are then recomputed exactly, so exact copies
give exactly 0. The real-to-real median is estimated on a seeded subset of at most
``TYPICAL_QUERIES`` training images (each against the whole set).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import GanforgeError

COPY_THRESHOLD = 0.5
TYPICAL_QUERIES = 2000
WORST = 8  # worst cases returned (and drawn in copies.png)

Prep = Callable[[torch.Tensor], torch.Tensor]


def pixels(x: torch.Tensor) -> torch.Tensor:
    """Images (uint8, or float in [-1, 1]) -> flattened float32 rows in [-1, 1]."""
    x = x.reshape(x.shape[0], -1)
    if x.dtype == torch.uint8:
        return x.float() / 127.5 - 1.0
    return x.float()


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).float()


def nearest(query: torch.Tensor, ref: torch.Tensor, k: int = 1, prep: Prep | None = None,
            exclude: torch.Tensor | None = None, device: str | torch.device = "cpu",
            q_chunk: int = 1024, r_chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest rows of ``ref`` for each row of ``query`` (L2, after ``prep``):
    ``(distances [M, k], indices [M, k])``, closest first, on the CPU. ``exclude`` [M]: a
    ``ref`` index each query may not match (itself, for real-to-real)."""
    prep = prep or _as_float
    m, n = query.shape[0], ref.shape[0]
    if m == 0 or n == 0:
        raise GanforgeError("nearest neighbours need at least one query and one reference")
    k_eff = min(n - (1 if exclude is not None else 0), k + 4)  # a margin for float error
    if k_eff < k or k_eff < 1:
        raise GanforgeError(f"{n} reference rows: too few for {k} neighbour(s)")
    dev = torch.device(device)
    best_d = torch.full((m, k_eff), float("inf"), device=dev)
    best_i = torch.zeros((m, k_eff), dtype=torch.long, device=dev)
    qs = [prep(query[i:i + q_chunk]).to(dev) for i in range(0, m, q_chunk)]
    for r0 in range(0, n, r_chunk):
        r = prep(ref[r0:r0 + r_chunk]).to(dev)
        for qi, q in enumerate(qs):
            a = qi * q_chunk
            d = torch.cdist(q, r)
            if exclude is not None:
                own = exclude[a:a + q.shape[0]].to(dev) - r0
                hit = (own >= 0) & (own < r.shape[0])
                d[hit.nonzero(as_tuple=True)[0], own[hit]] = float("inf")
            cd = torch.cat([best_d[a:a + q.shape[0]], d], 1)
            ci = torch.cat([best_i[a:a + q.shape[0]],
                            torch.arange(r0, r0 + r.shape[0], device=dev).expand(q.shape[0], -1)],
                           1)
            top = cd.topk(k_eff, dim=1, largest=False)
            best_d[a:a + q.shape[0]] = top.values
            best_i[a:a + q.shape[0]] = ci.gather(1, top.indices)
    # exact distances of the kept candidates (cdist's matmul form leaves ~1e-3 on copies)
    best_i = best_i.cpu()
    exact = torch.empty(m, k_eff)
    for a in range(0, m, q_chunk):
        q = prep(query[a:a + q_chunk])
        idx = best_i[a:a + q_chunk]
        cand = prep(ref[idx.reshape(-1)]).reshape(q.shape[0], k_eff, -1)
        exact[a:a + q.shape[0]] = (cand - q[:, None, :]).norm(dim=2)
    order = exact.argsort(dim=1)[:, :k]
    return exact.gather(1, order), best_i.gather(1, order)


def typical_distance(real: torch.Tensor, prep: Prep | None = None,
                     max_queries: int = TYPICAL_QUERIES, seed: int = 0,
                     device: str | torch.device = "cpu") -> float:
    """Median over (a seeded subset of at most ``max_queries``) training rows of the distance
    to their nearest *other* training row."""
    n = real.shape[0]
    if n < 2:
        raise GanforgeError("the copy metric needs at least 2 training images")
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_queries]
    idx = idx.sort().values
    d, _ = nearest(real[idx], real, 1, prep, exclude=idx, device=device)
    return float(d[:, 0].median())


def copy_ratios(fake: torch.Tensor, real: torch.Tensor, prep: Prep | None = None, k: int = 1,
                seed: int = 0, device: str | torch.device = "cpu") -> dict:
    """``ratio`` [M] (nearest training distance / typical real-to-real distance), the ``k``
    nearest training ``indices`` [M, k] and ``distances`` [M, k], and ``typical``."""
    typical = typical_distance(real, prep, seed=seed, device=device)
    d, i = nearest(fake, real, k, prep, device=device)
    ratio = d[:, 0] / max(typical, 1e-12)
    return {"ratio": ratio, "indices": i, "distances": d, "typical": typical}


def summarize(ratio: torch.Tensor, threshold: float = COPY_THRESHOLD,
              worst: int = WORST) -> tuple[float, float, list[int]]:
    """``(share under threshold, median ratio, indices of the smallest ratios)``."""
    share = float((ratio < threshold).double().mean())
    order = ratio.argsort()[:worst]
    return share, float(ratio.median()), [int(j) for j in order]


def copy_metrics(fake_feats: torch.Tensor, real_feats: torch.Tensor, fake_images: torch.Tensor,
                 real_images: torch.Tensor, threshold: float = COPY_THRESHOLD, k: int = 3,
                 worst: int = WORST, seed: int = 0, device: str | torch.device = "cpu"
                 ) -> tuple[dict[str, float], dict]:
    """The copy metrics in feature and pixel space. Returns ``(metrics, details)``: metrics
    ``copy_share_feat``, ``copy_median_feat``, ``copy_share_pixel``, ``copy_median_pixel``;
    details ``worst_feat``/``worst_pixel`` (sample indices, smallest ratio first),
    ``neighbours_pixel`` [M, k] (training indices, nearest first), ``typical_feat`` and
    ``typical_pixel``."""
    m: dict[str, float] = {}
    details: dict = {}
    for space, f, r, prep, kk in (("feat", fake_feats, real_feats, _as_float, 1),
                                  ("pixel", fake_images, real_images, pixels, k)):
        res = copy_ratios(f, r, prep, k=min(kk, r.shape[0]), seed=seed, device=device)
        share, med, bad = summarize(res["ratio"], threshold, worst)
        m[f"copy_share_{space}"], m[f"copy_median_{space}"] = share, med
        details[f"worst_{space}"] = bad
        details[f"typical_{space}"] = res["typical"]
        details[f"neighbours_{space}"] = res["indices"]
    return m, details


def copies_grid(fake_images: torch.Tensor, real_images: torch.Tensor, worst: list[int],
                neighbours: torch.Tensor) -> torch.Tensor:
    """uint8 images for a grid of rows ``sample | its nearest training images``."""
    rows = []
    for j in worst:
        rows.append(fake_images[j:j + 1])
        rows.append(real_images[neighbours[j]])
    return torch.cat(rows)
