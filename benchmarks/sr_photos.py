"""Super-resolution x4 on real photographs, against bicubic: the SR papers' protocol.

Trains ``--preset srgan-small`` (or ``--preset srgan``) for ``--budget`` on random crops of
photos that ship inside Python packages (``pip install -e .[bench]``), at their own size:
scikit-image's five colour photos of natural scenes (astronaut, chelsea, coffee,
motorcycle_left, rocket; ``--two-photos`` leaves them out) and scikit-learn's ``china.jpg`` and
``flower.jpg`` (640x427), and scores it on a held-out photo of other content (matplotlib's
``grace_hopper.jpg``, 512x600; with ``--folds`` each of those three in turn): the photo cut to a
multiple of 4, made small by the antialiased bicubic downsampling the training uses, upscaled
back. Scores: PSNR and SSIM of the luma Y with a 4-pixel border cut (``psnr_y``, ``ssim_y``),
outputs rounded to 8 bits, and the energy of period-2 patterns
(:func:`ganforge.metrics.paired.checkerboard`: a checkerboard artefact raises it; so does any
real detail, so the photo's own figure is printed beside it, and for scale bicubic's sharpened
by an unsharp mask and with a +-1 grey-level checkerboard added). The generator is scored at
the end of the SRResNet (pixel-loss) phase, copied off the training clock, and at the end of
the run (the SRGAN phase).

    python benchmarks/sr_photos.py                      # 10 minutes, seed 0
    python benchmarks/sr_photos.py --budget 2m --set n_blocks=8 --out sr.jsonl
    python benchmarks/sr_photos.py --folds              # each photo held out in turn (x3)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ganforge.config import parse_duration
from ganforge.data.pairs import downsample
from ganforge.errors import GanforgeError
from ganforge.metrics.paired import checkerboard, sr_metrics
from ganforge.nets.img2img import tiled_upscale
from ganforge.options import build_config
from ganforge.train import Trainer
from ganforge.utils import cpu_name

SCALE = 4


def photo_files() -> list[Path]:
    """The three photos: scikit-learn's two, matplotlib's one."""
    import sklearn

    files = [Path(sklearn.__file__).parent / "datasets" / "images" / n
             for n in ("china.jpg", "flower.jpg")]
    try:
        import matplotlib
    except ImportError:
        raise GanforgeError("this benchmark holds out matplotlib's sample photo: "
                            "pip install -e .[bench]") from None
    files.append(Path(matplotlib.__file__).parent / "mpl-data" / "sample_data"
                 / "grace_hopper.jpg")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise GanforgeError(f"sample photo not found: {missing[0]} (reinstall the package)")
    return files


SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png",
                  "rocket.jpg")


TEXTURE_PHOTOS = ("camera.png", "brick.png", "grass.png", "gravel.png")


def training_photos(textures: bool = False) -> list[Path]:
    """scikit-image's five colour photos of natural scenes (always trained on, never held
    out); with ``textures`` also its gray photo and three gray textures (brick, grass,
    gravel: dense fine detail)."""
    try:
        import skimage
    except ImportError:
        raise GanforgeError("this benchmark trains on scikit-image's sample photos: "
                            "pip install -e .[bench]") from None
    names = SKIMAGE_PHOTOS + (TEXTURE_PHOTOS if textures else ())
    files = [Path(skimage.__file__).parent / "data" / n for n in names]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise GanforgeError(f"sample photo not found: {missing[0]} (reinstall scikit-image)")
    return files


class PhaseTrainer(Trainer):
    """Copies the sampling generator (off the clock) when the SRResNet phase ends."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.pixel_phase: tuple[int, float, dict] | None = None

    def _one_step(self, ctx: dict):
        if self.pixel_phase is None and not self.recipe.warming(self.step, ctx["progress"]):
            t0 = time.perf_counter()
            state = {k: v.detach().clone() for k, v in self.G_eval.state_dict().items()}
            self.pixel_phase = (self.step, self.elapsed(), state)
            self._t0 += time.perf_counter() - t0
        return super()._one_step(ctx)


