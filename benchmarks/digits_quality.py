"""Image presets on the built-in digits at the same wall-clock budget, scored with a classifier
trained on the real digits (offline "domain features").

For each preset: train for ``--budget`` (wall clock, this machine), sample 2,000 images, then
report the classifier-feature FID against the real digits, the KL of the predicted class
histogram against the data's, the classes covered (>= 2% of samples), the mean confidence, and
for conditional presets the share of samples the classifier puts in the requested class.

``--marks`` also scores each run at earlier points of its budget (quality versus budget). A
recipe with no schedule on the run's progress (constant lr, EMA, gamma, beta2) trains once for
the whole budget and its sampling generator is copied when the training clock passes each mark
(copy time not counted): such a run is, up to a mark, the same as a run with that budget. A
recipe with a schedule trains once per mark, since its schedules stretch with the budget.
``--out`` appends one JSON line per scored point; ``benchmarks/budget_plot.py`` draws them.

    python benchmarks/digits_quality.py --budget 3m
    python benchmarks/digits_quality.py --presets dcgan cgan --budget 90s
    python benchmarks/digits_quality.py --presets small-data-cond --budget 20m \
        --marks 1m 2m 5m 10m --seed 0 --out budget.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

import ganforge
from ganforge.config import PRESETS, parse_duration
from ganforge.data import load_dataset
from ganforge.errors import GanforgeError
from ganforge.metrics.classifier import digits_classifier, extract_features, predict
from ganforge.metrics.frechet import fid_from_features
from ganforge.options import build_config
from ganforge.train.loop import Trainer, ema_decay
from ganforge.utils import cpu_name

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


def schedule_free(cfg) -> bool:
    """True when nothing in the recipe moves with the run's progress (lr, EMA, gamma, beta2)."""
    t = cfg.train
    return (t.lr_decay == "none" and t.ema_end is None and t.beta2_end is None
            and t.gamma_end == 1)


