"""GPU throughput in one script (under 8 minutes on one GPU): ganforge's trainer on random
images of the right shape, each setting timed over ``--steps`` training steps after warm-up.

- DCGAN 3x32x32 (batch 64, the seed's widths): images/s in fp32, bf16, bf16 + channels-last,
  compiled (bf16 + channels-last + torch.compile).
- R3GAN (its CIFAR nets at 32; the FFHQ widths at 64 and 256) and StyleGAN2 (the paper's nets)
  at 32, 64 and 256: seconds per thousand images (sec/kimg) and images/s, bf16, with
  ``batch_gpu`` micro-batches where the paper batch would not fit.

    python benchmarks/gpu.py                  # on a CUDA device
    python benchmarks/gpu.py --device cpu --quick   # a smoke run of the script on a CPU

Prints one table (markdown) with the device named, and peak memory per setting.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from ganforge.data import ImageDataset
from ganforge.options import build_config
from ganforge.train import Trainer


def random_images(n: int, resolution: int, channels: int = 3) -> ImageDataset:
    """``n`` random uint8 images standing in for a dataset (throughput needs no real data)."""
    images = torch.randint(0, 256, (n, channels, resolution, resolution), dtype=torch.uint8)
    return ImageDataset(images=images, labels=None, class_names=[],
                        name=f"random {resolution}x{resolution}")


# name -> (preset, resolution, overrides)
def settings(quick: bool) -> dict[str, tuple[str, int, dict]]:
    tiny = {"g_channel_base": 256, "d_channel_base": 256, "g_channel_max": 16,
            "d_channel_max": 16, "batch_size": 8, "group_channels": 8} if quick else {}
    dcgan = {"batch_size": 64, **({"g_channel_base": 128, "d_channel_base": 128} if quick
                                  else {})}
    ffhq = {"g_channel_base": 24576, "d_channel_base": 24576, "g_channel_max": 768,
            "d_channel_max": 768}
    s = {
        "dcgan-32 fp32": ("dcgan", 32, dict(dcgan)),
        "dcgan-32 bf16": ("dcgan", 32, {**dcgan, "precision": "bf16"}),
        "dcgan-32 bf16+cl": ("dcgan", 32, {**dcgan, "precision": "bf16",
                                           "channels_last": True}),
        "dcgan-32 bf16+cl+compile": ("dcgan", 32, {**dcgan, "precision": "bf16",
                                                   "channels_last": True, "compile": True}),
        "r3gan-32 bf16 (CIFAR nets, batch 512 in 4 x 128)":
            ("r3gan", 32, {"precision": "bf16", "batch_size": 512, "batch_gpu": 128, **tiny}),
        "r3gan-64 bf16 (FFHQ widths, batch 256 in 4 x 64)":
            ("r3gan", 64, {"precision": "bf16", "batch_size": 256, "batch_gpu": 64, **ffhq,
                           **tiny}),
        "r3gan-256 bf16 (FFHQ widths, batch 256 in 16 x 16)":
            ("r3gan", 256, {"precision": "bf16", "batch_size": 256, "batch_gpu": 16, **ffhq,
                            **tiny}),
        "stylegan2-32 bf16 (CIFAR setup, batch 64)":
            ("stylegan2", 32, {"precision": "bf16", "batch_size": 64, "mapping_layers": 2,
                               "pl_weight": 0, **tiny}),
        "stylegan2-64 bf16 (batch 32)": ("stylegan2", 64, {"precision": "bf16", **tiny}),
        "stylegan2-256 bf16 (paper nets, batch 32)": ("stylegan2", 256,
                                                      {"precision": "bf16", **tiny}),
    }
    if quick:
        s = {k: (p, min(r, 64), {**{kk: v for kk, v in o.items()
                                    if p == "r3gan" or kk != "group_channels"},
                                 **({"batch_gpu": 4} if "batch_gpu" in o else {})})
             for k, (p, r, o) in s.items()}
    return s


def time_one(preset: str, resolution: int, overrides: dict, device: str, steps: int,
             warmup: int) -> dict:
    cfg = build_config(preset, {"resolution": resolution, "device": device,
                                "max_steps": warmup + steps, "sample_every": 0,
                                "checkpoint_every": 0, "log_every": 10_000,
                                **overrides})
    data = random_images(max(cfg.train.batch_size * 2, 256), resolution)
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, tmp, data=data, quiet=True, tensorboard=False)
        tr._limits = (warmup + steps, None, None)
        dev = tr.device
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)

        def step():
            ctx = {"step": tr.step, "epoch": 0.0, "progress": tr.progress(),
                   "sample_z": tr.sample_z, "randint": tr.randint, "noise": tr.noise,
                   "device": dev}
            tr._one_step(ctx)
            tr.step += 1

        for _ in range(warmup):
            step()
        sync()
        seen = tr.images_seen
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        secs = time.perf_counter() - t0
        imgs = tr.images_seen - seen
        peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    return {"img/s": imgs / secs, "sec/kimg": 1000 * secs / imgs, "peak_gib": peak,
            "speed": tr.speed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="tiny nets: check the script runs")
    ap.add_argument("--only", nargs="*", default=None, help="settings whose name has any "
                    "of these words")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: nothing measured (--device cpu --quick checks "
                         "the script)")
    name = (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
            else "CPU")
    rows = []
    for label, (preset, res, ov) in settings(args.quick).items():
        if args.only and not any(w in label for w in args.only):
            continue
        try:
            r = time_one(preset, res, ov, args.device, args.steps, args.warmup)
        except torch.OutOfMemoryError:
            print(f"{label}: out of memory", flush=True)
            continue
        rows.append((label, r))
        print(f"{label}: {r['img/s']:.0f} img/s, {r['sec/kimg']:.2f} sec/kimg ({r['speed']})",
              flush=True)
    print(f"\n{name}, torch {torch.__version__}, {args.steps} timed steps after "
          f"{args.warmup}{' (quick: tiny nets)' if args.quick else ''}:")
    print("| setting | img/s | sec/kimg | peak GiB |")
    print("|---|---|---|---|")
    for label, r in rows:
        peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "-"
        print(f"| {label} | {r['img/s']:.0f} | {r['sec/kimg']:.2f} | {peak} |")


if __name__ == "__main__":
    main()
