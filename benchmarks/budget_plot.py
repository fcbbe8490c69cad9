"""Quality versus training budget: the plot and table of ``digits_quality.py --out`` results.

Reads the JSON lines written by ``benchmarks/digits_quality.py --marks ... --out FILE`` (any
number of files, presets and seeds), draws classifier FID against minutes of training (both
axes logarithmic; one line per preset through the mean over its seeds, the seeds as dots,
the range between them shaded) and prints the same figures as a Markdown table.

    pip install -e ".[bench]"          # matplotlib, for the PNG
    python benchmarks/budget_plot.py budget.jsonl --png docs/quality_vs_budget.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def load(paths: list[Path]) -> dict[str, dict[float, dict[int, dict]]]:
    """preset (with its overrides) -> minutes -> seed -> result (the last one written wins)."""
    out: dict = defaultdict(lambda: defaultdict(dict))
    for path in paths:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                name = r["preset"] + (f" ({' '.join(r['set'])})" if r.get("set") else "")
                out[name][round(float(r["minutes"]), 3)][int(r["seed"])] = r
            except (ValueError, KeyError, TypeError) as e:
                sys.exit(f"error: {path}:{n} is not a digits_quality.py --out line ({e})")
    return out


def table(results: dict) -> str:
    rows = ["| preset | minutes | seeds | steps (mean) | classifier FID per seed | FID mean | "
            "classes (min) |", "|---|---|---|---|---|---|---|"]
    for name, by_min in results.items():
        for minutes in sorted(by_min):
            runs = [by_min[minutes][s] for s in sorted(by_min[minutes])]
            fids = " / ".join(f"{r['fid']:.2f}" for r in runs)
            rows.append(
                f"| {name} | {minutes:g} | {', '.join(str(r['seed']) for r in runs)} | "
                f"{statistics.mean(r['steps'] for r in runs):,.0f} | {fids} | "
                f"{statistics.mean(r['fid'] for r in runs):.2f} | "
                f"{min(r['classes'] for r in runs)}/10 |")
    return "\n".join(rows)


def plot(results: dict, png: Path, title: str) -> None:
    try:
        import matplotlib
    except ImportError:
        sys.exit("error: the plot needs matplotlib: pip install -e \".[bench]\" "
                 "(or drop --png for the table alone)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, by_min in results.items():
        xs = sorted(by_min)
        fids = [[r["fid"] for r in by_min[x].values()] for x in xs]
        seeds = max(len(f) for f in fids)
        line, = ax.plot(xs, [statistics.mean(f) for f in fids], marker="o", ms=3,
                        label=f"{name} ({seeds} seed{'s' if seeds > 1 else ''})")
        if seeds > 1:
            ax.fill_between(xs, [min(f) for f in fids], [max(f) for f in fids],
                            color=line.get_color(), alpha=0.15, lw=0)
            for x, f in zip(xs, fids):
                ax.scatter([x] * len(f), f, s=8, color=line.get_color(), alpha=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    marks = sorted({x for by_min in results.values() for x in by_min})
    ax.set_xticks(marks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("minutes of training")
    ax.set_ylabel("classifier-feature FID (lower is better)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    print(f"wrote {png}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", type=Path, help="digits_quality.py --out files")
    ap.add_argument("--png", type=Path, default=None, help="write the plot here")
    ap.add_argument("--presets", nargs="*", default=None, help="only these presets")
    args = ap.parse_args()
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        sys.exit(f"error: no such file: {', '.join(missing)}")
    results = load(args.files)
    if args.presets:
        results = {k: v for k, v in results.items() if k.split(" (")[0] in args.presets}
    if not results:
        sys.exit("error: no results to show (check --presets)")
    cpus = sorted({r["cpu"] for by_min in results.values() for by_seed in by_min.values()
                   for r in by_seed.values() if r.get("cpu")})
    ns = sorted({r.get("n", 2000) for by_min in results.values() for by_seed in by_min.values()
                 for r in by_seed.values()})
    title = (f"digits 32x32, {'/'.join(f'{n:,}' for n in ns)} samples; "
             + ("; ".join(cpus) or "CPU not recorded"))
    print(title)
    print(table(results))
    if args.png is not None:
        plot(results, args.png, title)


if __name__ == "__main__":
    main()