class SnapshotTrainer(Trainer):
    """A Trainer that keeps a copy of its sampling generator (EMA one, standing statistics
    measured) each time the training clock passes one of ``marks`` (seconds). The copying is
    taken off the training clock, and it draws no training randomness, so the run is the same.

    ``ema_warmups``: further EMAs of the same G with other ``ema_warmup`` values, updated beside
    the run's own (off the clock; G's training does not depend on its EMA) and copied at the
    marks too, so one run compares EMA settings. ``snapshots`` holds
    ``(mark, step, images seen, {ema_warmup: G_eval state})``."""

    def __init__(self, *args, marks: list[float] = (), ema_warmups: list[float] = (), **kw):
        super().__init__(*args, **kw)
        self.marks = sorted(marks)
        self.snapshots: list[tuple[float, int, int, dict[float, dict]]] = []
        own = self.cfg.train.ema_warmup
        if ema_warmups and self.G_ema is None:
            raise GanforgeError("--ema-warmups compares generator EMAs: the recipe has none "
                                "(set ema=0.999)")
        self.extra = {float(c): [p.detach().clone() for p in self.G_ema.parameters()]
                      for c in ema_warmups if float(c) != own}

    def _update_ema(self) -> None:
        super()._update_ema()
        t = time.perf_counter()
        with torch.no_grad():
            for c, params in self.extra.items():
                beta = ema_decay(self.ema_updates, c, self._ema_beta)
                for pe, p in zip(params, self.G.parameters()):
                    pe.lerp_(p, 1 - beta)
        self._t0 += time.perf_counter() - t

    def eval_states(self) -> dict[float, dict]:
        """{ema_warmup: state of the sampling generator} for the run's EMA and the extra ones
        (each with its standing statistics measured); leaves the run's EMA as it was."""
        def state() -> dict:
            return {k.replace("_orig_mod.", ""): v.detach().clone()
                    for k, v in self.G_eval.state_dict().items()}

        out = {self.cfg.train.ema_warmup: state()}
        if not self.extra:
            return out
        own = [p.detach().clone() for p in self.G_ema.parameters()]
        with torch.no_grad():
            for c, params in [*self.extra.items(), (None, own)]:
                for pe, p in zip(self.G_ema.parameters(), params):
                    pe.copy_(p)
                self._standing_at = -1  # measure the statistics of these weights
                if c is not None:
                    out[c] = state()
        return out

    def _one_step(self, ctx: dict):
        while self.marks and self.elapsed() >= self.marks[0]:
            t = time.perf_counter()
            self.snapshots.append((self.marks.pop(0), self.step, self.images_seen,
                                   self.eval_states()))
            self._t0 += time.perf_counter() - t
        return super()._one_step(ctx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", nargs="+", default=IMAGE_PRESETS)
    ap.add_argument("--budget", default="3m", help="wall-clock training budget per preset")
    ap.add_argument("--marks", nargs="*", default=[],
                    help="also score at these earlier budgets (e.g. 1m 2m 5m 10m)")
    ap.add_argument("--out", type=Path, default=None,
                    help="append one JSON line per scored point to this file")
    ap.add_argument("--n", type=int, default=2000, help="samples scored per preset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, default=None, help="keep the runs in this folder")
    ap.add_argument("--ema-warmups", nargs="*", type=float, default=[], metavar="C",
                    help="also score EMAs of the same runs with these ema_warmup values")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides for every preset (e.g. precision=bf16 compile=true)")
    args = ap.parse_args()
    try:
        budget = parse_duration(args.budget)
        marks = sorted({parse_duration(m) for m in args.marks} - {budget})
    except GanforgeError as e:
        ap.error(str(e))
    if any(m > budget for m in marks):
        ap.error(f"--marks must not exceed --budget {args.budget}")
    if any(c <= 1 for c in args.ema_warmups):
        ap.error("--ema-warmups values must be > 1 (10 is the default, 4 a longer average)")
    sets = dict(kv.split("=", 1) for kv in args.set if "=" in kv)
    no_ema = [p for p in args.presets if args.ema_warmups and p in PRESETS
              and build_config(p, sets).train.ema == 0]
    if no_ema:
        ap.error(f"--ema-warmups compares generator EMAs: {', '.join(no_ema)} has none "
                 "(pass --set ema=0.999 or drop it)")

    data = load_dataset("digits", resolution=32, channels=1, log=None)
    real = data.images.float() / 127.5 - 1
    data_hist = torch.bincount(data.labels, minlength=10).double() / len(data)
    clf = digits_classifier()
    print(f"classifier: {clf.config.get('accuracy', float('nan')):.3f} held-out accuracy on the "
          "real digits", flush=True)
    base = score(clf, real, real[torch.randperm(len(real))], None, data_hist)
    print(f"real vs real (reference): FID {base['fid']:.2f}", flush=True)
    extra = dict(kv.split("=", 1) for kv in args.set)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for preset in args.presets:
            def config(seconds: float, preset: str = preset):
                return build_config(preset, {"source": "digits", "max_time": f"{seconds:g}s",
                                             "seed": args.seed, "sample_every": 0,
                                             "checkpoint_every": 0, **extra})

            one_run = schedule_free(config(budget))
            # (budget in seconds, run folder, snapshots to take in that run)
            plan = ([(budget, root / preset, marks)] if one_run else
                    [(s, root / f"{preset}-{s:g}s", []) for s in marks + [budget]])
            for seconds, run, snaps in plan:
                trainer = SnapshotTrainer(config(seconds), run, marks=snaps,
                                          ema_warmups=args.ema_warmups, quiet=True,
                                          tensorboard=False)
                res = trainer.train()
                g = ganforge.load(run, device="cpu")
                own = trainer.cfg.train.ema_warmup
                end = trainer.eval_states()
                end[own] = {k: v.clone() for k, v in g.G.state_dict().items()}  # as saved
                points = [(m, step, seen, c, state) for m, step, seen, states in
                          [*trainer.snapshots, (seconds, res.step, res.images_seen, end)]
                          for c, state in states.items()]
                for mark, step, seen, c, state in points:
                    g.G.load_state_dict(state)
                    tag = [] if c == own else [f"ema_warmup={c:g}"]
                    name = " ".join([preset, *tag])
                    labels = g.labels(args.n)
                    fake = g.sample(args.n, seed=args.seed + 1)
                    s = score(clf, real, fake, labels, data_hist)
                    rows.append((name, mark, step, seen, s))
                    print(f"{name:12s} {mark / 60:5.1f} min  steps {step:6d}  FID "
                          f"{s['fid']:8.2f}  class KL {s['class_kl']:.3f}  classes "
                          f"{s['classes']}  conf {s['confidence']:.2f}"
                          + (f"  cond acc {s['cond_acc']:.3f}" if "cond_acc" in s else "")
                          + ("" if one_run or not marks else "  (own run)"), flush=True)
                    if args.out is not None:
                        with open(args.out, "a") as f:
                            f.write(json.dumps({
                                "preset": preset, "seed": args.seed, "minutes": mark / 60,
                                "steps": step, "kimg": seen / 1000, "one_run": one_run,
                                "n": args.n,
                                "set": args.set + tag, "cpu": cpu_name(), **s}) + "\n")
    print()
    print(f"digits 32x32, {args.budget} per preset on this machine ({cpu_name()}, "
          f"{torch.get_num_threads()} threads), {args.n} samples, "
          "classifier features (not Inception)" + (f", with {' '.join(args.set)}" if args.set
                                                   else "") + ":")
    print("| preset | minutes | steps | kimg | classifier FID | class KL | classes (>=2%) | "
          "conditional accuracy |")
    print("|---|---|---|---|---|---|---|---|")
    for preset, mark, steps, seen, s in rows:
        acc = f"{100 * s['cond_acc']:.1f}%" if "cond_acc" in s else "-"
        print(f"| {preset} | {mark / 60:.3g} | {steps} | {seen / 1000:.1f} | {s['fid']:.2f} | "
              f"{s['class_kl']:.3f} | {s['classes']}/10 | {acc} |")


if __name__ == "__main__":
    main()
