"""Self-supervised feature networks: offline FID features for unlabelled image folders.

When neither Inception weights (offline) nor class labels (a flat folder of one's own images)
are at hand, :func:`train_contrastive` trains the backbone of
:class:`~ganforge.metrics.classifier.DomainClassifier` (trunk + 128-d embedding, no
classification head, ``kind="contrastive"``) on the user's own real images, SimCLR style:
two randomly augmented views of each image are pulled together and pushed away from the
other images of the batch (NT-Xent loss). The 128-d ``features()`` output is the
representation; the projection MLP used by the loss is dropped after training. The net is
saved and used exactly like a classifier's features (``ganforge features train`` writes it,
``ganforge eval --features FILE`` reads it; FID, KID, precision/recall, density/coverage; no
IS or class histograms: it has no classes).

What the numbers mean: distances between the real images and generated ones as seen by a net
trained on *those* real images. FIDs on these features compare runs (checkpoints, settings)
evaluated against the same data with the same feature file; they are not comparable with
published (Inception) FIDs, nor across feature files (another seed, other data or other
training gives another feature space and other numbers).

Augmentations (on the 32x32 working images, in torch, drawn from a seeded
:class:`torch.Generator`; the global RNG is left as it was):

* random resized crop (area 50-100 %, aspect 3/4-4/3) plus a random translation of up to
  3 px, as one affine resampling (bilinear, border replicated);
* brightness (+-0.2 on the [-1, 1] scale) and contrast (x0.7-1.3) jitter;
* 3-channel data only: saturation jitter (x0.7-1.3) and random grayscale (p = 0.2), kept mild
  so colour differences between real and generated images still show in the features;
* a light Gaussian blur (p = 0.5, random strength) and Gaussian noise (std up to 0.04).

No horizontal flip: a mirrored image is a different image for text, digits and asymmetric
layouts, and a flip-invariant feature space would not see a generator that mirrors them.

Defaults: batch 64 images (128 views; capped at the set size), Adam (lr 5e-4, cosine decay
to 0), NT-Xent temperature 0.1 (below SimCLR's 0.5 for big batches: on digits after 120
steps, 1-NN 95-96 % at 0.1, 95 % at 0.2, 91 % at 0.5; about equal after 400 steps), 20
epochs but at least 400 and at most 800 optimisation steps (a small set gets its minimum of
steps by more passes over it; 5,000 images get 10 passes). A step costs ~105 ms on one core
of a 2-core CPU (measured), so 300 images (400 steps) train in ~45 s, the 1,797 digits (560
steps) in ~70 s and 5,000 images (800 steps) in ~90 s. Measured on the built-in digits
(leave-one-out 1-NN accuracy of the features, labels used only to score): a randomly
initialised net 93.1 %, 120 steps 96 %, the default 560 steps 96.7-97.4 % (seeds 1, 0; raw
pixels: 98.8 %, digits are easy). After training, the BatchNorm running statistics are
recomputed exactly over (up to 10,000) un-augmented images.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.data.dataset import ImageDataset
from ganforge.errors import GanforgeError
from ganforge.utils import pick_device

from .classifier import _EVAL_CAP, _LUMA, DomainClassifier, Log, _recalibrate_batchnorm

TEMPERATURE = 0.1  # NT-Xent softmax temperature
PROJ_DIM = 64  # output of the projection MLP the loss sees (dropped after training)
DEFAULT_EPOCHS = 20  # passes over the data when no length is given ...
MIN_STEPS = 400  # ... but at least this many optimisation steps (small sets) ...
MAX_STEPS = 800  # ... and at most this many (big sets)
MAX_LOG_LINES = 25  # tiny sets make hundreds of passes: log every k-th epoch beyond this
CROP_SCALE = (0.5, 1.0)  # random resized crop: share of the image area kept
CROP_RATIO = (3 / 4, 4 / 3)  # ... and its aspect ratio
SHIFT_PX = 3  # random translation, working pixels
BRIGHTNESS = 0.2  # +- on the [-1, 1] scale
CONTRAST = (0.7, 1.3)
SATURATION = (0.7, 1.3)  # 3-channel data only
GRAY_P = 0.2  # 3-channel data only: probability of a grayscale view
BLUR_P = 0.5
NOISE_STD = 0.04


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _blur(x: torch.Tensor) -> torch.Tensor:
    """3x3 Gaussian blur (sigma 1), channel by channel, reflected border."""
    k1 = torch.tensor([0.27407, 0.45186, 0.27407], dtype=x.dtype, device=x.device)
    k = (k1[:, None] * k1[None, :]).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k, groups=x.shape[1])


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random view of each image of ``x`` (float ``[N, C, H, W]`` in [-1, 1]; the
    augmentations of the module docstring). Random numbers come from ``gen`` (a CPU
    generator) only."""
    n, c, h, w = x.shape
    dev, dt = x.device, x.dtype
    # random resized crop + translation: one affine map from output to input coordinates
    area = _uniform(n, *CROP_SCALE, gen)
    log_ratio = _uniform(n, math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), gen)
    sx = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
    sy = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    cx = (1 - sx) * _uniform(n, -1.0, 1.0, gen) + _uniform(n, -1, 1, gen) * 2 * SHIFT_PX / w
    cy = (1 - sy) * _uniform(n, -1.0, 1.0, gen) + _uniform(n, -1, 1, gen) * 2 * SHIFT_PX / h
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sx, cx
    theta[:, 1, 1], theta[:, 1, 2] = sy, cy
    grid = F.affine_grid(theta.to(dev, dt), [n, c, h, w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # brightness / contrast
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = _uniform(n, *CONTRAST, gen).to(dev, dt).view(n, 1, 1, 1)
    bright = _uniform(n, -BRIGHTNESS, BRIGHTNESS, gen).to(dev, dt).view(n, 1, 1, 1)
    x = (x - mean) * contrast + mean + bright
    if c == 3:  # mild colour jitter: saturation, sometimes grayscale
        luma = torch.tensor(_LUMA, dtype=dt, device=dev).view(1, 3, 1, 1)
        gray = (x * luma).sum(dim=1, keepdim=True)
        sat = _uniform(n, *SATURATION, gen).to(dev, dt).view(n, 1, 1, 1)
        sat = torch.where((torch.rand(n, generator=gen) < GRAY_P).to(dev).view(n, 1, 1, 1),
                          torch.zeros_like(sat), sat)
        x = gray + sat * (x - gray)
    # light blur, then noise
    amount = _uniform(n, 0.0, 1.0, gen) * (torch.rand(n, generator=gen) < BLUR_P)
    x = x + amount.to(dev, dt).view(n, 1, 1, 1) * (_blur(x) - x)
    std = _uniform(n, 0.0, NOISE_STD, gen).view(n, 1, 1, 1)
    x = x + (torch.randn(x.shape, generator=gen) * std).to(dev, dt)
    return x.clamp(-1.0, 1.0)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = TEMPERATURE
            ) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy: ``z1[i]`` and ``z2[i]`` are two views of
    image i; every other view in the batch is a negative."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)


def _projection(feature_dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.ReLU(inplace=True),
                         nn.Linear(feature_dim, PROJ_DIM))


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GanforgeError(f"{name} must be a positive integer, got {value!r}")


# long: a plain training loop (views, loss, epochs, logging) read in one piece, like
# train_classifier
def train_contrastive(
    data: ImageDataset,
    epochs: int | None = None,
    batch_size: int = 64,
    lr: float = 5e-4,
    seed: int = 0,
    device: str = "cpu",
    log: Log | None = print,
    steps: int | None = None,
    temperature: float = TEMPERATURE,
) -> tuple[DomainClassifier, dict]:
    """Train a head-less :class:`DomainClassifier` (``kind="contrastive"``) on the images of
    ``data`` without their labels (see the module docstring).

    Length: ``steps`` optimisation steps when given, else ``epochs`` passes over the data
    when given, else :data:`DEFAULT_EPOCHS` passes clamped to :data:`MIN_STEPS` ..
    :data:`MAX_STEPS` steps. A pass is ``len(data) // batch`` steps (the incomplete tail
    batch is left out; the order is reshuffled every pass); ``batch_size`` is capped at the
    set size. One progress line per pass through ``log`` (every k-th pass when there are more
    than 25). The global RNG state is left as it was. Returns the model (eval mode, on
    ``device``) and ``{"seconds", "n_images", "steps", "epochs", "batch_size", "loss"}``
    (``loss``: the mean NT-Xent loss of the last pass).
    """
    n = len(data)
    if n < 2:
        raise GanforgeError(f"dataset '{data.name}' has {n} image(s): self-supervised "
                            f"features need at least 2 (better hundreds)")
    for name, value in (("epochs", epochs), ("steps", steps)):
        if value is not None:
            _positive_int(name, value)
    _positive_int("batch_size", batch_size)
    if not lr > 0:
        raise GanforgeError(f"lr must be positive, got {lr!r}")
    if not temperature > 0:
        raise GanforgeError(f"temperature must be positive, got {temperature!r}")
    say: Log = log if log is not None else (lambda _msg: None)
    dev = pick_device(device)
    bs = max(2, min(batch_size, n))
    per_epoch = n // bs
    if steps is not None:
        total = steps
    elif epochs is not None:
        total = epochs * per_epoch
    else:
        total = min(MAX_STEPS, max(MIN_STEPS, DEFAULT_EPOCHS * per_epoch))
    n_epochs = math.ceil(total / per_epoch)
    every = math.ceil(n_epochs / MAX_LOG_LINES)
    images = data.images  # gathered a batch at a time: big sets stay memory-mapped

    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = DomainClassifier(0, data.channels, trained_on=data.name,
                                 resolution=data.resolution, kind="contrastive",
                                 n_images=n).to(dev)
        proj = _projection(model.feature_dim).to(dev)
        params = list(model.parameters()) + list(proj.parameters())
        opt = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))
        model.train()
        proj.train()
        step, loss_sum, seen = 0, 0.0, 0
        for epoch in range(1, n_epochs + 1):
            order = torch.randperm(n, generator=gen)
            loss_sum, seen = 0.0, 0
            for i in range(per_epoch):
                if step >= total:
                    break
                b = order[i * bs:(i + 1) * bs].sort().values
                x = model.prepare(images[b].to(dev, non_blocking=True))
                views = torch.cat([augment(x, gen), augment(x, gen)])
                z = proj(model.features(views))
                loss = nt_xent(z[:len(b)], z[len(b):], temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                loss_sum += float(loss.detach())
                seen += 1
            if epoch % every == 0 or epoch == n_epochs:
                say(f"contrastive epoch {epoch}/{n_epochs}: loss {loss_sum / max(1, seen):.4f} "
                    f"(step {step}/{total}, {time.perf_counter() - start:.0f}s)")
        some = torch.randperm(n, generator=gen)[:_EVAL_CAP].sort().values
        _recalibrate_batchnorm(model, images, some, max(bs, 256), dev)
    seconds = time.perf_counter() - start
    final = loss_sum / max(1, seen)
    stats = {"seconds": seconds, "n_images": n, "steps": step, "epochs": n_epochs,
             "batch_size": bs, "loss": final}
    say(f"self-supervised features on '{data.name}': {n} images, {step} steps, final loss "
        f"{final:.4f}, {seconds:.1f}s")
    return model.eval(), stats
