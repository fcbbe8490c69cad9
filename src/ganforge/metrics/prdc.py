"""Sample-based fidelity and diversity on a feature space.

* precision / recall: improved k-NN manifolds (Kynkäänniemi et al. 2019, k = 3): a sample is
  inside a set's manifold when it lies within the k-th nearest-neighbour radius of one of that
  set's points; precision = share of fakes inside the real manifold, recall = share of reals
  inside the fake manifold.
* density / coverage (Naeem et al. 2020, k = 5): density = how many real balls hold each fake,
  over k, averaged (1 when fakes are distributed like reals; above 1 when they crowd dense
  regions); coverage = share of real points whose ball holds at least one fake.

Distances are Euclidean, computed in chunks so 10,000 x 10,000 sets fit in little memory.
"""

from __future__ import annotations

import torch

from ..errors import GanforgeError

CHUNK = 2048


def _knn_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of ``x`` to its k-th nearest other row."""
    if x.shape[0] <= k:
        raise GanforgeError(f"k-NN metrics need more than k={k} samples, got {x.shape[0]}")
    out = []
    for i in range(0, x.shape[0], CHUNK):
        d = torch.cdist(x[i:i + CHUNK], x)
        out.append(d.kthvalue(k + 1, dim=1).values)  # the 1st is the point itself (0)
    return torch.cat(out)


def _inside(queries: torch.Tensor, points: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Per query: how many balls (points, radii) contain it."""
    out = []
    for i in range(0, queries.shape[0], CHUNK):
        d = torch.cdist(queries[i:i + CHUNK], points)
        out.append((d <= radii[None, :]).sum(1))
    return torch.cat(out)


def _nearest(queries: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    out = []
    for i in range(0, queries.shape[0], CHUNK):
        out.append(torch.cdist(queries[i:i + CHUNK], points).min(1).values)
    return torch.cat(out)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> dict[str, float]:
    real, fake = real.double(), fake.double()
    precision = (_inside(fake, real, _knn_radius(real, k)) > 0).double().mean()
    recall = (_inside(real, fake, _knn_radius(fake, k)) > 0).double().mean()
    return {"precision": float(precision), "recall": float(recall)}


def density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> dict[str, float]:
    real, fake = real.double(), fake.double()
    radii = _knn_radius(real, k)
    density = _inside(fake, real, radii).double().sum() / (k * fake.shape[0])
    coverage = (_nearest(real, fake) <= radii).double().mean()
    return {"density": float(density), "coverage": float(coverage)}
