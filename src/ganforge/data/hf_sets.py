"""Hugging Face datasets: ``--data hf:NAME[:CONFIG][:SPLIT]``, read with the ``datasets``
library (``pip install "ganforge[hf-data]"``).

* ``hf:NAME`` is a set on the Hub (``hf:ylecun/mnist``, ``hf:user/set:config:test``),
  downloaded once into ``ganforge_home()/datasets/hf`` (``datasets``' own cache layout; later
  runs read it from there, offline too). With one part after the name, it is the split when
  it is train, test, validation, valid, val, dev or eval or a slice such as ``train[:10%]``,
  else the config.
* ``hf:PATH`` is a local copy: a folder written by ``Dataset.save_to_disk`` or
  ``DatasetDict.save_to_disk``, a ``.parquet`` file, or a folder of parquet files (split by
  file name as on the Hub: ``train-*.parquet``, ``data/test-*.parquet``...);
  ``hf:PATH:SPLIT`` picks a split. An existing path wins over a Hub name of the same spelling.
* The split: the one given, else ``train``, else the only one.
* The images: ``image_column`` when given, else the first column whose feature is
  ``datasets.Image``, else the first column of encoded image bytes (a ``binary`` column or a
  ``{bytes, path}`` struct). They stay encoded: ``data/load.py`` decodes them like the files
  of a folder (resize, channel rules, disk cache; the cache key comes from the dataset's own
  fingerprint). The labels: ``label_column`` when given (``none``: no labels), else the first
  ``ClassLabel`` column, whose names become the class names; a column of integers or strings
  given by name gives its sorted values as class names.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ganforge.errors import GanforgeError

from .base import FileSource

PREFIX = "hf:"
INSTALL = 'pip install "ganforge[hf-data]"'
SPLIT_NAMES = ("train", "test", "validation", "valid", "val", "dev", "eval")
_LABEL_DTYPES = ("bool", "string", "large_string")  # beside the integer types


def is_hf_spec(spec: object) -> bool:
    """True for ``hf:...`` data specs."""
    return str(spec).strip().lower().startswith(PREFIX)


@dataclass
class HfSpec:
    """A parsed ``hf:`` spec: a Hub name or a local path, and the config and split given."""

    name: str  # the Hub name, or the path as written
    path: Path | None  # the local copy, when ``name`` is an existing file or folder
    config: str | None
    split: str | None


def _is_split(part: str) -> bool:
    return part.split("[", 1)[0].strip().lower() in SPLIT_NAMES or "[" in part


def parse_hf_spec(spec: str) -> HfSpec:
    """``hf:NAME[:CONFIG][:SPLIT]`` or ``hf:PATH[:SPLIT]`` -> :class:`HfSpec` (colons inside a
    slice such as ``train[:100]`` do not split)."""
    text = str(spec).strip()
    rest = text[len(PREFIX):].strip()
    parts = [p.strip() for p in re.split(r":(?![^\[]*\])", rest)]
    if not rest or not parts[0]:
        raise GanforgeError(f"{text}: no dataset named: write hf:NAME (a set on the Hugging "
                            f"Face Hub, e.g. hf:ylecun/mnist) or hf:PATH (a saved copy)")
    for k in range(len(parts), 0, -1):  # the longest prefix that exists locally is a path
        path = Path(":".join(parts[:k])).expanduser()
        if path.exists():
            more = parts[k:]
            if len(more) > 1:
                raise GanforgeError(f"{text}: a local copy has splits but no configs: write "
                                    f"hf:{':'.join(parts[:k])}:SPLIT")
            return HfSpec(":".join(parts[:k]), path, None, (more or [None])[0] or None)
    name = parts[0]
    if name.startswith(("/", ".", "~")) or name.lower().endswith(".parquet"):
        raise GanforgeError(f"{text}: {Path(name).expanduser().absolute()} does not exist: "
                            f"check the path (a save_to_disk folder or parquet files)")
    if len(parts) > 3:
        raise GanforgeError(f"{text}: too many parts: write hf:NAME[:CONFIG][:SPLIT]")
    if len(parts) == 2:
        return HfSpec(name, None, *((None, parts[1]) if _is_split(parts[1])
                                    else (parts[1], None)))
    return HfSpec(name, None, parts[1] if len(parts) > 1 else None,
                  parts[2] if len(parts) > 2 else None)


def _library(spec: str):
    try:
        import datasets
    except ImportError as exc:
        raise GanforgeError(f"{spec} is read with the Python package 'datasets', which is not "
                            f"installed: {INSTALL}") from exc
    return datasets


def _said(exc: BaseException, limit: int | None = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if limit is None or len(text) <= limit else text[:limit - 3] + "..."


def _listed(pattern: str, text: str, what: str) -> str:
    """`` (its WHAT: [...])`` from the list that ``pattern`` finds in ``text``, clipped."""
    found = re.search(pattern, text)
    if not found:
        return ""
    items = found.group(1)
    return f" (its {what}: {items if len(items) <= 160 else items[:157] + '...'})"


def _hub_error(exc: Exception, spec: str, p: HfSpec) -> GanforgeError:
    """One line for a failed ``datasets.load_dataset`` of a Hub name."""
    said, full = _said(exc), _said(exc, None)
    if "Unknown split" in full or "Bad split" in full:
        listed = _listed(r"(?:one of|Available splits:) (\[.*?\])", full, "splits")
        return GanforgeError(f"{spec}: no split {p.split!r} in {p.name}{listed}: give one of "
                             f"its splits")
    if isinstance(exc, ValueError) and re.search(r"BuilderConfig|Config name is missing", full):
        what = f"no config {p.config!r}" if p.config else "a config must be named"
        listed = _listed(r"(\[.*?\])", full, "configs")
        return GanforgeError(f"{spec}: {what} in {p.name}{listed}: write hf:{p.name}:CONFIG "
                             f"(hf:{p.name}:CONFIG:SPLIT for a split)")
    if isinstance(exc, ConnectionError) or "Couldn't reach" in said or "Offline" in said:
        return GanforgeError(
            f"{spec}: not in the cache and the Hugging Face Hub cannot be reached (no "
            f"connection, or HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set): check the connection "
            f"and the name, or copy the set here and pass hf:PATH (save_to_disk or parquet)")
    if isinstance(exc, FileNotFoundError):
        return GanforgeError(f"{spec}: no dataset {p.name!r} on the Hugging Face Hub (or it is "
                             f"gated: log in with `hf auth login`): check the name ({said})")
    return GanforgeError(f"{spec}: the datasets library could not load it ({said}): check the "
                         f"name, config and split")


@contextlib.contextmanager
def _quiet_bars(hf) -> Iterator[None]:
    """No progress bars while reading a local copy (they would only flash by)."""
    off = getattr(hf, "disable_progress_bars", None) or getattr(hf, "disable_progress_bar", None)
    on = getattr(hf, "enable_progress_bars", None) or getattr(hf, "enable_progress_bar", None)
    was = getattr(hf, "is_progress_bar_enabled", lambda: True)()
    if off is None or on is None:  # another version's names: bars stay as they are
        yield
        return
    off()
    try:
        yield
    finally:
        if was:
            on()


def _pick_split(dd, spec: str, split: str | None):
    """A ``Dataset`` out of a ``DatasetDict``: ``split``, else train, else the only one."""
    names = list(dd.keys())
    if split is None:
        if "train" in dd:
            return dd["train"], "train"
        if len(names) == 1:
            return dd[names[0]], names[0]
        raise GanforgeError(f"{spec} has the splits {', '.join(names)} and none is 'train': "
                            f"name one, as {spec}:{names[0]}")
    if split not in dd:
        raise GanforgeError(f"{spec}: no split {split!r} (its splits: {', '.join(names)}): "
                            f"give one of them")
    return dd[split], split


def _local(hf, p: HfSpec, spec: str, cache: str):
    """(Dataset, split name) of a local copy: a save_to_disk folder or parquet files."""
    path = p.path
    assert path is not None
    saved = path.is_dir() and ((path / "dataset_dict.json").is_file()
                               or (path / "state.json").is_file())
    with _quiet_bars(hf):
        try:
            if saved:
                obj = hf.load_from_disk(str(path))
            elif path.is_file() and path.suffix.lower() == ".parquet":
                obj = hf.load_dataset("parquet", data_files=str(path), cache_dir=cache)
            elif path.is_dir() and any(path.rglob("*.parquet")):
                obj = hf.load_dataset("parquet", data_dir=str(path), cache_dir=cache)
            else:
                raise GanforgeError(
                    f"{spec}: {path} is neither a folder written by save_to_disk (with "
                    f"dataset_dict.json or state.json) nor parquet files: save the set with "
                    f"Dataset.save_to_disk, or drop hf: to read a folder of images")
        except GanforgeError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken copy: one line
            raise GanforgeError(f"{spec}: could not read {path} ({_said(exc)}): check the "
                                f"files") from exc
    if isinstance(obj, hf.DatasetDict):
        return _pick_split(obj, spec, p.split)
    own = str(obj.split) if obj.split is not None else None
    if p.split is not None and p.split != own:
        raise GanforgeError(f"{spec}: {path} holds one dataset, not splits: drop :{p.split}")
    return obj, own or "train"


def _hub(hf, p: HfSpec, spec: str, cache: str):
    """(Dataset, split name) of a set on the Hub, from the cache when it is there."""
    try:
        obj = hf.load_dataset(p.name, p.config, split=p.split, cache_dir=cache)
    except GanforgeError:
        raise
    except Exception as exc:  # noqa: BLE001 - network, names, splits: one line each
        raise _hub_error(exc, spec, p) from exc
    if isinstance(obj, hf.DatasetDict):
        return _pick_split(obj, spec, None)
    return obj, p.split


def _kind(feature) -> str:
    """A short name of a column's feature for messages."""
    if isinstance(feature, dict):
        return "struct"
    dtype = getattr(feature, "dtype", None)
    name = type(feature).__name__
    return dtype if name == "Value" else name


