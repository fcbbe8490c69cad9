"""``load_dataset``: spec -> source -> one decoded uint8 tensor (in memory or disk-cached)."""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ganforge.errors import GanforgeError

from .base import ArraySource, FileSource, Source
from .cache import CacheEntry, CacheWriter, cache_key, load_entry, memory_limit
from .dataset import ImageDataset, ganforge_home
from .images import decode_image, describe_error, is_grayish, resize_batch
from .sources import (
    EXTENSIONS_TEXT,
    known_side,
    open_source,
    source_side,
)

Log = Callable[[str], None]
_CHUNK = 512
_ANNOUNCE = 10_000  # say "decoding N images" for sets at least this big


def load_dataset(
    spec: str,
    resolution: int = 32,
    channels: int | None = None,
    home: str | Path | None = None,
    log: Log | None = print,
    memory_limit_bytes: int | None = None,
) -> ImageDataset:
    """Load ``spec`` as uint8 ``[N, C, resolution, resolution]`` images, decoded once.

    ``spec``: ``digits``, ``mnist``, ``fashion-mnist``, ``cifar10``, ``svhn``, ``celeba``
    (built-in names win over same-named folders: write ``./mnist`` for a folder), a folder of
    images or a ``.zip`` of images (see ``ganforge.data.sources`` for the layout rules and
    ``ganforge.data.images`` for the conversion rules).
    ``channels``: 1, 3 or None (from the data: 1 if every image is gray, else 3; 1 for
    digits/mnist/fashion-mnist, 3 for the others).
    ``home``: defaults to :func:`ganforge_home`; datasets download to ``home/datasets/<name>``.
    ``log``: receives one-line notes (skipped files, disk cache use); None silences them.
    ``memory_limit_bytes``: above this decoded size (default $GANFORGE_MEMORY_LIMIT_MB, else
    2 GiB) images are decoded into ``home/cache/<key>.npy`` and memory-mapped; a later call
    with the same files, resolution and channels reuses that file.
    """
    _check_args(resolution, channels)
    home_p = Path(home).expanduser() if home is not None else ganforge_home()
    say: Log = log if log is not None else (lambda _msg: None)
    limit = memory_limit(memory_limit_bytes)
    source = open_source(spec, home_p, say)
    try:
        if isinstance(source, ArraySource):
            data = _from_arrays(source, int(resolution), channels, home_p, say, limit)
        else:
            data = _from_files(source, int(resolution), channels, home_p, say, limit)
        side = known_side(spec)
        data.native_side = side if side is not None else source_side(source)
        return data
    finally:
        if isinstance(source, FileSource):
            source.close()


def _check_args(resolution: object, channels: object) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, numbers.Integral) \
            or resolution < 1:
        raise GanforgeError(f"resolution must be a positive integer such as 32 or 64, "
                            f"got {resolution!r}")
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise GanforgeError(f"channels must be 1 (gray), 3 (colour) or None (from the data), "
                            f"got {channels!r}")


def _lookup(src: Source, resolution: int, channels: int | None, home: Path, limit: int,
            upper_bytes: int) -> tuple[str | None, CacheEntry | None]:
    """Cache key and existing entry, only when the set may exceed the memory limit."""
    if upper_bytes <= limit:
        return None, None
    key = cache_key(src.fingerprint(), resolution, channels)
    return key, load_entry(home, key)


def _allocate(shape: tuple[int, int, int, int], key: str | None, home: Path, limit: int,
              say: Log) -> tuple[np.ndarray, CacheWriter | None]:
    nbytes = int(np.prod(shape))
    if key is None or nbytes <= limit:
        return np.empty(shape, dtype=np.uint8), None
    writer = CacheWriter(home, key, shape)
    say(f"decoding {shape[0]} images into disk cache {writer.arr_p} ({nbytes / 1024**2:.1f} MiB "
        f"> memory limit {limit / 1024**2:.1f} MiB; GANFORGE_MEMORY_LIMIT_MB raises it)")
    return writer.array, writer


def _dataset(name: str, images: np.ndarray, labels: np.ndarray | None, class_names: list[str],
             skipped: int) -> ImageDataset:
    return ImageDataset(
        images=torch.from_numpy(images),
        labels=None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.int64)),
        class_names=list(class_names),
        name=name,
        skipped=skipped,
    )


