"""Does a GAN's synthetic data help a classifier? (data augmentation, measured)

The built-in digits are split once: 40% of each class is the test set (never seen by a GAN or
a classifier), the rest the pool. For each size K (real images per class) and seed, K images
of each class are drawn from the pool, a conditional GAN is trained on them alone (the default
recipe for labelled images, ``small-data-cond``, ``--gan-steps`` steps), and three classifiers
(the small feature classifier, the same number of optimisation steps each) are scored on the
test set:

- real only: the 10 K real images;
- real + synthetic: the same plus ``--synthetic`` generated images per class;
- synthetic only: the generated images alone (the Classification Accuracy Score of Ravuri &
  Vinyals 2019).

One JSON line per (K, seed) goes to ``--out``; the table prints mean ± std over seeds.

    python benchmarks/augmentation.py --sizes 10 30 100 --seeds 0 1 2 \
        --out docs/augmentation_digits.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import ganforge
from ganforge.data import load_dataset
from ganforge.data.dataset import ImageDataset
from ganforge.metrics.cas import accuracy_of_training_on
from ganforge.options import build_config
from ganforge.train import Trainer
from ganforge.utils import cpu_name, to_uint8

PRESET = "small-data-cond"


def split(labels: np.ndarray, test_share: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(12345)
    test, pool = [], []
    for k in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == k))
        cut = round(len(idx) * test_share)
        test += idx[:cut].tolist()
        pool += idx[cut:].tolist()
    return np.array(sorted(test)), np.array(sorted(pool))


# long: the experiment in the order it runs (data, then per size and seed: the GAN, its
# samples, three classifiers), then the table
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 30, 100])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--gan-steps", type=int, default=500)
    ap.add_argument("--synthetic", type=int, default=100, help="generated images per class")
    ap.add_argument("--clf-steps", type=int, default=400)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(2)
    work = a.work or Path(tempfile.mkdtemp(prefix="ganforge-augment-"))
    data = load_dataset("digits", resolution=32, channels=1, log=None)
    images, labels = data.images, data.labels
    test, pool = split(labels.numpy())
    ti, tl = images[test], labels[test]
    cpu = cpu_name()
    print(f"{cpu}; test set {len(test)} digits, pool {len(pool)}; work {work}", flush=True)
    rows = []
    for k in a.sizes:
        for seed in a.seeds:
            rng = np.random.default_rng(seed)
            chosen = np.concatenate([rng.permutation(pool[labels[pool].numpy() == c])[:k]
                                     for c in range(10)])
            ri, rl = images[chosen], labels[chosen]
            real = ImageDataset(images=ri.clone(), labels=rl.clone(),
                                class_names=list(data.class_names), name=f"digits-{k}x10")
            run = work / f"gan-k{k}-s{seed}"
            t0 = time.perf_counter()
            cfg = build_config(PRESET, {"max_steps": a.gan_steps, "seed": seed,
                                        "checkpoint_every": 0, "sample_every": 0})
            Trainer(cfg, run, data=real, quiet=True, tensorboard=False).train()
            gan_s = time.perf_counter() - t0
            g = ganforge.load(run, device="cpu")
            n = a.synthetic * 10
            si = to_uint8(g.sample(n, seed=1000 + seed))
            sl = torch.arange(n) % 10  # g.sample balances the classes this way
            acc = {
                "real": accuracy_of_training_on(ri, rl, ti, tl, 10, a.clf_steps, seed=seed),
                "real+synthetic": accuracy_of_training_on(torch.cat([ri, si]),
                                                          torch.cat([rl, sl]), ti, tl, 10,
                                                          a.clf_steps, seed=seed),
                "synthetic": accuracy_of_training_on(si, sl, ti, tl, 10, a.clf_steps,
                                                     seed=seed),
            }
            row = {"per_class": k, "seed": seed, **{f"acc_{m}": round(v, 4)
                                                    for m, v in acc.items()},
                   "synthetic_per_class": a.synthetic, "gan_steps": a.gan_steps,
                   "gan_seconds": round(gan_s, 1), "clf_steps": a.clf_steps,
                   "preset": PRESET, "test_images": len(test), "cpu": cpu}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if a.out:
                with a.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    print(f"\nheld-out accuracy on {len(test)} real digits (mean ± std over "
          f"{len(a.seeds)} seeds); {cpu}")
    for k in a.sizes:
        line = f"  {k:>4} real/class"
        for m in ("real", "real+synthetic", "synthetic"):
            v = [r[f"acc_{m}"] * 100 for r in rows if r["per_class"] == k]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            line += f"   {m} {statistics.mean(v):5.1f} ± {sd:.1f}%"
        print(line)


if __name__ == "__main__":
    main()
