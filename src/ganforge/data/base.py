"""The two kinds of image source every opener returns (:mod:`ganforge.data.sources`,
:mod:`ganforge.data.torchvision_sets`): encoded files read later, or arrays in memory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .images import ImageSource


@dataclass
class FileSource:
    """Encoded images: ``read(i)`` gives a path or the bytes of item ``i``."""

    name: str
    where: str  # for messages: the folder or zip
    names: list[str]  # display names, relative to ``where``
    read: Callable[[int], ImageSource]
    labels: list[int] | None
    class_names: list[str]
    fingerprint: Callable[[], object]
    default_channels: int | None = None  # skip probing when the source is known colour
    close: Callable[[], None] = field(default=lambda: None)


@dataclass
class ArraySource:
    """Images already decoded: uint8 ``[N, C, h, w]`` (a view is fine)."""

    name: str
    images: np.ndarray
    labels: np.ndarray | None
    class_names: list[str]
    fingerprint: Callable[[], object]


Source = FileSource | ArraySource
