"""Where images come from: a folder, a .zip, scikit-learn digits, a torchvision dataset or a
Hugging Face dataset (``hf:``, in :mod:`ganforge.data.hf_sets`).

Each opener returns either :class:`FileSource` (encoded images decoded later by
``data/load.py``) or :class:`ArraySource` (images already in memory as uint8 arrays).

Folder and zip layout (ImageFolder convention):

* Images are searched recursively by extension (case-insensitive); names starting with
  ``.`` and ``__MACOSX`` are ignored.
* If the root's direct sub-folders contain images, each such sub-folder (sorted by name)
  is a class and all images below it carry its label. Sub-folders without any image are
  not classes. Images lying directly in the root of such a folder are ignored with a log
  line, unless they outnumber the images in the sub-folders: then it is an error, because
  silently training on the minority is never what was meant.
* Otherwise the set is unlabelled.
* A zip whose entries all sit below one top-level folder is read as if that folder were
  the root (zipping a folder usually adds such a wrapper).
"""

from __future__ import annotations

import difflib
import os
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np

from ganforge.errors import GanforgeError

from .base import ArraySource, FileSource, Source
from .hf_sets import hf_source, is_hf_spec
from .images import IMAGE_EXTENSIONS, is_image_name

TORCHVISION_NAMES = ("mnist", "fashion-mnist", "cifar10", "svhn", "celeba")
BUILTIN_NAMES = ("digits", *TORCHVISION_NAMES)
ACCEPTED = (
    "digits, mnist, fashion-mnist, cifar10, svhn, celeba (NAME:test: its test split), a "
    "folder of images "
    "(sub-folders = classes), a .zip of images, hf:NAME[:CONFIG][:SPLIT] (a Hugging Face "
    "dataset, or hf:PATH of a saved copy), or vector data: ring8, grid25, spiral, moons, "
    "a .csv or .npy file"
)
EXTENSIONS_TEXT = ", ".join(IMAGE_EXTENSIONS)




_ALIASES = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10"}


def builtin_key(spec: str | os.PathLike) -> tuple[str, str]:
    """``(name, split)`` of a spec as the built-in names spell it: ``"CIFAR-10:test"`` ->
    ``("cifar10", "test")``; files and folders come out lowercased, never matching a name."""
    base, _, split = str(spec).strip().lower().replace("_", "-").partition(":")
    return _ALIASES.get(base, base), split


