"""Data of image-to-image translation and super-resolution: ``load_pairs(spec, task)``.

Returns :class:`PairedDataset` (aligned ``source[i] -> target[i]``, for Pix2Pix and SRGAN) or
:class:`UnpairedDataset` (two unaligned domains, for CycleGAN); every image is uint8 NCHW,
square, decoded with the rules of :mod:`ganforge.data.images`.

Tasks (``TASKS``):

* ``aligned``: a folder or ``.zip`` of side-by-side ``A|B`` images (the pix2pix sets: each file
  twice as wide as high, left half A, right half B; each half is centre-cropped and resized
  like :func:`~ganforge.data.load_dataset` does). With ``train/`` and ``test/`` or ``val/``
  sub-folders, ``train/`` is trained on and ``test/`` (else ``val/``) held out; otherwise a
  seeded ``test_fraction`` split. Files whose width is not about twice their height are
  skipped and named in the same log line as unreadable files.
* ``folders``: ``spec/A/`` and ``spec/B/`` holding files with matching names up to the
  extension (``A/x.png`` pairs with ``B/x.jpg``; paths below A/ and B/ must match too).
  Files without a partner are skipped and counted in one log line. Seeded split.
* ``unpaired``: ``spec/trainA/`` and ``spec/trainB/`` (the CycleGAN sets), held out from
  ``testA/`` and ``testB/`` when both exist, else a seeded split of each domain.
* Derived from any spec :func:`~ganforge.data.load_dataset` accepts (folder, zip, ``digits``,
  ``mnist``...), held out by a seeded ``test_fraction`` split:

  - ``edges2image``: source = :func:`edges` of the image (1 channel), target = the image;
  - ``gray2color``: source = its ITU-R 601 luma (1 channel), target = the colour image;
  - ``lowres2highres``: source = the image downsampled by ``scale`` with :func:`downsample`
    (``[N, C, R/scale, R/scale]``), target = the image at ``resolution``;
  - ``invert``: an :class:`UnpairedDataset`, A = half of the images, B = ``255 - image`` of
    the other half (a seeded split, so no B image is the inverse of an A image).

``direction="BtoA"`` swaps source and target (a and b). Channels follow ``load_dataset``'s
rule (``channels=None``: 1 if every image is gray, else 3) except where the task fixes them.
``skipped`` counts the files that did not make it into the set (unreadable, wrong shape, no
partner, or the partner of an unreadable file).
Paired file sets (``aligned``, ``folders``) are decoded in memory, without the disk cache.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ganforge.errors import GanforgeError

from .base import ArraySource, FileSource
from .dataset import ImageDataset, ganforge_home
from .images import _open, decode_image, is_grayish, to_8bit
from .load import _attempt, _check_args, _skip_line, load_dataset
from .sources import (
    BUILTIN_NAMES,
    builtin_key,
    folder_source,
    open_source,
)

Log = Callable[[str], None]

TASKS = ("aligned", "folders", "unpaired", "edges2image", "gray2color", "lowres2highres", "invert")
DIRECTIONS = ("AtoB", "BtoA")
EDGE_THRESHOLD = 5  # an edge: Sobel magnitude >= 1/EDGE_THRESHOLD of the image's largest
ASPECT_TOLERANCE = 0.05  # aligned files: |width - 2 height| <= 5 % of 2 height (or 2 px)
_CHUNK = 512


@dataclass
class PairedDataset:
    """Aligned pairs: ``source[i]`` translates to ``target[i]`` (uint8 NCHW, square)."""

    source: torch.Tensor  # uint8 [N, Cs, Rs, Rs]
    target: torch.Tensor  # uint8 [N, Ct, R, R]
    test_source: torch.Tensor  # uint8 [M, Cs, Rs, Rs] held out (M may be 0)
    test_target: torch.Tensor  # uint8 [M, Ct, R, R]
    name: str
    task: str  # aligned, folders, edges2image, gray2color, lowres2highres
    skipped: int = 0

    @property
    def resolution(self) -> int:
        """Side of the targets (the images the generator makes)."""
        return int(self.target.shape[-1])

    @property
    def source_resolution(self) -> int:
        return int(self.source.shape[-1])

    @property
    def source_channels(self) -> int:
        return int(self.source.shape[1])

    @property
    def target_channels(self) -> int:
        return int(self.target.shape[1])

    def __len__(self) -> int:
        return int(self.source.shape[0])


@dataclass
class UnpairedDataset:
    """Two unaligned domains (CycleGAN), uint8 NCHW with the same channels and resolution."""

    a: torch.Tensor  # uint8 [Na, C, R, R]
    b: torch.Tensor  # uint8 [Nb, C, R, R]
    test_a: torch.Tensor  # uint8 [Ma, C, R, R] held out (may be empty)
    test_b: torch.Tensor  # uint8 [Mb, C, R, R]
    name: str
    skipped: int = 0

    @property
    def channels(self) -> int:
        return int(self.a.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.a.shape[-1])


def load_pairs(
    spec: str,
    task: str,
    resolution: int = 32,
    channels: int | None = None,
    direction: str = "AtoB",
    scale: int = 4,
    test_fraction: float = 0.1,
    seed: int = 0,
    log: Log | None = print,
    home: str | Path | None = None,
) -> PairedDataset | UnpairedDataset:
    """Load ``spec`` as the pairs of ``task`` (see the module docstring for tasks and layouts).

    ``resolution``: side of the (target) images; ``channels``: 1, 3 or None (from the data);
    ``scale``: lowres2highres's downsampling factor (``resolution`` must be divisible by it);
    ``test_fraction``: held-out share for seeded splits (at least 1 image when > 0);
    ``log``: receives one-line notes (skipped files), None silences them; ``home``: as in
    :func:`~ganforge.data.load_dataset`.
    """
    if task not in TASKS:
        raise GanforgeError(f"unknown pairs task {task!r}: use one of {', '.join(TASKS)}")
    if direction not in DIRECTIONS:
        raise GanforgeError(f"direction must be AtoB (source -> target) or BtoA (the reverse), "
                            f"got {direction!r}")
    _check_args(resolution, channels)
    resolution = int(resolution)
    _check_split(test_fraction, seed)
    if task == "lowres2highres":
        _check_scale(scale, resolution)
    say: Log = log if log is not None else (lambda _msg: None)
    home_p = Path(home).expanduser() if home is not None else ganforge_home()

    if task == "unpaired":
        return _swap(_unpaired(spec, resolution, channels, test_fraction, seed, home_p, say),
                     direction)
    if task == "invert":
        return _swap(_invert(spec, resolution, channels, test_fraction, seed, home_p, say),
                     direction)
    if task == "aligned":
        ds = _aligned(spec, resolution, channels, test_fraction, seed, home_p, say)
    elif task == "folders":
        ds = _folders(spec, resolution, channels, test_fraction, seed, say)
    else:
        ds = _derived(spec, task, resolution, channels, scale, test_fraction, seed, home_p, say)
    return _swap(ds, direction)


# ---------------------------------------------------------------------------- image operations


def downsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic antialiased downsampling of float ``[N, C, H, W]`` in [-1, 1] by ``scale``.

    ``F.interpolate(mode="bicubic", antialias=True)`` computed in float32, clamped to [-1, 1],
    returned in ``x``'s dtype on ``x``'s device. ``H`` and ``W`` must be divisible by ``scale``.
    This is the operation that made lowres2highres's stored sources (before rounding to uint8).
    """
    if x.ndim != 4:
        raise GanforgeError(f"downsample needs an [N, C, H, W] batch, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if isinstance(scale, bool) or not isinstance(scale, numbers.Integral) or scale < 1 \
            or h % scale or w % scale:
        raise GanforgeError(f"cannot downsample {h}x{w} images by scale {scale!r}: the scale must "
                            f"be a positive integer dividing the height and width")
    y = F.interpolate(x.float(), size=(h // scale, w // scale), mode="bicubic",
                      align_corners=False, antialias=True)
    return y.clamp_(-1.0, 1.0).to(x.dtype)


def lowres(hr: torch.Tensor, scale: int, degrade: str = "none",
           generator: torch.Generator | None = None) -> torch.Tensor:
    """The low-resolution side of high-resolution ``hr`` [N, C, H, W] in [-1, 1]: the
    antialiased bicubic :func:`downsample`, or with ``degrade="realesrgan"`` Real-ESRGAN's
    random degradations drawn from ``generator`` (a fixed one when None, so held-out scores
    are repeatable)."""
    if degrade == "realesrgan":
        from .degrade import realesrgan

        if generator is None or generator.device.type != "cpu":
            seed = 0 if generator is None else int(torch.randint(
                0, 2**62, (), generator=generator, device=generator.device))
            generator = torch.Generator().manual_seed(seed)
        return realesrgan(hr, scale, generator)
    return downsample(hr, scale)


def luma(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, 1, H, W]`` gray of uint8 ``[N, C, H, W]`` (ITU-R 601 in Pillow's integer
    arithmetic, so it equals ``Image.convert("L")`` exactly), any height and width."""
    if images.shape[1] == 1:
        return images
    x = images.to(torch.int32)
    y = (x[:, 0] * 19595 + x[:, 1] * 38470 + x[:, 2] * 7471 + 0x8000) >> 16
    return y.to(torch.uint8)[:, None]


def edges(images: torch.Tensor) -> torch.Tensor:
    """Binary edge maps, uint8 ``[N, 1, H, W]``: 255 on edges, 0 elsewhere (white on black).

    Per image, a thresholded Sobel magnitude thinned Canny-style: gray = :func:`luma`; Sobel
    gradients ``gx``, ``gy`` (3x3, borders replicated); a pixel is an edge when its squared
    magnitude ``m = gx^2 + gy^2`` is (1) at least 1/25 of the image's largest, i.e. the
    magnitude is at least 1/5 of the largest, and (2) not below either neighbour along the
    gradient direction (quantised to 0, 45, 90 or 135 degrees): non-maximum suppression, so
    edges are about one pixel thick. Flat images give no edges. Integer arithmetic only, so the
    maps are identical on every machine.
    """
    g = luma(images).to(torch.int64)[:, 0]
    n, h, w = g.shape
    p = F.pad(g[:, None].double(), (1, 1, 1, 1), mode="replicate")[:, 0].to(torch.int64)

    def at(pad: torch.Tensor, dy: int, dx: int) -> torch.Tensor:  # shifted view: [N, H, W]
        return pad[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    gx = (at(p, -1, 1) + 2 * at(p, 0, 1) + at(p, 1, 1)) - (at(p, -1, -1) + 2 * at(p, 0, -1)
                                                         + at(p, 1, -1))
    gy = (at(p, 1, -1) + 2 * at(p, 1, 0) + at(p, 1, 1)) - (at(p, -1, -1) + 2 * at(p, -1, 0)
                                                         + at(p, -1, 1))
    m = gx * gx + gy * gy
    mp = F.pad(m[:, None].double(), (1, 1, 1, 1), value=0.0)[:, 0].to(torch.int64)
    ax, ay = gx.abs(), gy.abs()
    horizontal = 12 * ay <= 5 * ax  # within ~22.6 degrees of the x axis: compare left/right
    vertical = 12 * ax <= 5 * ay
    falling = gx * gy > 0  # gradient down-right or up-left: compare along that diagonal
    n1 = torch.where(horizontal, at(mp, 0, -1), torch.where(
        vertical, at(mp, -1, 0), torch.where(falling, at(mp, -1, -1), at(mp, -1, 1))))
    n2 = torch.where(horizontal, at(mp, 0, 1), torch.where(
        vertical, at(mp, 1, 0), torch.where(falling, at(mp, 1, 1), at(mp, 1, -1))))
    peak = m.amax(dim=(1, 2), keepdim=True) if n else m
    edge = (m * EDGE_THRESHOLD**2 >= peak) & (peak > 0) & (m >= n1) & (m >= n2)
    return (edge.to(torch.uint8) * 255)[:, None]


def _downsample_uint8(images: torch.Tensor, scale: int) -> torch.Tensor:
    out = []
    for i in range(0, len(images), 1024):  # bounded float memory
        x = images[i:i + 1024].float().div_(127.5).sub_(1.0)
        y = downsample(x, scale)
        out.append(y.add_(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8))
    if not out:
        r = images.shape[-1] // scale
        return torch.empty((0, images.shape[1], r, r), dtype=torch.uint8)
    return torch.cat(out)


# ------------------------------------------------------------------------------------ checks


def _check_split(test_fraction: object, seed: object) -> None:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) \
            or not 0 <= test_fraction < 1:
        raise GanforgeError(f"test_fraction must be a number in [0, 1) such as 0.1 (0: hold "
                            f"nothing out), got {test_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise GanforgeError(f"seed must be an integer, got {seed!r}")


def _check_scale(scale: object, resolution: int) -> None:
    if isinstance(scale, bool) or not isinstance(scale, numbers.Integral) or scale < 1:
        raise GanforgeError(f"scale must be a positive integer such as 2 or 4, got {scale!r}")
    if resolution % scale:
        raise GanforgeError(f"resolution {resolution} is not divisible by scale {scale}: "
                            f"lowres2highres needs resolution = scale x the low resolution, "
                            f"e.g. resolution=32 scale=4")


def _is_builtin(spec: str) -> bool:
    return builtin_key(spec)[0] in BUILTIN_NAMES


def _folder(spec: str, task: str, layout: str) -> Path:
    """``spec`` as an existing folder, or a one-line error naming the expected layout."""
    if _is_builtin(spec):
        raise GanforgeError(f"the {task} task needs {layout}, not the built-in "
                            f"'{spec}': use edges2image, gray2color, lowres2highres or invert to "
                            f"derive pairs from it")
    root = Path(str(spec).strip()).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "not found"
        raise GanforgeError(f"{task} dataset folder {os.path.abspath(root)} {what}: the {task} "
                            f"task expects {layout}")
    return root


# ----------------------------------------------------------------------------------- splits


def _split(n: int, test_fraction: float, gen: torch.Generator,
           what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted (train, held-out) indices; at least 1 held out when ``test_fraction > 0``."""
    if test_fraction <= 0:
        return torch.arange(n), torch.arange(0)
    m = max(1, int(n * test_fraction + 0.5))
    if m >= n:
        raise GanforgeError(f"{what} has only {n} image{'s' if n != 1 else ''}: too few to hold "
                            f"out test_fraction={test_fraction} and train on the rest; add "
                            f"images or set test_fraction=0")
    perm = torch.randperm(n, generator=gen)
    return perm[m:].sort().values, perm[:m].sort().values


def _take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return x if len(idx) == len(x) else x[idx]


def _swap(ds: PairedDataset | UnpairedDataset,
          direction: str) -> PairedDataset | UnpairedDataset:
    if direction == "AtoB":
        return ds
    if isinstance(ds, UnpairedDataset):
        return UnpairedDataset(ds.b, ds.a, ds.test_b, ds.test_a, ds.name, ds.skipped)
    return PairedDataset(ds.target, ds.source, ds.test_target, ds.test_source, ds.name, ds.task,
                         ds.skipped)


# ----------------------------------------------------------------------------- derived tasks


def _derived(spec: str, task: str, resolution: int, channels: int | None, scale: int,
             test_fraction: float, seed: int, home: Path, say: Log) -> PairedDataset:
    if task == "gray2color" and channels == 1:
        raise GanforgeError("gray2color makes colour targets: use channels=3 or None, not 1")
    data = load_dataset(spec, resolution, channels, home=home, log=say)
    images = data.images
    if task == "gray2color":
        if images.shape[1] == 1 or _all_gray(images):
            raise GanforgeError(f"gray2color needs colour images and {data.name} is gray: give a "
                                f"colour dataset (e.g. cifar10 or a folder of photos) or use "
                                f"edges2image or lowres2highres")
        make = luma
    elif task == "edges2image":
        make = edges
    else:
        def make(x: torch.Tensor) -> torch.Tensor:
            return _downsample_uint8(x, scale)

    gen = torch.Generator().manual_seed(int(seed))
    train, test = _split(len(images), test_fraction, gen, data.name)
    target, test_target = _take(images, train), images[test]
    return PairedDataset(make(target), target.contiguous(), make(test_target), test_target,
                         data.name, task, data.skipped)


def _all_gray(images: torch.Tensor) -> bool:
    for i in range(0, len(images), 4096):
        x = images[i:i + 4096]
        if not (torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])):
            return False
    return True