@torch.no_grad()
def references(up: torch.Tensor) -> dict[str, float]:
    """The checkerboard energy of bicubic ``up`` [1, C, H, W] in [-1, 1] sharpened by an
    unsharp mask (amount 0.5, 3x3 box: real detail, no artefact) and with a +-1 grey-level
    checkerboard added (a barely visible artefact): what the figure means."""
    q = lambda t: t.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)  # noqa: E731
    blur = F.avg_pool2d(F.pad(up, (1, 1, 1, 1), mode="replicate"), 3, 1)
    i = torch.arange(up.shape[-2]).view(-1, 1)
    j = torch.arange(up.shape[-1]).view(1, -1)
    board = (1 - 2 * ((i + j) % 2)).float() / 127.5
    return {"checkerboard_unsharp": checkerboard(q(up + 0.5 * (up - blur))),
            "checkerboard_pm1": checkerboard(q(up + board))}


def score(G, photos: list[torch.Tensor], lowres=None, save: Path | None = None
          ) -> dict[str, float]:
    """Means over the held-out photos: psnr_y, ssim_y, checkerboard (G None = bicubic).
    ``lowres(hr, generator)``: how the inputs are made (the run's recipe: with
    ``degrade=realesrgan``, a fixed random chain per photo); the clean downsample when None."""
    sums: dict[str, float] = {}
    for i, img in enumerate(photos):
        h, w = img.shape[-2:]
        hr = img[None, :, :h - h % SCALE, :w - w % SCALE]
        x = hr.float().div(127.5).sub(1.0)
        lr = downsample(x, SCALE) if lowres is None else lowres(
            x, torch.Generator().manual_seed(i))
        if G is None:
            out = F.interpolate(lr, scale_factor=SCALE, mode="bicubic", align_corners=False)
        else:
            was = G.training
            G.eval()
            out = tiled_upscale(G, lr, SCALE, tile=128)
            G.train(was)
        q = out.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
        if save is not None:
            from ganforge.utils import save_png

            save.parent.mkdir(parents=True, exist_ok=True)
            save_png(q[0], save.with_name(f"{save.name}_{i}.png"))
        m = sr_metrics(q, hr, shave=SCALE)
        m["checkerboard"] = checkerboard(q)
        m["checkerboard_photo"] = checkerboard(hr)
        if G is None:  # the scale: an artefact-free sharpening, and a faint checkerboard
            m.update(references(out))
        for k, v in m.items():
            sums[k] = sums.get(k, 0.0) + v
    return {k: v / len(photos) for k, v in sums.items()}


