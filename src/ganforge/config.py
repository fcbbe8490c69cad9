"""Typed, validated run configuration; presets; ``key=value`` overrides.

A config is three dataclasses (data, model, train) under one :class:`Config`. It is saved as
``config.json`` in every run and is enough to rebuild the nets. Presets are named dicts of
overrides applied on top of the defaults, in one registry (:data:`PRESETS`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import GanforgeError


def opt(default: Any, help: str) -> Any:
    """A config field with its help text (shown by ``ganforge train --dry-run``)."""
    return field(default=default, metadata={"help": help})


@dataclass
class DataConfig:
    source: str = opt("digits", "--data SPEC: a folder, a .zip, digits, mnist, cifar10, ...")
    resolution: int | str = opt(32,
                                "image size after `fit`: a side in pixels (32, 64 or 128: a "
                                "square) or HxW, height x width, both powers of two (64x128: "
                                "landscape 1:2; dcgan, resnet, stylegan2 and r3gan nets)")
    fit: str = opt("crop",
                   "how images meet that shape: crop (resize the shorter side, cut the centre), "
                   "pad (resize the longer side, pad with black) or stretch (resize to it, "
                   "ignoring the aspect ratio)")
    channels: int | None = opt(None, "1 or 3; None = take it from the data")
    task: str = opt("none",
                    "image-to-image data (pix2pix, cyclegan, srgan presets), how its pairs are "
                    "made: aligned, folders, unpaired, edges2image, gray2color, lowres2highres "
                    "or invert (see ganforge.data.pairs); none = noise-to-image GANs")
    direction: str = opt("AtoB", "translate A to B (AtoB) or B to A (BtoA)")
    scale: int = opt(4, "super-resolution factor of lowres2highres (2, 4 or 8)")
    test_fraction: float = opt(0.1, "held-out share of derived pairs (folders with test/ use it)")
    xflip: bool = opt(False,
                      "mirroring (stylegan2-ada's --mirror): the set is doubled with left-right "
                      "flipped copies, flipped as batches are drawn (no extra memory); an epoch "
                      "is then 2N images, so --epochs counts passes over the doubled set; image "
                      "pairs flip both sides together; FID references stay on the real images")
    image_column: str = opt("", "--data hf:...: the column of images (default: the first "
                                "Image column, else one of encoded image bytes)")
    label_column: str = opt("", "--data hf:...: the column of class labels (default: the first "
                                "ClassLabel column, if any; none = train unlabelled)")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the images, from :attr:`resolution`."""
        return image_size(self.resolution)


