"""Fine-tuning: a new run whose nets start from another run's weights (``--init``).

``ganforge train --init RUN --data NEW [key=value ...]`` (or, in Python,
``ganforge.train.train(ganforge.finetune_config(RUN, {...}), OUT)``) builds a fresh run: a new
optimiser state, step counter and data, with the nets of ``RUN``'s latest checkpoint. The rules:

- The architecture comes from the source: its config is the new run's starting point (model
  keys cannot be overridden; StyleGAN2 alone may change ``resolution``: the layers whose shapes
  match are copied, the others start new and are listed in the log).
- A different number of classes re-initialises the class embeddings (said in the log).
- ``init`` may also be one ``NET.safetensors`` file (``G.safetensors`` from a checkpoint
  folder): it loads into the net of that name of a run built from ``--preset`` as usual; every
  tensor must fit.
- ``freeze_d=K`` (FreezeD, Mo et al. 2020: the *lower* layers of D, those nearest the input,
  keep the pre-trained weights) and ``freeze_mapping`` (StyleGAN2) fix parts of the nets.
- ``config.json`` records where the weights came from: ``init`` (the checkpoint folder or
  file) and ``init_sha256`` (the hash of the weight files' bytes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import checkpoint as ck
from .config import DERIVED, STOP_KEYS, Config, apply_overrides, resolve_key, validate
from .errors import GanforgeError
from .nets import VECTOR_ARCHS

Log = Callable[[str], None]

# fields a new run fills in again from its own data or machine
_REFILLED = {"train.crop": 0, "train.batch_gpu": 0, "train.init_sha256": ""}


def _checkpoint_of(source: Path) -> tuple[Path, Path | None]:
    """``(checkpoint folder or file, run folder or None)`` of an ``--init`` argument."""
    if source.is_file():
        if source.suffix != ".safetensors":
            raise GanforgeError(f"--init {source}: give a run folder or a NET.safetensors file "
                                f"(e.g. RUN/checkpoints/step_00001000/G.safetensors)")
        return source, None
    if not source.is_dir():
        raise GanforgeError(f"--init {source} does not exist: give the --out folder of a "
                            "trained run or a NET.safetensors file")
    if (source / "config.json").is_file():
        path = ck.latest_checkpoint(source)
        if path is None:
            raise GanforgeError(f"--init {source}: the run has no complete checkpoint yet")
        return path, source
    run = source.parent.parent  # RUN/checkpoints/step_* (or best)
    if (run / "config.json").is_file() and ck.is_complete(source, ("G",)):
        return source, run
    raise GanforgeError(f"--init {source}: not a run folder (no config.json) nor a checkpoint "
                        "of one")


def finetune_config(source: str | Path, overrides: dict[str, Any] | list[str] | None = None
                    ) -> Config:
    """The config of a run that fine-tunes ``source`` (a run folder or one of its checkpoint
    folders): the source's config with ``overrides`` (data, stop rules, learning rates,
    freeze_d...), its shape left to be filled in from the new data."""
    path, run = _checkpoint_of(Path(source))
    if run is None:
        raise GanforgeError(f"--init {source} is a weights file: its architecture comes from "
                            "--preset (finetune_config needs a run folder)")
    cfg = Config.load(run / "config.json")
    kv = dict(overrides) if isinstance(overrides, dict) else None
    if kv is None:
        from .config import as_dict

        kv = as_dict(list(overrides or []))
    was_vector = cfg.model.arch in VECTOR_ARCHS
    given = {resolve_key(cfg, key) for key in kv}
    for full in sorted(given):
        if full.startswith("model.") or full == "data.channels" or (
                full == "data.resolution" and cfg.model.arch != "stylegan2"):
            name = full.split(".", 1)[1]
            raise GanforgeError(f"{name} cannot change when fine-tuning a {cfg.model.arch} run: "
                                "the architecture comes from --init (new images are converted "
                                "to its channels and size; stylegan2 runs alone may change "
                                "resolution)")
    if given & STOP_KEYS:  # the user's stop rules replace the source run's
        for key in STOP_KEYS:
            section, name = key.split(".")
            setattr(getattr(cfg, section), name, None)
    for key, value in _REFILLED.items():
        apply_overrides(cfg, {key: value}, from_text=False)
    for key in DERIVED:  # filled in again from the new data
        section, name = key.split(".")
        setattr(getattr(cfg, section), name, 0)
    apply_overrides(cfg, kv)
    cfg.train.init = str(path.resolve())
    validate(cfg)
    if "source" in kv or "data.source" in kv:
        from .data.vectors import is_vector_spec

        if was_vector != is_vector_spec(cfg.data.source):
            kinds = ("vectors", "images") if was_vector else ("images", "vectors")
            raise GanforgeError(f"--init {source} generates {kinds[0]} but --data "
                                f"{cfg.data.source} holds {kinds[1]}: fine-tune on the same "
                                f"kind of data, or train a new run")
    return cfg


class InitWeights:
    """The weights a fine-tuning run starts from (``cfg.train.init``), loaded net by net."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.path, self.run = _checkpoint_of(Path(cfg.train.init or ""))
        self.source = Config.load(self.run / "config.json") if self.run else None
        files = [self.path] if self.run is None else sorted(self.path.glob("*.safetensors"))
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode() + b"\0")
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        cfg.train.init_sha256 = h.hexdigest()
        self.files = {f.stem: f for f in files}

    def _tensors(self, name: str) -> dict[str, torch.Tensor] | None:
        from safetensors.torch import load_file

        f = self.files.get(name)
        if f is None:
            return None
        try:
            return load_file(str(f))
        except Exception as e:  # noqa: BLE001 - a damaged file: one line
            raise GanforgeError(f"--init: {f} does not load ({type(e).__name__}): give an "
                                "intact weights file") from None

    def _shift(self, name: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """StyleGAN2 D at another resolution: its blocks are numbered from the input, so a
        block of the source moves by the difference in levels to meet its own resolution."""
        src = self.source
        if src is None or name != "D" or self.cfg.model.arch != "stylegan2":
            return tensors
        shift = min(self.cfg.model.size).bit_length() - min(src.model.size).bit_length()
        if not shift:
            return tensors
        out = {}
        for k, v in tensors.items():
            if k.startswith("blocks."):
                i, rest = k[len("blocks."):].split(".", 1)
                k = f"blocks.{int(i) + shift}.{rest}"
            out[k] = v
        return out

    # long: one net's copy with every case the log reports (copied, classes, new layers,
    # layers dropped, a file that does not fit), read top to bottom
    def load(self, nets: dict[str, nn.Module], log: Log) -> None:
        """Copy the init weights into ``nets`` (by name; a net the source lacks keeps its
        weights, e.g. G_ema stays the copy of the loaded G) and say what was done."""
        where = self.path if self.run is None else f"{self.run} ({self.path.name})"
        resized = self.source is not None and (self.source.model.resolution
                                               != self.cfg.model.resolution)
        if self.run is None:
            name = self.path.stem
            if name not in nets:
                raise GanforgeError(f"--init {self.path}: this run has no net named {name} "
                                    f"(its nets: {', '.join(sorted(nets))}); name the file after "
                                    "the net it holds, e.g. G.safetensors")
        for name, net in nets.items():
            tensors = self._tensors(name)
            if tensors is None:
                continue
            tensors = self._shift(name, tensors)
            state = net.state_dict()
            copied, classes, new, misfit = 0, [], [], []
            for k, v in state.items():
                if k in tensors and tensors[k].shape == v.shape:
                    state[k] = tensors[k].to(v.dtype)
                    copied += 1
                elif _class_tensor(k, v, tensors.get(k)):
                    classes.append(k)
                elif k in tensors:
                    misfit.append(f"{k} is {list(tensors[k].shape)} there, {list(v.shape)} here")
                else:
                    new.append(k)
            dropped = [k for k in tensors if k not in state and not _class_name(k)]
            if not copied or ((misfit or new or dropped) and not resized):
                first = (misfit + [f"{k} is missing there" for k in new]
                         + [f"{k} is not in this net" for k in dropped])[:1]
                raise GanforgeError(f"--init {where}: its {name} does not fit this run's "
                                    f"{name} ({first[0] if first else 'no tensor in common'}): "
                                    "start from a run of the same family and size")
            net.load_state_dict(state)
            line = f"init: {name} from {where}: {copied} of {len(state)} tensors copied"
            if classes:
                line += (f"; class embeddings re-initialised ({len(classes)} tensors: "
                         f"{self._classes()})")
            if new or misfit or dropped:
                line += (f"; new at {self.cfg.model.resolution}px: "
                         f"{_prefixes(new + [m.split(' ')[0] for m in misfit])}"
                         + (f"; not used: {_prefixes(dropped)}" if dropped else ""))
            log(line)

    def _classes(self) -> str:
        n = self.cfg.model.num_classes
        if self.source is None:
            return f"this run has {n} classes"
        return f"{self.source.model.num_classes} classes there, {n} here"


def _class_name(key: str) -> bool:
    return any(part in key for part in ("embed", "label", "shared", "aux"))


def _class_tensor(key: str, here: torch.Tensor, there: torch.Tensor | None) -> bool:
    """A class-conditioning tensor whose size follows the number of classes."""
    if not _class_name(key):
        return False
    return there is None or there.shape[1:] == here.shape[1:]


def _prefixes(keys: list[str], most: int = 6) -> str:
    """Tensor names shortened to their modules, e.g. ``synthesis_net.blocks.3.*``."""
    out: list[str] = []
    for k in keys:
        parts = k.split(".")
        p = ".".join(parts[:3] if len(parts) > 3 else parts[:-1]) + ".*"
        if p not in out:
            out.append(p)
    return ", ".join(out[:most]) + (f" (+{len(out) - most} more)" if len(out) > most else "")


def frozen_parameters(cfg: Config, nets: dict[str, nn.Module]) -> list[nn.Parameter]:
    """The parameters that keep their init weights: D's first ``freeze_d`` input blocks
    (FreezeD) and, with ``freeze_mapping``, G's mapping network."""
    t = cfg.train
    frozen: list[nn.Parameter] = []
    if t.freeze_d:
        D = nets.get("D")
        if D is None or not hasattr(D, "input_blocks"):
            raise GanforgeError(f"freeze_d: the {cfg.model.arch} discriminator has no "
                                "resolution blocks to freeze (dcgan, resnet, biggan, stylegan2 "
                                "and r3gan have): drop freeze_d")
        blocks = D.input_blocks()
        if t.freeze_d > len(blocks):
            raise GanforgeError(f"freeze_d={t.freeze_d}: this D has {len(blocks)} blocks below "
                                f"its head: use 1 to {len(blocks)}")
        frozen += [p for group in blocks[:t.freeze_d] for m in group for p in m.parameters()]
    if t.freeze_mapping:
        frozen += list(nets["G"].mapping_net.parameters())
    return frozen


__all__ = ["InitWeights", "finetune_config", "frozen_parameters"]
