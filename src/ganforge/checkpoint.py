"""Atomic checkpoints in a run folder.

Layout::

    RUN/checkpoints/step_00001000/G.safetensors   # weights and buffers of each net
    RUN/checkpoints/step_00001000/D.safetensors
    RUN/checkpoints/step_00001000/state.pt        # optimisers, RNG, step, images seen, losses
    RUN/checkpoints/latest                        # name of the newest complete checkpoint

A checkpoint is written into a hidden temp folder, flushed, and renamed into place in one
``os.replace``; ``latest`` is then replaced atomically. A crash at any point leaves the previous
checkpoint complete and findable. ``state.pt`` loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import GanforgeError
from .utils import atomic_write_text, write_failure

STATE_FILE = "state.pt"


def ckpt_dir(run: Path) -> Path:
    return Path(run) / "checkpoints"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(run: Path, step: int, nets: dict[str, nn.Module], state: dict[str, Any],
                    keep_last: int = 3, meta: dict[str, str] | None = None,
                    name: str | None = None) -> Path:
    """Write ``step_XXXXXXXX`` atomically, point ``latest`` at it, keep the last ``keep_last``.

    A full, over-quota, read-only or failing disk raises :class:`~ganforge.utils.WriteFailed`
    naming the file; the partial folder is removed and ``latest`` still names the previous one.

    With ``name`` (e.g. ``best``): write (or atomically replace) that folder instead, leaving
    ``latest`` and the step checkpoints alone."""
    root = ckpt_dir(run)
    named = name is not None
    name = name or f"step_{step:08d}"
    final = root / name
    tmp = root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    current = tmp  # the file being written, named when the disk refuses it
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        for net_name, net in nets.items():
            tensors = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
            current = tmp / f"{net_name}.safetensors"
            save_file(tensors, str(current),
                      metadata={"format": "ganforge", "net": net_name, **(meta or {})})
        current = tmp / STATE_FILE
        torch.save(state, current)  # written last: its presence marks completeness
        for f in tmp.iterdir():
            current = f
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        current = final
        if final.exists():  # re-saving the same step (e.g. the end coincides with a periodic one)
            trash = root / f".old-{name}-{uuid.uuid4().hex[:8]}"
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
    except BaseException as e:
        # read the free space before the partial folder goes: it is what the write met
        failed = write_failure(e, current) if isinstance(e, Exception) else None
        shutil.rmtree(tmp, ignore_errors=True)
        if failed is not None:
            raise failed from None
        raise
    if named:
        return final
    atomic_write_text(root / "latest", name + "\n")
    for old in list_checkpoints(run)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def is_complete(path: Path, net_names: tuple[str, ...] = ()) -> bool:
    return (path / STATE_FILE).is_file() and all(
        (path / f"{n}.safetensors").is_file() for n in net_names
    )


def list_checkpoints(run: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = ckpt_dir(run)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step_*") if p.is_dir() and is_complete(p))


def clean_partial(run: Path) -> None:
    """Remove temp folders left by a checkpoint write that was killed midway."""
    root = ckpt_dir(run)
    if root.is_dir():
        for p in list(root.glob(".tmp-*")) + list(root.glob(".old-*")):
            shutil.rmtree(p, ignore_errors=True)


def latest_checkpoint(run: Path) -> Path | None:
    """The checkpoint ``latest`` names if complete, else the newest complete one, else None."""
    root = ckpt_dir(run)
    try:
        name = (root / "latest").read_text().strip()
        if name and is_complete(root / name):
            return root / name
    except (OSError, UnicodeDecodeError):
        pass
    found = list_checkpoints(run)
    return found[-1] if found else None


def find_checkpoint(run: Path) -> Path:
    run = Path(run)
    if not run.exists():
        raise GanforgeError(f"run folder {run} does not exist: pass the --out folder of a run")
    ck = latest_checkpoint(run)
    if ck is None:
        raise GanforgeError(
            f"no complete checkpoint in {run}/checkpoints: train first (ganforge train --out {run})"
        )
    return ck


def load_net(net: nn.Module, path: Path, net_name: str) -> None:
    """Load weights into ``net``; a file from another model is a clear error."""
    file = path / f"{net_name}.safetensors"
    try:
        tensors = load_file(str(file))
    except FileNotFoundError:
        raise GanforgeError(f"{file} is missing: the checkpoint has no net '{net_name}'") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise GanforgeError(f"{file} is unreadable ({e}); use an earlier checkpoint") from None
    own = net.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    shapes = [k for k in own if k in tensors and own[k].shape != tensors[k].shape]
    if missing or extra or shapes:
        what = (f"missing {missing[0]}" if missing else f"unexpected {extra[0]}" if extra
                else f"{shapes[0]} is {tuple(tensors[shapes[0]].shape)}, model wants "
                     f"{tuple(own[shapes[0]].shape)}")
        raise GanforgeError(
            f"{file} does not fit the model built from config.json ({what}): it was written by "
            "another model; pair each run's checkpoints with its own config.json"
        )
    net.load_state_dict(tensors)


def load_state(path: Path) -> dict[str, Any]:
    file = path / STATE_FILE
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable state is the same problem for a user
        raise GanforgeError(f"{file} is unreadable ({type(e).__name__}); "
                            "delete that checkpoint folder to resume from the one before") from None
