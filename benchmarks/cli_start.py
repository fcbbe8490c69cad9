"""How long the `ganforge` command takes to start: `--help`, `presets`, `train --help`, and for
scale `python -c "import torch"` (what every command paid before imports moved to where they
are needed). Each is run ``--repeats`` times in a fresh process; prints the median and the
ratio to the 1-second target.

    python benchmarks/cli_start.py
    python benchmarks/cli_start.py --repeats 9
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

TARGET_S = 1.0


def seconds(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    exe = shutil.which("ganforge")
    base = [exe] if exe else [sys.executable, "-m", "ganforge"]
    from ganforge.utils import cpu_name

    print(f"CPU: {cpu_name()}; median of {args.repeats} fresh processes")
    print("| command | seconds | / 1 s target |")
    print("|---|---|---|")
    for name, cmd in (("ganforge --help", base + ["--help"]),
                      ("ganforge presets", base + ["presets"]),
                      ("ganforge train --help", base + ["train", "--help"]),
                      ("python -c 'import torch'", [sys.executable, "-c", "import torch"])):
        s = seconds(cmd, args.repeats)
        print(f"| `{name}` | {s:.3f} | {s / TARGET_S:.2f} |", flush=True)


if __name__ == "__main__":
    main()
