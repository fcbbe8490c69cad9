"""The 2-D mode-collapse benchmark: the seed's plain recipe vs the ``toy`` preset.

Trains, for ring8 and grid25 and each seed: (a) the seed's plain recipe on MLPs (BCE with the
non-saturating G loss, one D step per G step, Adam 2e-4 (0.5, 0.999), no packing, no penalty),
(b) the ``toy`` preset, (c) ``rpgan``: the ``toy`` preset with R3GAN's objective, the
relativistic pairing loss with R1 and R2 (both gamma 1, lazy every 4 steps like ``toy``'s R1)
(the same number of steps for all); then scores 2,500 samples of
each with the mode metrics of PacGAN (Lin et al. 2018): modes captured, % high-quality
samples, reverse KL. Prints one table with the published PacGAN figures beside it.

    python benchmarks/toy2d.py                    # 3 seeds, both datasets (~35 min on 2 cores)
    python benchmarks/toy2d.py --seeds 0 --data ring8 --steps 1000
    python benchmarks/toy2d.py --recipes rpgan    # RpGAN + R1 + R2, 3 seeds, both datasets
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import ganforge
from ganforge.data import load_vectors
from ganforge.metrics.modes import mode_metrics
from ganforge.options import build_config
from ganforge.train import train

PUBLISHED = {  # PacGAN paper, Table 2 (PacGAN4 row): modes, % high quality
    "ring8": (7.9, 95.6),
    "grid25": (24.8, 93.6),
}

# the seed's recipe on the toy preset's MLPs, for the same number of steps
PLAIN = {"arch": "mlp", "loss": "nonsaturating", "pack": 1, "r1": 0.0, "ema": 0.0,
         "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999, "n_critic": 1,
         "lr_decay": "none"}

# R3GAN's objective (Huang et al. 2024) on the toy preset: relativistic pairing loss, R1 + R2
RPGAN = {"loss": "rpgan", "r1": 1.0, "r2": 1.0}


def run_one(recipe: str, data: str, seed: int, steps: int | None, root: Path,
            rejection: float | None = None) -> dict:
    over = {"source": data, "seed": seed, "sample_every": 0, "checkpoint_every": 0}
    if recipe == "plain":
        cfg = build_config("toy", {**over, **PLAIN})
    elif recipe == "rpgan":
        cfg = build_config("toy", {**over, **RPGAN})
    else:
        cfg = build_config("toy", over)
    if steps is not None:
        cfg.train.max_steps = steps
    run = root / f"{recipe}-{data}-{seed}"
    t0 = time.perf_counter()
    train(cfg, run, quiet=True, tensorboard=False)
    seconds = time.perf_counter() - t0
    ds = load_vectors(data, n=10)
    g = ganforge.load(run, device="cpu")
    m = mode_metrics(g.sample(2500, seed=1234), ds.modes, ds.mode_std)
    out = {**m, "seconds": seconds, "steps": cfg.train.max_steps}
    if rejection is not None:  # the same generator, sampled through D (Azadi et al. 2019)
        r = mode_metrics(g.sample_rejection(2500, 1234, percentile=rejection), ds.modes,
                         ds.mode_std)
        out.update({f"drs_{k}": v for k, v in r.items()}, drs_acceptance=g.last_acceptance)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--data", nargs="+", default=["ring8", "grid25"])
    ap.add_argument("--recipes", nargs="+", default=["plain", "toy"],
                    choices=["plain", "toy", "rpgan"])
    ap.add_argument("--steps", type=int, default=None, help="override max_steps")
    ap.add_argument("--rejection", type=float, default=None,
                    help="also score discriminator rejection sampling at this percentile")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for data in args.data:
            for recipe in args.recipes:
                results = [run_one(recipe, data, s, args.steps, Path(tmp), args.rejection)
                           for s in args.seeds]
                for s, r in zip(args.seeds, results):
                    drs = (f"  | rejection p{args.rejection:g}: modes {r['drs_modes']:.0f}  hq "
                           f"{r['drs_high_quality']:.1f}%  rkl {r['drs_reverse_kl']:.3f}  "
                           f"accepted {100 * r['drs_acceptance']:.0f}%"
                           if "drs_modes" in r else "")
                    print(f"{data:7s} {recipe:6s} seed {s}: modes {r['modes']:.0f}/"
                          f"{r['modes_total']:.0f}  hq {r['high_quality']:.1f}%  "
                          f"rkl {r['reverse_kl']:.3f}  {r['seconds']:.0f}s" + drs, flush=True)
                rows.append((data, recipe, results))
    print()
    print("| data | recipe | seeds | modes (min / mean) | % high quality (min / mean) | "
          "reverse KL (mean) | seconds per run (mean) | PacGAN paper (modes, % HQ) |")
    print("|---|---|---|---|---|---|---|---|")
    for data, recipe, results in rows:
        modes = [r["modes"] for r in results]
        hq = [r["high_quality"] for r in results]
        rkl = [r["reverse_kl"] for r in results]
        secs = [r["seconds"] for r in results]
        pub = PUBLISHED.get(data, ("", ""))
        print(f"| {data} | {recipe} | {len(results)} | {min(modes):.0f} / "
              f"{statistics.mean(modes):.1f} of {results[0]['modes_total']:.0f} | "
              f"{min(hq):.1f} / {statistics.mean(hq):.1f} | {statistics.mean(rkl):.3f} | "
              f"{statistics.mean(secs):.0f} | {pub[0]}, {pub[1]} |")


if __name__ == "__main__":
    main()
