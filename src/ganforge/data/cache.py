"""On-disk cache of decoded images for sets too big for memory.

``<home>/cache/<key>.npy`` holds the uint8 ``[N, C, R, R]`` array, ``<key>.labels.npy`` the
labels (when labelled) and ``<key>.json`` the metadata. Every file is written to a temp
name then ``os.replace``d; the JSON goes last and marks the entry complete.
Arrays are reopened with ``mmap_mode="c"`` (copy-on-write: writable in memory, never
written back), which ``torch.from_numpy`` accepts without the read-only warning.
"""

from __future__ import annotations

import hashlib
import json
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


def cache_key(fingerprint: object, resolution: int, channels: int | None) -> str:
    """Hash of what the decoded array depends on (source files, resolution, channels)."""
    blob = json.dumps([CACHE_VERSION, fingerprint, resolution, channels], default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@dataclass
class CacheEntry:
    images: np.ndarray  # memmap, mode "c"
    labels: np.ndarray | None
    class_names: list[str]
    skipped: int
    path: Path


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
