"""Decode one image file into a square uint8 array, and resize in-memory image batches.

Conversion rules (every image ends up 8-bit ``L`` or ``RGB``):

* ``1``, ``L``: gray as is. ``I;16*`` (16-bit PNG/TIFF) and ``I`` (32-bit int, which is how
  Pillow opens 16-bit PGM) are read as 0..65535 and scaled to 0..255 (``round(v / 257)``),
  never clipped. ``F`` (float) is taken as 0..1 when its maximum is <= 1, else as 0..255.
* Transparency (``LA``, ``RGBA``, ``PA``, palette or colour-key transparency) is composited
  on black: colour * alpha. Fully transparent pixels become black.
* ``P`` (palette), ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``... are converted to ``RGB``.
* Then ``channels=1`` converts colour to ``L`` (ITU-R 601 luma, as Pillow does) and
  ``channels=3`` repeats gray into ``RGB``.
* EXIF orientation is applied, multi-frame files (GIF, TIFF) use their first frame.
* Then the image meets the run's shape, H x W (``resolution``: a side, or HxW), as ``fit``
  says (bicubic, antialiased): ``crop`` (the default) resizes the shorter side to fit and cuts
  the centre (one step, ``Image.resize(box=...)``), ``pad`` resizes the longer side to fit and
  pads the rest with black, centred (letterbox), ``stretch`` resizes to H x W, ignoring the
  aspect ratio.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from ..config import FITS, image_size
from ..errors import GanforgeError

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
)
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
GRAY_MODES = frozenset({"1", "L", "LA", "La", "F"} | SIXTEEN_BIT_MODES)
ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})

ImageSource = Path | bytes


def is_image_name(name: str) -> bool:
    """True when ``name`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def image_files(path: Path, flag: str = "--input") -> list[Path]:
    """``path`` itself (a file) or the image files under a folder, sorted, hidden ones left
    out; a missing path or a folder without images is a one-line error naming ``flag``."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise GanforgeError(f"{flag} {path} does not exist: give an image file or a folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p.name)
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise GanforgeError(f"no images in {path}: give an image file or a folder of images")
    return files


def _open(src: ImageSource) -> Image.Image:
    if isinstance(src, bytes):
        if not src:
            raise ValueError("empty file")
        return Image.open(io.BytesIO(src))
    if src.stat().st_size == 0:
        raise ValueError("empty file")
    return Image.open(src)


def describe_error(exc: BaseException) -> str:
    """A short one-line reason for an unreadable image."""
    if isinstance(exc, UnidentifiedImageError):
        return "not a recognised image"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:120]


def is_grayish(src: ImageSource) -> bool:
    """Read only the header: True for gray modes and palettes whose colours are all gray."""
    with _open(src) as img:
        if img.mode in GRAY_MODES:
            return True
        if img.mode == "P":
            pal = img.getpalette() or []
            return bool(pal) and all(pal[i] == pal[i + 1] == pal[i + 2]
                                     for i in range(0, len(pal), 3))
        return False


def _sixteen_to_8bit(img: Image.Image) -> Image.Image:
    a = np.asarray(img)
    if img.mode == "F":
        a = np.nan_to_num(a.astype(np.float64))
        a = a * 255.0 if a.size and a.max() <= 1.0 else a
    else:
        a = np.clip(a.astype(np.float64), 0, 65535) / 257.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def _composite_on_black(img: Image.Image) -> Image.Image:
    rgba = np.asarray(img.convert("RGBA"), dtype=np.uint16)
    rgb = (rgba[..., :3] * rgba[..., 3:] + 127) // 255
    return Image.fromarray(rgb.astype(np.uint8))


def to_8bit(img: Image.Image, channels: int) -> Image.Image:
    """Convert any Pillow mode to ``L`` (channels=1) or ``RGB`` (channels=3)."""
    mode = img.mode
    gray = mode in GRAY_MODES
    if mode in SIXTEEN_BIT_MODES or mode == "F":
        img = _sixteen_to_8bit(img)
    elif mode in ALPHA_MODES or "transparency" in img.info:
        img = _composite_on_black(img)
    elif mode not in ("L", "RGB"):
        img = img.convert("RGB")
    if gray and img.mode == "RGB":
        img = img.convert("L")  # LA composited: R == G == B, so this is exact
    want = "L" if channels == 1 else "RGB"
    return img if img.mode == want else img.convert(want)


def fit_plan(h: int, w: int, size: tuple[int, int], fit: str = "crop"
             ) -> tuple[tuple[float, float, float, float], tuple[int, int], tuple[int, int]]:
    """How an ``h`` x ``w`` image meets ``size`` (H, W) under ``fit``: ``(box, (nh, nw), (top,
    left))``: the region ``box`` (x0, y0, x1, y1) of the image is resized to ``nh`` x ``nw``
    and placed at (top, left) of the H x W canvas (black elsewhere: ``pad`` only)."""
    if fit not in FITS:
        raise GanforgeError(f"fit={fit!r}: use {', '.join(FITS[:-1])} or {FITS[-1]}")
    H, W = size
    if fit == "stretch":
        return (0.0, 0.0, float(w), float(h)), (H, W), (0, 0)
    if fit == "pad":  # the whole image, its longer side (relative to the canvas) fitting
        t = min(H / h, W / w)
        nh, nw = min(H, max(1, round(h * t))), min(W, max(1, round(w * t)))
        return (0.0, 0.0, float(w), float(h)), (nh, nw), ((H - nh) // 2, (W - nw) // 2)
    bw, bh = min(w, h * W / H), min(h, w * H / W)  # crop: the centre region of H:W
    return ((w - bw) / 2, (h - bh) / 2, (w + bw) / 2, (h + bh) / 2), (H, W), (0, 0)


def decode_image(src: ImageSource, resolution: int | str | tuple[int, int], channels: int,
                 fit: str = "crop") -> np.ndarray:
    """Decode a file path or bytes into a uint8 array ``[channels, H, W]`` (``resolution``: a
    side, ``"HxW"`` or ``(H, W)``), fitted to that shape as ``fit`` says (module docstring).

    Raises whatever Pillow raises for unreadable data (callers skip and count those).
    """
    H, W = image_size(resolution)
    with _open(src) as img:
        if img.format == "JPEG":  # fast DCT downscale, stays >= what the fit needs
            w0, h0 = img.size
            turned = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF: a quarter turn
            want = (W, H) if not turned else (H, W)
            if fit == "pad":
                nh, nw = fit_plan(*((w0, h0) if turned else (h0, w0)), (H, W), fit)[1]
                want = (nw, nh) if not turned else (nh, nw)
            img.draft(None, want)
        img.load()
        img = ImageOps.exif_transpose(img)
        img = to_8bit(img, channels)
    w, h = img.size
    box, (nh, nw), (top, left) = fit_plan(h, w, (H, W), fit)
    img = img.resize((nw, nh), Image.Resampling.BICUBIC, box=box)
    if (nh, nw) != (H, W):
        canvas = Image.new(img.mode, (W, H), 0)
        canvas.paste(img, (left, top))
        img = canvas
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def resize_batch(x: np.ndarray, resolution: int | str | tuple[int, int], channels: int,
                 fit: str = "crop") -> np.ndarray:
    """Fit (as :func:`fit_plan`; bicubic, antialiased) and convert channels of a uint8
    ``[N, C, h, w]`` to ``[N, channels, H, W]``.

    Colour to gray uses the same fixed-point ITU-R 601 luma as Pillow; gray to colour repeats.
    """
    H, W = image_size(resolution)
    t = torch.from_numpy(np.ascontiguousarray(x))
    if t.shape[1] == 3 and channels == 1:
        t = t.to(torch.int32)
        t = ((t[:, 0] * 19595 + t[:, 1] * 38470 + t[:, 2] * 7471 + 32768) >> 16)[:, None]
        t = t.to(torch.uint8)
    h, w = t.shape[-2:]
    box, (nh, nw), (top, left) = fit_plan(h, w, (H, W), fit)
    ch, cw = round(box[3] - box[1]), round(box[2] - box[0])
    t = t[..., (h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw]
    if (ch, cw) != (nh, nw):
        f = F.interpolate(t.float(), size=(nh, nw), mode="bicubic", align_corners=False,
                          antialias=True)
        t = f.round_().clamp_(0, 255).to(torch.uint8)
    if (nh, nw) != (H, W):  # pad: black around the image
        t = F.pad(t, (left, W - nw - left, top, H - nh - top))
    if t.shape[1] == 1 and channels == 3:
        t = t.expand(-1, 3, -1, -1)
    return t.contiguous().numpy()