def _columns_text(features) -> str:
    return ", ".join(f"{k} ({_kind(f)})" for k, f in features.items())


def _holds_images(hf, feature) -> bool:
    if isinstance(feature, hf.Image):
        return True
    if isinstance(feature, dict):
        return "bytes" in feature
    return isinstance(feature, hf.Value) and feature.dtype in ("binary", "large_binary")


def _image_column(hf, features, spec: str, given: str) -> str:
    if given:
        if given not in features:
            raise GanforgeError(f"{spec}: no column {given!r} (its columns: "
                                f"{_columns_text(features)}): check image_column")
        if not _holds_images(hf, features[given]):
            raise GanforgeError(f"{spec}: column {given!r} holds {_kind(features[given])}, not "
                                f"images (its columns: {_columns_text(features)}): give "
                                f"image_column= a column of images")
        return given
    for test in (lambda f: isinstance(f, hf.Image), lambda f: _holds_images(hf, f)):
        for name, feature in features.items():
            if test(feature):
                return name
    raise GanforgeError(f"{spec}: no column of images (its columns: {_columns_text(features)})"
                        f": give image_column=NAME if one holds encoded images")


def _label_column(hf, features, spec: str, given: str, image: str) -> str | None:
    if given.lower() == "none":
        return None
    if given:
        if given not in features:
            raise GanforgeError(f"{spec}: no column {given!r} (its columns: "
                                f"{_columns_text(features)}): check label_column")
        f = features[given]
        ok = isinstance(f, hf.ClassLabel) or (isinstance(f, hf.Value) and (
            f.dtype in _LABEL_DTYPES or re.fullmatch(r"u?int\d+", f.dtype)))
        if given == image or not ok:
            raise GanforgeError(f"{spec}: column {given!r} holds {_kind(f)}, not class labels "
                                f"(its columns: {_columns_text(features)}): give label_column= "
                                f"a ClassLabel, integer or string column, or none")
        return given
    return next((k for k, f in features.items()
                 if isinstance(f, hf.ClassLabel) and k != image), None)