def _cached(name: str, entry: CacheEntry, say: Log) -> ImageDataset:
    say(f"using decoded cache {entry.path}")
    return _dataset(name, entry.images, entry.labels, entry.class_names, entry.skipped)


def _finish(name: str, out: np.ndarray, writer: CacheWriter | None, count: int,
            labels: np.ndarray | None, class_names: list[str], skipped: int) -> ImageDataset:
    if writer is not None:
        entry = writer.commit(count, labels, class_names, skipped)
        return _dataset(name, entry.images, entry.labels, class_names, skipped)
    return _dataset(name, out[:count], labels, class_names, skipped)


def _from_arrays(src: ArraySource, resolution: int, channels: int | None, home: Path,
                 say: Log, limit: int) -> ImageDataset:
    n, native = src.images.shape[:2]
    c = channels or native
    key, entry = _lookup(src, resolution, channels, home, limit, n * c * resolution**2)
    if entry is not None:
        return _cached(src.name, entry, say)
    out, writer = _allocate((n, c, resolution, resolution), key, home, limit, say)
    try:
        step = max(1, 2**24 // max(1, int(np.prod(src.images.shape[1:]))))
        for i in range(0, n, step):
            out[i:i + step] = resize_batch(src.images[i:i + step], resolution, c)
        return _finish(src.name, out, writer, n, src.labels, src.class_names, 0)
    except BaseException:
        if writer is not None:
            writer.discard()
        raise


def _attempt(fn: Callable, src: FileSource, i: int, *args: object) -> tuple[object, str | None]:
    try:
        return fn(src.read(i), *args), None
    except Exception as exc:  # noqa: BLE001 - unreadable file: skipped and counted
        return None, describe_error(exc)


def _skip_line(failures: list[tuple[int, str, str]]) -> str:
    _, first, reason = failures[0]
    shown = [f"{first}: {reason}"] + [name for _, name, _ in failures[1:3]]
    more = ", ..." if len(failures) > 3 else ""
    plural = "s" if len(failures) > 1 else ""
    return f"{len(failures)} unreadable file{plural} (first: {', '.join(shown)}{more})"


def _from_files(src: FileSource, resolution: int, channels: int | None, home: Path,
                say: Log, limit: int) -> ImageDataset:
    n = len(src.names)
    upper = n * (channels or src.default_channels or 3) * resolution**2
    key, entry = _lookup(src, resolution, channels, home, limit, upper)
    if entry is not None:
        return _cached(src.name, entry, say)
    failures: list[tuple[int, str, str]] = []
    todo = list(range(n))
    workers = max(1, min(8, os.cpu_count() or 1, n))
    with ThreadPoolExecutor(workers) as pool:
        c = channels or src.default_channels
        if c is None:  # probe headers: 1 channel only if every readable image is gray
            probed = pool.map(lambda i: _attempt(is_grayish, src, i), todo)
            gray, readable = True, []
            for i, (is_gray, err) in zip(todo, probed):
                if err is not None:
                    failures.append((i, src.names[i], err))
                else:
                    readable.append(i)
                    gray = gray and bool(is_gray)
            todo, c = readable, (1 if gray else 3)
        out, writer = (None, None)
        if todo:
            out, writer = _allocate((len(todo), c, resolution, resolution), key, home, limit, say)
            if len(todo) >= _ANNOUNCE and writer is None:
                say(f"decoding {len(todo)} images from {src.where}")
        try:
            kept: list[int] = []
            for s in range(0, len(todo), _CHUNK):
                chunk = todo[s:s + _CHUNK]
                results = pool.map(lambda i: _attempt(decode_image, src, i, resolution, c), chunk)
                for i, (arr, err) in zip(chunk, results):
                    if err is not None:
                        failures.append((i, src.names[i], err))
                    else:
                        out[len(kept)] = arr
                        kept.append(i)
            failures.sort()
            if not kept:
                _, first, reason = failures[0]
                detail = f"; {len(failures)} files were unreadable, first: {first}: {reason}"
                raise GanforgeError(
                    f"no usable image in {src.where} (searched recursively for "
                    f"{EXTENSIONS_TEXT}{detail}): add readable images or give another dataset"
                )
            if failures:
                say(f"skipped {_skip_line(failures)}")
            labels = None if src.labels is None else np.asarray(
                [src.labels[i] for i in kept], dtype=np.int64)
            return _finish(src.name, out, writer, len(kept), labels, src.class_names,
                           len(failures))
        except BaseException:
            if writer is not None:
                writer.discard()
            raise
