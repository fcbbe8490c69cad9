"""Small shared helpers: atomic file writes, devices, image conversion and grids."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import torch

from .errors import GanforgeError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu. Asking for a missing device is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GanforgeError(f"device={name} asked for but CUDA is not available: use device=cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None)
                              and torch.backends.mps.is_available()):
        raise GanforgeError("device=mps asked for but MPS is not available: use device=cpu")
    return torch.device(name)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float NCHW in [-1, 1] -> uint8 NCHW on the CPU."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> torch.Tensor:
    """uint8 NCHW -> one uint8 CHW grid (``nrow`` images a row; square by default)."""
    from torchvision.utils import make_grid as tv_make_grid

    n = images.shape[0]
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    return tv_make_grid(images, nrow=nrow, padding=padding, pad_value=0)


def to_pil(image: torch.Tensor):
    """uint8 CHW (C = 1 or 3) -> PIL image."""
    from PIL import Image

    arr = image.permute(1, 2, 0).numpy()
    if arr.shape[2] == 1:
        return Image.fromarray(arr[:, :, 0], mode="L")
    return Image.fromarray(arr, mode="RGB")


def save_png(image: torch.Tensor, path: Path) -> None:
    """uint8 CHW -> PNG file, written atomically."""
    import io

    buf = io.BytesIO()
    to_pil(image).save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> None:
    """Float NCHW in [-1, 1] (or uint8) -> one PNG grid."""
    if images.dtype != torch.uint8:
        images = to_uint8(images)
    save_png(make_grid(images, nrow=nrow), path)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def cpu_name() -> str:
    """The CPU model and whether it has native bf16 (these machines differ)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines()
                  if ln.startswith("model name")), "unknown CPU")
    return f"{model}, {'native bf16' if 'avx512_bf16' in info else 'no native bf16'}"
