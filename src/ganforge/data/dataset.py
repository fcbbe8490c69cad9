"""The decoded dataset type and the toolkit's home folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch


def ganforge_home() -> Path:
    """``$GANFORGE_HOME`` when set and non-empty, else ``~/.cache/ganforge``."""
    env = os.environ.get("GANFORGE_HOME", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ganforge"


@dataclass
class ImageDataset:
    """A whole image set decoded once.

    ``images`` is uint8 ``[N, C, H, W]`` with ``C`` in {1, 3} and ``H == W == resolution``;
    for big sets it is a tensor over a memory-mapped on-disk cache (copy-on-write: writes
    stay in memory and never reach the file).
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    class_names: list[str]
    name: str
    skipped: int = 0
    native_side: int | None = None  # typical shorter side of the images as they came

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.images.shape[0])