@dataclass
class ModelConfig:
    arch: str = opt("dcgan", "network family, a key of ganforge.nets.NETS (img2img: the recipe)")
    latent_dim: int = opt(100, "size of the noise vector z")
    g_channel_base: int = opt(2048, "G width at resolution r is min(g_channel_max, base // r)")
    g_channel_max: int = opt(512, "widest G layer")
    d_channel_base: int = opt(2048, "D width at resolution r is min(d_channel_max, base // r)")
    d_channel_max: int = opt(512, "widest D layer")
    g_cond: str = opt("none",
                      "G conditioning: none, concat (label embedding joins z), cbn (class BN)")
    d_cond: str = opt("none", "D conditioning: none, concat, aux (AC-GAN head) or projection")
    spectral_norm: str = opt("none", "spectral normalisation of weights: none, d, g or both")
    norm_d: bool = opt(True,
                       "BatchNorm in the DCGAN discriminator (off for WGAN-GP, per its paper)")
    mbstd: int = opt(0, "minibatch-stddev group size in D (0 = off; Karras et al. 2018)")
    pack: int = opt(1, "PacGAN: D judges this many samples at once (1 = off; Lin et al. 2018)")
    hidden: int = opt(256, "MLP nets: width of the hidden layers")
    layers: int = opt(3, "MLP nets: hidden layers in G and in D")
    latent_mixture: int = opt(0, "MLP G: latent prior of K narrow Gaussian blobs (0 = N(0, I))")
    latent_mixture_std: float = opt(0.1, "MLP G: std of each blob of the mixture prior")
    g_base: int = opt(64, "image-to-image G width (U-Net / ResNet G / SRResNet features)")
    d_base: int = opt(64, "image-to-image D width (PatchGAN / SRGAN D)")
    n_blocks: int = opt(9, "residual blocks of the CycleGAN ResNet G (6 or 9) or of SRResNet (16)")
    unet_depth: int = opt(0,
                          "U-Net downsamplings (0 = log2(resolution): down to 1x1; for a crop side "
                          "that is not a power of two, the most that divide it)")
    g_output: str = opt("auto",
                        "pix2pix U-Net output: rgb (the paper's) or chroma (gray2color: predicts "
                        "Cb, Cr and keeps the input as the luma; an untrained net returns the gray "
                        "input); auto = chroma for gray2color, else rgb")
    dropout: float = opt(0.5, "U-Net decoder dropout, pix2pix's noise source (0 = off)")
    d_layers: int = opt(3, "PatchGAN stride-2 layers (3 = the 70x70 PatchGAN)")
    norm: str = opt("batch",
                    "image-to-image nets: batch or instance normalisation (srgan: or none)")
    sr_skip: str = opt("bicubic",
                       "srgan: global skip of SRResNet: bicubic (it learns the detail bicubic "
                       "upsampling misses; an untrained net equals bicubic) or none (the paper's "
                       "net, ending in a Tanh)")
    sr_upsample: str = opt("pixelshuffle",
                           "srgan: how SRResNet doubles its resolution: pixelshuffle (the paper: "
                           "sub-pixel conv, ICNR init) or nearest (nearest-neighbour resize then "
                           "conv, as ESRGAN: far less prone to period-2 patterns; Odena et al. "
                           "2016)")
    mapping_layers: int = opt(8, "StyleGAN2: layers of the mapping network z -> w")
    attention: int = opt(0, "BigGAN: self-attention block at this resolution in G and D (0 = off)")
    shared_dim: int = opt(128, "BigGAN: size of the shared class embedding fed to G's blocks")
    blocks: int = opt(2, "R3GAN: residual blocks per resolution stage, in G and in D")
    group_channels: int = opt(16, "R3GAN: channels per group of the grouped 3x3 convolutions")
    expansion: int = opt(2, "R3GAN: bottleneck width = expansion x the stage width")
    # these four are filled in from the data when a run starts, and kept so a run rebuilds
    # without its data
    num_classes: int = opt(0, "classes seen by conditional nets (0 = unconditional)")
    resolution: int | str = opt(0, "image side the nets are built for, or HxW (height x "
                                "width) for non-square images (0 for vector data)")
    channels: int = opt(0, "image channels the nets are built for, or the vector size")
    in_channels: int = opt(0, "image-to-image: channels of the source images")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the images the nets are built for ((0, 0) for vector data)."""
        return image_size(self.resolution)


@dataclass
class TrainConfig:
    recipe: str = opt("gan", "training scheme, a key of ganforge.recipes.RECIPES")
    loss: str = opt("nonsaturating", "nonsaturating, minimax, wasserstein, hinge or lsgan")
    batch_size: int = opt(64, "images per step")
    batch_gpu: int = opt(0, "micro-batch per device: gradients accumulated over batch / batch_gpu")
    lr_g: float = opt(2e-4, "generator Adam learning rate")
    lr_d: float = opt(2e-4, "discriminator Adam learning rate")
    beta1: float = opt(0.5, "Adam beta1 (both nets)")
    beta2: float = opt(0.999, "Adam beta2 (both nets)")
    optimizer: str = opt("adam", "adam or rmsprop (the original WGAN)")
    lr_decay: str = opt("none", "none, linear or cosine: constant, then down to lr_end at the end")
    lr_decay_start: float = opt(0.5, "the decay starts at this fraction of the run (its progress)")
    lr_end: float = opt(0.0, "learning rate at the end of the decay, as a fraction of lr_g / lr_d")
    beta2_end: float | None = opt(None, "Adam beta2 at the end of the run (cosine from beta2)")
    n_critic: int = opt(1, "D steps (each on a fresh batch) per G step")
    clip: float = opt(0.0, "WGAN weight clipping of D to [-clip, clip] after each D step (0 = off)")
    gp: float = opt(0.0, "WGAN-GP gradient penalty weight lambda (0 = off)")
    r1: float = opt(0.0, "R1 penalty gamma on real data (0 = off; Mescheder et al. 2018)")
    r2: float = opt(0.0, "R2 penalty gamma on generated data (0 = off; R3GAN uses r1 = r2)")
    r1_every: int = opt(16, "lazy R1 / R2: apply every k steps, scaled by k (1 = in the D step)")
    gamma_end: float = opt(1.0,
                           "r1 and r2 at the end of the run, as a fraction (cosine; 1 = fixed)")
    lecam: float = opt(0.0, "LeCam regularisation weight of D (0 = off; Tseng et al. 2021)")
    ema: float = opt(0.0, "generator EMA decay used for sampling and evaluation (0 = off)")
    ema_end: float | None = opt(None, "EMA decay at the end of the run (cosine from ema)")
    ema_warmup: float = opt(10.0,
                            "the EMA decay is at most (1 + k) / (ema_warmup + k) after k updates: "
                            "until `ema` takes over, the average spans about the last 1 / "
                            "(ema_warmup - 1) of the run (10: a ninth)")
    diffaug: str = opt("", "DiffAugment policy applied to real and fake: color,translation,cutout")
    aux_weight: float = opt(1.0, "AC-GAN: weight of the auxiliary classification loss")
    ada_target: float = opt(0.0,
                            "ADA: target of E[sign D(real)] that tunes p (0 = off; 0.6 typical)")
    ada_p: float = opt(0.0, "ADA: starting augmentation probability (fixed when ada_target = 0)")
    ada_interval: int = opt(4, "ADA: D steps between adjustments of p")
    ada_kimg: float = opt(500.0, "ADA: thousand images for p to go from 0 to 1 at full speed")
    ada_pipeline: str = opt("bgc", "ADA ops: b (flips, rot90, shifts), g (geometric), c (colour)")
    style_mixing: float = opt(0.0, "StyleGAN2: probability of mixing two latents in a batch")
    pl_weight: float = opt(0.0, "StyleGAN2 path-length regularisation weight (0 = off; 2 typical)")
    pl_every: int = opt(4, "lazy path-length regularisation: every k steps, scaled by k")
    pl_decay: float = opt(0.01, "path-length: decay of the running mean length")
    pl_batch_shrink: int = opt(2, "path-length: batch divided by this for the penalty")
    ortho: float = opt(0.0, "BigGAN orthogonal regularisation of G's weights (0 = off; 1e-4)")
    topk: float = opt(0.0,
                      "top-k G updates: min fraction of fakes, best by D, in G's loss (0 = off)")
    topk_decay: float = opt(0.99, "top-k: kept fraction = max(topk, topk_decay ** epoch)")
    on_divergence: str = opt("stop", "on NaN/inf: stop, or rollback (last good checkpoint, lr / 2)")
    health_every: int = opt(0, "steps between collapse / D-overpowering checks (0 = log_every)")
    max_steps: int | None = opt(500, "stop after this many steps (None = no step limit)")
    epochs: float | None = opt(None, "stop after this many passes over the data (None = no limit)")
    max_time: str | None = opt(None, "stop after this much training time in all (90s, 10m, 1h30m)")
    seed: int = opt(0, "seed of weights, noise and data order")
    device: str = opt("auto", "auto, cpu, cuda, cuda:N or mps")
    precision: str = opt("fp32", "fp32, bf16, fp16 (autocast; fp16 with loss scaling) or auto")
    channels_last: bool = opt(False, "NHWC memory layout for conv nets (faster on many devices)")
    compile: bool = opt(False, "torch.compile the nets (falls back with a warning if it fails)")
    sync_bn: bool = opt(False, "multi-process runs: BatchNorm statistics over all ranks")
    dist_timeout: str = opt("10m", "multi-process runs: how long a process waits for the others "
                            "(a dead or hung one) before the run stops (90s, 10m, 1h)")
    log_every: int = opt(50, "steps between metric lines in metrics.jsonl / TensorBoard")
    sample_every: int = opt(100, "steps between sample grids (0 = only at the end)")
    checkpoint_every: int = opt(250, "steps between checkpoints (0 = only at the end)")
    keep_last: int = opt(3, "checkpoints kept on disk (oldest deleted first)")
    keep_samples: int = opt(64, "sample grids kept in RUN/samples: past that, every second "
                            "older one goes, so they span the whole run evenly (0 = keep all)")
    l1_weight: float = opt(100.0, "pix2pix: weight of the L1 loss to the target (lambda)")
    cycle_weight: float = opt(10.0, "cyclegan: cycle-consistency weight (lambda)")
    identity_weight: float = opt(0.5, "cyclegan: identity loss weight, times cycle_weight")
    pool_size: int = opt(50, "cyclegan: history of generated images shown to D (0 = off)")
    adv_weight: float = opt(1e-3, "srgan: adversarial weight beside the content loss")
    content: str = opt("vgg", "srgan content loss: vgg (VGG19 features, needs weights) or pixel")
    pixel_loss: str = opt("mse", "srgan: loss of the SRResNet phase (and content=pixel): mse or l1")
    warmup_steps: int = opt(0, "srgan: SRResNet steps (pixel MSE only) before the GAN phase")
    warmup: float = opt(0.0, "srgan: the same as a share of the run (steps, epochs or max_time)")
    warmup_patience: int = opt(0,
                               "srgan: end the SRResNet phase sooner, once eval_metric has not "
                               "improved for this many evaluations in a row (needs eval_every; 0 = "
                               "the phase lasts its warmup/warmup_steps)")
    crop: int = opt(0, "srgan: random high-resolution crop side per sample (0 = whole image)")
    degrade: str = opt("none",
                       "srgan: how the low-resolution side is made: none (the clean antialiased "
                       "bicubic downsample the SR papers use) or realesrgan (Real-ESRGAN's random "
                       "second-order blur, resize, noise and JPEG, for camera and web photos; "
                       "ganforge.data.degrade)")
    eval_every: int = opt(0, "steps between metric evaluations during training (0 = off)")
    eval_metric: str = opt("fid", "the metric that picks the kept best checkpoint")
    eval_n: int = opt(2000, "samples per evaluation during training")
    eval_features: str = opt("auto", "inception, digits, a classifier file, or auto")
    init: str | None = opt(None, "fine-tune: start the nets from this run folder's latest "
                           "checkpoint (or a NET.safetensors file) instead of random weights")
    init_sha256: str = opt("", "content hash of the init weights (filled in at the start)")
    freeze_d: int = opt(0, "FreezeD (Mo et al. 2020) when fine-tuning: D's K blocks nearest the "
                        "input (highest resolution first) keep the init weights")
    freeze_mapping: bool = opt(False, "StyleGAN2 fine-tuning: G's mapping network keeps the "
                               "init weights")


_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_resolution(value: Any, key: str = "resolution") -> int | str:
    """A resolution as the config keeps it: an int side for a square (``64``, ``"64"``,
    ``"64x64"``), ``"HxW"`` for other shapes (``"64x128"``: 64 rows, 128 columns); a
    ``(H, W)`` pair is accepted too. Anything else is a one-line error."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        value = f"{value[0]}x{value[1]}"
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    m = _SIZE_RE.match(text)
    if m:
        h, w = int(m.group(1)), int(m.group(2))
        return h if h == w else f"{h}x{w}"
    if re.fullmatch(r"\d+(\.0*)?", text):
        return int(float(text))
    raise GanforgeError(f"bad value for {key}: {value!r}: write a side (64) or HEIGHTxWIDTH "
                        "(64x128)")


