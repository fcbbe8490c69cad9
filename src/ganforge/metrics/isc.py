"""Inception Score (Salimans et al. 2016): ``exp(E_x KL(p(y|x) || p(y)))`` over class
probabilities, mean and std over ``splits`` equal parts (the published protocol uses 10)."""

from __future__ import annotations

import torch

from ..errors import GanforgeError


def inception_score(probs: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """``probs``: [N, K] rows summing to 1 (softmax of a classifier's logits). Returns (mean,
    std) of the score over ``splits`` consecutive parts; 1 for uninformative predictions, up to
    K for confident predictions spread evenly over the K classes."""
    if probs.ndim != 2 or probs.shape[0] < splits or splits < 1:
        raise GanforgeError(f"Inception Score needs [N, K] probabilities with N >= splits "
                            f"({splits}), got shape {tuple(probs.shape)}")
    p = probs.double().clamp_min(1e-12)
    scores = []
    for part in p.chunk(splits):
        py = part.mean(0, keepdim=True)
        kl = (part * (part.log() - py.log())).sum(1).mean()
        scores.append(float(kl.exp()))
    s = torch.tensor(scores, dtype=torch.float64)
    return float(s.mean()), float(s.std()) if len(scores) > 1 else 0.0
