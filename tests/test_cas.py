"""Classification accuracy of a classifier trained on one set, tested on another (the CAS
behind benchmarks/augmentation.py)."""

import pytest
import torch

from ganforge.data import load_dataset
from ganforge.errors import GanforgeError
from ganforge.metrics.cas import accuracy_of_training_on


def test_real_labels_teach_and_shuffled_labels_do_not():
    d = load_dataset("digits", resolution=16, channels=1, log=None)
    x, y = d.images, d.labels
    train, test = slice(0, 400), slice(1000, 1400)
    good = accuracy_of_training_on(x[train], y[train], x[test], y[test], 10, steps=120)
    shuffled = y[train][torch.randperm(400, generator=torch.Generator().manual_seed(0))]
    bad = accuracy_of_training_on(x[train], shuffled, x[test], y[test], 10, steps=120)
    assert good > 0.75 and bad < 0.3, (good, bad)


def test_bad_inputs_are_one_line_errors():
    x = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    y = torch.tensor([0, 1, 0, 1])
    with pytest.raises(GanforgeError, match="uint8"):
        accuracy_of_training_on(x.float(), y, x, y, 2)
    with pytest.raises(GanforgeError, match="differ in shape"):
        accuracy_of_training_on(x, y, torch.zeros(4, 1, 16, 16, dtype=torch.uint8), y, 2)
