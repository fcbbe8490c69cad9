"""How long ``ganforge eval`` takes: 10,000 samples at 32x32 scored with classifier features
(FID with bootstrap std, KID, IS, precision/recall, density/coverage, class coverage).

Trains a DCGAN on the built-in digits for a few steps (the quality does not matter here),
then times the evaluation twice: cold (real features computed) and warm (real features from
the cache), with a stage-by-stage split of the warm run.

    python benchmarks/eval_speed.py            # target: under 60 s on a 2-core CPU
    python benchmarks/eval_speed.py --n 2000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GANFORGE_HOME"] = str(Path(tmp) / "home")  # a cold feature cache
        import torch

        from ganforge.evaluate import _sample_uint8, evaluate_run
        from ganforge.metrics.classifier import digits_classifier
        from ganforge.metrics.evaluate import parse_metrics, real_features, score_features
        from ganforge.metrics.features import feature_space
        from ganforge.options import build_config
        from ganforge.train import train

        run = Path(tmp) / "run"
        train(build_config("dcgan", {"max_steps": 5, "sample_every": 0}), run, quiet=True,
              tensorboard=False)
        digits_classifier()  # trained once and cached, as in normal use; not timed
        for label in ("cold cache", "warm cache"):
            t0 = time.perf_counter()
            rep = evaluate_run(run, n=args.n, features="digits", device="cpu")
            print(f"{label}: {args.n} samples, {time.perf_counter() - t0:.1f} s "
                  f"(threads {torch.get_num_threads()})", flush=True)
        print(f"features: {rep['features']}")
        # the split of a warm evaluation
        import ganforge

        g = ganforge.load(run, device="cpu")
        space = feature_space("digits")
        from ganforge.data import load_dataset

        data = load_dataset("digits", resolution=32, channels=1, log=None)
        t = time.perf_counter()
        fake, _ = _sample_uint8(g, args.n, 0)
        t_sample = time.perf_counter() - t
        t = time.perf_counter()
        rf, rp = real_features(space, data.images, args.n, data.labels)
        ff, fp = space(fake)
        t_feat = time.perf_counter() - t
        times = {}
        for m in parse_metrics(None):
            t = time.perf_counter()
            score_features(rf, ff, (m,), rp, fp, torch.ones(10))
            times[m] = time.perf_counter() - t
        print(f"split: sampling {t_sample:.1f} s, features {t_feat:.1f} s, "
              + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))


if __name__ == "__main__":
    main()