def _invert(spec: str, resolution: int, channels: int | None, test_fraction: float, seed: int,
            home: Path, say: Log) -> UnpairedDataset:
    data = load_dataset(spec, resolution, channels, home=home, log=say)
    n = len(data)
    if n < 2:
        raise GanforgeError(f"invert needs at least 2 images (one per domain), {data.name} has "
                            f"{n}: add images")
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=gen)
    half = (n + 1) // 2
    idx_a, idx_b = perm[:half].sort().values, perm[half:].sort().values
    tr_a, te_a = _split(len(idx_a), test_fraction, gen, f"domain A of {data.name} (half the set)")
    tr_b, te_b = _split(len(idx_b), test_fraction, gen, f"domain B of {data.name} (half the set)")
    x = data.images
    return UnpairedDataset(
        a=x[idx_a[tr_a]], b=255 - x[idx_b[tr_b]],
        test_a=x[idx_a[te_a]], test_b=255 - x[idx_b[te_b]],
        name=f"{data.name} <-> inverted", skipped=data.skipped,
    )


# ---------------------------------------------------------------------------------- unpaired

_UNPAIRED = "trainA/ and trainB/ sub-folders (optional testA/ and testB/), the CycleGAN layout"


def _unpaired(spec: str, resolution: int, channels: int | None, test_fraction: float,
              seed: int, home: Path, say: Log) -> UnpairedDataset:
    root = _folder(spec, "unpaired", f"a folder with {_UNPAIRED}")
    for sub in ("trainA", "trainB"):
        if not (root / sub).is_dir():
            raise GanforgeError(f"{root} has no {sub}/ sub-folder: the unpaired task expects "
                                f"{_UNPAIRED}")
    has = {s: (root / s).is_dir() for s in ("testA", "testB")}
    if has["testA"] != has["testB"]:
        there, missing = ("testA", "testB") if has["testA"] else ("testB", "testA")
        raise GanforgeError(f"{root} has {there}/ but no {missing}/: add {missing}/ or remove "
                            f"{there}/ (held-out images then come from a test_fraction split)")

    def load(sub: str, c: int | None) -> ImageDataset:
        return load_dataset(str(root / sub), resolution, c, home=home, log=say)

    da, db = load("trainA", channels), load("trainB", channels)
    c = max(da.channels, db.channels)  # one gray and one colour domain: both colour
    a, b = _to_channels(da.images, c), _to_channels(db.images, c)
    skipped = da.skipped + db.skipped
    if has["testA"]:
        ta, tb = load("testA", c), load("testB", c)
        test_a, test_b, skipped = ta.images, tb.images, skipped + ta.skipped + tb.skipped
    else:
        gen = torch.Generator().manual_seed(int(seed))
        tr_a, te_a = _split(len(a), test_fraction, gen, str(root / "trainA"))
        tr_b, te_b = _split(len(b), test_fraction, gen, str(root / "trainB"))
        a, test_a, b, test_b = _take(a, tr_a), a[te_a], _take(b, tr_b), b[te_b]
    return UnpairedDataset(a, b, test_a, test_b, str(root), skipped)


