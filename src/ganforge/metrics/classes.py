"""Class coverage from a classifier's predictions on generated samples."""

from __future__ import annotations

import math

import torch

COVERED = 0.2  # a class is covered when it gets at least this share of its share in the data


def class_histogram(pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Share of each class among predicted labels ``pred`` [N] (float64, sums to 1)."""
    return torch.bincount(pred.long(), minlength=num_classes).double() / max(1, pred.numel())


def class_coverage(probs: torch.Tensor, data_hist: torch.Tensor) -> dict[str, float]:
    """``probs`` [N, K] on generated samples; ``data_hist`` [K] the real class shares.

    classes_covered: classes whose predicted share is at least ``COVERED`` x their data share;
    class_kl: KL(generated class histogram || data's) in nats (0 = same proportions; a
    collapse onto one of K balanced classes gives log K); confidence: mean top probability."""
    data_hist = data_hist.double() / data_hist.double().sum()
    hist = class_histogram(probs.argmax(1), probs.shape[1])
    kl = sum(h * math.log(h / d) for h, d in zip(hist.tolist(), data_hist.tolist())
             if h > 0 and d > 0)
    covered = int(((hist >= COVERED * data_hist) & (data_hist > 0)).sum())
    return {"classes_covered": covered, "classes_total": int((data_hist > 0).sum()),
            "class_kl": float(kl), "confidence": float(probs.max(1).values.double().mean())}
