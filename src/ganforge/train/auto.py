"""The default recipe: what ``ganforge train`` trains when no ``--preset`` is given, chosen
from the data (its kind, size and labels) among the recipes that measured best for it.

Measured (README, "the default recipe on a time budget"): on the built-in digits (1,797
labelled images) ``small-data-cond`` scores a classifier FID of 2.6 after 10 minutes and 1.8
after 20 on a 2-core CPU (mean of 3 seeds, each better at 20), where the seed's DCGAN scored
108 after 10 (it drifts into partial collapse). Unlabelled image sets get ``small-data`` (the same
recipe without the labels), vector data ``toy``, image pairs the image-to-image preset of
their task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import Config, apply_overrides, as_dict, resolve_key
from ..errors import GanforgeError
from ..options import build_config
from .batches import check_data_keys

# image-to-image tasks -> the preset built for them
BY_TASK = {"aligned": "pix2pix", "folders": "pix2pix", "edges2image": "pix2pix",
           "gray2color": "pix2pix", "invert": "cyclegan", "unpaired": "cyclegan",
           "lowres2highres": "srgan"}


@dataclass
class Choice:
    preset: str  # the preset chosen
    why: str  # one line: what in the data made it
    notes: list[str]  # further lines for the user (e.g. images resized)


def choose_preset(n: int, num_classes: int, vector: bool = False, task: str = "none"
                  ) -> tuple[str, str]:
    """(preset, why) for data of ``n`` samples in ``num_classes`` classes (0 = unlabelled)."""
    if task != "none":
        return BY_TASK[task], f"image pairs made by task={task}"
    if vector:
        return "toy", f"{n} vectors: MLPs with R1, EMA and lr decay"
    if num_classes >= 2:
        return ("small-data-cond", f"{n} images in {num_classes} classes: the labels condition "
                "G and D (projection D), with DiffAugment, spectral norm, LeCam and EMA; "
                "--preset small-data ignores the labels")
    return ("small-data", f"{n} unlabelled images: DiffAugment, spectral norm in D and "
            "generator EMA")


def _data_keys(overrides: dict[str, Any]) -> dict[str, Any]:
    probe = Config()
    return {k: v for k, v in overrides.items() if resolve_key(probe, k).startswith("data.")}


def auto_config(overrides: dict[str, Any] | list[str] | None = None,
                log: Callable[[str], None] | None = print):
    """``(config, data or None, Choice)`` for a run without a preset: the data is loaded once
    (and handed to the trainer) to pick the recipe."""
    from ..data import is_vector_spec, load_dataset

    kv = as_dict(overrides or {})
    d = apply_overrides(Config(), _data_keys(kv)).data
    resolution_given = any(resolve_key(Config(), k) == "data.resolution" for k in kv)
    notes: list[str] = []
    data = None
    check_data_keys(Config(data=d))  # before any loading: a key this data does not read
    if d.task != "none":
        if d.task not in BY_TASK:
            raise GanforgeError(f"task={d.task!r}: use one of {', '.join(BY_TASK)}")
        preset, why = choose_preset(0, 0, task=d.task)
    elif is_vector_spec(d.source):
        from ..data import load_vectors

        cfg = build_config("toy", kv)
        data = load_vectors(d.source, seed=cfg.train.seed)
        preset, why = choose_preset(len(data), 0, vector=True)
        return cfg, data, Choice(preset, why, notes)
    else:
        data = load_dataset(d.source, resolution=d.resolution, channels=d.channels, log=log,
                            fit=d.fit, image_column=d.image_column,
                            label_column=d.label_column)
        preset, why = choose_preset(len(data), data.num_classes)
        side, (h, w) = data.native_side, data.size
        if side is not None and side != min(h, w):
            if h == w and side > h and not resolution_given:
                bigger = max((r for r in (64, 128) if r <= side), default=None)
                hint = (f": pass --resolution {bigger} to train at {bigger}x{bigger} (about "
                        f"{(bigger // h) ** 2}x the time a step)" if bigger else "")
                notes.append(f"{side}x{side} images trained at {h}x{w}{hint}")
            else:
                what = f"{side}x{side} images" if h == w else \
                    f"images of shorter side {side} (fit={d.fit})"
                notes.append(f"{what} {'up' if side < min(h, w) else 'down'}scaled to {h}x{w}")
    cfg = build_config(preset, kv)
    return cfg, data, Choice(preset, why, notes)


__all__ = ["BY_TASK", "Choice", "auto_config", "choose_preset"]