def _to_channels(x: torch.Tensor, c: int) -> torch.Tensor:
    return x.expand(-1, c, -1, -1).contiguous() if x.shape[1] != c else x


# ------------------------------------------------------------------------- file-pair decoding


def _decode_halves(src: Path | bytes, resolution: int,
                   channels: int) -> tuple[np.ndarray, np.ndarray]:
    """A side-by-side A|B file -> two uint8 ``[channels, R, R]`` arrays (left A, right B)."""
    with _open(src) as img:
        if img.format == "JPEG":
            img.draft(None, (2 * resolution, resolution))
        img.load()
        img = ImageOps.exif_transpose(img)
        img = to_8bit(img, channels)
    w, h = img.size
    if abs(w - 2 * h) > max(2.0, ASPECT_TOLERANCE * 2 * h):
        raise ValueError(f"{w}x{h} is not an A|B pair (width must be about twice the height)")
    w2 = w // 2  # crop first (as pix2pix does): resampling never mixes the two halves
    out = []
    for part in (img.crop((0, 0, w2, h)), img.crop((w2, 0, w, h))):
        pw = part.size[0]
        s = min(pw, h)
        box = ((pw - s) / 2, (h - s) / 2, (pw + s) / 2, (h + s) / 2)
        arr = np.asarray(part.resize((resolution, resolution), Image.Resampling.BICUBIC,
                                     box=box), dtype=np.uint8)
        out.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
    return out[0], out[1]


