"""Deterministic batches from the uint8 cache, as dicts, on the training device.

The order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone, so batch ``step`` is
the same whether a run was interrupted or not: exact resume needs no saved loader state.
"""

from __future__ import annotations

import torch

from ..config import Config
from ..data import ImageDataset


def load_data(cfg: Config, log=print):
    """The run's data: an :class:`ImageDataset`, or a ``VectorDataset`` for vector specs."""
    from ..data import is_vector_spec, load_dataset, load_vectors

    d = cfg.data
    if is_vector_spec(d.source):
        return load_vectors(d.source, seed=cfg.train.seed)
    return load_dataset(d.source, resolution=d.resolution, channels=d.channels, log=log)


class Batches:
    """Batch number ``i`` of a run as a dict: ``{"image": float [-1, 1] NCHW, "label"}`` for
    images, ``{"vector": float [N, D], "label"}`` for vector data."""

    def __init__(self, data, batch_size: int, seed: int, device: torch.device,
                 max_device_bytes: int = 2 << 30):
        self.data = data
        self.n = len(data)
        self.batch_size = min(batch_size, self.n)
        self.steps_per_epoch = self.n // self.batch_size  # drop_last
        self.seed = seed
        self.device = device
        self.key = "image" if isinstance(data, ImageDataset) else "vector"
        images = data.images if self.key == "image" else data.x
        # move the uint8 cache to the device once when it fits; else gather per batch
        if device.type != "cpu" and images.numel() <= max_device_bytes:
            images = images.to(device)
        self.images = images
        self.labels = data.labels.to(images.device) if data.labels is not None else None
        self._perm_epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def _order(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.n, generator=g)
            self._perm_epoch = epoch
        return self._perm

    def get(self, index: int) -> dict[str, torch.Tensor]:
        """Batch number ``index`` (0-based, counted over the whole run)."""
        epoch, i = divmod(index, self.steps_per_epoch)
        idx = self._order(epoch)[i * self.batch_size:(i + 1) * self.batch_size]
        x = self.images[idx.to(self.images.device)] if self.images.is_cuda else self.images[idx]
        x = x.to(self.device, non_blocking=True)
        if self.key == "image":
            x = x.float().div_(127.5).sub_(1.0)  # uint8 -> [-1, 1]
        batch = {self.key: x}
        if self.labels is not None:
            batch["label"] = self.labels[idx.to(self.labels.device)].to(self.device)
        return batch