def _labels(hf, ds, column: str | None, spec: str, explicit: bool,
            log: Callable[[str], None]) -> tuple[list[int] | None, list[str]]:
    """(labels, class names) of ``column``: a ClassLabel's own names, else the sorted values."""
    if column is None:
        return None, []
    values = list(ds[column])
    missing = sum(v is None or (isinstance(v, int) and v < 0) for v in values)
    if missing:
        if explicit:
            raise GanforgeError(f"{spec}: {missing} of {len(values)} rows have no label in "
                                f"column {column!r}: give label_column=none to train unlabelled")
        log(f"{spec}: {missing} of {len(values)} rows have no label in {column!r}: trained "
            f"unlabelled")
        return None, []
    feature = ds.features[column]
    if isinstance(feature, hf.ClassLabel):
        return [int(v) for v in values], list(feature.names)
    kinds = sorted(set(values))
    index = {v: i for i, v in enumerate(kinds)}
    return [index[v] for v in values], [str(v) for v in kinds]


def _reader(hf, ds, column: str) -> Callable[[int], object]:
    """``read(i)``: the encoded bytes (or the local path) of row ``i``'s image, undecoded."""
    col = ds.select_columns([column])
    if isinstance(col.features[column], hf.Image):
        col = col.cast_column(column, hf.Image(decode=False))
    lock = threading.Lock()

    def read(i: int) -> object:
        with lock:  # one reader at a time on the Arrow table; decoding runs in parallel
            value = col[i][column]
        if isinstance(value, dict):
            value = value.get("bytes") or (Path(value["path"]) if value.get("path") else None)
        if value is None:
            raise ValueError("no image in this row")
        return value

    return read


def hf_source(spec: str, home: Path, log: Callable[[str], None], image_column: str = "",
              label_column: str = "") -> FileSource:
    """Open an ``hf:`` spec (see the module docstring) as a :class:`FileSource` of encoded
    images, raising :class:`GanforgeError` with one line for every failure."""
    text = str(spec).strip()
    p = parse_hf_spec(text)
    hf = _library(text)
    cache = home / "datasets" / "hf"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GanforgeError(f"cannot create dataset folder {cache}: {exc.strerror}; set "
                            "GANFORGE_HOME to a writable folder") from exc
    if p.path is not None:
        ds, split = _local(hf, p, text, str(cache))
    else:
        ds, split = _hub(hf, p, text, str(cache))
    image = _image_column(hf, ds.features, text, image_column)
    label = _label_column(hf, ds.features, text, label_column, image)
    labels, classes = _labels(hf, ds, label, text, bool(label_column), log)
    if len(ds) == 0:
        raise GanforgeError(f"{text}: the {split} split is empty: give another split")
    where = f"{text} ({split} split, column {image})"
    version = str(getattr(ds.info, "version", None) or "")
    fp = ["hf", text, split, getattr(ds, "_fingerprint", None), version, image, label]
    return FileSource(
        name=text, where=where, names=[f"{split}[{i}]" for i in range(len(ds))],
        read=_reader(hf, ds, image), labels=labels, class_names=classes,
        fingerprint=lambda: fp,
    )