def _run(pool: ThreadPoolExecutor, fn: Callable, src: FileSource, items: list[int],
         *args: object) -> tuple[dict[int, object], list[tuple[int, str, str]]]:
    """``fn`` over ``items`` of ``src``: results by index, and (index, name, reason) failures."""
    done: dict[int, object] = {}
    failures: list[tuple[int, str, str]] = []
    for s in range(0, len(items), _CHUNK):
        chunk = items[s:s + _CHUNK]
        for i, (res, err) in zip(chunk, pool.map(lambda i: _attempt(fn, src, i, *args), chunk)):
            if err is not None:
                failures.append((i, src.names[i], err))
            else:
                done[i] = res
    return done, failures


def _channels_of(pool: ThreadPoolExecutor, src: FileSource, items: list[int],
                 channels: int | None) -> tuple[int, list[int], list[tuple[int, str, str]]]:
    """load_dataset's rule: 1 when every readable image is gray, else 3; unreadable dropped."""
    if channels is not None:
        return channels, items, []
    gray, failures = _run(pool, is_grayish, src, items)
    readable = [i for i in items if i in gray]
    return (1 if all(gray[i] for i in readable) else 3), readable, failures


def _pool(n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1, n)))


def _stack(arrays: list[np.ndarray], channels: int, resolution: int) -> torch.Tensor:
    if not arrays:
        return torch.empty((0, channels, resolution, resolution), dtype=torch.uint8)
    return torch.from_numpy(np.stack(arrays))


