"""Deterministic batches from the uint8 cache, as dicts, on the training device.

The order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone, so batch ``step`` is
the same whether a run was interrupted or not: exact resume needs no saved loader state.
"""

from __future__ import annotations

import torch

from ..config import Config
from ..data import ImageDataset
from ..errors import GanforgeError


def load_data(cfg: Config, log=print):
    """The run's data: an :class:`ImageDataset`, or a ``VectorDataset`` for vector specs."""
    from ..data import is_vector_spec, load_dataset, load_vectors

    d = cfg.data
    patch_task = d.task in ("lowres2highres", "gray2color", "edges2image")
    if patch_task:
        from ..data.patches import is_patch_spec, load_patches

        if is_patch_spec(d.source):  # photos: trained at native size, on random crops
            what = "super-resolution" if d.task == "lowres2highres" else d.task
            default = type(d)().resolution
            if d.resolution != default:
                raise GanforgeError(
                    f"resolution={d.resolution} is not used by {what} on {d.source}: its "
                    f"images are trained at their own size on random crops; set "
                    f"crop={d.resolution} instead (the {'high-resolution ' * (what != d.task)}"
                    f"crop side)")
            if d.direction != "AtoB":
                raise GanforgeError(
                    "direction=BtoA would train a downscaler: super-resolution runs AtoB only "
                    "(drop direction)" if d.task == "lowres2highres" else
                    f"direction=BtoA: {d.task} on photos at native size runs AtoB only (drop "
                    f"direction, or give pairs with task=folders)")
            if d.task != "lowres2highres" and cfg.train.recipe != "pix2pix":
                raise GanforgeError(f"{d.task} on photos is trained by pix2pix: use --preset "
                                    f"pix2pix")
            return load_patches(d.source, crop=cfg.train.crop, scale=d.scale,
                                channels=d.channels, test_fraction=d.test_fraction,
                                seed=cfg.train.seed, task=d.task, log=log)
    if d.task == "lowres2highres":
        if cfg.train.crop and cfg.train.crop >= d.resolution:
            from ..config import PRESETS

            if PRESETS.get(cfg.preset, ("", {}))[1].get("crop") != cfg.train.crop:
                raise GanforgeError(f"crop={cfg.train.crop} is not smaller than resolution="
                                    f"{d.resolution}, the side of {d.source}'s images here: set "
                                    f"a smaller crop, or 0 to train on whole images")
            log(f"the {cfg.preset} preset's crop={cfg.train.crop} is for photos: the "
                f"{d.resolution}x{d.resolution} images of {d.source} are trained whole")
    elif cfg.train.crop:
        raise GanforgeError(
            f"crop={cfg.train.crop}: not used by {d.task if d.task != 'none' else 'this run'} "
            f"on {d.source} (random crops train super-resolution, and gray2color / "
            f"edges2image on a folder of photos): drop crop")
    if d.task != "none":
        from ..data.pairs import load_pairs

        return load_pairs(d.source, d.task, resolution=d.resolution, channels=d.channels,
                          direction=d.direction, scale=d.scale, test_fraction=d.test_fraction,
                          seed=cfg.train.seed, log=log)
    if is_vector_spec(d.source):
        return load_vectors(d.source, seed=cfg.train.seed)
    return load_dataset(d.source, resolution=d.resolution, channels=d.channels, log=log)


class Batches:
    """Batch number ``i`` of a run as a dict: ``{"image": float [-1, 1] NCHW, "label"}`` for
    images, ``{"vector": float [N, D], "label"}`` for vector data."""

    def __init__(self, data, batch_size: int, seed: int, device: torch.device,
                 max_device_bytes: int = 2 << 30):
        self.data = data
        self.n = len(data)
        self.batch_size = min(batch_size, self.n)
        self.steps_per_epoch = self.n // self.batch_size  # drop_last
        self.seed = seed
        self.device = device
        self.key = "image" if isinstance(data, ImageDataset) else "vector"
        images = data.images if self.key == "image" else data.x
        # move the uint8 cache to the device once when it fits; else gather per batch
        if device.type != "cpu" and images.numel() <= max_device_bytes:
            images = images.to(device)
        self.images = images
        self.labels = data.labels.to(images.device) if data.labels is not None else None
        self._perm_epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def _order(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.n, generator=g)
            self._perm_epoch = epoch
        return self._perm

    def get(self, index: int) -> dict[str, torch.Tensor]:
        """Batch number ``index`` (0-based, counted over the whole run)."""
        epoch, i = divmod(index, self.steps_per_epoch)
        idx = self._order(epoch)[i * self.batch_size:(i + 1) * self.batch_size]
        x = self.images[idx.to(self.images.device)] if self.images.is_cuda else self.images[idx]
        x = x.to(self.device, non_blocking=True)
        if self.key == "image":
            x = x.float().div_(127.5).sub_(1.0)  # uint8 -> [-1, 1]
        batch = {self.key: x}
        if self.labels is not None:
            batch["label"] = self.labels[idx.to(self.labels.device)].to(self.device)
        return batch


