"""A long run, watched from outside: does anything grow without bound?

Runs ``ganforge train`` (the CLI, TensorBoard on) for ``--minutes`` (or ``--steps``) on the
built-in digits at a tiny size, with every output far more frequent than a real run's (a metric
line every 10 steps, a sample grid every 20, a checkpoint every 50, an evaluation every 500: 5
times the defaults), at ~100 steps a second on a 2-core CPU: 45 minutes here write what the
default cadence writes in about 1.7 million steps. Every
``--every`` seconds it reads the trainer's resident memory, open files and threads from /proc,
and the run folder's size by kind. At the end it prints the readings over time and the ratios
that matter: memory and step time late in the run against early in it, the growth of memory
over the second half, the largest folder of each kind against its bound (keep_last checkpoints,
keep_samples grids), and what metrics.jsonl and TensorBoard cost a step.

    python benchmarks/soak.py --minutes 60
    python benchmarks/soak.py --steps 3000 --json soak.jsonl   # readings as JSON lines

Linux only (/proc). Keep the machine otherwise idle: step times are part of the readings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ganforge.utils import cpu_name  # noqa: E402

KEEP_LAST, KEEP_SAMPLES, EVAL_EVERY = 3, 16, 500
RECIPE = ["--preset", "dcgan", "--data", "digits", "g_channel_base=64", "d_channel_base=64",
          "batch_size=16", "log_every=10", "sample_every=20", "checkpoint_every=50",
          f"keep_last={KEEP_LAST}", f"keep_samples={KEEP_SAMPLES}", f"eval_every={EVAL_EVERY}",
          "eval_metric=fid", "eval_n=256"]
KINDS = ("checkpoints", "samples", "tb", "metrics.jsonl")


def proc_status(pid: int) -> dict[str, float]:
    """Resident memory (MiB), its peak, threads and open files of process ``pid``."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return {"rss_mib": int(fields["VmRSS"][0]) / 1024, "hwm_mib": int(fields["VmHWM"][0]) / 1024,
            "threads": int(fields["Threads"][0]), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def folder_sizes(run: Path) -> dict[str, float]:
    """Bytes of each kind of output in the run folder, and how many checkpoints and grids."""
    out: dict[str, float] = {k: 0 for k in KINDS}
    out["other"] = 0
    for root, _, files in os.walk(run):
        top = Path(root).relative_to(run).parts
        for f in files:
            try:
                size = (Path(root) / f).stat().st_size
            except OSError:  # deleted (an old checkpoint) while we looked
                continue
            kind = top[0] if top else f
            out[kind if kind in KINDS else "other"] += size
    ck = run / "checkpoints"
    out["n_checkpoints"] = len([p for p in ck.iterdir() if p.name.startswith("step_")]
                               ) if ck.is_dir() else 0
    grids = run / "samples"
    out["n_grids"] = len([p for p in grids.iterdir() if p.name.startswith("step_")]
                         ) if grids.is_dir() else 0
    out["total"] = sum(out[k] for k in (*KINDS, "other"))
    return out


def last_step(run: Path) -> tuple[int, int]:
    """(step, logged lines) from metrics.jsonl."""
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return 0, 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"]), len(lines)
        except (ValueError, KeyError):
            continue
    return 0, len(lines)