# ----------------------------------------------------------------------------------- aligned

_ALIGNED = ("a folder or .zip of side-by-side A|B images (each twice as wide as high, left "
            "half A, right half B; optional train/ and test/ or val/ sub-folders)")


def _aligned(spec: str, resolution: int, channels: int | None, test_fraction: float, seed: int,
             home: Path, say: Log) -> PairedDataset:
    if _is_builtin(spec):
        raise GanforgeError(f"the aligned task needs {_ALIGNED}, not the built-in '{spec}': use "
                            f"edges2image, gray2color, lowres2highres or invert to derive pairs")
    src = open_source(spec, home, say)
    if isinstance(src, ArraySource):  # unreachable for non-built-in specs; kept as a guard
        raise GanforgeError(f"the aligned task needs {_ALIGNED}, got {spec}")
    try:
        return _aligned_files(src, resolution, channels, test_fraction, seed, say)
    finally:
        src.close()


def _aligned_files(src: FileSource, resolution: int, channels: int | None, test_fraction: float,
                   seed: int, say: Log) -> PairedDataset:
    n = len(src.names)
    labels = src.labels
    held_name = next((c for c in ("test", "val") if c in src.class_names), None)
    if labels is not None and "train" in src.class_names and held_name is not None:
        tr, he = src.class_names.index("train"), src.class_names.index(held_name)
        train_items = [i for i in range(n) if labels[i] == tr]
        held_items = [i for i in range(n) if labels[i] == he]
        others = sorted(set(src.class_names) - {"train", held_name})
        if others:
            say(f"aligned: training on train/, holding out {held_name}/; ignored "
                f"{', '.join(o + '/' for o in others)}")
    else:
        train_items, held_items = list(range(n)), None
    items = train_items + (held_items or [])
    with _pool(len(items)) as pool:
        c, items, failures = _channels_of(pool, src, items, channels)
        done, more = _run(pool, _decode_halves, src, items, resolution, c)
    failures = sorted(failures + more)
    train_kept = [i for i in train_items if i in done]
    if not train_kept:
        detail = f"; {len(failures)} unusable, first: {failures[0][1]}: {failures[0][2]}" \
            if failures else ""
        raise GanforgeError(f"no usable A|B image in {src.where}{detail}: the aligned task needs "
                            f"{_ALIGNED}; for A/ and B/ folders use task folders")
    if failures:
        say(f"skipped {_skip_line(failures)}")

    def stack(keep: list[int], side: int) -> torch.Tensor:
        return _stack([done[i][side] for i in keep], c, resolution)

    if held_items is not None:
        held_kept = [i for i in held_items if i in done]
    else:
        gen = torch.Generator().manual_seed(int(seed))
        tr, te = _split(len(train_kept), test_fraction, gen, src.where)
        train_kept, held_kept = [train_kept[i] for i in tr], [train_kept[i] for i in te]
    return PairedDataset(stack(train_kept, 0), stack(train_kept, 1), stack(held_kept, 0),
                         stack(held_kept, 1), src.name, "aligned", len(failures))