def image_size(resolution: int | str | tuple[int, int]) -> tuple[int, int]:
    """(height, width) of a resolution: ``64`` -> (64, 64), ``"64x128"`` -> (64, 128)."""
    r = parse_resolution(resolution)
    if isinstance(r, int):
        return r, r
    h, w = r.split("x")
    return int(h), int(w)


def size_text(height: int, width: int) -> int | str:
    """The config's form of (height, width): the side when square, else ``"HxW"``."""
    return parse_resolution((int(height), int(width)))


# config.json's format: 2 = stylegan2 reads mbstd=0 as no minibatch-std (version 1 built it
# with a group of 4), g_cond names the one conditioning each of stylegan2 / biggan builds
CONFIG_VERSION = 2


def _upgrade(cfg: Config, version: object) -> None:
    """A config saved by an older version, made to rebuild the same nets."""
    m = cfg.model
    if not isinstance(version, int) or version < 1 or version > CONFIG_VERSION:
        raise GanforgeError(f"config.json: unknown version {version!r} (this ganforge writes "
                            f"{CONFIG_VERSION}): upgrade ganforge to use this run")
    if version < 2 and m.arch == "stylegan2" and m.mbstd == 0:
        m.mbstd = 4  # version 1 ignored mbstd=0: its D had minibatch-std, group 4
    if m.arch == "stylegan2" and m.g_cond == "cbn":
        m.g_cond = "concat"  # version 1 accepted both for the one conditional mapping net
    if m.arch == "biggan" and m.g_cond == "concat":
        m.g_cond = "cbn"  # version 1 accepted both for the one shared-embedding + cBN G


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = "dcgan"  # the preset this config started from

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "version": CONFIG_VERSION}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | Path) -> None:
        from .utils import atomic_write_text

        atomic_write_text(Path(path), self.to_json() + "\n")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        cfg = cls()
        for key, value in d.items():
            if key == "preset":
                cfg.preset = str(value)
                continue
            if key in ("version", "ganforge"):  # ganforge: a Hub folder's block (ganforge.hub)
                continue
            section = getattr(cfg, key, None)
            if not dataclasses.is_dataclass(section) or not isinstance(value, dict):
                raise GanforgeError(f"config.json: unknown section '{key}'")
            for k, v in value.items():
                _set(cfg, f"{key}.{k}", v, from_text=False, derived_ok=True)
        model = d.get("model")
        if isinstance(model, dict) and model.get("arch") == "srgan" and "sr_skip" not in model:
            cfg.model.sr_skip = "none"  # a run saved before the key: the paper's SRResNet
        if isinstance(model, dict) and model.get("arch") == "pix2pix" \
                and "g_output" not in model:
            cfg.model.g_output = "rgb"  # a run saved before the key: the paper's U-Net
        _upgrade(cfg, d.get("version", 1))
        validate(cfg)
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> Config:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise GanforgeError(f"{path} not found: is this a ganforge run folder?") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise GanforgeError(f"{path} is not valid JSON ({e}); restore or delete it") from None
        return cls.from_dict(d)


# ---------------------------------------------------------------------------------------------
# presets: name -> (one-line description, overrides). Applied on top of the defaults.

_WGAN_GP = {"loss": "wasserstein", "gp": 10.0, "optimizer": "adam", "lr_g": 1e-4,
            "lr_d": 1e-4, "beta1": 0.0, "beta2": 0.9, "n_critic": 5, "norm_d": False}

# R3GAN's recipe (the paper's CIFAR-10 schedules, all cosine over the run): the relativistic
# loss with R1 = R2 = gamma in the D step, gamma 0.05 -> 0.005, lr 2e-4 -> 5e-5, beta2 0.9 -> 0.99
_R3GAN = {"arch": "r3gan", "latent_dim": 64, "group_channels": 16, "expansion": 2,
          "loss": "rpgan", "r1": 0.05, "r2": 0.05, "r1_every": 1, "gamma_end": 0.1,
          "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.0, "beta2": 0.9, "beta2_end": 0.99,
          "lr_decay": "cosine", "lr_decay_start": 0.0, "lr_end": 0.25}

PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "dcgan": (
        "DCGAN (Radford et al. 2015): conv G/D, BatchNorm, non-saturating loss, Adam 2e-4 "
        "(0.5); the seed's recipe: on small sets it gets worse as it trains on (digits: "
        "classifier FID 30 after 2 min, 125 and 5/10 classes after 10): prefer the default",
        {},
    ),
    "gan": (
        "the original GAN objective (Goodfellow et al. 2014): G minimises log(1 - D(G(z))), "
        "DCGAN nets; collapses on small sets and stays collapsed (digits: 2/10 classes from "
        "2 to 10 min)",
        {"loss": "minimax"},
    ),
    "wgan": (
        "WGAN (Arjovsky et al. 2017): Wasserstein loss, weight clipping 0.01, RMSprop 5e-5, "
        "5 critic steps",
        {"loss": "wasserstein", "clip": 0.01, "optimizer": "rmsprop", "lr_g": 5e-5,
         "lr_d": 5e-5, "n_critic": 5},
    ),
    "wgan-gp": (
        "WGAN-GP (Gulrajani et al. 2017): two-sided gradient penalty 10, Adam 1e-4 (0, 0.9), "
        "5 critic steps, no BatchNorm in D",
        dict(_WGAN_GP),
    ),
    "lsgan": (
        "LSGAN (Mao et al. 2017): least-squares loss, DCGAN nets; unstable on small sets "
        "(digits: FID 186 at 2 min, 662 at 5, 48 at 10)",
        {"loss": "lsgan"},
    ),
    "hinge": (
        "hinge loss (Lim & Ye 2017) with spectral norm in D, DCGAN nets, Adam 2e-4 (0.5); "
        "on small sets it collapses as it trains on (digits: classifier FID 38 after 2 min, "
        "291 and 3/10 classes after 10): prefer the default",
        {"loss": "hinge", "spectral_norm": "d"},
    ),
    "sngan": (
        "SNGAN (Miyato et al. 2018): ResNet G/D, spectral norm in D, hinge loss, Adam 2e-4 "
        "(0, 0.9), 5 D steps",
        {"arch": "resnet", "spectral_norm": "d", "loss": "hinge", "beta1": 0.0, "beta2": 0.9,
         "n_critic": 5, "g_channel_base": 8192, "g_channel_max": 256,
         "d_channel_base": 4096, "d_channel_max": 128},
    ),
    "cgan": (
        "conditional GAN (Mirza & Osindero 2014): label embeddings into G and D, DCGAN nets",
        {"g_cond": "concat", "d_cond": "concat"},
    ),
    "acgan": (
        "AC-GAN (Odena et al. 2017): label embedding into G, auxiliary classifier in D; on "
        "small sets it loses classes as it trains on (digits: classifier FID 29 after 2 min, "
        "108 and 6/10 classes after 10): prefer the default",
        {"g_cond": "concat", "d_cond": "aux"},
    ),
    "projection": (
        "projection D (Miyato & Koyama 2018) + class-conditional BatchNorm in G, ResNet nets, "
        "spectral norm, hinge; paper widths: 63 steps in 10 min on a 2-core CPU, worse at 10 "
        "than at 5 min there (digits FID 54 -> 67)",
        {"arch": "resnet", "g_cond": "cbn", "d_cond": "projection", "spectral_norm": "d",
         "loss": "hinge", "beta1": 0.0, "beta2": 0.9, "n_critic": 2, "g_channel_base": 8192,
         "g_channel_max": 256, "d_channel_base": 4096, "d_channel_max": 128},
    ),
    "small-data": (
        "recommended for small image sets (hundreds to a few thousand): DCGAN + DiffAugment, "
        "spectral norm in D, generator EMA",
        {"diffaug": "color,translation,cutout", "spectral_norm": "d", "ema": 0.999},
    ),
    "small-data-cond": (
        "the default for labelled image sets (class folders, digits): small-data + class "
        "conditioning (label embedding into G, projection D), LeCam 0.3, constant lr, an EMA "
        "over the last third of the run; digits, 3 seeds: classifier FID 10.1 after 5 min, "
        "2.6 after 10, 1.8 after 20 (each seed better at 20 than at 10)",
        {"diffaug": "color,translation,cutout", "spectral_norm": "d", "ema": 0.999,
         "ema_warmup": 4.0, "g_cond": "concat", "d_cond": "projection", "lecam": 0.3},
    ),
    "toy": (
        "the best recipe for 2-D/vector data (ring8, grid25, CSV): MLPs, R1 1, generator EMA "
        "0.99, 24k steps with lr linearly to 0 over the last two thirds",
        {"arch": "mlp", "source": "ring8", "latent_dim": 16, "hidden": 256, "layers": 3,
         "pack": 1, "batch_size": 256, "r1": 1.0, "r1_every": 4, "ema": 0.99, "lr_g": 1e-3,
         "lr_d": 1e-3, "beta1": 0.5, "beta2": 0.999, "lr_decay": "linear",
         "lr_decay_start": 0.33, "max_steps": 24000, "sample_every": 2000,
         "eval_metric": "coverage",
         "checkpoint_every": 4000, "log_every": 200},
    ),
    "stylegan2": (
        "StyleGAN2 (Karras et al. 2020) at 256x256 as in its paper: 8-layer mapping net, "
        "style mixing 0.9, lazy R1 1 and path length 2, EMA, ADA for small datasets",
        {"arch": "stylegan2", "resolution": 256, "latent_dim": 512, "mapping_layers": 8,
         "g_channel_base": 16384, "g_channel_max": 512, "d_channel_base": 16384,
         "d_channel_max": 512, "r1": 1.0, "r1_every": 16, "pl_weight": 2.0, "pl_every": 4,
         "style_mixing": 0.9, "ema": 0.998, "ada_target": 0.6, "lr_g": 2.5e-3,
         "lr_d": 2.5e-3, "beta1": 0.0, "beta2": 0.99, "batch_size": 32, "mbstd": 4,
         "max_steps": 100_000, "sample_every": 1000, "checkpoint_every": 2000},
    ),
    "stylegan2-small": (
        "StyleGAN2 nets small enough for a CPU at 32x32 (its CIFAR setup: 2-layer mapping, "
        "no path length), style mixing 0.9, lazy R1, EMA, ADA",
        {"arch": "stylegan2", "latent_dim": 128, "mapping_layers": 2,
         "g_channel_base": 1024, "g_channel_max": 256, "d_channel_base": 1024,
         "d_channel_max": 256, "mbstd": 4, "r1": 1.0, "r1_every": 16, "style_mixing": 0.9,
         "ema": 0.999, "ada_target": 0.6, "ada_kimg": 100.0, "lr_g": 2.5e-3,
         "lr_d": 2.5e-3, "beta1": 0.0, "beta2": 0.99, "batch_size": 32},
    ),
    "biggan": (
        "BigGAN (Brock et al. 2019) at 128x128: class-conditional, hierarchical z, shared "
        "embedding + conditional BN, self-attention at 64, spectral norm in G and D, hinge, "
        "orthogonal reg, EMA",
        {"arch": "biggan", "resolution": 128, "latent_dim": 120, "shared_dim": 128,
         "attention": 64, "g_cond": "cbn", "d_cond": "projection", "spectral_norm": "both",
         "loss": "hinge", "ortho": 1e-4, "ema": 0.9999, "lr_g": 1e-4, "lr_d": 4e-4,
         "beta1": 0.0, "beta2": 0.999, "n_critic": 2, "batch_size": 256,
         "g_channel_base": 12288, "g_channel_max": 1536, "d_channel_base": 12288,
         "d_channel_max": 1536, "max_steps": 100_000, "sample_every": 1000,
         "checkpoint_every": 2000},
    ),
    "biggan-small": (
        "BigGAN nets small enough for a CPU at 32x32: class-conditional, hierarchical z, "
        "shared embedding, attention at 16, spectral norm in G and D, hinge, orthogonal reg",
        {"arch": "biggan", "latent_dim": 64, "shared_dim": 32, "attention": 16,
         "g_cond": "cbn", "d_cond": "projection", "spectral_norm": "both", "loss": "hinge",
         "ortho": 1e-4, "ema": 0.999, "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.0,
         "beta2": 0.999, "n_critic": 2, "batch_size": 32, "g_channel_base": 1024,
         "g_channel_max": 256, "d_channel_base": 512, "d_channel_max": 256},
    ),
    "r3gan": (
        "R3GAN (Huang et al. 2024) as its CIFAR-10 setup: modern ResNet G/D (768 wide, 2 "
        "bottleneck blocks a stage, groups of 16), relativistic loss + R1 + R2, cosine "
        "schedules of lr 2e-4 -> 5e-5, gamma 0.05 -> 0.005, beta2 0.9 -> 0.99 and EMA over 20M "
        "images, ADA",
        {**_R3GAN, "g_channel_base": 24576, "g_channel_max": 768, "d_channel_base": 24576,
         "d_channel_max": 768, "blocks": 2, "ema": 0.9, "ema_end": 0.99993,
         "ada_target": 0.6, "batch_size": 512, "max_steps": 39063, "sample_every": 1000,
         "checkpoint_every": 2000},
    ),
    "r3gan-small": (
        "R3GAN nets small enough for a CPU at 32x32 (64 wide, 1 block a stage), relativistic "
        "loss + R1 + R2, the paper's cosine schedules over the run (or --max-time), "
        "DiffAugment",
        {**_R3GAN, "g_channel_base": 2048, "g_channel_max": 64, "d_channel_base": 2048,
         "d_channel_max": 64, "blocks": 1, "ema": 0.99, "ema_end": 0.999,
         "diffaug": "color,translation,cutout", "batch_size": 32, "max_steps": 2000},
    ),
    "pix2pix": (
        "Pix2Pix (Isola et al. 2017): U-Net G, 70x70 PatchGAN D on (input, output) pairs, "
        "cGAN + 100 L1; default data: digits edges -> digits",
        {"recipe": "pix2pix", "arch": "pix2pix", "task": "edges2image", "batch_size": 16,
         "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "g_base": 32, "d_base": 32,
         "eval_metric": "l1", "sample_every": 100},
    ),
    "cyclegan": (
        "CycleGAN (Zhu et al. 2017): ResNet generators, PatchGAN Ds, LSGAN loss, cycle 10, "
        "identity 0.5, pool of 50; default data: digits <-> inverted digits",
        {"recipe": "cyclegan", "arch": "cyclegan", "task": "invert", "loss": "lsgan",
         "norm": "instance", "n_blocks": 6, "g_base": 16, "d_base": 16, "batch_size": 8,
         "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "lr_decay": "linear",
         "lr_decay_start": 0.5, "eval_metric": "cycle", "sample_every": 100},
    ),
    "srgan": (
        "SRGAN (Ledig et al. 2017): SRResNet G (x4), SRGAN D, VGG content loss (pixel when "
        "the weights are missing), adversarial 1e-3, SRResNet warm-up; default: digits 8->32; "
        "paper-sized: on a CPU prefer srgan-small (10 min on photos: +0.13 dB against +1.6)",
        {"recipe": "srgan", "arch": "srgan", "task": "lowres2highres", "scale": 4,
         "n_blocks": 16, "g_base": 64, "d_base": 32, "batch_size": 16, "lr_g": 1e-4,
         "lr_d": 1e-4, "beta1": 0.9, "warmup": 0.5, "eval_metric": "psnr",
         "sample_every": 100},
    ),
    "srgan-small": (
        "SRGAN sized for a CPU (measured on photos: benchmarks/sr_photos.py): SRResNet with 8 "
        "blocks of 32 channels and no BatchNorm (EDSR), batches of 32 crops of 48 px (whole "
        "images on the built-in sets), L1 pixel phase for half the run, generator EMA, then "
        "the SRGAN phase as `srgan`",
        {"recipe": "srgan", "arch": "srgan", "task": "lowres2highres", "scale": 4,
         "n_blocks": 8, "g_base": 32, "d_base": 32, "norm": "none", "pixel_loss": "l1",
         "batch_size": 32, "crop": 48, "lr_g": 2e-4, "lr_d": 1e-4, "beta1": 0.9,
         "ema": 0.999, "warmup": 0.5, "eval_metric": "psnr_y", "sample_every": 100},
    ),
}