# --- image-to-image -----------------------------------------------------------------------


def is_pairs(data) -> bool:
    """Image-to-image data: aligned pairs (``source``/``target``), two domains (``a``/``b``)
    or whole images at native size for patch training (``PatchDataset``)."""
    return hasattr(data, "source") and hasattr(data, "target") or (
        hasattr(data, "a") and hasattr(data, "b")) or is_patches(data)


def is_patches(data) -> bool:
    from ..data.patches import PatchDataset

    return isinstance(data, PatchDataset)


def _unpaired(data) -> bool:
    return hasattr(data, "a") and hasattr(data, "b")


def pair_shapes(data) -> tuple[tuple[int, int], tuple[int, int]]:
    """((resolution, channels) of the sources, (resolution, channels) of the targets); for
    patch training, of the training crops."""
    if is_patches(data):
        return (data.crop // data.scale, data.source_channels), (data.crop, data.channels)
    s, t = (data.a, data.b) if _unpaired(data) else (data.source, data.target)
    return (int(s.shape[-1]), int(s.shape[1])), (int(t.shape[-1]), int(t.shape[1]))


def pair_count(data) -> int:
    if is_patches(data):
        return len(data)
    return max(len(data.a), len(data.b)) if _unpaired(data) else len(data.source)


def _float(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.to(device, non_blocking=True).float().div_(127.5).sub_(1.0)


class PairBatches:
    """Batch number ``i`` of an image-to-image run: ``{"source", "target"}`` for aligned
    pairs, ``{"a", "b"}`` for two unaligned domains (each domain walks through its own
    seeded permutations, so the smaller one simply wraps around more often). Deterministic in
    (seed, index), like :class:`Batches`."""

    def __init__(self, data, batch_size: int, seed: int, device: torch.device):
        self.data = data
        self.unpaired = _unpaired(data)
        self.n = pair_count(data)
        self.batch_size = min(batch_size, self.n)
        self.steps_per_epoch = max(1, self.n // self.batch_size)
        self.seed = seed
        self.device = device
        self._perms: dict[tuple[int, int], torch.Tensor] = {}

    def _perm(self, which: int, size: int, epoch: int) -> torch.Tensor:
        key = (which, epoch)
        if key not in self._perms:
            if len(self._perms) > 8:
                self._perms.clear()
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 7 + which)
            self._perms[key] = torch.randperm(size, generator=g)
        return self._perms[key]

    def _take(self, which: int, size: int, start: int, count: int) -> torch.Tensor:
        out, pos = [], start
        while count > 0:
            epoch, off = divmod(pos, size)
            part = self._perm(which, size, epoch)[off:off + count]
            out.append(part)
            count -= len(part)
            pos += len(part)
        return torch.cat(out)

    def get(self, index: int) -> dict[str, torch.Tensor]:
        start = index * self.batch_size
        d = self.data
        if self.unpaired:
            ia = self._take(0, len(d.a), start, self.batch_size)
            ib = self._take(1, len(d.b), start, self.batch_size)
            return {"a": _float(d.a[ia], self.device), "b": _float(d.b[ib], self.device)}
        epoch, i = divmod(index, self.steps_per_epoch)
        idx = self._perm(0, self.n, epoch)[i * self.batch_size:(i + 1) * self.batch_size]
        return {"source": _float(d.source[idx], self.device),
                "target": _float(d.target[idx], self.device)}

    def fixed(self, k: int) -> dict[str, torch.Tensor]:
        """The first ``k`` held-out examples (training ones when nothing is held out)."""
        d = self.data
        if self.unpaired:
            a = d.test_a if len(d.test_a) else d.a
            b = d.test_b if len(d.test_b) else d.b
            return {"a": _float(a[:k], self.device), "b": _float(b[:k], self.device)}
        src = d.test_source if len(d.test_source) else d.source
        tgt = d.test_target if len(d.test_target) else d.target
        return {"source": _float(src[:k], self.device), "target": _float(tgt[:k], self.device)}


class PatchBatches:
    """Batch number ``i`` of a patch-trained run (:class:`~ganforge.data.patches.PatchDataset`):
    ``{"target": float [N, C, crop, crop]}`` (and ``"source"``, cut at the same place, for the
    translation tasks), crops cut at random from the training images at native size (an
    image drawn with probability proportional to its area, so every pixel is equally likely;
    a position anywhere in it; one of the 8 flips and quarter turns), the same for the same
    (seed, i) so resume is exact. An "epoch" is as many crops as the images have crop-sized
    areas. ``fixed(k)`` gives the centre crops of the held-out images (of the
    training images when none are held out) as ``{"source", "target"}``."""

    def __init__(self, data, batch_size: int, seed: int, device: torch.device):
        self.data = data
        self.n = len(data)
        self.crop = data.crop
        self.batch_size = batch_size
        self.steps_per_epoch = max(1, data.pixels // (self.crop**2 * batch_size))
        self.seed = seed
        self.device = device
        area = torch.tensor([float(x.shape[1] * x.shape[2]) for x in data.images],
                            dtype=torch.float64)
        self.weights = area / area.sum()

    def get(self, index: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index * 7 + 3)
        c, n = self.crop, self.batch_size
        which = torch.multinomial(self.weights, n, replacement=True, generator=g).tolist()
        u = torch.rand(n, 2, generator=g).tolist()
        flips = torch.randint(0, 8, (n,), generator=g).tolist()
        srcs = self.data.sources
        out, src_out = [], []
        for k, i in enumerate(which):
            img = self.data.images[i]
            h, w = img.shape[-2:]
            y = min(int(u[k][0] * (h - c + 1)), h - c)
            x = min(int(u[k][1] * (w - c + 1)), w - c)
            out.append(_turn(img[:, y:y + c, x:x + c], flips[k]))
            if srcs is not None:
                src_out.append(_turn(srcs[i][:, y:y + c, x:x + c], flips[k]))
        batch = {"target": _float(torch.stack(out), self.device)}
        if srcs is not None:
            batch["source"] = _float(torch.stack(src_out), self.device)
        return batch

    def fixed(self, k: int) -> dict[str, torch.Tensor]:
        from ..data.pairs import downsample

        d = self.data
        held = bool(d.test_images)
        imgs = d.test_images if held else d.images
        srcs = (d.test_sources if held else d.sources) if d.sources is not None else None
        c = self.crop
        crops, src_crops = [], []
        for j in range(k):
            img = imgs[j % len(imgs)]
            h, w = img.shape[-2:]
            # the first pass takes the centres; further passes (few images) other places
            t = (j // len(imgs) + 1) / (k // len(imgs) + 2)
            y = min(int((h - c) * (0.5 if j < len(imgs) else t)), h - c)
            x = min(int((w - c) * (0.5 if j < len(imgs) else 1 - t)), w - c)
            crops.append(img[:, y:y + c, x:x + c])
            if srcs is not None:
                src_crops.append(srcs[j % len(imgs)][:, y:y + c, x:x + c])
        target = _float(torch.stack(crops), self.device)
        if srcs is not None:
            return {"source": _float(torch.stack(src_crops), self.device), "target": target}
        return {"source": downsample(target, d.scale), "target": target}


def _turn(p: torch.Tensor, f: int) -> torch.Tensor:
    """One of the 8 flips and quarter turns of a square crop (``f`` in 0..7)."""
    if f & 1:
        p = p.flip(-1)
    if f & 2:
        p = p.flip(-2)
    if f & 4:
        p = p.transpose(-1, -2)
    return p


def fill_model_shape(cfg: Config, data) -> None:
    """The nets are built for the data: record its shape and classes in the config."""
    m = cfg.model
    if is_pairs(data):
        src, tgt = pair_shapes(data)  # (resolution, channels) of the source and target images
        if m.channels and (m.channels, m.in_channels) != (tgt[1], src[1]):
            raise GanforgeError(
                f"{data.name} gives {src[1]}-channel sources and {tgt[1]}-channel targets but "
                f"the run's nets are built for {m.in_channels} and {m.channels}: use the "
                "run's own kind of data")
        m.resolution, m.channels, m.in_channels = tgt[0], tgt[1], src[1]
        if is_patches(data):  # the crop side chosen from the images (crop=0) is recorded
            cfg.train.crop = data.crop
        return
    vector = hasattr(data, "dim")
    if vector and m.arch != "mlp":
        raise GanforgeError(f"{data.name} is vector data: use --preset toy (or arch=mlp)")
    if not vector and m.arch == "mlp":
        raise GanforgeError(f"arch=mlp is for vector data but {data.name} holds images: "
                            "use arch=dcgan or arch=resnet")
    shape = (0, data.dim) if vector else (data.resolution, data.channels)
    if m.channels and (m.resolution, m.channels) != shape:
        raise GanforgeError(
            f"{data.name} gives samples of shape {shape} (resolution, channels) but the run's "
            f"nets are built for {(m.resolution, m.channels)}: use the run's own data")
    m.resolution, m.channels = shape
    if not vector and cfg.data.channels is None:
        cfg.data.channels = data.channels
    if m.g_cond != "none" or m.d_cond != "none":
        if not data.num_classes:
            raise GanforgeError(
                f"conditional nets (g_cond={m.g_cond}, d_cond={m.d_cond}) need class labels but "
                f"{data.name} has none: use a folder with one sub-folder per class or a "
                "labelled dataset such as digits, or train unconditionally with g_cond=none "
                "d_cond=none")
        if m.num_classes and m.num_classes != data.num_classes:
            raise GanforgeError(f"{data.name} has {data.num_classes} classes but the run's nets "
                                f"were built for {m.num_classes}")
        m.num_classes = data.num_classes


def make_batches(data, batch_size: int, seed: int, device: torch.device):
    """The batch source of a run's data: :class:`PatchBatches` (photos at native size),
    :class:`PairBatches` (image pairs, two domains) or :class:`Batches` (images, vectors)."""
    if is_patches(data):
        return PatchBatches(data, batch_size, seed, device)
    if is_pairs(data):
        return PairBatches(data, batch_size, seed, device)
    return Batches(data, batch_size, seed, device)


def describe_data(data, batches) -> str:
    """What a run trains on, for its first log line."""
    if is_patches(data):
        (rs, cs), (rt, ct) = pair_shapes(data)
        held = len(data.test_images)
        return (f"{len(data)} images of {data.sizes()} at native size"
                f"{f' ({held} held out)' if held else ''}, random {rt}x{rt} crops, "
                f"{cs}x{rs}x{rs} -> {ct}x{rt}x{rt}")
    if is_pairs(data):
        (rs, cs), (rt, ct) = pair_shapes(data)
        return (f"{batches.n} {getattr(data, 'task', 'unpaired')} examples, "
                f"{cs}x{rs}x{rs} -> {ct}x{rt}x{rt}")
    if hasattr(data, "dim"):
        return f"{len(data)} vectors of size {data.dim}"
    return f"{len(data)} images {data.channels}x{data.resolution}x{data.resolution}"


def save_preview(samples: torch.Tensor, path, data) -> torch.Tensor | None:
    """A run's sample grid at ``path`` (PNG): 8 a row for images (returns the uint8 grid), a
    scatter plot over the real points for vectors (returns None)."""
    from ..utils import make_grid, save_png, to_uint8

    if hasattr(data, "dim"):
        from ..plot import scatter_png

        real = data.x[torch.randperm(len(data), generator=torch.Generator()
                                     .manual_seed(0))[:2500]]
        scatter_png(samples.float().cpu(), path, modes=data.modes, real=real)
        return None
    grid = make_grid(to_uint8(samples), nrow=8)
    save_png(grid, path)
    return grid
