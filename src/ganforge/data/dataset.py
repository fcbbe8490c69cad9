"""The decoded dataset type and the toolkit's home folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import size_text
from .cache import RowFile


def ganforge_home() -> Path:
    """``$GANFORGE_HOME`` when set and non-empty, else ``~/.cache/ganforge``."""
    env = os.environ.get("GANFORGE_HOME", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ganforge"


@dataclass
class ImageDataset:
    """A whole image set decoded once.

    ``images`` is uint8 ``[N, C, H, W]`` with ``C`` in {1, 3} and ``(H, W) == size``;
    for big sets it is a tensor over a memory-mapped on-disk cache (copy-on-write: writes
    stay in memory and never reach the file), and ``rows`` reads the same rows from that file
    without mapping them (training gathers its batches there: bounded resident memory).
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    class_names: list[str]
    name: str
    skipped: int = 0
    native_side: int | None = None  # typical shorter side of the images as they came
    rows: RowFile | None = None  # the disk cache under ``images``, for big sets

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the images."""
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    @property
    def resolution(self) -> int | str:
        """The side of square images, ``"HxW"`` for others (the config's form)."""
        return size_text(*self.size)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def take(self, idx: torch.Tensor) -> torch.Tensor:
        """``images[idx]`` (uint8); for a set on disk, read from the file rather than through
        the map: mapped pages stay in the process's resident memory (whole large pages of the
        page cache at a time), read ones do not."""
        if self.rows is None or self.rows.shape != tuple(self.images.shape):
            return self.images[idx]
        return torch.from_numpy(self.rows.gather(idx.numpy()))
