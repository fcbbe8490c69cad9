"""``load_dataset``: spec -> source -> one decoded uint8 tensor (in memory or disk-cached)."""

from __future__ import annotations

import multiprocessing as mp
import numbers
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ganforge.config import FITS, image_size
from ganforge.errors import GanforgeError

from .base import ArraySource, FileSource, Source
from .cache import (
    CacheEntry,
    CacheWriter,
    RowFile,
    cache_key,
    load_entry,
    memory_limit,
    release_pages,
)
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
    resolution: int | str | tuple[int, int] = 32,
    channels: int | None = None,
    home: str | Path | None = None,
    log: Log | None = print,
    memory_limit_bytes: int | None = None,
    fit: str = "crop",
    image_column: str = "",
    label_column: str = "",
) -> ImageDataset:
    """Load ``spec`` as uint8 ``[N, C, H, W]`` images, decoded once.

    ``spec``: ``digits``, ``mnist``, ``fashion-mnist``, ``cifar10``, ``svhn``, ``celeba``
    (built-in names win over same-named folders: write ``./mnist`` for a folder), a folder of
    images or a ``.zip`` of images (see ``ganforge.data.sources`` for the layout rules and
    ``ganforge.data.images`` for the conversion rules), or ``hf:NAME[:CONFIG][:SPLIT]`` /
    ``hf:PATH``, a Hugging Face dataset (:mod:`ganforge.data.hf_sets`; its columns
    ``image_column`` and ``label_column`` when given, refused for other specs).
    ``resolution``: a side (square images) or H x W as ``"64x128"`` or ``(64, 128)``;
    ``fit``: how each image meets that shape: ``crop``, ``pad`` or ``stretch``
    (:mod:`ganforge.data.images`).
    ``channels``: 1, 3 or None (from the data: 1 if every image is gray, else 3; 1 for
    digits/mnist/fashion-mnist, 3 for the others).
    ``home``: defaults to :func:`ganforge_home`; datasets download to ``home/datasets/<name>``.
    ``log``: receives one-line notes (skipped files, disk cache use); None silences them.
    ``memory_limit_bytes``: above this decoded size (default $GANFORGE_MEMORY_LIMIT_MB, else
    2 GiB) images are decoded into ``home/cache/<key>.npy`` and memory-mapped; a later call
    with the same files, shape, fit and channels reuses that file.
    """
    size = _check_args(resolution, channels, fit)
    home_p = Path(home).expanduser() if home is not None else ganforge_home()
    say: Log = log if log is not None else (lambda _msg: None)
    limit = memory_limit(memory_limit_bytes)
    source = open_source(spec, home_p, say, image_column, label_column)
    try:
        if isinstance(source, ArraySource):
            data = _from_arrays(source, size, fit, channels, home_p, say, limit)
        else:
            data = _from_files(source, size, fit, channels, home_p, say, limit,
                               progress=log is not None)
        side = known_side(spec)
        data.native_side = side if side is not None else source_side(source)
        return data
    finally:
        if isinstance(source, FileSource):
            source.close()


def _check_args(resolution: object, channels: object, fit: object = "crop") -> tuple[int, int]:
    """(H, W) of ``resolution``; a one-line error for a bad resolution, channels or fit."""
    size = None
    if isinstance(resolution, numbers.Integral) and not isinstance(resolution, bool):
        size = (int(resolution), int(resolution))
    elif isinstance(resolution, (str, tuple, list)):
        try:
            size = image_size(resolution)
        except GanforgeError:
            size = None
    if size is None or min(size) < 1:
        raise GanforgeError(f"resolution must be a positive integer such as 32 or 64, or HxW "
                            f"such as 64x128, got {resolution!r}")
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise GanforgeError(f"channels must be 1 (gray), 3 (colour) or None (from the data), "
                            f"got {channels!r}")
    if fit not in FITS:
        raise GanforgeError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    return size


def _lookup(src: Source, size: tuple[int, int], fit: str, channels: int | None, home: Path,
            limit: int, upper_bytes: int) -> tuple[str | None, CacheEntry | None]:
    """Cache key and existing entry, only when the set may exceed the memory limit."""
    if upper_bytes <= limit:
        return None, None
    key = cache_key(src.fingerprint(), size, channels, fit)
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
        rows=RowFile.of(images),  # a disk cache: batches read from it, never mapped
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


