"""A 200,000-image folder trains with its resident memory bounded (issue 18).

Writes N small JPEGs (gradients, noise and shapes; a few processes) into a folder, reused when
it is already there, decodes the folder once into the disk cache (a set above
GANFORGE_MEMORY_LIMIT_MB lives there), checks that a second load reuses the cache, then, each in
a fresh process:

* trains the DCGAN preset on the folder at that resolution, timing ``--steps`` steps after a
  warm-up, and reports the process's peak resident memory (VmHWM, and the peaks of its
  anonymous and file-backed parts, sampled);
* loads the set again (the cache reused) and times the data pipeline alone (``Batches``, no
  model) over ``--batches`` batches, cold (the cache file dropped from the page cache first)
  and warm, and the old way of gathering a batch (indexing the memory map) for comparison,
  with each one's peak resident memory.

Exits non-zero, with one line, when the training's peak RSS is over ``--rss-mb`` or the
pipeline delivers batches slower than the DCGAN step consumes them.

    python benchmarks/data_scale.py                       # 200,000 images, ~3.5 GB of disk
    python benchmarks/data_scale.py --n 5000              # quick
    python benchmarks/data_scale.py --dir /data/scale     # keep the folder and cache there
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

MARK = ".data_scale.json"  # hidden: the loader ignores it
BATCH = 64  # the DCGAN preset's batch size


# --- the image set ------------------------------------------------------------------------


def _write_images(args: tuple[str, int, int, int]) -> int:
    """Images ``start`` to ``stop - 1`` of the set, seeded by their numbers."""
    import numpy as np
    from PIL import Image, ImageDraw

    folder, start, stop, res = args
    rng = np.random.default_rng(start)
    yy, xx = np.mgrid[0:res, 0:res].astype(np.float32) / res
    for i in range(start, stop):
        a, b, c = rng.uniform(-1, 1, (3, 3))
        base = 128 + 100 * np.stack([a[k] * xx + b[k] * yy + c[k] * xx * yy
                                     for k in range(3)], -1)
        base += rng.normal(0, 12, base.shape)
        img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = (int(v) for v in rng.integers(0, res, 2))
            w, h = (int(v) for v in rng.integers(max(1, res // 8), max(2, res // 2), 2))
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape([x0, y0, x0 + w, y0 + h], fill=fill)
        img.save(Path(folder) / f"{i:07d}.jpg", quality=90)
    return stop - start


def make_set(folder: Path, n: int, res: int, procs: int) -> tuple[float, bool]:
    """The folder of ``n`` JPEGs (written unless its mark says it holds them):
    (seconds taken, reused)."""
    mark = folder / MARK
    want = {"n": n, "resolution": res, "version": 1}
    if mark.exists() and json.loads(mark.read_text()) == want:
        return 0.0, True
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    jobs = [(str(folder), s, min(s + 2000, n), res) for s in range(0, n, 2000)]
    if procs > 1:
        with ProcessPoolExecutor(procs) as pool:
            assert sum(pool.map(_write_images, jobs)) == n
    else:
        assert sum(map(_write_images, jobs)) == n
    mark.write_text(json.dumps(want))
    return time.perf_counter() - t0, False


def disk_bytes(folder: Path) -> int:
    return sum(e.stat().st_blocks * 512 for e in os.scandir(folder) if e.is_file())


# --- measured in child processes ----------------------------------------------------------


def mapped_mb(path: Path) -> int:
    """MiB of ``path`` resident in this process through memory maps (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:  # a mapping's first line
            inside = len(head) >= 6 and head[-1] == str(path)
        elif inside and line.startswith("Rss:"):
            total += int(head[1])
    return total // 1024


class PeakRss:
    """Peaks of RssAnon and RssFile (sampled every 20 ms) beside the kernel's VmHWM."""

    def __init__(self) -> None:
        self.peak = {"RssAnon": 0, "RssFile": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def status() -> dict[str, int]:
        out = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0]) // 1024  # MiB
        return out

    def _sample(self) -> dict[str, int]:
        s = self.status()
        for k in self.peak:
            self.peak[k] = max(self.peak[k], s.get(k, 0))
        return s

    def _run(self) -> None:
        self._sample()
        while not self._stop.wait(0.02):
            self._sample()

    def report(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        s = self._sample()
        return {"peak_rss_mb": s["VmHWM"], "peak_anon_mb": self.peak["RssAnon"],
                "peak_file_mb": self.peak["RssFile"]}


def child_build(folder: str, res: int) -> dict:
    """Load the folder as training does (decoding it into the cache when it is not there)."""
    from ganforge.data import load_dataset

    mon, lines = PeakRss(), []
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        lines.append(msg)
        print(msg, file=sys.stderr, flush=True)

    data = load_dataset(folder, resolution=res, log=log)
    seconds = time.perf_counter() - t0
    cache = data.rows.path if data.rows is not None else None
    return {"seconds": seconds, "n": len(data), "lines": lines, **mon.report(),
            "cache": str(cache) if cache else None,
            "cache_bytes": cache.stat().st_size if cache else 0}


def child_train(folder: str, res: int, steps: int, warmup: int, run: str) -> dict:
    """DCGAN on the folder: steady images/s over ``steps`` steps after ``warmup``."""
    import torch

    from ganforge.options import build_config
    from ganforge.train import Trainer

    mon = PeakRss()
    over = {"source": folder, "resolution": res, "batch_size": BATCH, "max_steps": warmup,
            "sample_every": 0, "checkpoint_every": 0, "log_every": 10_000}
    tr = Trainer(build_config("dcgan", over), run, quiet=True, tensorboard=False)
    on_disk = tr.data.rows is not None
    tr.train()
    tr.cfg.train.max_steps = warmup + steps
    seen, t0 = tr.images_seen, time.perf_counter()
    tr.train()
    seconds = time.perf_counter() - t0
    batches = (tr.images_seen - seen) / tr.batches.batch_size
    mapped = mapped_mb(tr.data.rows.path) if on_disk else 0
    return {"steps_per_s": steps / seconds, "batches_per_s": batches / seconds,
            "on_disk": on_disk, "cache_mapped_mb": mapped, "threads": torch.get_num_threads(),
            "device": str(tr.device), **mon.report()}


def _drop_from_page_cache(path: Path) -> None:
    """Evict this file (only) from the kernel's page cache: the next reads go to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def child_deliver(folder: str, res: int, batches: int) -> dict:
    """A second load (timed: the cache is reused), then ``Batches`` alone, no model, over
    ``batches`` batches: the pipeline cold (the cache file dropped from the page cache first)
    and warm, then the old gather (indexing the memory-mapped tensor), each with the peak
    resident memory it reached (VmHWM reset in between)."""
    import torch

    from ganforge.data import load_dataset
    from ganforge.train.batches import Batches

    lines: list[str] = []
    t0 = time.perf_counter()
    data = load_dataset(folder, resolution=res, log=lines.append)
    out: dict = {"load_seconds": time.perf_counter() - t0, "lines": lines}
    if data.rows is None:
        raise SystemExit("the set is in memory, not in the disk cache: lower --limit-mb")
    for mode in ("pread-cold", "pread-warm", "mmap"):
        if mode == "pread-cold":
            _drop_from_page_cache(data.rows.path)
        b = Batches(data, BATCH, seed=0, device=torch.device("cpu"))
        if mode == "mmap":
            b.rows, b.prefetch = None, 0  # gather from data.images, the memory map
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS now
        mon = PeakRss()
        t0 = time.perf_counter()
        for i in range(batches):
            b.get(i)
        seconds = time.perf_counter() - t0
        b.close()
        out[mode] = {"batches_per_s": batches / seconds, **mon.report()}
    return out


def in_child(args: argparse.Namespace, what: str, *extra: str) -> dict:
    """Run ``what`` in a fresh process (its own peak memory); its JSON result."""
    cmd = [sys.executable, __file__, "--child", what, "--dir", str(args.dir),
           "--resolution", str(args.resolution), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--batches", str(args.batches), *extra]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=args.env)
    if out.returncode:
        raise SystemExit(f"the {what} step failed (exit {out.returncode}): see above")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_child(args: argparse.Namespace) -> None:
    folder, res = str(args.dir / "images"), args.resolution
    if args.child == "build":
        res_ = child_build(folder, res)
    elif args.child == "train":
        res_ = child_train(folder, res, args.steps, args.warmup, str(args.dir / "run"))
    else:
        res_ = child_deliver(folder, res, args.batches)
    print(json.dumps(res_))


# --- the report ---------------------------------------------------------------------------


def cpu_name() -> str:
    from ganforge.utils import cpu_name as model

    return f"{model()}, {os.cpu_count()} cores"


def measure(args: argparse.Namespace) -> int:
    # long: the benchmark's steps in order (set, cache build, training, reuse and delivery),
    # each printed as it is measured, then the checks
    n, res = args.n, args.resolution
    set_mb = n * 3 * res * res / 1024**2
    limit_mb = args.limit_mb if args.limit_mb is not None else (2048 if set_mb > 2048
                                                                 else set_mb / 2)
    home = args.dir / "home"
    args.env = {**os.environ, "GANFORGE_HOME": str(home),
                "GANFORGE_MEMORY_LIMIT_MB": str(limit_mb)}
    print(f"CPU: {cpu_name()}; load average {os.getloadavg()[0]:.2f}", flush=True)
    took, reused = make_set(args.dir / "images", n, res, args.procs)
    how = "reused" if reused else f"written in {took:.0f} s ({n / max(took, 1e-9):.0f}/s)"
    print(f"set: {n} JPEGs {res}x{res}, {disk_bytes(args.dir / 'images') / 1024**2:.0f} MiB "
          f"on disk ({how}); decoded {set_mb:.0f} MiB", flush=True)
    print(f"memory bound: GANFORGE_MEMORY_LIMIT_MB={limit_mb:g} (a decoded set above it is "
          f"read from the disk cache), peak RSS of training <= {args.rss_mb} MiB", flush=True)
    shutil.rmtree(home / "cache", ignore_errors=True)  # the build is measured from scratch
    b = in_child(args, "build")
    print(f"cache build: {b['n']} images in {b['seconds']:.1f} s ({b['n'] / b['seconds']:.0f} "
          f"images/s), cache {b['cache_bytes'] / 1024**2:.0f} MiB; peak RSS "
          f"{b['peak_rss_mb']} MiB (anon {b['peak_anon_mb']}, file {b['peak_file_mb']})",
          flush=True)
    if b["cache"] is None:
        print("FAIL: the set was not put in the disk cache (lower --limit-mb)")
        return 1
    shutil.rmtree(args.dir / "run", ignore_errors=True)
    t = in_child(args, "train")
    print(f"train: DCGAN {res}x{res}, batch {BATCH}, {t['device']} ({t['threads']} threads): "
          f"{t['steps_per_s']:.2f} steps/s, {t['batches_per_s']:.2f} batches/s; peak RSS "
          f"{t['peak_rss_mb']} MiB (anon {t['peak_anon_mb']}, file {t['peak_file_mb']}; of "
          f"the cache file {t['cache_mapped_mb']} MiB mapped at the end)", flush=True)
    d = in_child(args, "deliver")
    said = any(ln.startswith("using decoded cache") for ln in d["lines"])
    print(f"reload (a new process): {'said' if said else 'did NOT say'} 'using decoded "
          f"cache', {d['load_seconds']:.1f} s", flush=True)
    rates = {}
    for mode, name in (("pread-cold", "pipeline, cold page cache"),
                       ("pread-warm", "pipeline, warm"), ("mmap", "old mmap gather, warm")):
        m = d[mode]
        rates[mode] = m["batches_per_s"]
        print(f"delivery ({name}): {m['batches_per_s']:.0f} batches/s over {args.batches} "
              f"batches, x{m['batches_per_s'] / t['batches_per_s']:.0f} the step's need; "
              f"peak RSS {m['peak_rss_mb']} MiB (anon {m['peak_anon_mb']}, file "
              f"{m['peak_file_mb']})", flush=True)
    slowest = min(rates["pread-cold"], rates["pread-warm"])
    failed = 0
    if not said:
        print("FAIL: the second load did not reuse the decoded cache")
        failed = 1
    if not t["on_disk"]:
        print("FAIL: training held the set in memory, not in the disk cache")
        failed = 1
    if t["peak_rss_mb"] > args.rss_mb:
        print(f"FAIL: training peak RSS {t['peak_rss_mb']} MiB > bound {args.rss_mb} MiB")
        failed = 1
    if slowest < t["batches_per_s"]:
        print(f"FAIL: the pipeline delivers {slowest:.1f} batches/s < {t['batches_per_s']:.2f} "
              "batches/s used by training")
        failed = 1
    if not failed:
        print(f"OK: peak RSS {t['peak_rss_mb']} MiB <= {args.rss_mb} MiB with a {set_mb:.0f} "
              f"MiB set; delivery x{slowest / t['batches_per_s']:.0f} the step rate")
    return failed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200_000, help="images in the set")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20, help="DCGAN steps timed (after warm-up)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batches", type=int, default=1000, help="batches timed per delivery mode")
    ap.add_argument("--limit-mb", type=float, default=None,
                    help="GANFORGE_MEMORY_LIMIT_MB (default 2048, the library's, or half the "
                         "decoded set when that is smaller: the disk path is what is measured)")
    ap.add_argument("--rss-mb", type=int, default=2048, help="bound on training's peak RSS")
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1,
                    help="processes writing the images")
    ap.add_argument("--dir", type=Path, default=None,
                    help="folder for the images, cache and run (kept); default a temp folder")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child(args)
        return
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        sys.exit(measure(args))
    with tempfile.TemporaryDirectory(prefix="ganforge-data-scale-") as tmp:
        args.dir = Path(tmp)
        code = measure(args)
    sys.exit(code)


if __name__ == "__main__":
    main()
