"""Small shared helpers: atomic file writes, devices, image conversion and grids."""

from __future__ import annotations

import errno
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

from .errors import GanforgeError

# what a failed write's errno means to a user (anything else is not a storage problem)
WRITE_ERRNOS = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "read-only file system", errno.EIO: "I/O error",
                errno.EACCES: "permission denied", errno.EPERM: "permission denied"}
# torch.save's zip writer and safetensors' Rust writer wrap the OSError in their own errors
_WRAPPED = re.compile(r"unexpected pos|file write failed|PytorchStreamWriter failed|"
                      r"Error while serializing|os error \d+")


class WriteFailed(GanforgeError):
    """A file could not be written: the storage is full, over quota, read-only or failing."""

    def __init__(self, path: Path, meaning: str) -> None:
        self.path, self.meaning = Path(path), meaning
        self.free = free_space(self.path)
        super().__init__(f"{self.what}: {self.fix}")

    @property
    def what(self) -> str:
        """``could not write PATH: disk full (N free on that file system)``."""
        return f"could not write {self.path}: {self.meaning}{self.where_free()}"

    @property
    def fix(self) -> str:
        """What the user can do about it."""
        return {"disk full": "free some space", "disk quota exceeded":
                "free some space or raise the quota", "read-only file system":
                "make the folder writable", "I/O error": "check the disk",
                "permission denied": "fix the folder's permissions"}.get(
            self.meaning, "check the disk and its free space")

    def where_free(self) -> str:
        """``' (1.2 MiB free on that file system)'``, or nothing when it cannot be read."""
        return "" if self.free is None else f" ({format_bytes(self.free)} free on that file " \
                                            "system)"


def free_space(path: Path) -> int | None:
    """Free bytes on the file system of ``path`` (its nearest existing parent), or None."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def write_failure(e: BaseException, path: Path) -> WriteFailed | None:
    """``e`` as a :class:`WriteFailed` naming ``path`` (the file's own name when the error
    carries one), or None when ``e`` is not a failed write (a bug is never reported as a full
    disk). Recognises OSErrors by errno and the errors torch.save and safetensors wrap them in:
    their errno is lost, so an empty file system reads as "disk full", else "write failed"."""
    if isinstance(e, WriteFailed):
        return e
    if isinstance(e, OSError):
        if e.errno in WRITE_ERRNOS or isinstance(e, PermissionError):
            meaning = WRITE_ERRNOS.get(e.errno, "permission denied")
            return WriteFailed(Path(e.filename) if e.filename else path, meaning)
        return None
    if isinstance(e.__cause__, OSError):
        return write_failure(e.__cause__, path)
    text = " ".join(str(e).split())
    if not isinstance(e, RuntimeError) and type(e).__name__ != "SafetensorError" or \
            not _WRAPPED.search(text):
        return None
    code = re.search(r"os error (\d+)", text)
    if code and int(code.group(1)) in WRITE_ERRNOS:
        return WriteFailed(path, WRITE_ERRNOS[int(code.group(1))])
    free = free_space(path)
    return WriteFailed(path, "disk full" if free is not None and free < 1 << 20
                       else f"write failed ({text[:80]})")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and ``os.replace``.
    A full, read-only or failing disk raises :class:`WriteFailed` (nothing left behind)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise (write_failure(e, path) or e) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        failed = write_failure(e, path) if isinstance(e, Exception) else None
        if failed is not None:
            raise failed from None
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
