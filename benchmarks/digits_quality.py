"""Image presets on the built-in digits at the same wall-clock budget, scored with a classifier
trained on the real digits (offline "domain features").

For each preset: train for ``--budget`` (wall clock, this machine), sample 2,000 images, then
report the classifier-feature FID against the real digits, the KL of the predicted class
histogram against the data's, the classes covered (>= 2% of samples), the mean confidence, and
for conditional presets the share of samples the classifier puts in the requested class.

    python benchmarks/digits_quality.py --budget 3m
    python benchmarks/digits_quality.py --presets dcgan cgan --budget 90s
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch

import ganforge
from ganforge.config import PRESETS, build_config
from ganforge.data import load_dataset
from ganforge.metrics.classifier import digits_classifier, extract_features, predict
from ganforge.metrics.frechet import fid_from_features
from ganforge.train import train

# noise-to-image presets built for 32x32 (the full stylegan2 / biggan presets are for 128-256)
IMAGE_PRESETS = [p for p in sorted(PRESETS) if build_config(p).model.arch != "mlp"
                 and build_config(p).data.task == "none"
                 and build_config(p).data.resolution == 32]


def score(clf, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None,
          data_hist: torch.Tensor) -> dict:
    probs = predict(clf, fake)
    pred = probs.argmax(1)
    hist = torch.bincount(pred, minlength=data_hist.numel()).double() / pred.numel()
    kl = float(sum(h * math.log(h / d) for h, d in zip(hist.tolist(), data_hist.tolist())
                   if h > 0))
    out = {
        "fid": fid_from_features(extract_features(clf, real), extract_features(clf, fake)),
        "class_kl": kl,
        "classes": int((hist >= 0.02).sum()),
        "confidence": float(probs.max(1).values.mean()),
    }
    if labels is not None:
        out["cond_acc"] = float((pred == labels).double().mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", nargs="+", default=IMAGE_PRESETS)
    ap.add_argument("--budget", default="3m", help="wall-clock training budget per preset")
    ap.add_argument("--n", type=int, default=2000, help="samples scored per preset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, default=None, help="keep the runs in this folder")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides for every preset (e.g. precision=bf16 compile=true)")
    args = ap.parse_args()

    data = load_dataset("digits", resolution=32, channels=1, log=None)
    real = data.images.float() / 127.5 - 1
    data_hist = torch.bincount(data.labels, minlength=10).double() / len(data)
    clf = digits_classifier()
    print(f"classifier: {clf.config.get('accuracy', float('nan')):.3f} held-out accuracy on the "
          "real digits", flush=True)
    base = score(clf, real, real[torch.randperm(len(real))], None, data_hist)
    print(f"real vs real (reference): FID {base['fid']:.2f}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for preset in args.presets:
            extra = dict(kv.split("=", 1) for kv in args.set)
            cfg = build_config(preset, {"source": "digits", "max_time": args.budget,
                                        "seed": args.seed, "sample_every": 0,
                                        "checkpoint_every": 0, **extra})
            run = root / preset
            t0 = time.perf_counter()
            res = train(cfg, run, quiet=True, tensorboard=False)
            secs = time.perf_counter() - t0
            g = ganforge.load(run, device="cpu")
            labels = g.labels(args.n)
            fake = g.sample(args.n, seed=args.seed + 1)
            s = score(clf, real, fake, labels, data_hist)
            rows.append((preset, res.step, res.images_seen, secs, s))
            print(f"{preset:12s} steps {res.step:6d}  FID {s['fid']:8.2f}  class KL "
                  f"{s['class_kl']:.3f}  classes {s['classes']}  conf {s['confidence']:.2f}"
                  + (f"  cond acc {s['cond_acc']:.3f}" if "cond_acc" in s else ""), flush=True)
    print()
    print(f"digits 32x32, {args.budget} per preset on this machine, {args.n} samples, "
          "classifier features (not Inception)" + (f", with {' '.join(args.set)}" if args.set
                                                   else "") + ":")
    print("| preset | steps | kimg | classifier FID | class KL | classes (>=2%) | "
          "conditional accuracy |")
    print("|---|---|---|---|---|---|---|")
    for preset, steps, seen, _secs, s in rows:
        acc = f"{100 * s['cond_acc']:.1f}%" if "cond_acc" in s else "-"
        print(f"| {preset} | {steps} | {seen / 1000:.1f} | {s['fid']:.2f} | "
              f"{s['class_kl']:.3f} | {s['classes']}/10 | {acc} |")


if __name__ == "__main__":
    main()
