"""Which options a run reads, and the refusal of those it does not.

Every model key is read by the net family that declares it (``OPTIONS`` in each module of
:mod:`ganforge.nets`, ``MODEL_OPTIONS`` on the image-to-image recipes, which build their own
nets); every train key by all runs (:data:`COMMON_TRAIN`) or by the recipe that declares it
(``OPTIONS`` on each recipe class). Some keys are read only when a switch is on (:data:`NEEDS`:
``r1_every`` without ``r1`` or ``r2`` does nothing). Setting a key that the run does not read
is a one-line error naming what does read it, instead of a run that silently ignores it.
Data keys are checked where they are read (:func:`ganforge.config.validate`, the loaders).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import Any

from .config import DERIVED, Config, DataConfig, ModelConfig, TrainConfig, preset_config
from .errors import GanforgeError


def build_config(preset: str = "dcgan", overrides: dict[str, Any] | list[str] | None = None
                 ) -> Config:
    """Defaults, then the preset, then the user's overrides (``{"lr_g": 1e-4}`` or
    ``["lr_g=1e-4"]``); checked: values, names, and no key the run does not read."""
    cfg, given = preset_config(preset, overrides)
    check_config(cfg, sorted(given | set(set_keys(cfg))))
    return cfg


def check_config(cfg: Config, keys: Iterable[str] | None = None) -> None:
    """The checks a config needs beyond its values (:func:`ganforge.config.validate`): the
    names of its net family, recipe and loss, then :func:`check_read` of ``keys``."""
    check_names(cfg)
    check_read(cfg, keys)


def check_names(cfg: Config) -> None:
    """``arch``, ``recipe``, ``loss`` and ``diffaug`` name things that exist, and the recipe
    fits the kind of data (``task``)."""
    from .augment import POLICIES
    from .losses import LOSSES
    from .nets import NETS
    from .recipes import RECIPES

    m, t = cfg.model, cfg.train
    if t.recipe not in RECIPES:
        raise GanforgeError(f"unknown recipe '{t.recipe}': use one of "
                            f"{', '.join(sorted(RECIPES))}")
    img2img = RECIPES[t.recipe].img2img
    if img2img != (cfg.data.task != "none"):
        raise GanforgeError(
            f"recipe={t.recipe} needs {'image pairs: set task=...' if img2img else 'task=none'}"
            " (use --preset pix2pix, cyclegan or srgan for image-to-image)")
    if not (m.arch in NETS or (img2img and m.arch == t.recipe)):
        raise GanforgeError(f"unknown arch '{m.arch}': use one of {', '.join(sorted(NETS))}")
    if t.loss not in LOSSES:
        raise GanforgeError(f"unknown loss '{t.loss}': use one of {', '.join(sorted(LOSSES))}")
    bad = [p for p in filter(None, t.diffaug.split(",")) if p.strip() not in POLICIES]
    if bad:
        raise GanforgeError(f"unknown diffaug policy {bad[0]!r}: use none or any of "
                            f"{','.join(POLICIES)}")


# train keys every run reads: the loop, its optimiser schedule, its stop rules, its outputs
COMMON_TRAIN = (
    "recipe", "loss", "batch_size", "batch_gpu", "lr_g", "lr_d", "beta1", "beta2", "lr_decay",
    "lr_decay_start", "lr_end", "beta2_end", "on_divergence",
    "max_steps", "epochs", "max_time", "seed", "device", "precision", "channels_last",
    "compile", "sync_bn", "dist_timeout", "log_every", "sample_every", "checkpoint_every",
    "keep_last", "keep_samples", "eval_every", "eval_metric", "eval_n", "init", "init_sha256",
    "freeze_d", "freeze_mapping")


def _ema(c: Config) -> bool:
    return c.train.ema > 0


def _evaluates(c: Config) -> bool:
    return c.train.eval_every > 0


def _vectors(c: Config) -> bool:
    from .nets import VECTOR_ARCHS

    return c.model.arch in VECTOR_ARCHS


# key -> (the switch, as the user writes it; whether it is on): read only when it is on
NEEDS: dict[str, tuple[str, Callable[[Config], bool]]] = {
    "train.r1_every": ("r1 or r2 > 0", lambda c: c.train.r1 > 0 or c.train.r2 > 0),
    "train.keep_samples": ("sample_every > 0", lambda c: c.train.sample_every > 0),
    "train.gamma_end": ("r1 or r2 > 0", lambda c: c.train.r1 > 0 or c.train.r2 > 0),
    "train.pl_every": ("pl_weight > 0", lambda c: c.train.pl_weight > 0),
    "train.pl_decay": ("pl_weight > 0", lambda c: c.train.pl_weight > 0),
    "train.pl_batch_shrink": ("pl_weight > 0", lambda c: c.train.pl_weight > 0),
    "train.topk_decay": ("topk > 0", lambda c: c.train.topk > 0),
    "train.ada_interval": ("ada_target > 0", lambda c: c.train.ada_target > 0),
    "train.ada_kimg": ("ada_target > 0", lambda c: c.train.ada_target > 0),
    "train.ada_pipeline": ("ada_target or ada_p > 0",
                           lambda c: c.train.ada_target > 0 or c.train.ada_p > 0),
    "train.aux_weight": ("d_cond=aux", lambda c: c.model.d_cond == "aux"),
    "train.lr_decay_start": ("lr_decay=linear or cosine", lambda c: c.train.lr_decay != "none"),
    "train.lr_end": ("lr_decay=linear or cosine", lambda c: c.train.lr_decay != "none"),
    "train.beta1": ("optimizer=adam", lambda c: c.train.optimizer == "adam"),
    "train.beta2": ("optimizer=adam", lambda c: c.train.optimizer == "adam"),
    "train.beta2_end": ("optimizer=adam", lambda c: c.train.optimizer == "adam"),
    "train.ema_end": ("ema > 0", _ema),
    "train.ema_warmup": ("ema > 0", _ema),
    "train.eval_n": ("eval_every > 0", _evaluates),
    "train.eval_features": ("eval_every > 0 on images", lambda c: c.train.eval_every > 0
                            and not _vectors(c)),
    "train.eval_metric": ("eval_every > 0 (or warmup_patience)",
                          lambda c: c.train.eval_every > 0 or c.train.warmup_patience > 0),
    "train.style_mixing": ("arch=stylegan2", lambda c: c.model.arch == "stylegan2"),
    "train.pl_weight": ("arch=stylegan2", lambda c: c.model.arch == "stylegan2"),
    "train.freeze_d": ("init (fine-tuning)", lambda c: bool(c.train.init)),
    "train.freeze_mapping": ("init (fine-tuning) and arch=stylegan2",
                             lambda c: bool(c.train.init) and c.model.arch == "stylegan2"),
    "model.shared_dim": ("g_cond=cbn (a conditional BigGAN G)", lambda c: c.model.g_cond != "none"),
    "model.latent_mixture_std": ("latent_mixture > 0", lambda c: c.model.latent_mixture > 0),
}


def model_options(cfg: Config) -> tuple[str, ...]:
    """The model keys the run's nets read."""
    from .nets import NET_OPTIONS
    from .recipes import RECIPES

    recipe = RECIPES.get(cfg.train.recipe)
    if getattr(recipe, "img2img", False):
        return recipe.MODEL_OPTIONS
    return NET_OPTIONS.get(cfg.model.arch, ())


