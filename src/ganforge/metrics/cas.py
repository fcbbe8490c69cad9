"""Classification accuracy of a classifier trained on one image set and tested on another: the
Classification Accuracy Score (Ravuri & Vinyals 2019) when the training set is a conditional
generator's samples and the test set real held-out images, and the yardstick of data
augmentation when the training set mixes real and generated images.

The classifier is :class:`~ganforge.metrics.classifier.DomainClassifier` trained by
:func:`~ganforge.metrics.classifier.train_classifier` for a fixed number of optimisation steps
(not epochs), so sets of different sizes get the same training budget.
"""

from __future__ import annotations

import math

import torch

from ..data.dataset import ImageDataset
from ..errors import GanforgeError
from .classifier import predict, train_classifier


def accuracy_of_training_on(images: torch.Tensor, labels: torch.Tensor,
                            test_images: torch.Tensor, test_labels: torch.Tensor,
                            num_classes: int, steps: int = 400, batch_size: int = 64,
                            seed: int = 0, device: str = "cpu") -> float:
    """Held-out accuracy in [0, 1] on ``test_images`` / ``test_labels`` of a classifier trained
    for about ``steps`` steps on ``images`` (uint8 [N, C, R, R]) / ``labels`` (int64 [N],
    0..num_classes-1), with the translation augmentation of the feature classifier."""
    if images.dtype != torch.uint8 or test_images.dtype != torch.uint8:
        raise GanforgeError("classification accuracy: images must be uint8 [N, C, R, R]")
    if images.shape[1:] != test_images.shape[1:]:
        raise GanforgeError(f"classification accuracy: training images {list(images.shape[1:])}"
                            f" and test images {list(test_images.shape[1:])} differ in shape")
    n = images.shape[0]
    if n < 2:
        raise GanforgeError("classification accuracy: at least 2 training images are needed")
    data = ImageDataset(images=images, labels=labels.long(),
                        class_names=[str(k) for k in range(num_classes)], name="train")
    epochs = max(1, math.ceil(steps * batch_size / n))
    model, _ = train_classifier(data, epochs=epochs, batch_size=min(batch_size, n), lr=4e-3,
                                seed=seed, val_fraction=0.0, device=device, log=None)
    pred = predict(model, test_images.float() / 127.5 - 1).argmax(1)
    return float((pred == test_labels.long()).double().mean())


__all__ = ["accuracy_of_training_on"]