def preset_names() -> list[str]:
    return sorted(PRESETS)


# ---------------------------------------------------------------------------------------------
# overrides


STOP_KEYS = {"train.max_steps", "train.epochs", "train.max_time"}

# what may change when a run is resumed: stop rules, logging, the device, speed switches
RESUMABLE = {"max_steps", "epochs", "max_time", "device", "log_every", "sample_every",
             "eval_every", "checkpoint_every", "keep_last", "keep_samples", "on_divergence",
             "health_every", "precision", "channels_last", "compile", "sync_bn", "dist_timeout"}


def resume_changes(saved: Config, cfg: Config) -> list[str]:
    """Keys (section.name) of ``cfg`` that differ from the run's ``saved`` config and may not
    change when it is resumed (not in :data:`RESUMABLE`; what a run fills in from its data is
    compared only where ``cfg`` sets it)."""
    changed = []
    for sec in ("data", "model", "train"):
        a, b = getattr(saved, sec), getattr(cfg, sec)
        for f in fields(a):
            key, mine = f"{sec}.{f.name}", getattr(b, f.name)
            if (f.name not in RESUMABLE and key not in DERIVED and getattr(a, f.name) != mine
                    and not (key in FILLED_AT_START and mine == FILLED_AT_START[key])):
                changed.append(key)
    return changed