def slope_per_hour(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (seconds), per hour."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 0.0 if var == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var * 3600


def watch(cmd: list[str], run: Path, every: float, log) -> tuple[list[dict], int, str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    t0, rows = time.monotonic(), []
    try:
        while proc.poll() is None:
            time.sleep(every)
            try:
                row = {"t": time.monotonic() - t0, **proc_status(proc.pid)}
            except (OSError, KeyError):  # the trainer just ended
                break
            step, lines = last_step(run)
            row.update(step=step, lines=lines, **folder_sizes(run))
            rows.append(row)
            log(row)
    finally:
        if proc.poll() is None:
            proc.terminate()
    _, err = proc.communicate()
    return rows, proc.returncode, err


def quarter(rows: list[dict], which: int) -> list[dict]:
    n = max(1, len(rows) // 4)
    return rows[:n] if which == 0 else rows[-n:]


def step_ms(run: Path, since: int) -> tuple[float, float]:
    """Median milliseconds a step between metric lines (an evaluation or checkpoint between
    two lines is an outlier the median leaves out), over the first and the last quarter of
    the lines logged from step ``since`` on."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "time" in r and r["step"] >= since]
    gaps = [(b["time"] - a["time"]) / (b["step"] - a["step"]) * 1000
            for a, b in zip(rows, rows[1:]) if b["step"] > a["step"]]
    n = max(1, len(gaps) // 4)
    return statistics.median(gaps[:n]), statistics.median(gaps[-n:])


def report(rows: list[dict], seconds: float, run: Path) -> None:
    mib = 2 ** 20
    print(f"\n{'time':>7} {'step':>7} {'RSS MiB':>8} {'files':>6} {'threads':>7} "
          f"{'ckpts':>5} {'grids':>5} {'run MiB':>8} {'tb MiB':>7} {'metrics kB':>10}")
    shown = sorted({round(i * (len(rows) - 1) / 10) for i in range(11)})
    for i in shown:
        r = rows[i]
        print(f"{r['t'] / 60:6.1f}m {r['step']:>7} {r['rss_mib']:8.1f} {r['fds']:>6} "
              f"{r['threads']:>7} {r['n_checkpoints']:>5} {r['n_grids']:>5} "
              f"{r['total'] / mib:8.2f} {r['tb'] / mib:7.2f} {r['metrics.jsonl'] / 1024:10.1f}")
    # compared: readings once the run has settled (after its first evaluation, which loads
    # the feature network once), else once it trains
    settled = ([r for r in rows if r["step"] >= EVAL_EVERY + 10] if len(
        [r for r in rows if r["step"] >= EVAL_EVERY + 10]) >= 8 else
        [r for r in rows if r["step"] > 0]) or rows
    first, last = quarter(settled, 0), quarter(settled, 1)
    half = settled[len(settled) // 2:]
    rss_first = statistics.median(r["rss_mib"] for r in first)
    rss_last = statistics.median(r["rss_mib"] for r in last)
    growth = slope_per_hour([r["t"] for r in half], [r["rss_mib"] for r in half])
    steps = rows[-1]["step"]
    print(f"\nmachine: {cpu_name()}, {os.cpu_count()} cores; {steps} steps in "
          f"{seconds / 60:.1f} min; compared from step {settled[0]['step']}")
    print(f"resident memory: {rss_first:.1f} MiB (first quarter, median) -> {rss_last:.1f} MiB "
          f"(last quarter): x{rss_last / rss_first:.3f}; second half {growth:+.1f} MiB/hour; "
          f"peak {max(r['hwm_mib'] for r in rows):.1f} MiB")
    print(f"open files: {min(r['fds'] for r in half)}-{max(r['fds'] for r in half)} "
          f"(second half), threads {min(r['threads'] for r in half)}-"
          f"{max(r['threads'] for r in half)}")
    early, late = step_ms(run, settled[0]["step"])
    print(f"step time: {early:.1f} ms (first quarter, median) -> {late:.1f} ms (last quarter): "
          f"x{late / early:.3f}")
    print(f"checkpoints on disk: at most {max(r['n_checkpoints'] for r in rows)} (keep_last="
          f"{KEEP_LAST}); their folder at most {max(r['checkpoints'] for r in rows) / mib:.2f} "
          f"MiB")
    print(f"sample grids on disk: at most {max(r['n_grids'] for r in rows)} (keep_samples="
          f"{KEEP_SAMPLES}); their folder at most {max(r['samples'] for r in rows) / mib:.2f} MiB")
    lines = rows[-1]["lines"] or 1
    print(f"metrics.jsonl: {rows[-1]['metrics.jsonl'] / lines:.0f} bytes a logged line "
          f"({rows[-1]['metrics.jsonl'] / 1024:.0f} kB for {lines} lines)")
    tb_per_kstep = rows[-1]["tb"] / max(1, steps) * 1000 / 1024
    print(f"TensorBoard: {rows[-1]['tb'] / mib:.2f} MiB in all, {tb_per_kstep:.1f} kB per 1,000 "
          f"steps (scalars every log line; grids at the thinned spacing of the samples folder)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    length = ap.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=None,
                        help="length of the run  [default: 60]")
    length.add_argument("--steps", type=int, help="or a number of steps")
    ap.add_argument("--every", type=float, default=10.0, help="seconds between readings")
    ap.add_argument("--out", type=Path, help="run folder  [default: a temporary one]")
    ap.add_argument("--json", type=Path, help="also write every reading here (JSON lines)")
    ap.add_argument("-q", "--quiet", action="store_true", help="only the report")
    args = ap.parse_args(argv)
    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="ganforge-soak-")
        args.out = Path(tmp.name) / "run"
    stop = (["--max-steps", str(args.steps)] if args.steps else
            ["--max-steps", "100000000", "--max-time", f"{(args.minutes or 60) * 60:.0f}s"])
    cmd = [sys.executable, "-m", "ganforge", "train", *RECIPE, *stop, "--out", str(args.out),
           "-q"]
    sink = open(args.json, "w") if args.json else None

    def log(row):
        if sink is not None:
            sink.write(json.dumps(row) + "\n")
            sink.flush()
        if not args.quiet:
            print(f"{row['t'] / 60:6.1f}m step {row['step']:>7}  RSS {row['rss_mib']:7.1f} MiB  "
                  f"files {row['fds']:>3}  run {row['total'] / 2 ** 20:7.2f} MiB", flush=True)

    t0 = time.monotonic()
    rows, code, err = watch(cmd, args.out, args.every, log)
    if sink is not None:
        sink.close()
    if code != 0 or len(rows) < 4:
        print(f"the run failed (exit {code}, {len(rows)} readings):\n{err[-3000:]}")
        return 1
    report(rows, time.monotonic() - t0, args.out)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