# ----------------------------------------------------------------------------------- folders

_FOLDERS = ("A/ and B/ sub-folders holding images with matching names up to the extension "
            "(A/x.png pairs with B/x.jpg)")


def _folders(spec: str, resolution: int, channels: int | None, test_fraction: float, seed: int,
             say: Log) -> PairedDataset:
    root = _folder(spec, "folders", f"a folder with {_FOLDERS}")
    for sub in ("A", "B"):
        if not (root / sub).is_dir():
            raise GanforgeError(f"{root} has no {sub}/ sub-folder: the folders task expects "
                                f"{_FOLDERS}")
    src_a, src_b = folder_source(root / "A", say), folder_source(root / "B", say)
    key_a, key_b = _keys(src_a), _keys(src_b)
    common = [k for k in key_a if k in key_b]  # sorted like A's names
    if not common:
        ex_a, ex_b = next(iter(key_a.values())), next(iter(key_b.values()))
        raise GanforgeError(
            f"no file in {root / 'A'} has a partner in {root / 'B'} ({len(key_a)} and "
            f"{len(key_b)} images, e.g. A/{src_a.names[ex_a]} and B/{src_b.names[ex_b]}): "
            f"the folders task expects {_FOLDERS}"
        )
    unmatched = [f"A/{src_a.names[i]}" for k, i in key_a.items() if k not in key_b]
    unmatched += [f"B/{src_b.names[i]}" for k, i in key_b.items() if k not in key_a]
    extra = (len(src_a.names) - len(key_a)) + (len(src_b.names) - len(key_b))
    if unmatched:
        shown = ", ".join(unmatched[:3]) + (", ..." if len(unmatched) > 3 else "")
        say(f"skipped {len(unmatched)} file{'s' if len(unmatched) > 1 else ''} with no partner of "
            f"the same name in the other folder ({shown})")
    if extra:
        say(f"skipped {extra} file{'s' if extra > 1 else ''} whose name repeats another's with a "
            f"different extension (the first by sorted name is used)")
    items_a, items_b = [key_a[k] for k in common], [key_b[k] for k in common]
    with _pool(len(common)) as pool:
        ca, items_a2, fail_a = _channels_of(pool, src_a, items_a, channels)
        cb, items_b2, fail_b = _channels_of(pool, src_b, items_b, channels)
        got_a, more_a = _run(pool, decode_image, src_a, items_a2, resolution, ca)
        got_b, more_b = _run(pool, decode_image, src_b, items_b2, resolution, cb)
    failures = sorted([(i, f"A/{n}", r) for i, n, r in fail_a + more_a]) + \
        sorted([(i, f"B/{n}", r) for i, n, r in fail_b + more_b])
    pairs = [(i, j) for i, j in zip(items_a, items_b) if i in got_a and j in got_b]
    if failures:
        say(f"skipped {_skip_line(failures)} and their partners")
    if not pairs:
        raise GanforgeError(f"no readable pair in {root} ({len(failures)} unreadable files, "
                            f"first: {failures[0][1]}: {failures[0][2]}): replace the files")
    skipped = len(src_a.names) + len(src_b.names) - 2 * len(pairs)
    gen = torch.Generator().manual_seed(int(seed))
    tr, te = _split(len(pairs), test_fraction, gen, str(root))

    def stack(idx: torch.Tensor, side: int) -> torch.Tensor:
        got, c = (got_a, ca) if side == 0 else (got_b, cb)
        return _stack([got[pairs[k][side]] for k in idx.tolist()], c, resolution)

    return PairedDataset(stack(tr, 0), stack(tr, 1), stack(te, 0), stack(te, 1), str(root),
                         "folders", skipped)


def _keys(src: FileSource) -> dict[str, int]:
    """Name without extension -> index of the first file (sorted) with it."""
    keys: dict[str, int] = {}
    for i, name in enumerate(src.names):
        keys.setdefault(str(PurePosixPath(name).with_suffix("")), i)
    return keys


__all__ = ["DIRECTIONS", "TASKS", "PairedDataset", "UnpairedDataset",
           "downsample", "edges", "load_pairs", "lowres", "luma"]