# keys a run fills in at its start when they hold these values (the channels of the images,
# the crop side picked from the photos, the micro-batch that fits in the device's memory)
FILLED_AT_START = {"data.channels": None, "train.crop": 0, "train.batch_gpu": 0,
                   "train.init_sha256": ""}


# filled in from the data at run start; readable in config.json, not settable by users
DERIVED = {"model.resolution", "model.channels", "model.num_classes", "model.in_channels"}


def _all_keys(cfg: Config) -> list[str]:
    keys = []
    for sec in ("data", "model", "train"):
        keys += [f"{sec}.{f.name}" for f in fields(getattr(cfg, sec))]
    return keys


def resolve_key(cfg: Config, key: str) -> str:
    """Map ``lr_g`` or ``train.lr_g`` to its full dotted name; unknown keys are an error."""
    keys = _all_keys(cfg)
    if key in keys:
        return key
    short = [k for k in keys if k.split(".", 1)[1] == key and k not in DERIVED]
    if len(short) == 1:
        return short[0]
    if len(short) > 1:
        raise GanforgeError(f"config key '{key}' is ambiguous: write one of {', '.join(short)}")
    names = keys + [k.split(".", 1)[1] for k in keys]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise GanforgeError(
        f"unknown config key '{key}'{hint}; `ganforge train --dry-run` lists every key"
    )


_NONE = {"none", "null", ""}