def _from_arrays(src: ArraySource, size: tuple[int, int], fit: str, channels: int | None,
                 home: Path, say: Log, limit: int) -> ImageDataset:
    n, native = src.images.shape[:2]
    c = channels or native
    key, entry = _lookup(src, size, fit, channels, home, limit, n * c * size[0] * size[1])
    if entry is not None:
        return _cached(src.name, entry, say)
    out, writer = _allocate((n, c, *size), key, home, limit, say)
    try:
        step = max(1, 2**24 // max(1, int(np.prod(src.images.shape[1:]))))
        for i in range(0, n, step):
            out[i:i + step] = resize_batch(src.images[i:i + step], size, c, fit)
            release_pages(out)
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


def _try_each(fn: Callable, items: list, *args: object) -> list[tuple[object, str | None]]:
    """``(fn(item, *args), None)`` for each item, ``(None, reason)`` for an unreadable one (in
    a worker process)."""
    out: list[tuple[object, str | None]] = []
    for item in items:
        try:
            out.append((fn(item, *args), None))
        except Exception as exc:  # noqa: BLE001 - unreadable file: skipped and counted
            out.append((None, describe_error(exc)))
    return out


class _Workers:
    """``map(fn, todo, *args)``: ``fn(src.read(i), *args)`` for the items ``todo``, in order,
    as ``(result, None)`` or ``(None, reason)``, ``chunk`` items at a time (a future per item
    of a 200,000-image set would take hundreds of MB). Sets of ``_ANNOUNCE`` images or more
    run in forked worker processes on Linux: a small image decodes mostly in Python, so
    threads wait on the GIL (2-core EPYC, 64x64 JPEGs: 1 thread 9,000/s, 2 threads 4,800/s,
    2 processes 12,800/s); smaller sets in threads, as before."""

    def __init__(self, src: FileSource, n: int) -> None:
        self.src, cpus = src, os.cpu_count() or 1
        fork = sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods()
        self.procs = min(8, cpus) if fork and cpus > 1 and n >= _ANNOUNCE else 0
        self.pool: ThreadPoolExecutor | ProcessPoolExecutor = (
            ProcessPoolExecutor(self.procs, mp_context=mp.get_context("fork")) if self.procs
            else ThreadPoolExecutor(max(1, min(8, cpus, n))))
        if self.procs:  # fork now, before this process starts threads (a progress bar)
            self.pool.submit(int).result()

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def map(self, fn: Callable, todo: list[int], *args: object, chunk: int = _CHUNK
            ) -> Iterator:
        parts = (todo[s:s + chunk] for s in range(0, len(todo), chunk))
        if not self.procs:
            for part in parts:
                yield from self.pool.map(lambda i: _attempt(fn, self.src, i, *args), part)
            return
        window: deque[Future] = deque()  # a few chunks in flight: bounded memory
        for part in parts:
            items = [self.src.read(i) for i in part]
            window.append(self.pool.submit(_try_each, fn, items, *args))
            if len(window) > 2 * self.procs:
                yield from window.popleft().result()
        while window:
            yield from window.popleft().result()


@contextmanager
def _progress(show: bool, total: int, what: str) -> Iterator[Callable[[int], None]]:
    """``advance(k)`` of a progress bar on stderr (rich), or of nothing when not ``show``."""
    if not show:
        yield lambda _k: None
        return
    from rich import progress as rp
    from rich.console import Console

    columns = (rp.TextColumn("{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(),
               rp.TimeElapsedColumn(), rp.TimeRemainingColumn())
    with rp.Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(what, total=total)
        yield lambda k: bar.advance(task, k)


def _decode(pool: _Workers, src: FileSource, todo: list[int], shape: tuple,
            out: np.ndarray, failures: list[tuple[int, str, str]], bar: bool) -> list[int]:
    """Decode items ``todo`` (``shape``: size, channels, fit) into the first rows of ``out``,
    in order; the unreadable ones join ``failures``. The items kept."""
    kept: list[int] = []
    if not todo:
        return kept
    shown = 0
    with _progress(bar, len(todo), "decoding") as advance:
        chunk = max(1, min(_CHUNK, (8 << 20) // int(np.prod(out.shape[1:]))))  # 8 MB
        decoded = pool.map(decode_image, todo, *shape, chunk=chunk)
        for k, (i, (arr, err)) in enumerate(zip(todo, decoded), 1):
            if err is not None:
                failures.append((i, src.names[i], err))
            else:
                out[len(kept)] = arr
                kept.append(i)
            if k % _CHUNK == 0 or k == len(todo):
                release_pages(out)  # a disk cache: written rows leave the resident set
                advance(k - shown)
                shown = k
    return kept


def _from_files(src: FileSource, size: tuple[int, int], fit: str, channels: int | None,
                home: Path, say: Log, limit: int, progress: bool = False) -> ImageDataset:
    """Decode a file source (probing gray vs colour when ``channels`` is None); a progress
    bar on stderr for big sets when ``progress``."""
    n = len(src.names)
    upper = n * (channels or src.default_channels or 3) * size[0] * size[1]
    key, entry = _lookup(src, size, fit, channels, home, limit, upper)
    if entry is not None:
        return _cached(src.name, entry, say)
    failures: list[tuple[int, str, str]] = []
    todo = list(range(n))
    with _Workers(src, n) as pool:
        c = channels or src.default_channels
        if c is None:  # probe headers: 1 channel only if every readable image is gray
            probed = pool.map(is_grayish, todo)
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
            out, writer = _allocate((len(todo), c, *size), key, home, limit, say)
            if len(todo) >= _ANNOUNCE and writer is None:
                say(f"decoding {len(todo)} images from {src.where}")
        try:
            bar = progress and len(todo) >= _ANNOUNCE
            kept = _decode(pool, src, todo, (size, c, fit), out, failures, bar)
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