def fold_folder(held: int, root: Path, extra: bool = True, textures: bool = False) -> Path:
    """``root/photos{held}`` with ``train/`` (the two other photos, and scikit-image's five
    with ``extra``) and ``test/`` (photo number ``held`` of :func:`photo_files`)."""
    data = root / f"photos{held}"
    for sub in ("train", "test"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(photo_files()):
        shutil.copy(f, data / ("test" if i == held else "train") / f.name)
    for f in training_photos(textures) if extra else []:
        shutil.copy(f, data / "train" / f.name)
    return data


def common_args(ap: argparse.ArgumentParser, preset: str) -> None:
    """The options both photo benchmarks take."""
    ap.add_argument("--budget", default="10m", help="training time (default 10m)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help=f"overrides of the {preset} preset, e.g. lr_g=1e-4")
    ap.add_argument("--folds", action="store_true",
                    help="hold out each of the 3 photos in turn (3 runs); default: only "
                         "--held")
    ap.add_argument("--held", default="grace_hopper.jpg",
                    choices=("china.jpg", "flower.jpg", "grace_hopper.jpg"),
                    help="the photo held out without --folds (default grace_hopper.jpg)")
    ap.add_argument("--out", help="append one JSON line per row to this file")


def run_folds(args, one_fold, show) -> list[dict]:
    """``one_fold(held, args, overrides, root)`` for each held-out photo; ``show(row)`` prints
    a row as it comes; the rows are appended to ``--out``."""
    try:
        parse_duration(args.budget)
        bad = [kv for kv in args.set if "=" not in kv]
        if bad:
            raise ValueError(f"--set {bad[0]}: write KEY=VALUE, e.g. lr_g=1e-4")
        overrides = dict(kv.split("=", 1) for kv in args.set)
    except (GanforgeError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        names = [f.name for f in photo_files()]
        for held in (0, 1, 2) if args.folds else (names.index(args.held),):
            try:
                fold = one_fold(held, args, overrides, Path(tmp))
            except GanforgeError as e:
                raise SystemExit(f"error: {e}") from None
            for r in fold:
                show(r)
            rows += fold
    if args.out:
        with open(args.out, "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    return rows


def one_fold(held: int, args, overrides: dict, root: Path) -> list[dict]:
    files = photo_files()
    data = fold_folder(held, root, extra=not args.two_photos, textures=args.textures)
    cfg = build_config(args.preset, {"max_time": args.budget, "seed": args.seed, "sample_every": 0,
                                 "checkpoint_every": 0, **overrides, "source": str(data)})
    tr = PhaseTrainer(cfg, root / f"run{held}", quiet=True, tensorboard=False)
    photos = tr.data.test_images
    res = tr.train()
    base = {"preset": args.preset, "held_out": files[held].name, "budget": args.budget,
            "train_photos": len(tr.data.images),
            "seed": args.seed,
            "set": args.set, "cpu": cpu_name(), "torch_threads": torch.get_num_threads()}
    lowres = tr.recipe.lowres
    out = Path(args.save) / Path(files[held].name).stem if args.save else None

    def where(name: str) -> Path | None:
        return out.with_name(f"{out.name}_{name}") if out else None

    rows = [{**base, "model": "bicubic", "steps": 0,
             **score(None, photos, lowres, where("bicubic"))}]
    if tr.pixel_phase is not None:
        step, secs, state = tr.pixel_phase
        G = copy.deepcopy(tr.G_eval)
        G.load_state_dict(state)
        rows.append({**base, "model": "SRResNet phase", "steps": step,
                     "minutes": round(secs / 60, 2),
                     **score(G, photos, lowres, where("srresnet"))})
    rows.append({**base, "model": "SRGAN phase (end)", "steps": res.step,
                 "minutes": round(tr.train_seconds / 60, 2),
                 **score(tr.G_eval, photos, lowres, where("srgan"))})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common_args(ap, "srgan-small")
    ap.add_argument("--preset", default="srgan-small",
                    help="srgan-small (default: sized for a CPU) or srgan (the paper's nets)")
    ap.add_argument("--two-photos", action="store_true",
                    help="train on the two other photos only, without scikit-image's five "
                         "(the setting of the README's first figures)")
    ap.add_argument("--textures", action="store_true",
                    help="also train on scikit-image's gray photo (camera) and gray textures "
                         "(brick, grass, gravel)")
    ap.add_argument("--save", metavar="DIR", help="write the upscaled held-out photos there "
                    "(PNG: bicubic, SRResNet phase, end) to look at them")
    args = ap.parse_args()

    def show(r: dict) -> None:
        print(f"{r['held_out']:<16} {r['model']:<18} steps {r['steps']:>5}  "
              f"Y-PSNR {r['psnr_y']:.2f} dB  SSIM-Y {r['ssim_y']:.4f}  "
              f"checkerboard {r['checkerboard']:.3f} (photo {r['checkerboard_photo']:.3f}"
              + (f", bicubic + unsharp mask {r['checkerboard_unsharp']:.3f}, + a +-1 "
                 f"checkerboard {r['checkerboard_pm1']:.3f}"
                 if "checkerboard_pm1" in r else "") + ")", flush=True)

    rows = run_folds(args, one_fold, show)
    print()
    print(f"--preset {args.preset}, x4 on held-out photos, {args.budget} of training, "
          f"seed {args.seed}, "
          f"{cpu_name()}, {torch.get_num_threads()} threads"
          + (f", set {' '.join(args.set)}" if args.set else ""))
    print("| held out | model | steps | Y-PSNR dB | SSIM (Y) | checkerboard energy |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['held_out']} | {r['model']} | {r['steps']} | {r['psnr_y']:.2f} | "
              f"{r['ssim_y']:.4f} | {r['checkerboard']:.3f} |")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
