"""Reference statistics files for FID: the ``.npz`` of pytorch-fid and clean-fid.

A file holds ``mu`` [D] and ``sigma`` [D, D] (float64) of the real images' features, so a
generator can be scored against a dataset without its images. ganforge adds one key,
``ganforge``: a JSON string (a 0-d unicode array; ``np.load`` reads it without pickle) naming
the feature space, the resolution the images were loaded at and the image count. Files
without it (pytorch-fid's ``--save-stats``, clean-fid's) are read too; their features then
cannot be checked.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch

from ..config import image_size
from ..errors import GanforgeError

META_KEY = "ganforge"
FORMAT = 1


def save_stats(path: str | Path, mu: torch.Tensor, sigma: torch.Tensor, meta: dict) -> Path:
    """Write ``mu``, ``sigma`` (float64) and ``meta`` (JSON under ``ganforge``) to ``path``
    (``.npz`` added when missing), the way pytorch-fid does (``np.savez_compressed``)."""
    from ..utils import atomic_write_bytes

    path = Path(path).expanduser()
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    buf = io.BytesIO()
    np.savez_compressed(buf, mu=mu.double().cpu().numpy(), sigma=sigma.double().cpu().numpy(),
                        **{META_KEY: np.array(json.dumps({"format": FORMAT, **meta}))})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_stats(path: str | Path) -> tuple[torch.Tensor, torch.Tensor, dict | None]:
    """``(mu [D], sigma [D, D], ganforge metadata or None)`` from an ``.npz``; a missing,
    corrupt or wrong-shape file is a :class:`GanforgeError`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise GanforgeError(f"--ref-stats {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if not {"mu", "sigma"} <= keys:
                raise GanforgeError(f"--ref-stats {path}: no 'mu' and 'sigma' arrays (it has "
                                    f"{', '.join(sorted(keys)) or 'none'}): not FID statistics")
            mu, sigma = np.asarray(z["mu"]), np.asarray(z["sigma"])
            raw = str(z[META_KEY][()]) if META_KEY in keys else None
    except GanforgeError:
        raise
    except Exception as e:  # not a zip, truncated, pickled objects
        raise GanforgeError(f"--ref-stats {path}: not a readable .npz ({type(e).__name__}: "
                            f"{' '.join(str(e).split())[:80]})") from None
    if (mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]) or mu.shape[0] == 0
            or not np.issubdtype(mu.dtype, np.number) or not np.issubdtype(sigma.dtype,
                                                                           np.number)):
        raise GanforgeError(f"--ref-stats {path}: mu {mu.shape} and sigma {sigma.shape} are "
                            f"not a mean [D] and a covariance [D, D]")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise GanforgeError(f"--ref-stats {path}: mu or sigma has NaN/inf values")
    meta = None
    if raw is not None:
        try:
            meta = json.loads(raw)
        except ValueError:
            meta = None
        if not isinstance(meta, dict):
            raise GanforgeError(f"--ref-stats {path}: its '{META_KEY}' metadata is not a JSON "
                                f"object")
    return (torch.from_numpy(mu.astype(np.float64)), torch.from_numpy(sigma.astype(np.float64)),
            meta)


def check_stats(path: str | Path, meta: dict | None, space_key: str, space_name: str,
                resolution: int | str) -> str | None:
    """Raise when ``meta`` says another feature space or resolution than the ones in use;
    return a note for a file without ganforge metadata (None when checked)."""
    if meta is None:
        return (f"{path} has no ganforge metadata: its features and resolution cannot be "
                f"checked; FID is only meaningful on the same features ({space_name})")
    if meta.get("features_key") != space_key:
        raise GanforgeError(f"--ref-stats {path} holds statistics of {meta.get('features')!r}, "
                            f"not of the features in use ({space_name}): pass --features to "
                            f"match, or make the file with these features")
    if meta.get("resolution") is not None \
            and image_size(meta["resolution"]) != image_size(resolution):
        raise GanforgeError(f"--ref-stats {path} was made at {meta['resolution']}px, the images "
                            f"here are {resolution}px: make the file at {resolution}px "
                            f"(--resolution) or evaluate at {meta['resolution']}px")
    return None


def check_dim(path: str | Path, mu: torch.Tensor, features: torch.Tensor) -> None:
    if mu.shape[0] != features.shape[1]:
        raise GanforgeError(f"--ref-stats {path} has {mu.shape[0]}-d statistics, the features "
                            f"in use are {features.shape[1]}-d: not the same feature space")
