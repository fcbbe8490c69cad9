"""Fine-tuning versus training from scratch on a small set (issue: transfer learning, --init).

The built-in digits are split by class: a source run learns the digits 0-4 (all ~900 images),
then the target set is 100 images of each of the digits 5-9 (500 images). On the target set:

- ``finetune``: ``--init SOURCE`` for N steps, FreezeD off (``freeze_d=0``) and on
  (``freeze_d=K``);
- ``scratch``: the same recipe from random weights, scored at N, 2N, 3N and 4N steps (one run
  with a checkpoint every N steps: the recipe has no schedule on the run's progress, so a
  checkpoint at step s is the same as a run of s steps).

Each is scored by the classifier-feature FID (the offline digits classifier) of 2,000 samples
(balanced over the 5 classes) against all real digits 5-9 (~900), on ``--seeds`` seeds of the
target runs (the source run is trained once). The recipe is the one ``ganforge train`` picks
for labelled images (small-data-cond). One JSON line per scored point goes to ``--out``.

    python benchmarks/finetune.py --steps 250 --source-steps 1500 --seeds 0 1 2 \
        --out docs/finetune_digits.jsonl
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
from PIL import Image

import ganforge
from ganforge import checkpoint as ck
from ganforge.data import load_dataset
from ganforge.metrics.classifier import digits_classifier, extract_features
from ganforge.metrics.frechet import fid_from_features
from ganforge.options import build_config
from ganforge.train import Trainer
from ganforge.utils import cpu_name

PRESET = "small-data-cond"


def write_folders(root: Path, per_class: int, seed: int) -> tuple[Path, Path, torch.Tensor]:
    """Class folders of the digits 0-4 (all) and of ``per_class`` digits of each of 5-9, at
    32x32 as the built-in set loads them; returns them and all real digits 5-9 in [-1, 1]."""
    data = load_dataset("digits", resolution=32, channels=1, log=None)
    imgs, labels = data.images.numpy(), data.labels.numpy()
    rng = np.random.default_rng(seed)
    src, tgt = root / "digits0-4", root / f"digits5-9x{per_class}"
    for k in range(10):
        idx = np.flatnonzero(labels == k)
        if k >= 5:
            idx = rng.permutation(idx)[:per_class]
        folder = (src if k < 5 else tgt) / str(k)
        folder.mkdir(parents=True, exist_ok=True)
        for i in idx:
            Image.fromarray(imgs[i, 0], "L").save(folder / f"{i:04d}.png")
    real = data.images[torch.from_numpy(labels >= 5)].float() / 127.5 - 1
    return src, tgt, real


def train(cfg, run: Path) -> float:
    t0 = time.perf_counter()
    Trainer(cfg, run, quiet=True, tensorboard=False).train()
    return time.perf_counter() - t0


def fid_at(run: Path, step: int, clf, real_feats: torch.Tensor, n: int) -> float:
    g = ganforge.load(run, device="cpu", checkpoint=ck.ckpt_dir(run) / f"step_{step:08d}")
    fake = g.sample(n, seed=1234)
    return fid_from_features(real_feats, extract_features(clf, fake))


# long: the experiment in the order it runs (data, source, then per seed the three runs and
# their scores, then the table); each part is a few lines used once
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=250, help="N: the fine-tuning length")
    ap.add_argument("--source-steps", type=int, default=1500)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--freeze-d", type=int, default=1, help="K of the FreezeD runs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n", type=int, default=2000, help="samples per score")
    ap.add_argument("--work", type=Path, help="folder for the data and runs  [default: temp]")
    ap.add_argument("--out", type=Path, help="append JSON lines here")
    a = ap.parse_args()
    torch.set_num_threads(2)
    work = a.work or Path(tempfile.mkdtemp(prefix="ganforge-finetune-"))
    src_data, tgt_data, real = write_folders(work, a.per_class, seed=0)
    clf = digits_classifier()
    real_feats = extract_features(clf, real)
    half = real[torch.randperm(len(real), generator=torch.Generator().manual_seed(0))]
    ref = fid_from_features(extract_features(clf, half[: len(half) // 2]),
                            extract_features(clf, half[len(half) // 2:]))
    cpu = cpu_name()
    print(f"{cpu}; work {work}; real 5-9: {len(real)} images; FID of half vs half of them: "
          f"{ref:.2f}", flush=True)
    src_run = work / "source"
    if not (src_run / "config.json").is_file():
        secs = train(build_config(PRESET, {"source": str(src_data), "max_steps": a.source_steps,
                                           "checkpoint_every": 0, "sample_every": 0,
                                           "seed": 0}), src_run)
        print(f"source: {a.source_steps} steps on digits 0-4 in {secs:.0f}s", flush=True)
    n = a.steps
    rows: list[dict] = []

    def record(kind: str, seed: int, step: int, fid: float, secs: float) -> None:
        row = {"kind": kind, "seed": seed, "step": step, "fid": round(fid, 3),
               "train_seconds": round(secs, 1), "N": n, "per_class": a.per_class,
               "source_steps": a.source_steps, "preset": PRESET, "cpu": cpu}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if a.out:
            with a.out.open("a") as f:
                f.write(json.dumps(row) + "\n")

    common = {"source": str(tgt_data), "checkpoint_every": n, "keep_last": 10,
              "sample_every": 0}
    for seed in a.seeds:
        for k in (0, a.freeze_d):
            run = work / f"finetune-fd{k}-s{seed}"
            cfg = ganforge.finetune_config(src_run, {**common, "max_steps": n, "seed": seed,
                                                     "freeze_d": k})
            secs = train(cfg, run)
            record(f"finetune freeze_d={k}", seed, n, fid_at(run, n, clf, real_feats, a.n),
                   secs)
        run = work / f"scratch-s{seed}"
        cfg = build_config(PRESET, {**common, "max_steps": 4 * n, "seed": seed})
        secs = train(cfg, run)
        for m in (1, 2, 3, 4):
            record("scratch", seed, m * n, fid_at(run, m * n, clf, real_feats, a.n),
                   secs * m / 4)
    print(f"\nclassifier-feature FID vs all real digits 5-9 ({a.n} samples; {len(a.seeds)} "
          f"seeds, mean ± std); {cpu}")
    for kind in dict.fromkeys(r["kind"] for r in rows):
        for step in sorted({r["step"] for r in rows if r["kind"] == kind}):
            v = [r["fid"] for r in rows if r["kind"] == kind and r["step"] == step]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            print(f"  {kind:<22} {step:>6} steps  FID {statistics.mean(v):7.2f} ± {sd:.2f}")


if __name__ == "__main__":
    main()