def train_options(cfg: Config) -> tuple[str, ...]:
    """The train keys the run reads (before :data:`NEEDS`)."""
    from .recipes import RECIPES

    return COMMON_TRAIN + getattr(RECIPES.get(cfg.train.recipe), "OPTIONS", ())


def _owner(cfg: Config, section: str) -> str:
    if section == "model":
        from .recipes import RECIPES

        img2img = getattr(RECIPES.get(cfg.train.recipe), "img2img", False)
        return f"recipe={cfg.train.recipe}" if img2img else f"arch={cfg.model.arch}"
    return f"recipe={cfg.train.recipe}"


def _readers(key: str) -> list[str]:
    """Which families or recipes read ``key`` (section.name), for the error message."""
    from .nets import NET_OPTIONS
    from .recipes import RECIPES

    section, name = key.split(".", 1)
    if section == "model":
        found = [f"arch={a}" for a, keys in sorted(NET_OPTIONS.items()) if name in keys]
        found += [f"recipe={r}" for r, cls in sorted(RECIPES.items())
                  if name in getattr(cls, "MODEL_OPTIONS", ())]
    else:
        found = [f"recipe={r}" for r, cls in sorted(RECIPES.items())
                 if name in getattr(cls, "OPTIONS", ())]
    return found


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def set_keys(cfg: Config, reference: Config | None = None) -> list[str]:
    """Keys (section.name) whose value differs from both the defaults and ``reference`` (the
    run's preset by default): what a user changed."""
    from .config import PRESETS, apply_overrides

    if reference is None:
        reference = Config(preset=cfg.preset)
        if cfg.preset in PRESETS:
            apply_overrides(reference, PRESETS[cfg.preset][1], from_text=False)
    keys = []
    for section, cls in _SECTIONS.items():
        mine, ref, default = getattr(cfg, section), getattr(reference, section), cls()
        for f in fields(cls):
            v = getattr(mine, f.name)
            if v != getattr(ref, f.name) and v != getattr(default, f.name):
                keys.append(f"{section}.{f.name}")
    return keys


