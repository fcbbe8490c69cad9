"""On-disk cache of decoded images for sets too big for memory.

``<home>/cache/<key>.npy`` holds the uint8 ``[N, C, H, W]`` array, ``<key>.labels.npy`` the
labels (when labelled) and ``<key>.json`` the metadata. Every file is written to a temp
name then ``os.replace``d; the JSON goes last and marks the entry complete.
Arrays are reopened with ``mmap_mode="c"`` (copy-on-write: writable in memory, never
written back), which ``torch.from_numpy`` accepts without the read-only warning.
Training reads rows through :class:`RowFile` instead (positioned reads into its own buffer):
a mapped page, once read, counts in the process's resident memory until the kernel takes it
back, so random batches over the map would grow it to the whole file; a read does not.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ganforge.errors import GanforgeError

CACHE_VERSION = 1
DEFAULT_MEMORY_LIMIT = 2 * 1024**3
_COPY_ROWS = 4096
_IOV_MAX = 512  # buffers per preadv call (the OS allows at least 1024)


def memory_limit(explicit: int | None = None) -> int:
    """Bytes a decoded set may take in memory: the argument, else $GANFORGE_MEMORY_LIMIT_MB,
    else 2 GiB."""
    if explicit is not None:
        return int(explicit)
    env = os.environ.get("GANFORGE_MEMORY_LIMIT_MB", "").strip()
    if not env:
        return DEFAULT_MEMORY_LIMIT
    try:
        return int(float(env) * 1024**2)
    except ValueError:
        raise GanforgeError(
            f"GANFORGE_MEMORY_LIMIT_MB must be a number of megabytes, got '{env}': fix or unset it"
        ) from None


def cache_key(fingerprint: object, size: int | tuple[int, int], channels: int | None,
              fit: str = "crop") -> str:
    """Hash of what the decoded array depends on (source files, size (H, W), channels, fit).
    Square crops hash as before sizes and fits existed, so their caches stay valid."""
    h, w = (size, size) if isinstance(size, int) else size
    parts: list[object] = [CACHE_VERSION, fingerprint, h, channels]
    if h != w or fit != "crop":
        parts = [CACHE_VERSION, fingerprint, [h, w], channels, fit]
    blob = json.dumps(parts, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class RowFile:
    """The rows of a cached ``.npy`` array on disk, read with positioned reads
    (``os.preadv``): nothing is mapped, so what was read costs no resident memory once the
    caller drops its buffer, however many rows a run reads (the kernel's page cache holds
    the file, outside the process). Safe to use from several threads at once."""

    path: Path
    offset: int  # bytes before row 0 (the .npy header)
    shape: tuple[int, ...]  # [N, C, H, W], uint8

    @classmethod
    def of(cls, arr: np.ndarray) -> RowFile | None:
        """The file under a whole C-ordered uint8 ``np.memmap`` (as ``np.load(mmap_mode=...)``
        returns), or None for an array in memory or a view into a map (whose ``offset`` is
        its parent's)."""
        name = getattr(arr, "filename", None)
        if (name is None or not isinstance(arr.base, mmap.mmap) or arr.dtype != np.uint8
                or not arr.flags.c_contiguous):
            return None
        return cls(Path(name), int(arr.offset), tuple(int(d) for d in arr.shape))

    def gather(self, idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``idx`` (int, any order, repeats allowed) as uint8 ``[len(idx), *shape[1:]]``,
        the same bytes as ``array[idx]``; runs of consecutive rows take one read each."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        n = self.shape[0]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} rows of {self.path}")
        idx = np.where(idx < 0, idx + n, idx)
        if out is None:
            out = np.empty((idx.size, *self.shape[1:]), dtype=np.uint8)
        if out.dtype != np.uint8 or not out.flags.c_contiguous or out.shape[0] != idx.size:
            raise ValueError("out must be a C-contiguous uint8 array with a row per index")
        row = int(np.prod(self.shape[1:], dtype=np.int64))
        order = np.argsort(idx, kind="stable")
        rows = idx[order]
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1  # where a run of consecutive rows ends
        flat = out.reshape(idx.size, row)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for run in np.split(np.arange(idx.size), breaks):
                for part in np.array_split(run, -(-run.size // _IOV_MAX)) if run.size else ():
                    self._read(fd, [flat[j] for j in order[part]], int(rows[part[0]]) * row)
        finally:
            os.close(fd)
        return out

    def _read(self, fd: int, bufs: list[np.ndarray], start: int) -> None:
        """Fill ``bufs`` (rows, in file order) from byte ``start`` of the data."""
        pos = self.offset + start
        if os.preadv(fd, bufs, pos) == sum(b.nbytes for b in bufs):
            return
        for b in bufs:  # a short read (rare on local files): again, row by row
            view, done = memoryview(b).cast("B"), 0
            while done < len(view):
                k = os.preadv(fd, [view[done:]], pos + done)
                if k <= 0:
                    raise GanforgeError(f"the decoded cache {self.path} is shorter than its "
                                        "header says: delete it and run again")
                done += k
            pos += len(view)


def release_pages(arr: np.ndarray) -> None:
    """Unmap the pages of a whole ``np.memmap`` from this process (what was written stays in
    the page cache and reaches the file): writing a big cache through a map then costs no
    more resident memory than a chunk. A no-op for arrays in memory."""
    base = getattr(arr, "base", None)
    if isinstance(base, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        base.madvise(mmap.MADV_DONTNEED)


@dataclass
class CacheEntry:
    images: np.ndarray  # memmap, mode "c"
    labels: np.ndarray | None
    class_names: list[str]
    skipped: int
    path: Path

    @property
    def rows(self) -> RowFile | None:
        """The array's rows for positioned reads (:class:`RowFile`)."""
        return RowFile.of(self.images)


def _paths(home: Path, key: str) -> tuple[Path, Path, Path]:
    d = home / "cache"
    return d / f"{key}.npy", d / f"{key}.labels.npy", d / f"{key}.json"


def load_entry(home: Path, key: str) -> CacheEntry | None:
    """The complete cache entry for ``key``, or None (missing, partial or unreadable)."""
    arr_p, lab_p, meta_p = _paths(home, key)
    try:
        meta = json.loads(meta_p.read_text())
        images = np.load(arr_p, mmap_mode="c")
        labels = np.load(lab_p) if meta["labelled"] else None
        if meta["version"] != CACHE_VERSION or list(images.shape) != meta["shape"]:
            return None
        if labels is not None and labels.shape != (images.shape[0],):
            return None
        return CacheEntry(images, labels, list(meta["class_names"]), int(meta["skipped"]), arr_p)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _tmp(p: Path) -> Path:
    return p.with_name(f".{p.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


class CacheWriter:
    """Decode straight into a temp ``.npy`` memmap, then :meth:`commit` it under its key."""

    def __init__(self, home: Path, key: str, shape: tuple[int, ...]) -> None:
        self.arr_p, self.lab_p, self.meta_p = _paths(home, key)
        need = int(np.prod(shape))
        try:
            self.arr_p.parent.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.arr_p.parent).free
        except OSError as exc:
            raise GanforgeError(f"cannot create cache folder {self.arr_p.parent}: {exc.strerror}; "
                                "set GANFORGE_HOME to a writable folder") from exc
        if need > free:
            raise GanforgeError(
                f"not enough disk space in {self.arr_p.parent} for the decoded cache "
                f"(needs {need / 1024**3:.1f} GiB, {free / 1024**3:.1f} GiB free): free space, "
                "set GANFORGE_HOME to a bigger disk or raise GANFORGE_MEMORY_LIMIT_MB"
            )
        self.shape = tuple(shape)
        self.tmp = _tmp(self.arr_p)
        self.array = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.uint8, shape=shape)

    def commit(self, count: int, labels: np.ndarray | None, class_names: list[str],
               skipped: int) -> CacheEntry:
        """Keep the first ``count`` rows, publish the entry atomically and reopen it."""
        arr, src = self.array, self.tmp
        if count < arr.shape[0]:  # some files failed to decode: write a shorter copy
            self.tmp = _tmp(self.arr_p)
            out = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.uint8,
                                            shape=(count, *arr.shape[1:]))
            for i in range(0, count, _COPY_ROWS):
                j = min(i + _COPY_ROWS, count)
                out[i:j] = arr[i:j]
                release_pages(out)
                release_pages(arr)
            out.flush()
            del out
            src.unlink()
        else:
            arr.flush()
        del arr
        self.array = None
        os.replace(self.tmp, self.arr_p)
        if labels is not None:
            tmp = _tmp(self.lab_p)
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(labels, dtype=np.int64))
            os.replace(tmp, self.lab_p)
        meta = {"version": CACHE_VERSION, "shape": [count, *self.shape[1:]],
                "labelled": labels is not None, "class_names": class_names, "skipped": skipped}
        tmp = _tmp(self.meta_p)
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, self.meta_p)
        entry = load_entry(self.arr_p.parent.parent, self.arr_p.stem)
        if entry is None:
            raise GanforgeError(f"the decoded cache {self.arr_p} could not be read back: "
                                "check the disk, delete the file and run again")
        return entry

    def discard(self) -> None:
        """Remove the temp file after a failure."""
        self.array = None
        self.tmp.unlink(missing_ok=True)
