"""Image-to-image translation on real photographs at native size, against the naive answer.

Trains ``--preset pix2pix`` for ``--budget`` on random crops of photos that ship inside Python
packages (``pip install -e .[bench]``): scikit-image's five colour photos of natural scenes
(astronaut, chelsea, coffee, motorcycle_left, rocket) and two of the three photos the
super-resolution benchmark uses (scikit-learn's ``china.jpg`` and ``flower.jpg``, matplotlib's
``grace_hopper.jpg``), the third held out; it scores the held-out photo, whole, at its own
size:

* ``gray2color`` (its luma -> the colour photo) against the gray copy of the input;
* ``edges2image`` (its edge map -> the photo) against the edge map itself.

Scores: L1 (on [0, 1]), PSNR and SSIM (RGB) of the 8-bit outputs against the photo, and for
gray2color the colourfulness of Hasler and Suesstrunk (2003) of the output beside the photo's
(0 for a gray image: does the net colour at all?). The net translates the photo in windows of
its training crop (:func:`ganforge.nets.img2img.tiled_translate`, what ``ganforge translate``
does for these runs); ``psnr_whole`` is the same net run on the whole photo at once.

    python benchmarks/translate_photos.py                       # gray2color, 10 min, grace held out
    python benchmarks/translate_photos.py --folds               # each photo held out in turn (x3)
    python benchmarks/translate_photos.py --task edges2image --budget 5m
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from ganforge.metrics.paired import paired_metrics
from ganforge.nets.img2img import padded_call, tiled_translate
from ganforge.options import build_config
from ganforge.train import Trainer
from ganforge.utils import cpu_name

sys.path.insert(0, str(Path(__file__).parent))
from sr_photos import common_args, fold_folder, photo_files, run_folds  # noqa: E402


def colourfulness(img: torch.Tensor) -> float:
    """Hasler & Suesstrunk's M of uint8 ``[1, 3, H, W]``: sqrt(var rg + var yb) + 0.3 sqrt(
    mean rg^2 + mean yb^2), rg = R - G, yb = (R + G) / 2 - B."""
    r, g, b = img[0].double().unbind(0)
    rg, yb = r - g, 0.5 * (r + g) - b
    return float((rg.var(unbiased=False) + yb.var(unbiased=False)).sqrt()
                 + 0.3 * (rg.mean() ** 2 + yb.mean() ** 2).sqrt())


@torch.no_grad()
def score(G, img: torch.Tensor, src: torch.Tensor, crop: int, task: str,
          save: Path | None = None) -> dict[str, dict[str, float]]:
    """{"model": ..., "copy the input": ...}: metrics of the held-out photo ``img`` (uint8
    [C, H, W]) from its source ``src`` (uint8 [1, H, W])."""
    q = lambda t: t.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)  # noqa: E731
    x = src[None].float().div(127.5).sub(1.0)
    was = G.training
    G.eval()
    try:
        out = q(tiled_translate(lambda t: padded_call(G, t), x, crop))
        whole = q(padded_call(G, x).float())
    finally:
        G.train(was)
    base = q(x.expand(-1, img.shape[0], -1, -1))
    rows = {}
    for name, y in (("pix2pix", out), ("copy the input", base)):
        m = paired_metrics(y, img[None])
        if task == "gray2color":
            m["colourfulness"] = colourfulness(y)
            m["colourfulness_photo"] = colourfulness(img[None])
        if name == "pix2pix":
            m["psnr_whole"] = paired_metrics(whole, img[None])["psnr"]
        rows[name] = m
        if save is not None:
            from ganforge.utils import save_png

            save.mkdir(parents=True, exist_ok=True)
            save_png(y[0], save / f"{task}_{name.replace(' ', '_')}.png")
    return rows


def one_fold(held: int, args, overrides: dict, root: Path) -> list[dict]:
    files = photo_files()
    data = fold_folder(held, root)
    cfg = build_config("pix2pix", {"max_time": args.budget, "seed": args.seed,
                                   "sample_every": 0, "checkpoint_every": 0, "task": args.task,
                                   **overrides, "source": str(data)})
    tr = Trainer(cfg, root / f"run{held}-{args.task}", quiet=True, tensorboard=False)
    res = tr.train()
    d = tr.data
    save = Path(args.save) / Path(files[held].name).stem if args.save else None
    rows = score(tr.G_eval, d.test_images[0], d.test_sources[0], d.crop, args.task, save)
    base = {"task": args.task, "held_out": files[held].name, "budget": args.budget,
            "seed": args.seed, "set": args.set, "cpu": cpu_name(),
            "torch_threads": torch.get_num_threads()}
    return [{**base, "model": "copy the input", "steps": 0, **rows["copy the input"]},
            {**base, "model": "pix2pix", "steps": res.step,
             "minutes": round(tr.train_seconds / 60, 2), **rows["pix2pix"]}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="gray2color", choices=("gray2color", "edges2image"))
    common_args(ap, "pix2pix")
    ap.add_argument("--save", metavar="DIR", help="write the held-out outputs there (PNG)")
    args = ap.parse_args()

    def show(r: dict) -> None:
        print(f"{r['held_out']:<16} {r['model']:<15} steps {r['steps']:>5}  "
              f"L1 {r['l1']:.4f}  PSNR {r['psnr']:.2f} dB  SSIM {r['ssim']:.4f}"
              + (f"  colourfulness {r['colourfulness']:.1f} (photo "
                 f"{r['colourfulness_photo']:.1f})" if "colourfulness" in r else "")
              + (f"  PSNR whole-image {r['psnr_whole']:.2f}" if "psnr_whole" in r else ""),
              flush=True)

    rows = run_folds(args, one_fold, show)
    print()
    print(f"pix2pix {args.task} on a held-out photo, {args.budget} of training, seed "
          f"{args.seed}, {cpu_name()}, {torch.get_num_threads()} threads"
          + (f", set {' '.join(args.set)}" if args.set else ""))
    colour = args.task == "gray2color"
    print("| held out | model | steps | L1 | PSNR dB | SSIM |" + (" colourfulness (photo) |"
                                                              if colour else ""))
    print("|---|---|---|---|---|---|" + ("---|" if colour else ""))
    for r in rows:
        print(f"| {r['held_out']} | {r['model']} | {r['steps']} | {r['l1']:.4f} | "
              f"{r['psnr']:.2f} | {r['ssim']:.4f} |"
              + (f" {r['colourfulness']:.1f} ({r['colourfulness_photo']:.1f}) |"
                 if colour else ""))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
