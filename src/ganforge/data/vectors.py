"""Vector (non-image) data: 2-D toy mixtures for mode-collapse studies, and CSV / NPY tables.

``load_vectors(spec)`` -> :class:`VectorDataset` (float32 ``[N, D]``). Specs:

* ``ring8``: 8 Gaussians evenly spaced on the unit circle (centres ``(cos 2πk/8, sin 2πk/8)``),
  std 0.01, equal weights -- the 2D-ring of PacGAN (Lin et al. 2018, Sec. 5.1: variance 1e-4).
* ``grid25``: 25 Gaussians at ``{-4, -2, 0, 2, 4}^2``, std 0.05, equal weights -- PacGAN's
  2D-grid (variance 0.0025).
* ``spiral``: a 2-D Swiss roll: ``θ = 1.5π (1 + 2u)``, ``u ~ U(0, 1)``, point
  ``(θ cos θ, θ sin θ) / (4.5π)`` (so it lies in [-1, 1]^2) plus Gaussian noise of std 0.02.
  No modes, no labels.
* ``moons``: scikit-learn's ``make_moons(noise=0.05)`` (x in about [-1, 2], y in [-0.5, 1]);
  labels = the moon (0 upper, 1 lower). No modes.
* a ``.csv`` file: numbers separated by ``,`` (or tab / ``;`` / spaces, decided from the first
  line); an optional header row (recognised by a non-numeric field); blank lines and lines
  starting with ``#`` skipped; any number of columns >= 1.
* a ``.npy`` file: a 2-D numeric array ``[N, D]`` (1-D is read as ``[N, 1]``).

The toy sets are generated from ``seed`` (the same points every time) with ``n`` points
(default 50,000; mode membership drawn i.i.d. with equal weights); their ``labels`` are the
mode index and ``modes`` / ``mode_std`` feed ``ganforge.metrics.modes``. Nothing is rescaled:
toy metrics are in data units, and CSV/NPY values stay raw -- the MLP generator has a linear
output, so any range can be learned (standardise a table yourself if its columns differ by
orders of magnitude). For files ``n`` keeps the first ``n`` rows and ``seed`` is unused.
"""

from __future__ import annotations

import difflib
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ganforge.errors import GanforgeError

VECTOR_SPECS = ("ring8", "grid25", "spiral", "moons")
VECTOR_SUFFIXES = (".csv", ".npy")
DEFAULT_N = 50_000
ACCEPTED = "ring8, grid25, spiral, moons, a .csv file or a .npy file"


@dataclass
class VectorDataset:
    """A table of points: ``x`` float32 ``[N, D]``.

    ``labels`` (int64 ``[N]``) is the mode index for ring8/grid25, the moon for moons, else
    None. ``modes`` (float32 ``[M, D]``) and ``mode_std`` are the mixture's centres and
    per-coordinate std, for ring8/grid25 only.
    """

    x: torch.Tensor
    name: str
    labels: torch.Tensor | None = None
    class_names: list[str] = field(default_factory=list)
    modes: torch.Tensor | None = None
    mode_std: float | None = None

    @property
    def dim(self) -> int:
        return int(self.x.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.x.shape[0])


def _key(spec: str) -> str:
    return str(spec).strip().lower()


def is_vector_spec(spec: str) -> bool:
    """True for a toy-set name (:data:`VECTOR_SPECS`) or a path ending in .csv / .npy (the file
    need not exist: :func:`load_vectors` then says so)."""
    key = _key(spec)
    return key in VECTOR_SPECS or key.endswith(VECTOR_SUFFIXES)


