import numpy as np
import pytest
import torch

from ganforge.metrics.frechet import fid_from_features, frechet_distance, gaussian_stats


def test_frechet_matches_a_direct_scipy_computation():
    linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 12, generator=g)
    b = torch.randn(400, 12, generator=g) * 1.3 + 0.2
    (m1, s1), (m2, s2) = gaussian_stats(a), gaussian_stats(b)
    covmean = linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    ref = float(((m1 - m2) ** 2).sum() + np.trace(s1.numpy()) + np.trace(s2.numpy())
                - 2 * np.trace(covmean))
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-8)


def test_identical_sets_give_zero():
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(1))
    assert abs(fid_from_features(x, x)) < 1e-6