def _coerce(value: Any, tp: Any, key: str, from_text: bool) -> Any:
    """Convert ``value`` to the annotated type ``tp`` (int, float, str, bool, X | None)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (from_text and str(value).strip().lower() in _NONE):
            return None
        return _coerce(value, args[0], key, from_text)
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            f = float(value) if isinstance(value, str) else value
            if isinstance(f, float) and not f.is_integer():
                raise ValueError
            return int(f)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError):
        pass
    name = getattr(tp, "__name__", str(tp))
    raise GanforgeError(f"bad value for {key}: {value!r} is not {'an' if name == 'int' else 'a'} "
                        f"{name}")


def _set(cfg: Config, key: str, value: Any, from_text: bool, derived_ok: bool = False) -> None:
    key = resolve_key(cfg, key)
    if key in DERIVED and not derived_ok:
        raise GanforgeError(f"{key} is set from the data: set data.{key.split('.')[1]} instead")
    sec_name, name = key.split(".", 1)
    section = getattr(cfg, sec_name)
    hints = typing.get_type_hints(type(section))
    if name == "resolution":  # a side (int) or "HxW" (str)
        value = parse_resolution(value, key)
    else:
        value = _coerce(value, hints[name], key, from_text)
    if key == "train.diffaug" and str(value).strip().lower() in ("none", "off", "false", "0"):
        value = ""  # diffaug=none: no DiffAugment (the empty policy)
    setattr(section, name, value)


def apply_overrides(cfg: Config, overrides: dict[str, Any] | list[str], from_text: bool = True
                    ) -> Config:
    """Apply ``{"lr_g": "1e-4"}`` or ``["lr_g=1e-4", ...]`` in place; returns ``cfg``."""
    for k, v in as_dict(overrides).items():
        _set(cfg, k, v, from_text=from_text)
    return cfg


def as_dict(overrides: dict[str, Any] | list[str]) -> dict[str, Any]:
    if not isinstance(overrides, list):
        return dict(overrides)
    pairs = {}
    for item in overrides:
        if "=" not in item:
            raise GanforgeError(
                f"unexpected argument '{item}': config overrides are written key=value")
        k, v = item.split("=", 1)
        pairs[k.strip()] = v.strip()
    return pairs


def preset_config(preset: str = "dcgan", overrides: dict[str, Any] | list[str] | None = None
                  ) -> tuple[Config, set[str]]:
    """Defaults, then the preset, then the user's overrides, with their values checked; and
    the keys (section.name) the overrides set. :func:`ganforge.options.build_config` adds
    the checks that need the nets and recipes (names, keys the run does not read)."""
    if preset not in PRESETS:
        close = difflib.get_close_matches(preset, PRESETS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise GanforgeError(
            f"unknown preset '{preset}'{hint}; `ganforge presets` lists them: "
            + ", ".join(preset_names())
        )
    cfg = Config(preset=preset)
    apply_overrides(cfg, PRESETS[preset][1], from_text=False)
    if overrides:
        overrides = as_dict(overrides)
        # the default stop rule is replaced as a whole by any stop rule the user gives
        given = {resolve_key(cfg, k) for k in overrides} & STOP_KEYS
        if given:
            for key in STOP_KEYS - given:
                setattr(cfg.train, key.split(".")[1], None)
        apply_overrides(cfg, overrides)
    validate(cfg)
    return cfg, ({resolve_key(cfg, k) for k in overrides} if overrides else set())


# ---------------------------------------------------------------------------------------------
# validation

_TIME_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*"
                      r"(?:(\d+(?:\.\d+)?)\s*s?)?\s*$")


def parse_duration(text: str) -> float:
    """``"90s"``, ``"10m"``, ``"1h30m"``, ``"45"`` (seconds) -> seconds."""
    m = _TIME_RE.match(text or "")
    if not text or not m or not any(m.groups()):
        raise GanforgeError(f"bad duration {text!r}: write it like 90s, 10m or 1h30m")
    h, mnt, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mnt * 60 + s


# how image-to-image pairs are made (ganforge.data.pairs.TASKS)
IMG2IMG_TASKS = ("aligned", "folders", "unpaired", "edges2image", "gray2color",
                 "lowres2highres", "invert")


# train keys read by the noise-to-image recipe alone, with their "off" values
# families that go beyond 128x128: the resolutions they are built for
BIG_RES = {"stylegan2": (32, 1024), "biggan": (32, 512)}


# families whose nets build non-square images (resolution=HxW): a 4 x 4k base map, D ending
# on one; the others (biggan, mlp, the image-to-image nets) take a side only
NON_SQUARE = ("dcgan", "resnet", "stylegan2", "r3gan")
# how images meet the run's shape (ganforge.data.images)
FITS = ("crop", "pad", "stretch")


def _check_resolution(d: DataConfig, m: ModelConfig) -> None:
    """Each side of ``resolution`` is one the run's family builds; HxW only for the
    families that take it (:data:`NON_SQUARE`) and not for image-to-image data."""
    h, w = d.size
    text = f"resolution={d.resolution}"
    if h != w and d.task != "none":
        raise GanforgeError(f"{text}: image-to-image runs (task={d.task}) train on squares: "
                            f"use one side, e.g. resolution={min(h, w)}")
    if h != w and m.arch not in NON_SQUARE:
        raise GanforgeError(f"{text}: arch={m.arch} builds square images only; non-square HxW is "
                            f"built by arch={', '.join(NON_SQUARE)} (presets dcgan, wgan-gp, "
                            "sngan, projection, small-data, stylegan2, r3gan...): use one side, "
                            f"e.g. resolution={min(h, w)}")
    by = ""
    if d.task != "none":
        ok, what = (16, 32, 64, 128, 256, 512), "a power of two, 16 to 512"
    elif m.arch in BIG_RES:
        lo, hi = BIG_RES[m.arch]
        ok = tuple(2**i for i in range(5, 11) if lo <= 2**i <= hi)
        what, by = f"a power of two, {lo} to {hi}", f" by {m.arch}"
    else:
        ok, what = (32, 64, 128), "32, 64 or 128"
    if h not in ok or w not in ok:
        sides = (f" on each side (HxW, e.g. {ok[0]}x{2 * ok[0]}: an aspect ratio of 1:2, 1:4, "
                 "2:1...)" if h != w else "")
        raise GanforgeError(f"{text} is not supported{by}: use {what}{sides}")


# long: a flat list of independent one-line checks, one per rule, in the order of the
# dataclasses; splitting it would only scatter them
def validate(cfg: Config) -> None:
    d, m, t = cfg.data, cfg.model, cfg.train

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise GanforgeError(msg)

    _check_resolution(d, m)
    need(d.fit in FITS, f"fit={d.fit!r}: use {', '.join(FITS[:-1])} or {FITS[-1]}")
    need(d.fit == "crop" or d.task == "none",
         f"fit={d.fit}: not read by task={d.task} (image-to-image data is centre-cropped to "
         "squares): drop fit")
    need(d.fit == "crop" or m.arch != "mlp",
         f"fit={d.fit}: not read by arch=mlp (vector data has no image shape): drop fit")
    need(d.task == "none" or d.task in IMG2IMG_TASKS,
         f"task={d.task!r}: use none or one of {', '.join(IMG2IMG_TASKS)}")
    need(d.direction in ("AtoB", "BtoA"), f"direction={d.direction!r}: use AtoB or BtoA")
    need(d.scale in (2, 4, 8), f"scale={d.scale}: use 2, 4 or 8")
    need(d.scale == type(d)().scale or d.task == "lowres2highres",
         f"scale={d.scale}: not read by task={d.task} (the super-resolution factor of "
         "lowres2highres): drop it")
    need(0 <= d.test_fraction < 1, "test_fraction must be in [0, 1)")
    srgan = t.recipe == "srgan"
    need(m.norm in ("batch", "instance") or (srgan and m.norm == "none"),
         f"norm={m.norm!r}: use batch or instance" + (" or none" if srgan else ""))
    need(not srgan or m.norm != "instance", "norm=instance: SRResNet uses batch or none")
    need(m.sr_skip in ("bicubic", "none"), f"sr_skip={m.sr_skip!r}: use bicubic or none")
    need(m.sr_upsample in ("pixelshuffle", "nearest"),
         f"sr_upsample={m.sr_upsample!r}: use pixelshuffle or nearest")
    need(m.g_output in ("auto", "rgb", "chroma"),
         f"g_output={m.g_output!r}: use auto, rgb or chroma")
    need(m.g_output != "chroma" or d.task in ("gray2color", "folders", "aligned"),
         f"g_output=chroma colours gray images: not for task={d.task} (use gray2color)")
    need(t.pixel_loss in ("mse", "l1"), f"pixel_loss={t.pixel_loss!r}: use mse or l1")
    need(t.degrade in ("none", "realesrgan"), f"degrade={t.degrade!r}: use none or realesrgan")
    need(0 <= m.dropout < 1, "dropout must be in [0, 1)")
    need(m.g_base >= 1 and m.d_base >= 1 and m.n_blocks >= 0 and m.d_layers >= 1,
         "g_base, d_base, d_layers must be >= 1 and n_blocks >= 0")
    need(t.content in ("vgg", "pixel"), f"content={t.content!r}: use vgg or pixel")
    need(t.freeze_d >= 0, f"freeze_d={t.freeze_d}: the number of D blocks kept fixed, >= 0")
    need(min(t.l1_weight, t.cycle_weight, t.identity_weight, t.adv_weight) >= 0,
         "loss weights must be >= 0")
    need(t.pool_size >= 0 and t.warmup_steps >= 0 and t.crop >= 0,
         "pool_size, warmup_steps and crop must be >= 0")
    need(0 <= t.warmup < 1, f"warmup={t.warmup}: a share of the run, in [0, 1)")
    need(not (t.warmup and t.warmup_steps),
         f"warmup={t.warmup} and warmup_steps={t.warmup_steps} both set: the SRResNet phase is "
         "either a share of the run or a number of steps; set the other to 0")
    need(t.warmup_patience >= 0, "warmup_patience must be >= 0")
    need(not t.warmup_patience or (t.eval_every > 0 and (t.warmup or t.warmup_steps)),
         f"warmup_patience={t.warmup_patience} ends the SRResNet phase when held-out "
         f"{t.eval_metric} stops improving: set eval_every (steps between evaluations) and "
         "warmup or warmup_steps (its longest length)")
    need(m.g_cond in ("none", "concat", "cbn"), f"g_cond={m.g_cond!r}: use none, concat or cbn")
    need(m.d_cond in ("none", "concat", "aux", "projection"),
         f"d_cond={m.d_cond!r}: use none, concat, aux or projection")
    need(m.spectral_norm in ("none", "d", "g", "both"),
         f"spectral_norm={m.spectral_norm!r}: use none, d, g or both")
    need(m.mbstd >= 0, "mbstd must be >= 0")
    need(m.pack >= 1, "pack must be >= 1")
    need(m.pack == 1 or t.batch_size % m.pack == 0,
         f"batch_size={t.batch_size} must be a multiple of pack={m.pack}")
    need(m.pack == 1 or m.d_cond == "none", "pack > 1 works with unconditional D only")
    need(m.hidden >= 1 and m.layers >= 1, "hidden and layers must be >= 1")
    need(m.latent_mixture >= 0 and m.latent_mixture_std > 0,
         "latent_mixture must be >= 0 (0 = off) and latent_mixture_std > 0")
    need(t.optimizer in ("adam", "rmsprop"), f"optimizer={t.optimizer!r}: use adam or rmsprop")
    need(t.n_critic >= 1, "n_critic must be >= 1")
    need(t.lr_decay in ("none", "linear", "cosine"),
         f"lr_decay={t.lr_decay!r}: use none, linear or cosine")
    need(0 <= t.lr_decay_start < 1, "lr_decay_start must be in [0, 1)")
    need(0 <= t.lr_end <= 1, "lr_end must be in [0, 1] (a fraction of lr_g / lr_d)")
    need(t.lr_end == 0 or t.lr_decay != "none",
         "lr_end is the end of an lr decay: set lr_decay=linear or cosine (or drop lr_end)")
    need(t.beta2_end is None or 0 <= t.beta2_end < 1, "beta2_end must be in [0, 1)")
    need(t.beta2_end is None or t.optimizer == "adam",
         "beta2_end schedules Adam's beta2: use optimizer=adam (or drop beta2_end)")
    need(t.clip >= 0 and t.gp >= 0 and t.r1 >= 0 and t.r2 >= 0,
         "clip, gp, r1 and r2 must be >= 0")
    need(t.r1_every >= 1, "r1_every must be >= 1")
    need(0 <= t.gamma_end <= 1, "gamma_end must be in [0, 1] (a fraction of r1 / r2)")
    need(t.gamma_end == 1 or t.r1 > 0 or t.r2 > 0,
         "gamma_end schedules r1 / r2: set r1 or r2 (or drop gamma_end)")
    need(t.lecam >= 0, "lecam must be >= 0 (0 = off; 0.1 to 0.5 typical)")
    need(0 <= t.ema < 1, "ema must be in [0, 1) (0 = off, 0.999 is typical)")
    need(t.ema_end is None or (0 < t.ema_end < 1 and t.ema > 0),
         "ema_end needs ema > 0 and must be in (0, 1)")
    need(t.ema_warmup > 1, "ema_warmup must be > 1 (10 = the EMA spans the last ninth of "
         "the run, 4 = the last third, until `ema` caps it)")
    need(t.ema_warmup == 10 or t.ema > 0,
         "ema_warmup shapes the generator EMA: set ema (e.g. 0.999) or drop ema_warmup")
    need(t.batch_gpu >= 0, "batch_gpu must be >= 0 (0 = the whole batch at once)")
    need(t.batch_gpu == 0 or t.batch_size % t.batch_gpu == 0,
         f"batch_size={t.batch_size} must be a multiple of batch_gpu={t.batch_gpu}")
    need(t.aux_weight >= 0, "aux_weight must be >= 0")
    need(0 <= t.ada_target < 1, "ada_target must be in [0, 1) (0 = off, 0.6 typical)")
    need(0 <= t.ada_p <= 1, "ada_p must be in [0, 1]")
    need(t.ada_interval >= 1 and t.ada_kimg > 0, "ada_interval must be >= 1 and ada_kimg > 0")
    need(t.ada_pipeline != "" and set(t.ada_pipeline) <= set("bgc"),
         f"ada_pipeline={t.ada_pipeline!r}: use letters of bgc (b blit, g geometric, c colour)")
    need(0 <= t.style_mixing <= 1, "style_mixing must be in [0, 1]")
    need(t.pl_weight >= 0 and t.pl_every >= 1 and t.pl_batch_shrink >= 1
         and 0 < t.pl_decay <= 1,
         "pl_weight must be >= 0, pl_every and pl_batch_shrink >= 1, pl_decay in (0, 1]")
    need(t.ortho >= 0, "ortho must be >= 0")
    need(m.mapping_layers >= 1, "mapping_layers must be >= 1")
    need(m.blocks >= 1 and m.group_channels >= 1 and m.expansion >= 1,
         "blocks, group_channels and expansion must be >= 1")
    need(m.attention >= 0 and m.shared_dim >= 1, "attention must be >= 0, shared_dim >= 1")
    need(t.eval_every >= 0, "eval_every must be >= 0 (0 = off)")
    need(t.eval_n >= 8, "eval_n must be >= 8 (samples per evaluation)")
    need(t.precision in ("fp32", "bf16", "fp16", "auto"),
         f"precision={t.precision!r}: use fp32, bf16, fp16 or auto")
    need(0 <= t.topk <= 1, "topk must be in [0, 1] (the least fraction of fakes kept; 0 = off)")
    need(0 < t.topk_decay <= 1, "topk_decay must be in (0, 1]")
    need(t.on_divergence in ("stop", "rollback"),
         f"on_divergence={t.on_divergence!r}: use stop or rollback")
    need(t.health_every >= 0, "health_every must be >= 0")
    need(d.channels in (None, 1, 3), f"channels={d.channels} is not supported: use 1 or 3")
    need(m.latent_dim >= 1, "latent_dim must be >= 1")
    for k in ("g_channel_base", "g_channel_max", "d_channel_base", "d_channel_max"):
        need(getattr(m, k) >= 1, f"{k} must be >= 1")
    need(m.num_classes >= 0, "num_classes must be >= 0")
    need(t.batch_size >= 1, f"batch_size={t.batch_size} must be >= 1")
    need(t.lr_g > 0 and t.lr_d > 0, "learning rates lr_g and lr_d must be > 0")
    need(0 <= t.beta1 < 1 and 0 <= t.beta2 < 1, "beta1 and beta2 must be in [0, 1)")
    need(t.max_steps is None or t.max_steps >= 0, "max_steps must be >= 0")
    need(t.epochs is None or t.epochs > 0, "epochs must be > 0")
    for key in ("max_time", "dist_timeout"):
        value = getattr(t, key)
        if value is not None:
            try:
                seconds = parse_duration(value)
            except GanforgeError:
                raise GanforgeError(f"{key}={value!r} is not a duration: write it like 90s, 10m "
                                    "or 1h30m") from None
            need(key == "max_time" or seconds > 0, f"{key}={value} must be longer than 0: e.g. 10m")
    need(t.log_every >= 1, "log_every must be >= 1")
    need(t.sample_every >= 0 and t.checkpoint_every >= 0,
         "sample_every and checkpoint_every must be >= 0")
    need(t.keep_last >= 1, "keep_last must be >= 1")
    need(t.keep_samples == 0 or t.keep_samples >= 2, "keep_samples must be 0 (keep all) or >= 2")
    need(re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", t.device) is not None,
         f"device={t.device!r}: use auto, cpu, cuda, cuda:N or mps")


def describe(cfg: Config) -> str:
    """The resolved config as ``section.key = value`` lines with their help texts."""
    lines = [f"preset = {cfg.preset}"]
    for sec in ("data", "model", "train"):
        obj = getattr(cfg, sec)
        for f in fields(obj):
            val = json.dumps(getattr(obj, f.name))
            c = f.metadata.get("help", "")
            lines.append(f"{sec}.{f.name} = {val}" + (f"    # {c}" if c else ""))
    return "\n".join(lines)
