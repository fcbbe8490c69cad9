"""Training throughput of the seed's DCGAN (3x32x32, batch 64, latent 100), all in one run:

(a) a plain PyTorch loop written like the seed's (Sigmoid + BCELoss, one D step, one G step
    reusing the fakes), and (b) ganforge's trainer on the same nets under each
    precision / layout / compile setting. Prints images/s, the ratio to (a), peak memory, and
    the achieved GFLOP/s against this machine's measured matmul peak (fp32 and bf16).

    python benchmarks/throughput.py                       # every setting, ~4 min on 2 cores
    python benchmarks/throughput.py --steps 30 --settings fp32 bf16 bf16+cl
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

SETTINGS = {  # name -> config overrides
    "fp32": {},
    "fp32+cl": {"channels_last": True},
    "bf16": {"precision": "bf16"},
    "bf16+cl": {"precision": "bf16", "channels_last": True},
    "fp32+compile": {"compile": True},
    "bf16+cl+compile": {"precision": "bf16", "channels_last": True, "compile": True},
}


class SeedG(nn.Module):  # the seed's generator, verbatim in structure
    def __init__(self, latent_dim=100):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 512, 4, 1, 0, bias=False), nn.BatchNorm2d(512),
            nn.ReLU(True),
            nn.ConvTranspose2d(512, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256), nn.ReLU(True),
            nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(True),
            nn.ConvTranspose2d(128, 3, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z):
        return self.main(z)


class SeedD(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(3, 128, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(128, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(256, 512, 4, 2, 1, bias=False), nn.BatchNorm2d(512),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(512, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, img):
        return self.main(img).view(-1, 1)


def plain_loop(data: torch.Tensor, steps: int, warmup: int) -> tuple[float, float]:
    """The seed's loop. Returns (images/s, FLOPs per step)."""
    G, D = SeedG(), SeedD()
    crit = nn.BCELoss()
    oD = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    oG = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bs = 64

    def step(i):
        real = data[(i * bs) % (len(data) - bs):][:bs].float() / 127.5 - 1
        ones, zeros = torch.ones(bs, 1), torch.zeros(bs, 1)
        D.zero_grad()
        loss_real = crit(D(real), ones)
        fake = G(torch.randn(bs, 100, 1, 1))
        loss_fake = crit(D(fake.detach()), zeros)
        (loss_real + loss_fake).backward()
        oD.step()
        G.zero_grad()
        crit(D(fake), ones).backward()
        oG.step()

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        step(0)
    flops = fc.get_total_flops()
    for i in range(warmup):
        step(i)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    return steps * bs / (time.perf_counter() - t0), flops


def matmul_peak(dtype: torch.dtype, seconds: float = 1.0) -> float:
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    for _ in range(2):
        a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return 2 * 2048 ** 3 * n / (time.perf_counter() - t0) / 1e9


def ganforge_run(data, name: str, steps: int, warmup: int, root: Path) -> float:
    from ganforge.options import build_config
    from ganforge.train import Trainer

    over = {"batch_size": 64, "latent_dim": 100, "resolution": 32, "channels": 3,
            "max_steps": warmup, "sample_every": 0, "checkpoint_every": 0, "log_every": 10_000,
            **SETTINGS[name]}
    cfg = build_config("dcgan", over)
    tr = Trainer(cfg, root / name, data=data, quiet=True, tensorboard=False)
    tr.train()  # warm-up (and compilation)
    cfg.train.max_steps = warmup + steps
    t0 = time.perf_counter()
    tr.train()
    return steps * 64 / (time.perf_counter() - t0), tr.speed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = ap.parse_args()
    torch.manual_seed(0)
    from ganforge.data.dataset import ImageDataset

    images = torch.randint(0, 256, (6400, 3, 32, 32), dtype=torch.uint8)
    data = ImageDataset(images=images, labels=None, class_names=[], name="random 3x32x32")
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    print(f"device cpu, {torch.get_num_threads()} threads; matmul peak: fp32 {peak32:.0f} "
          f"GFLOP/s, bf16 {peak16:.0f} GFLOP/s", flush=True)
    base, flops = plain_loop(images, args.steps, args.warmup)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"plain seed loop: {base:.0f} img/s ({flops / 1e9:.2f} GFLOP per step)", flush=True)
    rows = [("plain seed loop (fp32)", base, 1.0, rss, base / 64 * flops / 1e9, peak32)]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.settings:
            ips, speed = ganforge_run(data, name, args.steps, args.warmup, Path(tmp))
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            peak = peak16 if "bf16" in speed else peak32
            rows.append((f"ganforge {name} ({speed})", ips, ips / base, rss,
                         ips / 64 * flops / 1e9, peak))
            print(f"{name}: {ips:.0f} img/s, x{ips / base:.2f}", flush=True)
    print()
    print("GFLOP/s = images/s x the plain loop's FLOPs per image (torch FlopCounterMode); the "
          "trainer skips D's weight gradients in the G step, so its own FLOPs are fewer and "
          "this overstates its hardware use. Peak = 2048^2 matmul in the matching dtype.")
    print("| setting | images/s | vs plain loop | peak RSS (MiB, cumulative) | "
          "seed-equivalent GFLOP/s (% of matmul peak) |")
    print("|---|---|---|---|---|")
    for name, ips, ratio, rss, gf, peak in rows:
        print(f"| {name} | {ips:.0f} | x{ratio:.2f} | {rss:.0f} | {gf:.1f} "
              f"({100 * gf / peak:.0f}%) |")


if __name__ == "__main__":
    main()
