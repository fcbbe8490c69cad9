"""Image-to-image on held-out built-in digits, each family for the same wall-clock budget:

* Pix2Pix edges2image (edge map -> digit) against the copy-the-input baseline (L1, PSNR, SSIM);
* SRGAN x4 (8x8 -> 32x32) and its SRResNet phase (the checkpoint at the end of the pixel-loss
  warm-up) against bicubic upsampling (PSNR, SSIM, L1);
* CycleGAN digits <-> inverted digits: the held-out cycle reconstruction error before training
  and at the end.

    python benchmarks/img2img.py                   # 3 minutes per family (~10 min)
    python benchmarks/img2img.py --budget 1m --only srgan
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import ganforge
from ganforge.config import parse_duration
from ganforge.options import build_config
from ganforge.train import Trainer, train
from ganforge.train.batches import load_data
from ganforge.train.evaluator import heldout_metrics


def evaluate(run: Path, checkpoint: str | None = None) -> dict:
    t = ganforge.load(run, device="cpu", checkpoint=checkpoint)
    return heldout_metrics(t.recipe, load_data(t.cfg, log=None), t.device, baseline=True)


def step_seconds(preset: str, over: dict, run: Path, steps: int = 20) -> float:
    """Seconds per training step, measured after 3 warm-up steps."""
    cfg = build_config(preset, {**over, "max_steps": 3})
    tr = Trainer(cfg, run, quiet=True, tensorboard=False)
    tr.train()
    cfg.train.max_steps = 3 + steps
    t0 = time.perf_counter()
    tr.train()
    return (time.perf_counter() - t0) / steps


def fmt(m: dict, keys: tuple[str, ...]) -> str:
    return "  ".join(f"{k} {m[k]:.4f}" for k in keys if k in m)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", default="3m", help="wall-clock training budget per family")
    ap.add_argument("--only", nargs="+", default=["pix2pix", "srgan", "cyclegan"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    budget = parse_duration(args.budget)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        common = {"seed": args.seed, "sample_every": 0, "checkpoint_every": 0}
        if "pix2pix" in args.only:
            run = root / "pix2pix"
            res = train(build_config("pix2pix", {**common, "max_time": args.budget}), run,
                        quiet=True, tensorboard=False)
            m = evaluate(run)
            rows.append(("Pix2Pix edges2image", res.step, m["l1"], m["l1_copy_input"],
                         m["psnr"], m["psnr_copy_input"], m["ssim"], m["ssim_copy_input"],
                         "copy the input"))
            print(f"pix2pix {res.step} steps: {fmt(m, tuple(m))}", flush=True)
        if "srgan" in args.only:
            # probe the pixel-phase speed to give the SRResNet warm-up half the budget
            per_step = step_seconds("srgan", {**common, "warmup_steps": 10 ** 6, "warmup": 0,
                                                  "content": "pixel"}, root / "probe-sr")
            warm = max(1, int(budget / 2 / per_step))
            run = root / "srgan"
            res = train(build_config("srgan", {**common, "max_time": args.budget,
                                               "warmup_steps": warm, "warmup": 0,
                                               "checkpoint_every": warm,
                                               "keep_last": 1000}), run, quiet=True,
                        tensorboard=False)
            m = evaluate(run)
            mw = evaluate(run, f"step_{warm:08d}") if res.step >= warm else None
            if mw is not None:
                rows.append((f"SRResNet x4 (pixel phase, {warm} steps)", warm, mw["l1"],
                             mw["l1_bicubic"], mw["psnr"], mw["psnr_bicubic"], mw["ssim"],
                             mw["ssim_bicubic"], "bicubic"))
                print(f"srresnet {warm} steps: {fmt(mw, tuple(mw))}", flush=True)
            rows.append(("SRGAN x4", res.step, m["l1"], m["l1_bicubic"], m["psnr"],
                         m["psnr_bicubic"], m["ssim"], m["ssim_bicubic"], "bicubic"))
            print(f"srgan {res.step} steps: {fmt(m, tuple(m))}", flush=True)
        if "cyclegan" in args.only:
            # the preset's linear lr decay needs a step count: probe the speed for the budget
            steps = max(10, int(budget / step_seconds("cyclegan", common, root / "probe-cy")))
            run = root / "cyclegan"
            cfg = build_config("cyclegan", {**common, "max_steps": steps})
            tr = Trainer(cfg, run, quiet=True, tensorboard=False)
            start = heldout_metrics(tr.recipe, tr.data, tr.device)["cycle"]
            res = tr.train()
            m = evaluate(run)
            rows.append(("CycleGAN digits <-> inverted", res.step, m["cycle"], start, None,
                         None, None, None, "untrained (step 0)"))
            print(f"cyclegan {res.step} steps: cycle {start:.4f} -> {m['cycle']:.4f}",
                  flush=True)
    print()
    print(f"held-out built-in digits (32x32), {args.budget} of training per family on this "
          "machine:")
    print("| family | steps | L1 (baseline) | PSNR dB (baseline) | SSIM (baseline) | "
          "baseline |")
    print("|---|---|---|---|---|---|")
    for name, steps, l1, l1b, ps, psb, ss, ssb, base in rows:
        if ps is None:
            print(f"| {name} | {steps} | cycle error {l1:.4f} ({l1b:.4f}) | - | - | {base} |")
        else:
            print(f"| {name} | {steps} | {l1:.4f} ({l1b:.4f}) | {ps:.2f} ({psb:.2f}) | "
                  f"{ss:.3f} ({ssb:.3f}) | {base} |")


if __name__ == "__main__":
    main()
