"""A small image classifier for offline "domain features" and class checks.

Used by metrics (classifier-feature FID/KID, class histograms) and to check class-conditional
generators ("does the classifier agree that ``--class 3`` samples are 3s?").

* :class:`DomainClassifier`: a 3-conv CNN (BatchNorm + ReLU) over a fixed 32x32 working size.
  Any input resolution >= 8 is resized to it (bilinear, antialiased); uint8 or float in
  [-1, 1]; 1 or 3 channels (converted when the count differs from the trained one). With
  ``num_classes=0`` it is a head-less feature net (``kind="contrastive"``: trained without
  labels by :func:`ganforge.metrics.selfsup.train_contrastive`).
* :func:`train_classifier`: seeded split, Adam + cosine schedule, random translation of up to
  2 px (at 32 px), held-out accuracy.
* :func:`save_classifier` / :func:`load_classifier`: ``name.safetensors`` weights plus a
  ``name.json`` sidecar holding :attr:`DomainClassifier.config`; no pickles.
* :func:`predict` / :func:`extract_features`: batched, no grad, eval mode.
* :func:`digits_classifier`: the classifier of the built-in digits, trained once and cached
  under ``ganforge_home()/classifiers``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.data.dataset import ImageDataset, ganforge_home
from ganforge.errors import GanforgeError
from ganforge.utils import atomic_write_bytes, atomic_write_text, pick_device

Log = Callable[[str], None]

WORK_SIZE = 32  # every input is resized to WORK_SIZE x WORK_SIZE before the convolutions
MIN_SIZE = 8  # smallest accepted input resolution
MAX_SHIFT = 2  # training augmentation: random translation of up to this many working pixels
_EVAL_CAP = 10_000  # training images used for BatchNorm statistics and the train accuracy
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as the data loader converts colour to gray
# the cached digits classifier: ~98.5-99% held-out in ~10 s on a 2-core CPU (seeds 0..2)
_DIGITS_TRAINING = {"epochs": 12, "batch_size": 64, "lr": 4e-3, "seed": 0}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


KINDS = ("classifier", "contrastive")  # how the weights were trained (DomainClassifier.kind)


class DomainClassifier(nn.Module):
    """Small CNN: images ``[N, C, R, R]`` (float in [-1, 1] or uint8; any ``R >= 8``) ->
    features ``[N, feature_dim]`` and class logits ``[N, num_classes]``.

    Layout at the 32x32 working size: conv(w) @32 -> pool -> conv(2w) @16 -> pool ->
    conv(4w) @8 -> global average pool -> linear(feature_dim) + ReLU (= the features) ->
    linear(num_classes) (= the logits).

    ``num_classes=0``: a head-less feature net (``head`` is None, ``class_names`` empty,
    ``forward``/:func:`predict` raise); ``kind`` says how it was trained: ``"classifier"``
    (supervised, the default, also for sidecars written before ``kind`` existed) or
    ``"contrastive"`` (self-supervised, always head-less).
    """

    def __init__(
        self,
        num_classes: int,
        channels: int,
        width: int = 32,
        feature_dim: int = 128,
        *,
        class_names: list[str] | None = None,  # display names, one per class
        trained_on: str | None = None,  # dataset name the weights were trained on
        resolution: int | None = None,  # resolution of the training images
        accuracy: float | None = None,  # held-out accuracy measured after training
        kind: str = "classifier",  # how the weights were trained: one of KINDS
        n_images: int | None = None,  # how many images the weights were trained on
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise GanforgeError(f"DomainClassifier num_classes must be a non-negative integer "
                                f"(0: no classification head), got {num_classes!r}")
        for name, value in (("width", width), ("feature_dim", feature_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GanforgeError(f"DomainClassifier {name} must be a positive integer, "
                                    f"got {value!r}")
        if kind not in KINDS:
            raise GanforgeError(f"DomainClassifier kind must be one of {', '.join(KINDS)}, "
                                f"got {kind!r}")
        if kind == "contrastive" and num_classes != 0:
            raise GanforgeError(f"a contrastive DomainClassifier has no classification head: "
                                f"num_classes must be 0, got {num_classes}")
        if channels not in (1, 3) or isinstance(channels, bool):
            raise GanforgeError(f"DomainClassifier channels must be 1 (gray) or 3 (colour), "
                                f"got {channels!r}")
        if class_names is not None and len(class_names) != num_classes:
            raise GanforgeError(f"DomainClassifier got {len(class_names)} class names for "
                                f"num_classes={num_classes}: give one name per class")
        self.num_classes = num_classes
        self.channels = channels
        self.width = width
        self.feature_dim = feature_dim
        self.class_names = (list(map(str, class_names)) if class_names is not None
                            else [str(i) for i in range(num_classes)])
        self.trained_on = trained_on
        self.resolution = resolution
        self.accuracy = accuracy
        self.kind = kind
        self.n_images = n_images

        w = width
        self.trunk = nn.Sequential(
            _block(channels, w), nn.MaxPool2d(2),  # 32 -> 16
            _block(w, 2 * w), nn.MaxPool2d(2),  # 16 -> 8
            _block(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # [N, 4w]
        )
        self.embed = nn.Sequential(nn.Linear(4 * w, feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(feature_dim, num_classes) if num_classes else None

    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild the net (saved as the JSON sidecar)."""
        return {
            "num_classes": self.num_classes,
            "channels": self.channels,
            "width": self.width,
            "feature_dim": self.feature_dim,
            "class_names": list(self.class_names),
            "trained_on": self.trained_on,
            "resolution": self.resolution,
            "accuracy": self.accuracy,
            "kind": self.kind,
            "n_images": self.n_images,
        }

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Any accepted input -> float ``[N, channels, 32, 32]`` in [-1, 1] on ``x``'s device.

        A no-op for tensors already in that form.
        """
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise GanforgeError(f"classifier input must be images [N, C, H, W], got {shape}")
        c, h, w = x.shape[1:]
        if c not in (1, 3):
            raise GanforgeError(f"classifier input must have 1 or 3 channels, got {c} "
                                f"(shape {tuple(x.shape)}): images are NCHW")
        if min(h, w) < MIN_SIZE:
            raise GanforgeError(f"classifier input must be at least {MIN_SIZE}x{MIN_SIZE}, "
                                f"got {h}x{w}: upscale the images first")
        if x.dtype == torch.uint8:
            x = x.float() / 127.5 - 1.0
        elif x.dtype != torch.float32:
            x = x.float()
        if c != self.channels:
            if c == 1:  # gray -> colour
                x = x.expand(-1, 3, -1, -1)
            else:  # colour -> gray (luma)
                luma = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
                x = (x * luma).sum(dim=1, keepdim=True)
        if (h, w) != (WORK_SIZE, WORK_SIZE):
            x = F.interpolate(x, size=(WORK_SIZE, WORK_SIZE), mode="bilinear",
                              align_corners=False, antialias=True)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[N, feature_dim]`` (non-negative: after the ReLU)."""
        return self.embed(self.trunk(self.prepare(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``[N, num_classes]``."""
        if self.head is None:
            raise GanforgeError(f"this {self.kind} feature net has no classification head "
                                f"(num_classes=0): use .features(x) (or extract_features)")
        return self.head(self.features(x))


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _batched(model: DomainClassifier, images: torch.Tensor, batch_size: int,
             fn: Callable[[torch.Tensor], torch.Tensor], out_dim: int) -> torch.Tensor:
    if batch_size < 1:
        raise GanforgeError(f"batch_size must be a positive integer, got {batch_size!r}")
    device = _device_of(model)
    was_training = model.training
    model.eval()
    try:
        if images.shape[0]:
            model.prepare(images[:1])  # validates shape/channels before any work
        outs = [fn(images[i:i + batch_size].to(device)).float().cpu()
                for i in range(0, images.shape[0], batch_size)]
    finally:
        model.train(was_training)
    if not outs:
        return torch.empty(0, out_dim)
    return torch.cat(outs)


def predict(model: DomainClassifier, images: torch.Tensor,
            batch_size: int = 512) -> torch.Tensor:
    """Class probabilities ``[N, K]`` (softmax; rows sum to 1) on the CPU."""
    if model.head is None:
        raise GanforgeError(f"this {model.kind} feature net has no classification head "
                            f"(num_classes=0): it gives features only, not class predictions")
    return _batched(model, images, batch_size, lambda x: model(x).softmax(dim=1),
                    model.num_classes)


def extract_features(model: DomainClassifier, images: torch.Tensor,
                     batch_size: int = 512) -> torch.Tensor:
    """Penultimate features ``[N, feature_dim]`` on the CPU."""
    return _batched(model, images, batch_size, model.features, model.feature_dim)


def _translate(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each image by its own random integer offset in [-max_shift, max_shift] (x and y),
    filling with the replicated border."""
    n, _, h, w = x.shape
    if max_shift <= 0 or n == 0:
        return x
    shifts = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=gen).to(x.device)
    xp = F.pad(x, (max_shift,) * 4, mode="replicate")
    rows = shifts[:, 0:1] + torch.arange(h, device=x.device)  # [N, H]
    cols = shifts[:, 1:2] + torch.arange(w, device=x.device)  # [N, W]
    idx = torch.arange(n, device=x.device)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]]  # [N, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def _accuracy(model: DomainClassifier, images: torch.Tensor, idx: torch.Tensor,
              labels: torch.Tensor, batch_size: int, device: torch.device) -> float:
    """Eval-mode accuracy over ``images[idx]`` (gathered a batch at a time)."""
    model.eval()
    correct = 0
    for i in range(0, len(idx), batch_size):
        b = idx[i:i + batch_size]
        logits = model(images[b].to(device))
        correct += int((logits.argmax(dim=1).cpu() == labels[b]).sum())
    return correct / max(1, len(idx))


