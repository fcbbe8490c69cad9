"""Projection of held-out real images into a trained run (issue: GAN inversion, ``ganforge
project``).

For a noise-to-image run and a folder of real images it never trained on, projects every image
(the run's default space: w for StyleGAN2 runs, z for the others; ``ganforge.project``) and
prints the mean PSNR / SSIM of the reconstructions against the targets next to two baselines
that involve no optimisation:

- the run's mean image: the image of the mean latent, for StyleGAN2 the w_avg image (the mean
  of 10,000 mapped w, the projection's start, fixed noise), for the others the z = 0 image;
- random samples of the run: as many as there are targets (seed ``--sample-seed``), each
  scored against one target.

Images are read as ``ganforge project`` reads them (converted to the run's channels, centre
crop to a square, resized to its resolution). ``--out FILE.jsonl`` appends one JSON line with
these numbers, the settings and the CPU (``ganforge.utils.cpu_name()``).

    python benchmarks/projection.py --run runs/sg2 --images data/heldout --steps 500 \
        --out docs/projection.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import ganforge
from ganforge import project as pj
from ganforge.data.images import image_files as list_images
from ganforge.directions import render
from ganforge.errors import GanforgeError
from ganforge.utils import cpu_name


def image_files(folder: Path, n: int | None) -> list[Path]:
    files = list_images(folder, "--images")
    return files[:n] if n else files


@torch.no_grad()
def mean_image(g, labels: torch.Tensor | None, n: int) -> torch.Tensor:
    """[n, C, R, R]: the w_avg image (StyleGAN2, fixed noise) or the z = 0 image per target."""
    if g.is_style:
        w_avg, _ = pj.w_stats(g, labels)
        return render(g, w_avg.expand(n, -1), "w")
    return render(g, torch.zeros(n, g.latent_dim), "z", labels)


def measure(run: str, images: str, steps: int = pj.DEFAULT_STEPS, space: str | None = None,
            n: int | None = None, cls: str | None = None, distance: str = "auto",
            seed: int = 0, sample_seed: int = 1234, device: str = "auto") -> dict:
    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    g = pj.check_run(ganforge.load(run, device=device))
    space = pj.check_space(g, space)
    m = g.cfg.model
    x, read, failed, notes = pj.load_targets(image_files(Path(images), n), m.resolution,
                                             m.channels)
    for note in notes + ([f"skipped {len(failed)} unreadable file(s)"] if failed else []):
        say(note)
    if not read:
        raise GanforgeError(f"no image could be read from {images}")
    labels = pj.class_labels(g, len(read), cls)
    start = time.perf_counter()
    p = pj.project(g, x, space, steps, labels, seed, distance, log=say)
    seconds = time.perf_counter() - start
    base_psnr, _ = pj.scores(mean_image(g, labels, len(read)), x)
    samples = g.generate(g.noise(len(read), sample_seed), labels, noise_mode="const")
    rand_psnr, _ = pj.scores(samples, x)
    return {"run": str(run), "step": g.step, "images": str(images), "n": len(read),
            "skipped": len(failed), "space": p.space, "steps": steps, "distance": p.distance,
            "class": cls, "psnr": float(p.psnr.mean()), "ssim": float(p.ssim.mean()),
            "psnr_mean_image": float(base_psnr.mean()),
            "psnr_random_sample": float(rand_psnr.mean()), "seconds": round(seconds, 1),
            "device": str(g.device), "cpu": cpu_name()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a noise-to-image run folder")
    ap.add_argument("--images", required=True, help="a folder of held-out real images")
    ap.add_argument("--steps", type=int, default=pj.DEFAULT_STEPS)
    ap.add_argument("--space", choices=pj.SPACES, help="default: w (StyleGAN2) or z")
    ap.add_argument("--n", type=int, help="project only the first N images (sorted names)")
    ap.add_argument("--class", dest="cls", help="conditional runs: the images' class")
    ap.add_argument("--distance", choices=("auto", "lpips", "pixel"), default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample-seed", type=int, default=1234, help="seed of the random samples")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, help="append a JSON line to this .jsonl file")
    a = ap.parse_args(argv)
    try:
        r = measure(a.run, a.images, a.steps, a.space, a.n, a.cls, a.distance, a.seed,
                    a.sample_seed, a.device)
    except GanforgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{r['n']} image(s), {r['space']}, {r['steps']} steps, distance: {r['distance']}")
    print(f"{'projection':<16} PSNR {r['psnr']:6.2f} dB   SSIM {r['ssim']:.4f}")
    print(f"{'mean image':<16} PSNR {r['psnr_mean_image']:6.2f} dB")
    print(f"{'random samples':<16} PSNR {r['psnr_random_sample']:6.2f} dB")
    print(f"{r['seconds']} s on {r['device']} ({r['cpu']})")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        with a.out.open("a") as f:
            f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
