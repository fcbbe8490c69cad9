"""Deterministic batches from the uint8 cache, as dicts, on the training device.

The order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone, so batch ``step`` is
the same whether a run was interrupted or not: exact resume needs no saved loader state.

Sets above the memory limit live in a disk cache (:mod:`ganforge.data.cache`): their batches
are read from the file row by row (positioned reads, so resident memory stays a few batches
whatever the set's size) by a background thread one or two batches ahead of the trainer.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from ..config import Config
from ..data import ImageDataset
from ..errors import GanforgeError


def _silent(_msg: str) -> None:
    """The log of a quiet run (``log=None``)."""


def load_data(cfg: Config, log=print):
    """The run's data: an :class:`ImageDataset`, or a ``VectorDataset`` for vector specs."""
    from ..data import is_vector_spec, load_dataset, load_vectors

    d, say = cfg.data, log or _silent  # log=None (a quiet run) goes on to the loaders
    check_data_keys(cfg)
    patch_task = d.task in ("lowres2highres", "gray2color", "edges2image")
    if patch_task:
        from ..data.patches import is_patch_spec, load_patches

        if is_patch_spec(d.source):  # photos: trained at native size, on random crops
            what = "super-resolution" if d.task == "lowres2highres" else d.task
            if d.xflip:
                raise GanforgeError(f"xflip: {what} on {d.source} trains on random crops, "
                                    f"already flipped and turned at random: drop xflip")
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
            say(f"the {cfg.preset} preset's crop={cfg.train.crop} is for photos: the "
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
    return load_dataset(d.source, resolution=d.resolution, channels=d.channels, log=log,
                        fit=d.fit, image_column=d.image_column,
                        label_column=d.label_column)


def check_data_keys(cfg: Config) -> None:
    """One line for a data key that the run's data does not read: ``xflip`` on vector data,
    ``image_column`` / ``label_column`` beside a source that is not ``hf:`` or on an
    image-to-image task (its pairs are made from the first image column)."""
    from ..data import is_vector_spec
    from ..data.hf_sets import is_hf_spec

    d = cfg.data
    for key in ("image_column", "label_column"):
        value = getattr(d, key)
        if value and not is_hf_spec(d.source):
            raise GanforgeError(f"{key}={value} names a column of a Hugging Face dataset "
                                f"(--data hf:NAME) but {d.source} is not one: drop {key}")
        if value and d.task != "none":
            raise GanforgeError(f"{key}={value}: task={d.task} makes its pairs from the first "
                                f"image column of {d.source}, without labels: drop {key}")
    if d.xflip and is_vector_spec(d.source):
        raise GanforgeError(f"xflip mirrors images and {d.source} is vector data: drop xflip")


def _mirror(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """``x`` [N, ...] with the rows where ``flip`` [N] (bool, on the CPU: checking it needs no
    device sync) is true flipped left-right."""
    if not bool(flip.any()):
        return x
    return torch.where(flip.to(x.device).view(-1, *[1] * (x.dim() - 1)), x.flip(-1), x)


class Batches:
    """Batch number ``i`` of a run as a dict: ``{"image": float [-1, 1] NCHW, "label"}`` for
    images, ``{"vector": float [N, D], "label"}`` for vector data. With ``xflip`` (images
    only) an epoch is ``2N`` samples: sample ``i`` is image ``i mod N``, flipped left-right
    when ``i >= N``, flipped as the batch is gathered (nothing stored twice).

    ``rank`` / ``world`` (multi-process runs): :meth:`get` gives this rank's part of the global
    batch (rows ``rank * B/world`` to ``(rank + 1) * B/world``) and gathers only those.
    A set on disk (``data.rows``) is read ahead ``prefetch`` batches by one thread (the reads
    and the uint8 -> float copy release the GIL); batch ``i`` is the same bits either way.
    :meth:`close` stops the thread (the trainer calls it at the end of a run)."""

    def __init__(self, data, batch_size: int, seed: int, device: torch.device,
                 max_device_bytes: int = 2 << 30, xflip: bool = False, rank: int = 0,
                 world: int = 1, prefetch: int = 2):
        self.data = data
        self.count = len(data)  # distinct samples
        self.xflip = bool(xflip)
        if self.xflip and not isinstance(data, ImageDataset):
            raise GanforgeError(f"xflip mirrors images and {data.name} is vector data: drop "
                                "xflip")
        self.n = self.count * (2 if self.xflip else 1)  # samples of an epoch
        self.batch_size = min(batch_size, self.n)
        self.steps_per_epoch = self.n // self.batch_size  # drop_last
        self.seed = seed
        self.device = device
        self.key = "image" if isinstance(data, ImageDataset) else "vector"
        if not 0 <= rank < world:
            raise GanforgeError(f"rank {rank} is not one of the {world} processes: start "
                                "multi-process runs with torchrun")
        self.rank, self.world = rank, world
        self.sharded = world > 1  # get() gives this rank's part of each batch
        images = data.images if self.key == "image" else data.x
        rows = getattr(data, "rows", None) if self.key == "image" else None
        self.rows = rows if rows is not None and rows.shape == tuple(images.shape) else None
        # move the uint8 cache to the device once when it fits; else gather per batch
        if device.type != "cpu" and images.numel() <= max_device_bytes:
            images, self.rows = _to_device(images, self.rows, device), None
        self.images = images
        self.labels = data.labels.to(images.device) if data.labels is not None else None
        self._perm_epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)
        self.prefetch = max(0, int(prefetch)) if self.rows is not None else 0
        self._ahead: dict[int, Future] = {}  # batch index -> its batch, being read
        self._pool: ThreadPoolExecutor | None = None

    def _order(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.n, generator=g)
            self._perm_epoch = epoch
        return self._perm

    def get(self, index: int) -> dict[str, torch.Tensor]:
        """Batch number ``index`` (0-based, counted over the whole run); this rank's part of
        it when ``world > 1``."""
        ahead = self._ahead.pop(index, None)
        batch = ahead.result() if ahead is not None else self._gather(*self._pick(index))
        if self.prefetch:
            self._read_ahead(index + 1)
        return batch

    def _pick(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(rows, flips or None) of batch ``index`` for this rank (the main thread alone
        draws the epochs' orders)."""
        epoch, i = divmod(index, self.steps_per_epoch)
        idx = self._order(epoch)[i * self.batch_size:(i + 1) * self.batch_size]
        if self.sharded:
            k = self.batch_size // self.world
            idx = idx[self.rank * k:(self.rank + 1) * k]
        flip = None
        if self.xflip:
            flip, idx = idx >= self.count, idx % self.count
        return idx, flip

    def _read_ahead(self, start: int) -> None:
        """Have batches ``start`` to ``start + prefetch - 1`` read in the background (others
        dropped: a jump, such as the memory probe's batch 0, restarts the window)."""
        for k in [k for k in self._ahead if not start <= k < start + self.prefetch]:
            self._ahead.pop(k).cancel()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="ganforge-batches")
        for k in range(start, start + self.prefetch):
            if k not in self._ahead:
                self._ahead[k] = self._pool.submit(self._gather, *self._pick(k))

    def close(self) -> None:
        """Stop reading ahead and end the thread (waits for a read under way, < a batch);
        a later :meth:`get` works and starts it again."""
        for f in self._ahead.values():
            f.cancel()
        self._ahead.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _gather(self, idx: torch.Tensor, flip: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The batch of rows ``idx`` (mirrored where ``flip``), on the device, as floats."""
        if self.rows is not None:  # on disk: read, never mapped
            x = torch.from_numpy(self.rows.gather(idx.numpy()))
        else:  # index_select: the same rows as images[idx], ~10x faster on a CPU
            x = self.images.index_select(0, idx.to(self.images.device))
        x = x.to(self.device, non_blocking=True)
        if flip is not None:
            x = _mirror(x, flip)
        if self.key == "image":
            x = x.float().div_(127.5).sub_(1.0)  # uint8 -> [-1, 1]
        batch = {self.key: x}
        if self.labels is not None:
            batch["label"] = self.labels[idx.to(self.labels.device)].to(self.device)
        return batch


def _to_device(images: torch.Tensor, rows, device: torch.device) -> torch.Tensor:
    """``images`` copied to ``device``; from a disk cache (``rows``) in chunks of reads, so
    the copy never maps the file into this process."""
    if rows is None:
        return images.to(device)
    out = torch.empty(tuple(images.shape), dtype=torch.uint8, device=device)
    step = max(1, (64 << 20) // max(1, images[0].numel()))
    for i in range(0, len(images), step):
        part = rows.gather(np.arange(i, min(i + step, len(images))))
        out[i:i + len(part)] = torch.from_numpy(part).to(device)
    return out


# --- image-to-image -----------------------------------------------------------------------


class WholeBatches:
    """What the trainer asks of every batch source, for those that gather whole batches in
    the trainer's thread: the trainer slices each rank's part, and there is nothing to stop."""

    sharded = False

    def close(self) -> None:
        """Nothing runs in the background."""


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


class PairBatches(WholeBatches):
    """Batch number ``i`` of an image-to-image run: ``{"source", "target"}`` for aligned
    pairs, ``{"a", "b"}`` for two unaligned domains (each domain walks through its own
    seeded permutations, so the smaller one simply wraps around more often). Deterministic in
    (seed, index), like :class:`Batches`. With ``xflip`` each set is doubled as in
    :class:`Batches`: a pair's source and target are flipped together."""

    def __init__(self, data, batch_size: int, seed: int, device: torch.device,
                 xflip: bool = False):
        self.data = data
        self.unpaired = _unpaired(data)
        self.xflip = bool(xflip)
        self.n = pair_count(data) * (2 if self.xflip else 1)
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
        k = 2 if self.xflip else 1
        if self.unpaired:
            ia = self._take(0, k * len(d.a), start, self.batch_size)
            ib = self._take(1, k * len(d.b), start, self.batch_size)
            return {"a": self._pick(d.a, ia), "b": self._pick(d.b, ib)}
        epoch, i = divmod(index, self.steps_per_epoch)
        idx = self._perm(0, self.n, epoch)[i * self.batch_size:(i + 1) * self.batch_size]
        return {"source": self._pick(d.source, idx), "target": self._pick(d.target, idx)}

    def _pick(self, images: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Rows ``idx`` of ``images`` as floats; with xflip, ``idx >= len`` are mirrored."""
        if not self.xflip:
            return _float(images.index_select(0, idx), self.device)
        n = len(images)
        return _mirror(_float(images.index_select(0, idx % n), self.device), idx >= n)

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


class PatchBatches(WholeBatches):
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


def make_batches(data, batch_size: int, seed: int, device: torch.device, xflip: bool = False,
                 rank: int = 0, world: int = 1):
    """The batch source of a run's data: :class:`PatchBatches` (photos at native size),
    :class:`PairBatches` (image pairs, two domains) or :class:`Batches` (images, vectors);
    ``xflip``: the set doubled with mirrored copies (not for patches, which flip already).
    ``rank`` / ``world``: :class:`Batches` then gives this rank's part of each batch
    (``sharded``); the others give whole batches, which the trainer slices."""
    if is_patches(data):
        if xflip:
            raise GanforgeError(f"xflip: {data.name} trains on random crops, already flipped "
                                "and turned at random: drop xflip")
        return PatchBatches(data, batch_size, seed, device)
    if is_pairs(data):
        return PairBatches(data, batch_size, seed, device, xflip=xflip)
    return Batches(data, batch_size, seed, device, xflip=xflip, rank=rank, world=world)


def describe_data(data, batches) -> str:
    """What a run trains on, for its first log line."""
    if is_patches(data):
        (rs, cs), (rt, ct) = pair_shapes(data)
        held = len(data.test_images)
        return (f"{len(data)} images of {data.sizes()} at native size"
                f"{f' ({held} held out)' if held else ''}, random {rt}x{rt} crops, "
                f"{cs}x{rs}x{rs} -> {ct}x{rt}x{rt}")
    mirrored = " (x2 mirrored)" if getattr(batches, "xflip", False) else ""
    if is_pairs(data):
        (rs, cs), (rt, ct) = pair_shapes(data)
        return (f"{pair_count(data)} {getattr(data, 'task', 'unpaired')} examples{mirrored}, "
                f"{cs}x{rs}x{rs} -> {ct}x{rt}x{rt}")
    if hasattr(data, "dim"):
        return f"{len(data)} vectors of size {data.dim}"
    return f"{len(data)} images {data.channels}x{data.size[0]}x{data.size[1]}{mirrored}"


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