@torch.no_grad()
def _recalibrate_batchnorm(model: DomainClassifier, images: torch.Tensor, idx: torch.Tensor,
                           batch_size: int, device: torch.device) -> None:
    """Replace BatchNorm running statistics (an EMA that lags behind the last weights when
    training is short) by exact averages over un-augmented training images ``images[idx]``.
    Runs :meth:`DomainClassifier.features` (every BatchNorm is in it), so head-less nets work
    too."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    try:
        for i in range(0, len(idx), batch_size):
            model.features(images[idx[i:i + batch_size]].to(device))
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        model.eval()


def _check_training_data(data: ImageDataset) -> torch.Tensor:
    if data.labels is None:
        raise GanforgeError(f"training a classifier on '{data.name}' needs class labels: a "
                            f"folder with class sub-folders or a labelled built-in dataset")
    labels = data.labels.long().reshape(-1)
    if labels.shape[0] != len(data):
        raise GanforgeError(f"dataset '{data.name}' has {labels.shape[0]} labels for "
                            f"{len(data)} images: rebuild it")
    if data.num_classes < 2:
        raise GanforgeError(f"training a classifier on '{data.name}' needs at least 2 classes, "
                            f"got {data.num_classes}: a folder with class sub-folders or a "
                            f"labelled built-in dataset")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= data.num_classes):
        raise GanforgeError(f"dataset '{data.name}' has labels outside 0..{data.num_classes - 1}"
                            f": rebuild it")
    return labels


# long: a plain training loop (split, augment, epochs, accuracy) read in one piece, like
# the nanoGPT loop it follows
def train_classifier(
    data: ImageDataset,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    val_fraction: float = 0.15,
    device: str = "cpu",
    log: Log | None = print,
    augment: bool = True,
) -> tuple[DomainClassifier, dict]:
    """Train a :class:`DomainClassifier` on a labelled dataset.

    The held-out split is a seeded random permutation (``val_fraction`` of the images, at
    least one when > 0). Adam with a cosine learning-rate decay to 0; with ``augment`` each
    training batch is translated by up to 2 px (at 32 px). The global RNG state is left as
    it was. Returns the model (in eval mode, ``model.accuracy`` set) and
    ``{"val_accuracy", "train_accuracy", "epochs", "seconds", "n_train", "n_val"}``
    (accuracies in [0, 1]; ``val_accuracy`` is None when ``val_fraction`` is 0). After the
    last epoch the BatchNorm running statistics are recomputed exactly over (up to 10,000)
    training images; the train accuracy is then measured on those, in eval mode, without
    augmentation.
    """
    labels = _check_training_data(data)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise GanforgeError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise GanforgeError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise GanforgeError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    if not lr > 0:
        raise GanforgeError(f"lr must be positive, got {lr!r}")
    say: Log = log if log is not None else (lambda _msg: None)
    dev = pick_device(device)
    n = len(data)
    n_val = min(n - 1, max(1, round(n * val_fraction))) if val_fraction > 0 else 0
    if n - n_val < 1:
        raise GanforgeError(f"dataset '{data.name}' has {n} images: too few to train a "
                            f"classifier")

    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    images = data.images  # gathered a batch at a time: big sets stay memory-mapped

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DomainClassifier(data.num_classes, data.channels,
                                 class_names=list(data.class_names), trained_on=data.name,
                                 resolution=data.resolution).to(dev)
    steps_per_epoch = math.ceil(len(train_idx) / batch_size)
    total = epochs * steps_per_epoch
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total)))

    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(train_idx), generator=gen)
        loss_sum, seen = 0.0, 0
        for i in range(0, len(order), batch_size):
            b = order[i:i + batch_size]
            if len(b) < 2:  # BatchNorm needs two samples; the tail of one is dropped
                continue
            x = model.prepare(images[train_idx[b]].to(dev, non_blocking=True))
            if augment:
                x = _translate(x, MAX_SHIFT, gen)
            y = labels[train_idx[b]].to(dev, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(b)
            seen += len(b)
        say(f"classifier epoch {epoch}/{epochs}: loss {loss_sum / max(1, seen):.4f}")

    # BatchNorm statistics and the train accuracy from (at most) _EVAL_CAP training images
    some = train_idx[torch.randperm(len(train_idx), generator=gen)[:_EVAL_CAP]].sort().values
    eval_bs = max(batch_size, 256)
    _recalibrate_batchnorm(model, images, some, eval_bs, dev)
    val_acc = _accuracy(model, images, val_idx, labels, eval_bs, dev) if n_val else None
    train_acc = _accuracy(model, images, some, labels, eval_bs, dev)
    model.accuracy = val_acc
    seconds = time.perf_counter() - start
    stats = {"val_accuracy": val_acc, "train_accuracy": train_acc, "epochs": epochs,
             "seconds": seconds, "n_train": len(train_idx), "n_val": int(n_val)}
    shown = f"{val_acc:.2%} held-out" if val_acc is not None else "no held-out split"
    say(f"classifier on '{data.name}': {shown} ({n_val} images), {train_acc:.2%} train, "
        f"{seconds:.1f}s")
    return model, stats


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def save_classifier(model: DomainClassifier, path: Path) -> None:
    """Weights to ``path`` (safetensors) and ``model.config`` to ``path`` with ``.json``;
    each written atomically (weights first, so a present sidecar means complete weights)."""
    from safetensors.torch import save as st_save

    path = Path(path)
    if path.suffix == ".json":
        raise GanforgeError(f"classifier path {path} must be the weights file (e.g. "
                            f"feats.safetensors); the .json sidecar is written beside it")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, st_save(tensors, metadata={"format": "ganforge-classifier"}))
    atomic_write_text(_sidecar(path), json.dumps(model.config, indent=2) + "\n")


def load_classifier(path: Path, device: str = "cpu") -> DomainClassifier:
    """Rebuild a classifier written by :func:`save_classifier` (eval mode, on ``device``)."""
    from safetensors.torch import load as st_load

    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    side = _sidecar(path)
    fix = "re-create it with save_classifier (or delete it to retrain a cached one)"
    for p in (path, side):
        if not p.is_file():
            raise GanforgeError(f"classifier file {p} not found: give the path of a "
                                f"classifier saved with save_classifier (weights .safetensors "
                                f"with its .json beside it)")
    try:
        config = json.loads(side.read_text())
        if not isinstance(config, dict):
            raise TypeError("not a JSON object")
        model = DomainClassifier(**config)
    except (OSError, ValueError, TypeError, GanforgeError) as exc:
        raise GanforgeError(f"classifier config {side} is unreadable ({_one_line(exc)}): "
                            f"{fix}") from None
    try:
        tensors = st_load(path.read_bytes())
        model.load_state_dict(tensors, strict=True)
    except Exception as exc:  # noqa: BLE001 - any failure of a corrupt/mismatched file
        raise GanforgeError(f"classifier weights {path} are unreadable or do not match "
                            f"{side.name} ({_one_line(exc)}): {fix}") from None
    return model.to(pick_device(device)).eval()


def digits_classifier(cache_dir: Path | None = None, resolution: int = 32,
                      log: Log | None = None) -> DomainClassifier:
    """The classifier of the built-in ``digits`` (gray, 10 classes) at ``resolution``.

    Trained once (seed 0, 12 epochs, ~10 s on a 2-core CPU) and cached as
    ``<cache_dir>/digits-<resolution>.safetensors`` + ``.json``; ``cache_dir`` defaults to
    ``ganforge_home()/classifiers``. Later calls load it; an unreadable cache is retrained.
    """
    from ganforge.data.load import load_dataset

    say: Log = log if log is not None else (lambda _msg: None)
    folder = Path(cache_dir).expanduser() if cache_dir is not None \
        else ganforge_home() / "classifiers"
    path = folder / f"digits-{int(resolution)}.safetensors"
    if path.is_file() and _sidecar(path).is_file():
        try:
            return load_classifier(path)
        except GanforgeError as exc:
            say(f"{exc}; retraining")
    data = load_dataset("digits", resolution=resolution, channels=1, log=None)
    say(f"training the digits classifier once; cached at {path}")
    model, _ = train_classifier(data, **_DIGITS_TRAINING, log=log)
    save_classifier(model, path)
    return model.cpu().eval()