def open_source(spec: str | os.PathLike, home: Path, log: Callable[[str], None],
                image_column: str = "", label_column: str = "") -> Source:
    """Turn a dataset spec into a source, or raise GanforgeError listing the accepted forms.
    ``image_column`` / ``label_column``: the columns of an ``hf:`` set (refused for others)."""
    text = str(spec).strip()
    if is_hf_spec(text):
        return hf_source(text, home, log, image_column, label_column)
    for key, value in (("image_column", image_column), ("label_column", label_column)):
        if value:
            raise GanforgeError(f"{key}={value} names a column of a Hugging Face dataset "
                                f"(--data hf:NAME) but {text or 'the data'} is not one: drop "
                                f"{key}")
    base, split = builtin_key(text)
    key = base + (f":{split}" if split else "")
    if key == "digits":
        return digits_source()
    if base in TORCHVISION_NAMES and split in ("", "train", "test"):
        from .torchvision_sets import torchvision_source

        return torchvision_source(base, home / "datasets" / base, split or "train")
    if base in TORCHVISION_NAMES:
        raise GanforgeError(f"{text}: unknown split {split!r}: use {base} (train) or {base}:test")
    if base == "digits" and split:
        raise GanforgeError(f"{text}: the built-in digits have no train/test split (all 1,797 "
                            f"images are one set): give a folder for held-out images")
    if not text:
        raise GanforgeError(f"no dataset given: use one of {ACCEPTED}")
    path = Path(text).expanduser()
    if path.is_dir():
        return folder_source(path, log)
    if path.is_file():
        if zipfile.is_zipfile(path):
            return zip_source(path, log)
        if path.suffix.lower() == ".zip":
            raise GanforgeError(f"cannot read zip file {path} (corrupt or not a zip): re-create it")
        raise GanforgeError(
            f"{path} is a file but not a .zip of images: give a folder of images or a .zip"
        )
    if any(ch in text for ch in (os.sep, "/", ".", "~")):  # looks like a path
        raise GanforgeError(
            f"dataset path not found: {os.path.abspath(path)} (check the path; accepted: "
            f"{ACCEPTED})"
        )
    close = difflib.get_close_matches(key, BUILTIN_NAMES, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise GanforgeError(
        f"unknown dataset '{text}'{hint}: use one of {ACCEPTED}; no file or folder named "
        f"'{text}' exists"
    )


def digits_source() -> ArraySource:
    """scikit-learn's 8x8 digits (1797 images, 0..16) scaled to 0..255, classes "0".."9"."""
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = np.rint(np.asarray(d.images, dtype=np.float64) * (255.0 / 16.0))
    imgs = np.clip(imgs, 0, 255).astype(np.uint8)[:, None]
    return ArraySource(
        name="digits",
        images=imgs,
        labels=np.asarray(d.target, dtype=np.int64),
        class_names=[str(i) for i in range(10)],
        fingerprint=lambda: ["digits", imgs.shape],
    )


def _hidden(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def _layout(
    rel_paths: list[str], where: str, log: Callable[[str], None]
) -> tuple[list[int], list[int] | None, list[str]]:
    """Pick items and labels from sorted relative posix paths (see module docstring)."""
    parts = [PurePosixPath(p).parts for p in rel_paths]
    top = [i for i, p in enumerate(parts) if len(p) == 1]
    classes = sorted({p[0] for p in parts if len(p) > 1})
    if not classes:
        return list(range(len(rel_paths))), None, []
    nested = len(rel_paths) - len(top)
    if top:
        if len(top) > nested:
            raise GanforgeError(
                f"{where} mixes {len(top)} top-level images with {nested} images in sub-folders "
                f"({', '.join(classes[:3])}{', ...' if len(classes) > 3 else ''}): move the "
                "sub-folders out to use it as one unlabelled set, or move the top-level images "
                "into class sub-folders"
            )
        plural = "s" if len(top) > 1 else ""
        log(
            f"ignored {len(top)} image{plural} directly in {where} (sub-folders are classes: "
            "put images inside a class sub-folder)"
        )
    index = {c: i for i, c in enumerate(classes)}
    items = [i for i, p in enumerate(parts) if len(p) > 1]
    return items, [index[parts[i][0]] for i in items], classes


def _no_images(where: str) -> GanforgeError:
    return GanforgeError(
        f"no image files in {where} (searched recursively for {EXTENSIONS_TEXT}): "
        "put images there or give another dataset"
    )


def folder_source(root: Path, log: Callable[[str], None]) -> FileSource:
    """A folder of images, flat (unlabelled) or with class sub-folders."""
    found: list[str] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for f in filenames:
            if not _hidden(f) and is_image_name(f):
                found.append(f if rel_dir == "." else f"{rel_dir}/{f}")
    found.sort()
    if not found:
        raise _no_images(str(root))
    items, labels, classes = _layout(found, str(root), log)
    rel = [found[i] for i in items]
    paths = [root / r for r in rel]

    def fingerprint() -> object:
        entries = []
        for r, p in zip(rel, paths):
            try:
                st = p.stat()
                entries.append((r, st.st_size, st.st_mtime_ns))
            except OSError:
                entries.append((r, -1, -1))
        return ["folder", str(root.resolve()), entries]

    return FileSource(
        name=str(root),
        where=str(root),
        names=rel,
        read=lambda i: paths[i],
        labels=labels,
        class_names=classes,
        fingerprint=fingerprint,
    )


def zip_source(path: Path, log: Callable[[str], None]) -> FileSource:
    """A .zip of images: same layout rules as a folder, decoded straight from memory."""
    try:
        zf = zipfile.ZipFile(path)
        infos = [
            zi for zi in zf.infolist()
            if not zi.is_dir()
            and not any(_hidden(p) for p in PurePosixPath(zi.filename).parts)
            and is_image_name(zi.filename)
        ]
    except (zipfile.BadZipFile, OSError) as exc:
        raise GanforgeError(f"cannot read zip file {path}: {exc}; check the file") from exc
    infos.sort(key=lambda zi: zi.filename)
    if not infos:
        zf.close()
        raise _no_images(str(path))
    names = [zi.filename.lstrip("/") for zi in infos]
    tops = {PurePosixPath(n).parts[0] for n in names}
    if len(tops) == 1 and all(len(PurePosixPath(n).parts) > 1 for n in names):
        prefix = len(next(iter(tops))) + 1  # strip the single wrapper folder
        names = [n[prefix:] for n in names]
    items, labels, classes = _layout(names, str(path), log)
    members = [infos[i] for i in items]
    lock = threading.Lock()

    def read(i: int) -> bytes:
        with lock:  # ZipFile reads are not guaranteed thread-safe
            return zf.read(members[i])

    def fingerprint() -> object:
        st = path.stat()
        entries = [(zi.filename, zi.file_size, zi.CRC) for zi in members]
        return ["zip", str(path.resolve()), st.st_size, st.st_mtime_ns, entries]

    return FileSource(
        name=str(path),
        where=str(path),
        names=[names[i] for i in items],
        read=read,
        labels=labels,
        class_names=classes,
        fingerprint=fingerprint,
        close=zf.close,
    )


# the side of the images of the built-in sets, as they come (before any resize)
KNOWN_SIDES = {"digits": 8, "mnist": 28, "fashion-mnist": 28, "cifar10": 32, "svhn": 32,
               "celeba": 178}


def known_side(spec: str | os.PathLike) -> int | None:
    """The native shorter side of a built-in set, or None for files and folders."""
    return KNOWN_SIDES.get(builtin_key(spec)[0])


def source_side(src: Source, probe: int = 16) -> int | None:
    """The typical shorter side of an open source's images as they come (the median over up
    to ``probe`` images read from their headers), or None when none can be read."""
    if isinstance(src, ArraySource):
        return int(min(src.images.shape[-2:]))
    import io

    from PIL import Image

    n = len(src.names)
    sides = []
    for i in sorted({round(k * (n - 1) / max(probe - 1, 1)) for k in range(min(probe, n))}):
        try:
            item = src.read(i)
            with Image.open(io.BytesIO(item) if isinstance(item, bytes) else item) as im:
                sides.append(min(im.size))
        except Exception:  # noqa: BLE001 - a broken file: the loader reports it
            continue
    return int(np.median(sides)) if sides else None
