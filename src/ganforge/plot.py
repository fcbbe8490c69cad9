"""Plots and tables of vector samples, with Pillow and numpy only (no matplotlib).

* :func:`scatter_png`: generated points (blue) over real points (light grey) and mode centres
  (red crosses), in a framed square plot with tick labels.
* :func:`write_csv`: one point per row under a ``x0,x1,...`` header.

Both write atomically (temp file + ``os.replace``).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from .errors import GanforgeError
from .utils import atomic_write_bytes

REAL = (200, 200, 200)
FAKE = (31, 119, 180)
OUTSIDE = (255, 127, 14)  # generated points beyond the limits, drawn on the frame
MODE = (214, 39, 40)
INK = (60, 60, 60)


def _xy(t: torch.Tensor, what: str) -> np.ndarray:
    """float64 [N, 2]: the first two columns ([N, 1] gets y = 0)."""
    a = t.detach().cpu().double().numpy()
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] < 1:
        raise GanforgeError(f"scatter_png: {what} must be [N, D] points, got shape "
                            f"{tuple(t.shape)}")
    if a.shape[1] == 1:
        a = np.concatenate([a, np.zeros_like(a)], 1)
    return a[:, :2]


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    return next(k * mag for k in (1, 2, 2.5, 5, 10) if k * mag >= raw)


def _limits(pts: np.ndarray) -> tuple[float, float, float]:
    """(x centre, y centre, half side) of a square covering ``pts`` with a 10% margin."""
    lo, hi = pts.min(0), pts.max(0)
    centre = (lo + hi) / 2
    half = float((hi - lo).max()) / 2
    half = half * 1.1 if half > 0 else max(1.0, float(np.abs(centre).max()) * 0.1)
    return float(centre[0]), float(centre[1]), half


# long: drawing code, one figure element after another (axes, points, modes, legend);
# nothing in it is reused elsewhere
def scatter_png(samples: torch.Tensor, path: Path, modes: torch.Tensor | None = None,
                real: torch.Tensor | None = None, size: int = 512) -> None:
    """Draw ``samples`` [N, D] as a ``size`` x ``size`` scatter plot PNG at ``path``.

    Only the first two columns are drawn when D > 2 (D = 1 is drawn on the line y = 0).
    The square limits cover the real points and the mode centres when either is given -- so
    every plot of a run has the same frame and drifting samples show as drifting -- otherwise
    the samples; 10% margin. Generated points outside the limits are drawn in orange on the
    frame edge and counted in the caption; non-finite ones are counted only."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 64:
        raise GanforgeError(f"scatter_png: size must be an integer >= 64, got {size!r}")
    from PIL import Image, ImageDraw, ImageFont

    fake = _xy(samples, "samples")
    ref_parts = [_xy(t, "real points" if t is real else "modes")
                 for t in (real, modes) if t is not None]
    ref = np.concatenate(ref_parts) if ref_parts else fake
    ref = ref[np.isfinite(ref).all(1)]
    if not len(ref):
        ref = np.array([[-1.0, -1.0], [1.0, 1.0]])
    cx, cy, half = _limits(ref)

    pad_l, pad_b, pad_t, pad_r = int(size * 0.11), int(size * 0.08), int(size * 0.06), 8
    side = size - max(pad_l + pad_r, pad_b + pad_t)  # square plot area
    x0, y0 = pad_l, pad_t
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    dot = max(1, size // 256)  # point radius in pixels

    def to_px(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = (p[:, 0] - (cx - half)) / (2 * half) * (side - 1)
        v = ((cy + half) - p[:, 1]) / (2 * half) * (side - 1)
        return np.rint(u), np.rint(v)

    def paint(p: np.ndarray, colour: tuple[int, int, int], r: int) -> None:
        if not len(p):
            return
        u, v = to_px(p)
        u = np.clip(u, 0, side - 1).astype(np.int64) + x0
        v = np.clip(v, 0, side - 1).astype(np.int64) + y0
        for du in range(1 - r, r):  # a (2r - 1)-pixel square
            for dv in range(1 - r, r):
                img[np.clip(v + dv, y0, y0 + side - 1), np.clip(u + du, x0, x0 + side - 1)] = \
                    colour

    if real is not None:
        r = _xy(real, "real points")
        paint(r[np.isfinite(r).all(1)], REAL, dot)
    finite = np.isfinite(fake).all(1)
    f = fake[finite]
    inside = ((np.abs(f[:, 0] - cx) <= half) & (np.abs(f[:, 1] - cy) <= half))
    paint(f[inside], FAKE, dot)
    paint(f[~inside], OUTSIDE, dot + 1)

    pic = Image.fromarray(img)
    draw = ImageDraw.Draw(pic)
    font = ImageFont.load_default()
    if modes is not None:
        mu, mv = to_px(_xy(modes, "modes"))
        arm = max(3, size // 80)
        for a, b in zip(mu + x0, mv + y0):
            draw.line([(a - arm, b - arm), (a + arm, b + arm)], fill=MODE, width=2)
            draw.line([(a - arm, b + arm), (a + arm, b - arm)], fill=MODE, width=2)
    draw.rectangle([x0 - 1, y0 - 1, x0 + side, y0 + side], outline=INK)
    step = _nice_step(2 * half)
    for axis, c in ((0, cx), (1, cy)):
        t = math.ceil((c - half) / step) * step
        while t <= c + half + 1e-12:
            pt = np.array([[t, cy] if axis == 0 else [cx, t]])
            u, v = to_px(pt)
            label = f"{t:.6g}" if abs(t) > step * 1e-6 else "0"
            if axis == 0:
                px = float(u[0]) + x0
                draw.line([(px, y0 + side), (px, y0 + side + 4)], fill=INK)
                w = draw.textlength(label, font=font)
                draw.text((px - w / 2, y0 + side + 6), label, fill=INK, font=font)
            else:
                py = float(v[0]) + y0
                draw.line([(x0 - 5, py), (x0 - 1, py)], fill=INK)
                w = draw.textlength(label, font=font)
                draw.text((x0 - 7 - w, py - 5), label, fill=INK, font=font)
            t += step
    caption = f"{len(fake)} samples"
    if (~inside).sum():
        caption += f", {int((~inside).sum())} outside the frame (orange)"
    if (~finite).sum():
        caption += f", {int((~finite).sum())} non-finite"
    draw.text((x0, 4), caption, fill=INK, font=font)
    buf = io.BytesIO()
    pic.save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())


def write_csv(samples: torch.Tensor, path: Path) -> None:
    """Write ``samples`` [N, D] (or [N]) as CSV: header ``x0,x1,...``, one point per row, values
    with 9 significant digits (exact for float32)."""
    a = samples.detach().cpu().double().numpy()
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise GanforgeError(f"write_csv: samples must be [N, D], got shape {tuple(samples.shape)}")
    buf = io.StringIO()
    header = ",".join(f"x{i}" for i in range(a.shape[1]))
    np.savetxt(buf, a, fmt="%.9g", delimiter=",", header=header, comments="")
    atomic_write_bytes(Path(path), buf.getvalue().encode())