def check_read(cfg: Config, keys: Iterable[str] | None = None) -> None:
    """Raise :class:`GanforgeError` (one line) for the first of ``keys`` (section.name; default:
    :func:`set_keys`) that this run does not read."""
    keys = set_keys(cfg) if keys is None else list(keys)
    model, train = set(model_options(cfg)), set(train_options(cfg))
    for key in keys:
        section, name = key.split(".", 1)
        if section == "data" or key in DERIVED or name in ("arch", "recipe"):
            continue
        own = model if section == "model" else train
        if name not in own:
            readers = _readers(key)
            where = f" (read by {', '.join(readers)})" if readers else ""
            mine = sorted(own if section == "model" else own - set(COMMON_TRAIN))
            listed = (f"its own {section} options are {', '.join(mine)}" if mine
                      else f"it has no {section} options of its own")
            if section == "train":
                listed += " (beside those every run reads)"
            raise GanforgeError(f"{name}: not read by {_owner(cfg, section)}{where}; {listed}: "
                                f"drop {name}")
        if key in NEEDS:
            switch, on = NEEDS[key]
            if not on(cfg):
                raise GanforgeError(f"{name} is only read with {switch}: set that too, or "
                                    f"drop {name}")
    check_conditioning(cfg)
    check_eval_metric(cfg)


def check_conditioning(cfg: Config) -> None:
    """``g_cond`` and ``d_cond`` must be ones the run's net family builds."""
    from .nets import NET_CONDS

    m = cfg.model
    if m.arch not in NET_CONDS:
        return
    for key, value, ok in zip(("g_cond", "d_cond"), (m.g_cond, m.d_cond), NET_CONDS[m.arch]):
        if value not in ok:
            raise GanforgeError(f"{key}={value!r}: arch={m.arch} builds {' or '.join(ok)}")


# the metrics each kind of run computes during training (eval_every): its eval_metric is one
VECTOR_METRICS = ("precision", "recall", "density", "coverage", "modes", "high_quality",
                  "reverse_kl")
IMAGE_METRICS = ("fid", "kid", "is", "precision", "recall", "density", "coverage", "class_kl",
                 "reverse_kl", "classes_covered", "cond_acc")
PAIRED_METRICS = {"pix2pix": ("l1", "psnr", "ssim"), "cyclegan": ("cycle",),
                  "srgan": ("l1", "psnr", "ssim", "psnr_y", "ssim_y")}


def check_eval_metric(cfg: Config) -> None:
    """``eval_metric`` must be one that this kind of run computes (checked before training,
    not at its first evaluation). The class metrics and the modes of vector data depend on
    the data: the evaluator checks those once it has them."""
    t = cfg.train
    if not (t.eval_every > 0 or t.warmup_patience > 0):
        return
    if t.recipe in PAIRED_METRICS:
        ok, kind = PAIRED_METRICS[t.recipe], f"recipe={t.recipe}"
    elif _vectors(cfg):
        ok, kind = VECTOR_METRICS, "vector data"
    else:
        ok, kind = IMAGE_METRICS, "images"
    if t.eval_metric not in ok:
        raise GanforgeError(f"eval_metric={t.eval_metric} is not computed for {kind}: use one "
                            f"of {', '.join(ok)}")


__all__ = ["COMMON_TRAIN", "IMAGE_METRICS", "NEEDS", "PAIRED_METRICS", "VECTOR_METRICS",
           "build_config", "check_conditioning", "check_config", "check_eval_metric",
           "check_names", "check_read", "model_options", "set_keys", "train_options"]