def load_vectors(spec: str, n: int | None = None, seed: int = 0) -> VectorDataset:
    """Load ``spec`` (see the module docstring) as a :class:`VectorDataset`.

    ``n``: points to generate for toy sets (default 50,000), or the first ``n`` rows of a
    file (default all). ``seed``: the toy sets' random seed. Raises :class:`GanforgeError`
    with a one-line message for unknown names and unusable files."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1):
        raise GanforgeError(f"n must be a positive integer (points to load), got {n!r}")
    key = _key(spec)
    if key in _TOYS:
        return _TOYS[key](DEFAULT_N if n is None else int(n), int(seed))
    text = str(spec).strip()
    if key.endswith(".csv"):
        x = _read_csv(Path(text).expanduser())
    elif key.endswith(".npy"):
        x = _read_npy(Path(text).expanduser())
    else:
        close = difflib.get_close_matches(key, VECTOR_SPECS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise GanforgeError(f"unknown vector data '{text}'{hint}: use one of {ACCEPTED}")
    if n is not None:
        x = x[: int(n)]
    return VectorDataset(x=torch.from_numpy(np.ascontiguousarray(x)), name=text)


# --- toy sets ------------------------------------------------------------------------------

def _mixture(name: str, modes: np.ndarray, std: float, n: int, seed: int) -> VectorDataset:
    g = torch.Generator().manual_seed(seed)
    centres = torch.from_numpy(modes).double()
    labels = torch.randint(0, len(centres), (n,), generator=g)
    x = centres[labels] + std * torch.randn(n, centres.shape[1], generator=g, dtype=torch.float64)
    return VectorDataset(
        x=x.float(), name=name, labels=labels, class_names=[str(i) for i in range(len(modes))],
        modes=centres.float(), mode_std=float(std),
    )


def ring8(n: int = DEFAULT_N, seed: int = 0) -> VectorDataset:
    """8 Gaussians on the unit circle, std 0.01 (PacGAN's 2D-ring)."""
    angles = 2 * np.pi * np.arange(8) / 8
    return _mixture("ring8", np.stack([np.cos(angles), np.sin(angles)], 1), 0.01, n, seed)


def grid25(n: int = DEFAULT_N, seed: int = 0) -> VectorDataset:
    """25 Gaussians at {-4, -2, 0, 2, 4}^2, std 0.05 (PacGAN's 2D-grid); mode ``5 i + j`` is at
    ``(-4 + 2 i, -4 + 2 j)``."""
    v = np.arange(-4.0, 5.0, 2.0)
    modes = np.stack(np.meshgrid(v, v, indexing="ij"), -1).reshape(-1, 2)
    return _mixture("grid25", modes, 0.05, n, seed)


def spiral(n: int = DEFAULT_N, seed: int = 0) -> VectorDataset:
    """A 2-D Swiss roll scaled into [-1, 1]^2, noise std 0.02 (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    theta = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g, dtype=torch.float64))
    x = torch.stack([theta * torch.cos(theta), theta * torch.sin(theta)], 1) / (4.5 * math.pi)
    x = x + 0.02 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return VectorDataset(x=x.float(), name="spiral")


def moons(n: int = DEFAULT_N, seed: int = 0) -> VectorDataset:
    """scikit-learn's two moons, noise 0.05; labels 0 (upper moon) and 1 (lower moon)."""
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n, noise=0.05, random_state=seed % 2**32)
    return VectorDataset(x=torch.from_numpy(x.astype(np.float32)), name="moons",
                         labels=torch.from_numpy(y.astype(np.int64)),
                         class_names=["upper", "lower"])


_TOYS = {"ring8": ring8, "grid25": grid25, "spiral": spiral, "moons": moons}


# --- files ---------------------------------------------------------------------------------

def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _bad(path: Path, problem: str, fix: str) -> GanforgeError:
    return GanforgeError(_one_line(f"cannot use {path}: {problem}; {fix}"))


def _check_file(path: Path) -> None:
    if not path.exists():
        raise GanforgeError(_one_line(f"vector data file not found: {path.absolute()} (check "
                                      f"the path; accepted: {ACCEPTED})"))
    if not path.is_file():
        raise _bad(path, "it is not a file", "give the path of a .csv or .npy file")


