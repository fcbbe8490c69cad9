"""Images at their own size for patch-based training from photo folders: super-resolution
(``lowres2highres``) and the derived translations ``gray2color`` and ``edges2image``.

``load_patches(spec, crop, scale, task=...)`` decodes every image of a folder or ``.zip`` at its
native size (no resize, no centre crop: EXIF orientation, 8-bit conversion and the channels rule
of :mod:`ganforge.data.images` only) and holds whole images out for evaluation. Training crops
are cut at random from anywhere in the training images (:class:`~ganforge.train.batches.
PatchBatches`). For super-resolution the low-resolution side is made from each crop by the
antialiased bicubic :func:`~ganforge.data.pairs.downsample` the evaluation uses; for
``gray2color`` and ``edges2image`` the source of each whole image (its luma; its edge map,
whose threshold depends on the whole image) is made once at load time and cropped at the same
place as the image.

A folder with ``train/`` and ``test/`` (or ``val/``) sub-folders trains on ``train/`` and holds
out ``test/``; otherwise a seeded ``test_fraction`` of the images is held out (at least one).
Images smaller than the crop are skipped (and named in one log line). ``crop=0`` picks 96
pixels (SRGAN's crop) for super-resolution and 128 for translation, or, when no image is that
big, the largest multiple of ``scale`` (of 16 for translation) that fits in every image.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import ImageOps

from ganforge.errors import GanforgeError

from .base import ArraySource, FileSource
from .dataset import ganforge_home
from .images import _open, is_grayish, to_8bit
from .load import _attempt, _skip_line
from .sources import open_source

Log = Callable[[str], None]

DEFAULT_CROP = 96  # SRGAN's high-resolution crop (24 px low-resolution at x4)
MIN_CROP_LR = 4  # a crop keeps at least this many low-resolution pixels a side
TRANSLATION_CROP = 128  # gray2color / edges2image crops (a U-Net of depth 7 down to 1x1)
CROP_MULTIPLE = 16  # translation crops: a U-Net of depth >= 4 must divide them
PATCH_TASKS = ("lowres2highres", "gray2color", "edges2image")


@dataclass
class PatchDataset:
    """Whole images at native size (uint8 ``[C, H, W]`` each, sizes differ) for patch training:
    ``images`` are cropped at random for training, ``test_images`` are held out whole."""

    images: list[torch.Tensor]
    test_images: list[torch.Tensor]
    name: str
    task: str  # lowres2highres, gray2color or edges2image
    crop: int  # side of the (high-resolution) training crops
    scale: int  # source side = crop // scale (1 for translation)
    skipped: int = 0
    # translation: the source of each image (uint8 [Cs, H, W], same size), made once
    sources: list[torch.Tensor] | None = None
    test_sources: list[torch.Tensor] | None = None

    @property
    def channels(self) -> int:
        """Channels of the targets (the images)."""
        return int(self.images[0].shape[0])

    @property
    def source_channels(self) -> int:
        return int(self.sources[0].shape[0]) if self.sources else self.channels

    @property
    def pixels(self) -> int:
        """Pixels of the training images, all together."""
        return sum(int(x.shape[1] * x.shape[2]) for x in self.images)

    def __len__(self) -> int:
        return len(self.images)

    def sizes(self) -> str:
        """The range of training image sizes, e.g. ``427x640 to 600x512``."""
        hw = sorted({(int(x.shape[2]), int(x.shape[1])) for x in self.images},
                    key=lambda s: s[0] * s[1])
        lo, hi = hw[0], hw[-1]
        return f"{lo[0]}x{lo[1]}" + ("" if lo == hi else f" to {hi[0]}x{hi[1]}")


def is_patch_spec(spec: str) -> bool:
    """True for specs read at native size by patch tasks: folders and zips, not built-ins
    nor Hugging Face datasets (``hf:``, read at the run's resolution)."""
    from .hf_sets import is_hf_spec
    from .pairs import _is_builtin

    return not _is_builtin(spec) and not is_hf_spec(spec)


def decode_native(src: Path | bytes, channels: int) -> np.ndarray:
    """A file path or bytes -> uint8 ``[channels, H, W]`` at the image's own size."""
    with _open(src) as img:
        img.load()
        img = ImageOps.exif_transpose(img)
        img = to_8bit(img, channels)
    arr = np.array(img, dtype=np.uint8)  # a writable copy (torch warns on read-only)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _check(crop: object, scale: object, test_fraction: object, task: str) -> None:
    if task not in PATCH_TASKS:
        raise GanforgeError(f"task={task!r} is not trained on patches: use one of "
                            f"{', '.join(PATCH_TASKS)}")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Integral) or scale < 1:
        raise GanforgeError(f"scale must be a positive integer such as 2 or 4, got {scale!r}")
    default = DEFAULT_CROP if task == "lowres2highres" else TRANSLATION_CROP
    if isinstance(crop, bool) or not isinstance(crop, numbers.Integral) or crop < 0:
        raise GanforgeError(f"crop must be a whole number of pixels (0 = {default}), "
                            f"got {crop!r}")
    if task != "lowres2highres":
        if crop and (crop % CROP_MULTIPLE or crop < 2 * CROP_MULTIPLE):
            raise GanforgeError(f"crop={crop} must be a multiple of {CROP_MULTIPLE} and at "
                                f"least {2 * CROP_MULTIPLE} pixels for {task}, e.g. "
                                f"crop={default}")
    elif crop and (crop % scale or crop < MIN_CROP_LR * scale):
        raise GanforgeError(f"crop={crop} must be a multiple of scale={scale} and at least "
                            f"{MIN_CROP_LR * scale} pixels, e.g. crop={DEFAULT_CROP}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) \
            or not 0 <= test_fraction < 1:
        raise GanforgeError(f"test_fraction must be a number in [0, 1) such as 0.1 (0: hold "
                            f"nothing out), got {test_fraction!r}")


# long: checks, decoding, the held-out split and the sources of one dataset in the order
# they happen; the pieces share the same few locals
def load_patches(spec: str, crop: int = 0, scale: int = 4, channels: int | None = None,
                 test_fraction: float = 0.1, seed: int = 0, task: str = "lowres2highres",
                 log: Log | None = print, home: str | Path | None = None) -> PatchDataset:
    """Every readable image of ``spec`` (a folder or ``.zip``) at native size; a seeded
    ``test_fraction`` of them (at least one when > 0) held out whole, or ``test/`` when there
    are ``train/`` and ``test/`` sub-folders. See the module docstring for ``crop``; ``scale``
    is 1 for the translation tasks."""
    translation = task != "lowres2highres"
    if translation:
        scale = 1
    _check(crop, scale, test_fraction, task)
    if task == "gray2color" and channels == 1:
        raise GanforgeError("gray2color makes colour targets: use channels=3 or None, not 1")
    say: Log = log if log is not None else (lambda _msg: None)
    home_p = Path(home).expanduser() if home is not None else ganforge_home()
    src = open_source(spec, home_p, say)
    if isinstance(src, ArraySource):
        raise GanforgeError(f"{spec} is a built-in set of small images: {task} at native size "
                            f"needs a folder or .zip of photos")
    try:
        arrays, failures, c = _decode_all(src, channels)
    finally:
        src.close()
    if not arrays:
        first = f", first: {failures[0][1]}: {failures[0][2]}" if failures else ""
        raise GanforgeError(f"no readable image in {src.where} ({len(failures)} unreadable"
                            f"{first}): add photos (png, jpg, ...)")
    if failures:
        say(f"skipped {_skip_line(failures)}")
    if task == "gray2color" and c == 1:
        raise GanforgeError(f"gray2color needs colour images and every image of {src.where} "
                            f"is gray: give colour photos or use edges2image or lowres2highres")
    smallest = min(min(a.shape[1:]) for a in arrays.values())
    if not crop:
        default = TRANSLATION_CROP if translation else DEFAULT_CROP
        step = CROP_MULTIPLE if translation else scale
        least = 2 * CROP_MULTIPLE if translation else MIN_CROP_LR * scale
        fits = any(min(a.shape[1:]) >= default for a in arrays.values())
        crop = default if fits else smallest - smallest % step
        if crop < least:
            what = task if translation else f"x{scale} super-resolution"
            raise GanforgeError(f"the images of {src.where} are too small for {what} "
                                f"({smallest} px on their shorter side): give images of at "
                                f"least {least} px")
    small = [i for i, a in arrays.items() if min(a.shape[1:]) < crop]
    if small:
        if len(small) == len(arrays):
            raise GanforgeError(f"every image of {src.where} is smaller than crop={crop} (the "
                                f"largest shorter side is "
                                f"{max(min(a.shape[1:]) for a in arrays.values())} px): set a "
                                f"smaller crop (a multiple of {scale})")
        names = ", ".join(src.names[i] for i in small[:3]) + (", ..." if len(small) > 3 else "")
        say(f"skipped {len(small)} image{'s' if len(small) > 1 else ''} smaller than "
            f"crop={crop} ({names})")
    kept = [i for i in sorted(arrays) if i not in set(small)]
    gen = torch.Generator().manual_seed(int(seed))
    names = src.class_names
    held_name = next((c for c in ("test", "val") if c in names), None)
    if src.labels is not None and "train" in names and held_name is not None:
        tr, he = names.index("train"), names.index(held_name)
        train = [j for j, i in enumerate(kept) if src.labels[i] == tr]
        held = [j for j, i in enumerate(kept) if src.labels[i] == he]
        if not train:
            raise GanforgeError(f"no usable image in {src.where}/train: add photos there")
    elif test_fraction > 0:
        m = max(1, int(len(kept) * test_fraction + 0.5))
        if m >= len(kept):
            raise GanforgeError(f"{src.where} has only {len(kept)} usable image"
                                f"{'s' if len(kept) != 1 else ''}: too few to hold out "
                                f"test_fraction={test_fraction} and train on the rest; add "
                                f"images or set test_fraction=0")
        perm = torch.randperm(len(kept), generator=gen).tolist()
        held = sorted(perm[:m])
        train = sorted(perm[m:])
    else:
        held, train = [], list(range(len(kept)))

    def tensors(idx: list[int]) -> list[torch.Tensor]:
        return [torch.from_numpy(np.ascontiguousarray(arrays[kept[j]])) for j in idx]

    images, test_images = tensors(train), tensors(held)
    sources = test_sources = None
    if translation:
        sources, test_sources = _sources(images, task), _sources(test_images, task)
    return PatchDataset(images, test_images, src.name, task, int(crop), int(scale),
                        len(failures) + len(small), sources, test_sources)


def _sources(images: list[torch.Tensor], task: str) -> list[torch.Tensor]:
    """The translation source of each whole image: its luma, or its edge map."""
    from .pairs import edges, luma

    make = luma if task == "gray2color" else edges
    return [make(x[None])[0].contiguous() for x in images]


def _decode_all(src: FileSource, channels: int | None
                ) -> tuple[dict[int, np.ndarray], list[tuple[int, str, str]], int]:
    items = list(range(len(src.names)))
    failures: list[tuple[int, str, str]] = []
    with ThreadPoolExecutor(max(1, min(8, len(items)))) as pool:
        c = channels or src.default_channels
        if c is None:  # load_dataset's rule: 1 channel only if every readable image is gray
            gray = True
            readable = []
            for i, (res, err) in zip(items, pool.map(lambda i: _attempt(is_grayish, src, i),
                                                     items)):
                if err is not None:
                    failures.append((i, src.names[i], err))
                else:
                    readable.append(i)
                    gray = gray and bool(res)
            items, c = readable, (1 if gray else 3)
        arrays: dict[int, np.ndarray] = {}
        for i, (res, err) in zip(items, pool.map(
                lambda i: _attempt(decode_native, src, i, c), items)):
            if err is not None:
                failures.append((i, src.names[i], err))
            else:
                arrays[i] = res
    return arrays, sorted(failures), int(c)


__all__ = ["DEFAULT_CROP", "PATCH_TASKS", "TRANSLATION_CROP", "PatchDataset", "decode_native",
           "is_patch_spec", "load_patches"]