def _finite(path: Path, x: np.ndarray, rows: list[int] | None = None) -> np.ndarray:
    """float32 ``x``, or an error naming the first row with NaN/inf (``rows``: file lines)."""
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)
    bad = ~np.isfinite(x32).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        where = f"line {rows[i]}" if rows is not None else f"row {i}"
        big = bool(np.isfinite(x[i]).all())  # finite before the cast: out of float32 range
        what = "values beyond the float32 range (|x| > 3.4e38)" if big else "NaN or inf values"
        count = int(bad.sum())
        rows_text = "1 row holds" if count == 1 else f"{count} rows hold"
        raise _bad(path, f"{rows_text} {what} (first at {where})",
                   "remove or fill those rows")
    return x32


def _split(line: str, sep: str | None) -> list[str]:
    return [f.strip() for f in (line.split(sep) if sep else line.split())]


def _floats(fields: list[str]) -> list[float] | None:
    try:
        return [float(f) for f in fields]
    except ValueError:
        return None


def _read_csv(path: Path) -> np.ndarray:
    _check_file(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise _bad(path, "it is not a UTF-8 text file",
                   "save it as a plain-text CSV of numbers") from None
    except OSError as exc:
        raise _bad(path, f"it cannot be read ({exc.strerror or exc})",
                   "check the file's permissions") from None
    lines = [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines())]
    lines = [(i, ln) for i, ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise _bad(path, "it holds no data rows", "give a CSV with one point per row")
    first = lines[0][1]
    sep = next((s for s in (",", "\t", ";") if s in first), None)
    if _floats(_split(first, sep)) is None:  # a header row
        lines = lines[1:]
        if not lines:
            raise _bad(path, "it holds a header but no data rows",
                       "add rows of numbers below the header")
    width = len(_split(lines[0][1], sep))
    rows: list[list[float]] = []
    for lineno, ln in lines:
        fields = _split(ln, sep)
        if len(fields) != width:
            raise _bad(path, f"line {lineno} has {len(fields)} values but line {lines[0][0]} "
                             f"has {width}", "give every row the same number of columns")
        vals = _floats(fields)
        if vals is None:
            bad = next(f for f in fields if _floats([f]) is None)
            raise _bad(path, f"line {lineno} holds the non-numeric value {bad[:40]!r}",
                       "keep only numbers below the optional header row")
        rows.append(vals)
    return _finite(path, np.asarray(rows, dtype=np.float64), [i for i, _ in lines])


def _read_npy(path: Path) -> np.ndarray:
    _check_file(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise _bad(path, f"it cannot be read ({exc.strerror or exc})",
                   "check the file's permissions") from None
    if magic[:4] == b"PK\x03\x04":
        raise _bad(path, "it is an .npz archive, not a single array",
                   "save one [N, D] array with numpy.save")
    if magic != b"\x93NUMPY":
        raise _bad(path, "it is not a .npy file (no NPY header)",
                   "save the array with numpy.save, or give a .csv for text")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise _bad(path, "it holds Python objects, not a numeric array",
                       "save a float array with numpy.save") from None
        raise _bad(path, f"it is not a readable .npy array ({_one_line(exc)})",
                   "re-create it with numpy.save") from None
    except (OSError, EOFError) as exc:
        raise _bad(path, f"it is not a readable .npy array ({_one_line(exc)})",
                   "re-create it with numpy.save") from None
    if arr.dtype.kind not in "biuf":
        raise _bad(path, f"its dtype {arr.dtype} is not real-valued numbers",
                   "save a float array of shape [N, D]")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise _bad(path, f"it has shape {tuple(arr.shape)} ({arr.ndim}-D)",
                   "save a 2-D array of shape [N, D] (one point per row)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise _bad(path, f"it is empty (shape {tuple(arr.shape)})",
                   "save at least one point with at least one value")
    return _finite(path, arr.astype(np.float64))
