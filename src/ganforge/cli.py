"""The ``ganforge`` command line: train, sample, interpolate, stylemix, directions, edit,
project, eval, features, translate, upscale, demo, export, push, info, presets.

Every bad input ends as one ``error: ...`` line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console

from .errors import GanforgeError

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="ganforge", prog_name="ganforge")
def app() -> None:
    """ganforge: train, evaluate and use generative adversarial networks."""


def _is_hub_spec(run) -> bool:
    return str(run).startswith("hf:") and not Path(run).exists()


def _in_run(run, *parts: str) -> Path:
    """A default output path inside the run folder; a Hub model named ``hf:OWNER/NAME`` has no
    folder of the user's to write into, so the output path must be given."""
    if _is_hub_spec(run):
        raise GanforgeError(f"{run} is a model on the Hub, with no local folder to write into: "
                            f"give --out")
    return Path(run).joinpath(*parts)


def _default_run_dir(cfg) -> Path:
    src = Path(cfg.data.source).name.replace(":", "-") or "data"  # hf:user/set:config
    stem = f"{cfg.preset}-{src}".replace(" ", "_")
    root = Path("runs")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = root / f"{stem}-{stamp}"
    i = 1
    while path.exists():
        i += 1
        path = root / f"{stem}-{stamp}-{i}"
    return path


@app.command(context_settings=CONTEXT)
@click.argument("overrides", nargs=-1)
@click.option("--data", help="a folder or .zip of images, or digits, mnist, fashion-mnist, "
              "cifar10, svhn, celeba, or hf:NAME[:CONFIG][:SPLIT] (a Hugging Face dataset; "
              "hf:PATH: one saved to disk or parquet); vectors: ring8, grid25, spiral, moons, "
              "a .csv or .npy file  [default: digits]")
@click.option("--preset", help="starting recipe, see `ganforge presets`  [default: the one "
              "measured best for the data: small-data-cond for labelled images, small-data "
              "for unlabelled ones, toy for vectors]")
@click.option("--out", "out_dir", type=click.Path(path_type=Path),
              help="run folder  [default: runs/PRESET-DATA-TIME]")
@click.option("--resume", type=click.Path(path_type=Path),
              help="continue the run in this folder (stop rules may be changed)")
@click.option("--init", "init", type=click.Path(path_type=Path),
              help="fine-tune: a new run whose nets start from this run folder (its nets, "
                   "recipe and settings; change data, steps, freeze_d=K ... as key=value) or "
                   "from a NET.safetensors file (nets from --preset)")
@click.option("--resolution", help="32, 64 or 128 (stylegan2: up to 1024, biggan: up to 512), "
              "or HxW for non-square images, e.g. 64x128 (dcgan, resnet, stylegan2, r3gan "
              "nets)  [default: 32]")
@click.option("--channels", type=int, help="1 or 3  [default: from the data]")
@click.option("--max-steps", type=int, help="stop after this many steps")
@click.option("--epochs", type=float, help="stop after this many passes over the data")
@click.option("--max-time", help="stop after this long: 90s, 10m, 1h30m")
@click.option("--batch-size", type=int, help="images per step  [default: 64]")
@click.option("--device", help="auto, cpu, cuda, cuda:N or mps  [default: auto]")
@click.option("--seed", type=int, help="random seed  [default: 0]")
@click.option("--on-divergence", type=click.Choice(["stop", "rollback"]),
              help="on NaN/inf losses: stop, or roll back to the last good checkpoint with "
                   "halved learning rates  [default: stop]")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16", "auto"]),
              help="autocast precision (fp16 with loss scaling); auto = bf16 where the device "
                   "runs it fast  [default: fp32]")
@click.option("--channels-last", is_flag=True, default=None, help="NHWC memory layout")
@click.option("--compile", "compile_", is_flag=True, default=None,
              help="torch.compile the nets (falls back with a warning)")
@click.option("--fastest", is_flag=True, help="the fastest settings measured for the device: "
              "precision=auto and channels-last, plus compile on CUDA (on CPUs compile was "
              "slower, see benchmarks/throughput.py)")
@click.option("--nproc", type=int, help="train with N processes on this machine (torchrun + "
              "data parallel; gloo on CPU, NCCL on GPUs)")
@click.option("--max-restarts", type=int, help="with --nproc: when a process dies, start "
              "them all again from the run's last checkpoint, up to N times  [default: 0]")
@click.option("--dry-run", is_flag=True, help="print the resolved config and stop")
@click.option("-q", "--quiet", is_flag=True, help="no progress output")
# long: one command's whole set-up (flags -> overrides, resume, the auto recipe, dry run,
# torchrun) read top to bottom; each branch is a few lines and used once
def train(overrides: tuple[str, ...], data: str | None, preset: str | None,
          out_dir: Path | None, resume: Path | None, init: Path | None,
          resolution: str | None,
          channels: int | None, max_steps: int | None, epochs: float | None,
          max_time: str | None, batch_size: int | None, device: str | None, seed: int | None,
          on_divergence: str | None, precision: str | None, channels_last: bool | None,
          compile_: bool | None, fastest: bool, nproc: int | None,
          max_restarts: int | None, dry_run: bool, quiet: bool) -> None:
    """Train a GAN (default: the recipe measured best for the data, on the built-in digits).

    OVERRIDES are config keys as key=value (e.g. lr_g=1e-4 loss=minimax); --dry-run lists
    every key with its meaning.
    """
    from .config import RESUMABLE, Config, apply_overrides, as_dict, describe, resolve_key, validate
    from .options import build_config

    if max_restarts is not None and not (nproc is not None and nproc > 1):
        raise GanforgeError("--max-restarts is for runs launched with --nproc N (under torchrun "
                            "use its own --max-restarts): add --nproc or drop --max-restarts")
    if max_restarts is not None and max_restarts < 0:
        raise GanforgeError(f"--max-restarts {max_restarts}: give 0 or more")
    import os

    single = not (nproc is not None and nproc > 1) and "WORLD_SIZE" not in os.environ
    for key in ("dist_timeout", "sync_bn"):
        if single and any(o.split("=", 1)[0].strip() == key for o in overrides):
            raise GanforgeError(f"{key} is only read by multi-process runs: add --nproc N (or "
                                f"start with torchrun), or drop {key}")
    if fastest:
        from .utils import pick_device

        precision = precision or "auto"
        channels_last = True if channels_last is None else channels_last
        if compile_ is None:
            compile_ = pick_device(device or "auto").type == "cuda"
    flags = {"source": data, "resolution": resolution, "channels": channels,
             "max_steps": max_steps, "epochs": epochs, "max_time": max_time,
             "batch_size": batch_size, "device": device, "seed": seed,
             "on_divergence": on_divergence, "precision": precision,
             "channels_last": channels_last, "compile": compile_}
    data_obj = None  # the data, when choosing the recipe already loaded it
    kv = as_dict(list(overrides))
    kv.update({k: str(v) for k, v in flags.items() if v is not None})
    if init is not None and resume is not None:
        raise GanforgeError("--init starts a new run from another's weights and --resume "
                            "continues a run: use one of them")
    if init is not None and Path(init).is_file():  # one net's weights: nets from the preset
        kv["init"] = str(Path(init).resolve())
    if init is not None and not Path(init).is_file():  # a run: its nets and settings
        from .transfer import finetune_config

        if preset is not None:
            raise GanforgeError("--init RUN takes the nets and recipe of that run: drop "
                                "--preset (change training keys with key=value)")
        cfg = finetune_config(init, kv)
        run = out_dir or _default_run_dir(cfg)
    elif resume is not None:
        if preset is not None:
            raise GanforgeError("--preset cannot change a run being resumed; drop it")
        cfg = Config.load(Path(resume) / "config.json")
        for k in kv:
            if resolve_key(cfg, k).split(".", 1)[1] not in RESUMABLE:
                raise GanforgeError(f"'{k}' cannot change when resuming (the nets and data are "
                                    f"fixed by the run); only {', '.join(sorted(RESUMABLE))} can")
        apply_overrides(cfg, kv)  # the Trainer checks the same rule for Python users
        validate(cfg)
        run = Path(resume)
    elif preset is None:  # the recipe that measured best for this kind of data
        from .train.auto import auto_config

        loading: list[str] = []  # the data's own lines come after the choice
        cfg, data_obj, choice = auto_config(kv, log=loading.append)
        if not quiet:
            lines = [f"recipe: {choice.preset} (no --preset given; {choice.why})"]
            lines += [f"note: {n}" for n in choice.notes] + loading
            for line in lines:
                err.print(line, markup=False, highlight=False)
        run = out_dir or _default_run_dir(cfg)
    else:
        cfg = build_config(preset, kv)
        run = out_dir or _default_run_dir(cfg)
    if dry_run:
        out.print(describe(cfg), markup=False, highlight=False)
        return

    if nproc is not None and nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch(nproc, run, resume is not None, max_restarts or 0)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and out_dir is None and resume is None:
        raise GanforgeError("multi-process runs need --out RUN (every process must agree on "
                            "the run folder), or use --nproc N")
    from .train import Trainer

    trainer = Trainer(cfg, run, resume=resume is not None, console=err, quiet=quiet,
                      data=data_obj)
    result = trainer.train()
    if result.stopped_by in ("interrupt", "terminated"):
        what = "interrupted" if result.stopped_by == "interrupt" else "stopped by SIGTERM"
        if os.environ.get("RANK", "0") == "0":  # one line for a multi-process run
            world = int(os.environ.get("WORLD_SIZE", "1"))
            err.print(f"{what} at step {result.step}; checkpoint saved: continue with "
                      f"ganforge train --resume {run}" + (f" --nproc {world}" if world > 1
                                                          else ""))
        raise SystemExit(130 if result.stopped_by == "interrupt" else 143)


@app.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--n", "n", type=int, default=64, show_default=True, help="number of images")
@click.option("--out", "out_dir", type=click.Path(path_type=Path),
              help="folder for the PNG files  [default: RUN/generated]")
@click.option("--grid", type=click.Path(path_type=Path),
              help="grid of the first (up to 64) images  [default: OUT/grid.png]")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the latent codes")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps")
@click.option("--batch-size", type=int, default=256, show_default=True,
              help="images generated at once")
@click.option("--class", "cls", help="conditional runs: only this class (index or name)")
@click.option("--by-class", is_flag=True,
              help="conditional runs: N images of every class in OUT/<class>/ (a synthetic "
                   "dataset in the class-folder layout) and a grid with one row per class")
@click.option("--rejection", type=float, help="discriminator rejection sampling (Azadi et al. "
              "2019): keep samples by the run's D, strictness as a percentile, e.g. 80")
@click.option("--truncation", type=float, help="truncation trick: StyleGAN psi in [0, 1] "
              "(w pulled towards its mean), else the z threshold (BigGAN), e.g. 0.7")
def sample(run: Path, n: int, out_dir: Path | None, grid: Path | None, seed: int, device: str,
           batch_size: int, cls: str | None, by_class: bool, rejection: float | None,
           truncation: float | None) -> None:
    """Write N generated images as PNG files, plus a grid (vector data: samples.csv + a
    scatter plot)."""
    from .generate import load

    if n < 1:
        raise GanforgeError("--n must be >= 1")
    if by_class and cls is not None:
        raise GanforgeError("--by-class writes every class: drop --class")
    if rejection is not None and truncation is not None:
        raise GanforgeError("--rejection and --truncation both trade diversity for quality: "
                            "use one of them")
    g = _sampler(load(run, device=device))
    g.check_truncation(truncation)
    out_dir = out_dir or _in_run(run, "generated")
    if g.is_vector:
        if by_class:
            raise GanforgeError("--by-class is for image runs")
        from .plot import scatter_png, write_csv

        x = (g.sample_rejection(n, seed, cls, rejection) if rejection is not None
             else g.sample(n, seed=seed, c=cls, batch_size=batch_size, truncation=truncation))
        write_csv(x, out_dir / "samples.csv")
        grid = grid or out_dir / "scatter.png"
        modes = None
        if g.cfg.data.source in ("ring8", "grid25"):
            from .data import load_vectors

            modes = load_vectors(g.cfg.data.source, n=10).modes
        scatter_png(x, grid, modes=modes)
        err.print(f"wrote {n} samples to {out_dir / 'samples.csv'} and a scatter plot to {grid}"
                  f" (step {g.step})")
        return
    if by_class:
        if not g.num_classes:
            g.labels(1, 0)  # raises the one-line "unconditional" error
        rows = []
        for k, name in enumerate(g.class_names):
            imgs = _write_pngs(g, n, out_dir / _safe_name(name), seed + k, batch_size, c=k,
                               rejection=rejection, truncation=truncation)
            rows.append(imgs[:min(n, 10)])
        grid = grid or out_dir / "grid.png"
        from .utils import save_grid

        width = max(r.shape[0] for r in rows)
        save_grid(torch_cat_rows(rows, width), grid, nrow=width)
        err.print(f"wrote {n} images of each of {g.num_classes} classes to {out_dir}/<class>/ "
                  f"and a grid (a row per class) to {grid} (step {g.step})")
        return
    first = _write_pngs(g, n, out_dir, seed, batch_size, c=cls, rejection=rejection,
                        truncation=truncation)
    grid = grid or out_dir / "grid.png"
    from .utils import save_grid

    save_grid(first[:64], grid)
    err.print(f"wrote {n} images to {out_dir} and a grid to {grid} (step {g.step})")


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_. " else "_" for ch in name).strip() or "_"


def _write_pngs(g, n: int, out_dir: Path, seed: int, batch_size: int, c=None,
                rejection: float | None = None, truncation: float | None = None):
    """N samples of ``g`` as 00000.png ... in ``out_dir``; returns the first 64 (uint8)."""
    from .utils import save_png, to_uint8

    out_dir.mkdir(parents=True, exist_ok=True)
    kept = g.sample_rejection(n, seed, c, rejection) if rejection is not None else None
    z, labels = g.noise(n, seed, truncation), g.labels(n, c)
    width = max(5, len(str(n - 1)))
    first = None
    for i in range(0, n, batch_size):
        lab = labels[i:i + batch_size] if labels is not None else None
        imgs = to_uint8(kept[i:i + batch_size] if kept is not None else
                        g.generate(z[i:i + batch_size], lab, batch_size, truncation))
        if first is None:
            first = imgs[:64]
        for j, img in enumerate(imgs):
            save_png(img, out_dir / f"{i + j:0{width}d}.png")
    return first


def torch_cat_rows(rows: list, width: int):
    """Rows of uint8 images (each up to ``width`` long) -> one tensor, short rows padded."""
    import torch

    padded = []
    for r in rows:
        if r.shape[0] < width:
            r = torch.cat([r, torch.zeros((width - r.shape[0],) + tuple(r.shape[1:]),
                                          dtype=r.dtype)])
        padded.append(r)
    return torch.cat(padded)


@app.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--out", "out_file", type=click.Path(path_type=Path),
              help="GIF file to write  [default: RUN/interpolation.gif]")
@click.option("--points", type=int, default=4, show_default=True,
              help="latent points visited in a loop")
@click.option("--frames", type=int, default=16, show_default=True,
              help="frames between two points")
@click.option("--rows", type=int, default=4, show_default=True, help="walks shown at once")
@click.option("--fps", type=int, default=12, show_default=True, help="frames per second")
@click.option("--scale", type=int, default=2, show_default=True, help="pixel upscaling")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the points")
@click.option("--space", type=click.Choice(["z", "w"]), default="z", show_default=True,
              help="walk in z (slerp) or, for StyleGAN runs, in w (lerp)")
@click.option("--truncation", type=float, help="truncation trick, as in `ganforge sample`")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps")
def interpolate(run: Path, out_file: Path | None, points: int, frames: int, rows: int,
                fps: int, scale: int, seed: int, space: str, truncation: float | None,
                device: str) -> None:
    """Write a GIF of a looping walk between random latent points (z: slerp; w: lerp)."""
    from PIL import Image

    from .generate import load

    out_file = out_file or _in_run(run, "interpolation.gif")
    if str(out_file.suffix).lower() != ".gif":
        raise GanforgeError(f"--out {out_file}: interpolate writes a .gif file")
    if fps < 1 or scale < 1:
        raise GanforgeError("--fps and --scale must be >= 1")
    g = _sampler(load(run, device=device))
    imgs = g.interpolate(points=points, frames=frames, rows=rows, seed=seed, space=space,
                         truncation=truncation)
    if scale > 1:
        imgs = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in imgs]
    out_file.parent.mkdir(parents=True, exist_ok=True)
    imgs[0].save(out_file, save_all=True, append_images=imgs[1:], duration=int(1000 / fps),
                 loop=0)
    err.print(f"wrote {len(imgs)} frames to {out_file}")


@app.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--out", "out_file", type=click.Path(path_type=Path),
              help="PNG file to write  [default: RUN/stylemix.png]")
@click.option("--rows", type=int, default=4, show_default=True,
              help="row sources (they keep the layers not in --layers)")
@click.option("--cols", type=int, default=4, show_default=True,
              help="column sources (they give the layers in --layers)")
@click.option("--layers", help="layers taken from the column sources, e.g. 0-3 or 0,1,5  "
              "[default: the coarse half]")
@click.option("--truncation", type=float, help="truncation psi in [0, 1]")
@click.option("--class", "cls", help="conditional runs: this class for every image")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the sources")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps")
def stylemix(run: Path, out_file: Path | None, rows: int, cols: int, layers: str | None,
             truncation: float | None, cls: str | None, seed: int, device: str) -> None:
    """Write a style-mixing grid of a StyleGAN run: column sources' coarse styles on row
    sources."""
    from .generate import load
    from .utils import save_png

    g = _sampler(load(run, device=device))
    grid = g.style_mix(rows, cols, seed, _parse_layers(layers) if layers else None,
                       truncation, cls)
    out_file = out_file or _in_run(run, "stylemix.png")
    save_png(grid, out_file)
    err.print(f"wrote a {rows}x{cols} style-mixing grid to {out_file} (step {g.step})")


def _parse_layers(text: str) -> list[int]:
    """``"0-3"``, ``"0,1,5"`` or ``"0-2,6"`` -> layer indices."""
    out: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            a, _, b = part.partition("-")
            out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    except ValueError:
        raise GanforgeError(f"--layers {text!r}: write layer numbers like 0-3 or 0,1,5") from None
    return out


def _parse_strengths(text: str) -> list[float]:
    """``"1,2,3"`` -> the grid's columns -3, -2, -1, 0, 1, 2, 3."""
    try:
        mags = sorted({abs(float(p)) for p in text.split(",") if p.strip()} - {0.0})
    except ValueError:
        mags = []
    if not mags:
        raise GanforgeError(f"--strengths {text!r}: give positive strengths like 1,2,3 "
                            "(the grid shows -3 .. 3)")
    return [-m for m in reversed(mags)] + [0.0] + mags


@app.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--method", type=click.Choice(["sefa", "ganspace"]), default="sefa",
              show_default=True, help="SeFa (closed form) or GANSpace (PCA of w, StyleGAN)")
@click.option("--k", "k", type=int, default=10, show_default=True, help="directions to find")
@click.option("--layers", help="SeFa on StyleGAN runs: the w layers, e.g. 0-3  [default: all]")
@click.option("--out", "out_file", type=click.Path(path_type=Path),
              help="directions file  [default: RUN/directions/METHOD.safetensors]; the grids "
                   "go to a folder of the same name")
@click.option("--seeds", type=int, default=4, show_default=True, help="rows of each grid")
@click.option("--strengths", default="1,2,3", show_default=True,
              help="grid columns, mirrored around 0; 1 = one std of the latents")
@click.option("--n", "n", type=int, default=10_000, show_default=True,
              help="w samples (GANSpace's PCA; the stds in w)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of samples and rows")
@click.option("--class", "cls", help="conditional runs: the class of the grid rows")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps")
def directions(run: Path, method: str, k: int, layers: str | None, out_file: Path | None,
               seeds: int, strengths: str, n: int, seed: int, cls: str | None,
               device: str) -> None:
    """Find latent directions (SeFa or GANSpace), write them and a grid per direction."""
    from . import directions as dr
    from .generate import load
    from .utils import save_png

    cols = _parse_strengths(strengths)
    if seeds < 1:
        raise GanforgeError("--seeds must be >= 1")
    g = _sampler(load(run, device=device))
    dirs = dr.find_directions(g, method, k, _parse_layers(layers) if layers else None, n, seed)
    out_file = out_file or _in_run(run, "directions", f"{method}.safetensors")
    dr.save_directions(dirs, out_file)
    folder = out_file.with_suffix("")
    latent, labels = dr.seed_latent(g, seeds, seed, dirs.space, cls)
    for i in range(len(dirs)):
        imgs = dr.direction_grid(g, dirs, i, latent, cols, labels)
        save_png(dr.grid_png(imgs, len(cols)), folder / f"{i:02d}.png")
    err.print(f"wrote {len(dirs)} {method} directions ({dirs.space} space) to {out_file} and "
              f"a grid per direction to {folder}/ (step {g.step})")


def _parse_direction(text: str) -> tuple[Path, int]:
    """``FILE:K`` (or ``FILE``: direction 0)."""
    path, sep, k = text.rpartition(":")
    if sep and k.strip().lstrip("-").isdigit():
        return Path(path), int(k)
    return Path(text), 0


@app.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--direction", "direction", required=True,
              help="FILE:K, direction K of a `ganforge directions` file")
@click.option("--strength", type=float, required=True, help="how far; 1 = one std of the latents")
@click.option("--latent", "latent_file", type=click.Path(path_type=Path),
              help="a latent file (safetensors: 'latent' [N, dim] or [N, num_ws, w_dim], "
                   "metadata space z, w or w+)")
@click.option("--seed", type=int, help="edit the sample of this seed instead")
@click.option("--out", "out_dir", type=click.Path(path_type=Path),
              help="folder  [default: RUN/edits]")
@click.option("--class", "cls", help="conditional runs: the class of --seed or z latents")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps")
def edit(run: Path, direction: str, strength: float, latent_file: Path | None,
         seed: int | None, out_dir: Path | None, cls: str | None, device: str) -> None:
    """Move latents along a direction: the edited PNGs and a side-by-side (source | edited)."""
    import torch

    from . import directions as dr
    from .generate import load
    from .utils import save_grid, save_png, to_uint8

    if (latent_file is None) == (seed is None):
        raise GanforgeError("give the latents to edit: --latent FILE or --seed N (one of them)")
    path, k = _parse_direction(direction)
    dirs = dr.load_directions(path)
    g = _sampler(load(run, device=device))
    dr.check_fits(g, dirs)
    step = dirs.step_of(k)
    if latent_file is not None:
        latent, space, labels = dr.load_latent(latent_file)
        dr.check_latent(g, latent, space)
        if cls is not None:
            if space != "z":
                raise GanforgeError(f"--class is for z latents: a {space} latent holds its class")
            labels = g.labels(latent.shape[0], cls)
    else:
        space = dirs.space
        latent, labels = dr.seed_latent(g, 1, seed, space, cls)
    dr.check_fits(g, dirs, space)
    src = dr.render(g, latent, space, labels)
    edited = dr.edit(g, latent, step, strength, space, labels, dirs.layers)
    out_dir = out_dir or _in_run(run, "edits")
    for i, img in enumerate(to_uint8(edited)):
        save_png(img, out_dir / f"{i:05d}.png")
    save_grid(torch.stack([src, edited], dim=1).flatten(0, 1), out_dir / "compare.png", nrow=2)
    err.print(f"wrote {edited.shape[0]} edited image(s) to {out_dir} and source | edited to "
              f"{out_dir / 'compare.png'} (direction {k} of {path}, strength {strength:g})")


@app.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def info(run: Path, as_json: bool) -> None:
    """Config, steps, images seen and last losses of a run."""
    from . import checkpoint as ck
    from .config import Config

    run = Path(run)
    if not run.is_dir():
        raise GanforgeError(f"run folder {run} does not exist: pass the --out folder of a run")
    cfg = Config.load(run / "config.json")
    path = ck.latest_checkpoint(run)
    st = ck.load_state(path) if path else {}
    where = str(path) if path else None
    if path is None and (run / "model.safetensors").is_file():  # a Hub folder: its block says
        from .hub_folder import read_block

        block = read_block(run) or {}
        st = {k: block[k] for k in ("step", "images_seen", "train_seconds") if k in block}
        where = f"{block.get('checkpoint', '?')} of the exported run (a Hub folder: weights only)"
    summary = {
        "run": str(run),
        "preset": cfg.preset,
        "data": cfg.data.source,
        "xflip": cfg.data.xflip,
        "checkpoint": where,
        "step": int(st.get("step", 0)),
        "images_seen": int(st.get("images_seen", 0)),
        "train_seconds": round(float(st.get("train_seconds", 0.0)), 1),
        "last": st.get("last", {}),
        "checkpoints": [p.name for p in ck.list_checkpoints(run)],
        "config": cfg.to_dict(),
    }
    if as_json:
        out.print_json(json.dumps(summary))
        return
    from rich.table import Table

    t = Table(show_header=False, box=None)
    for k in ("run", "preset", "data", "checkpoint", "step"):
        t.add_row(k, str(summary[k]) + (" (x2 mirrored: xflip)" if k == "data"
                                         and cfg.data.xflip else ""))
    t.add_row("images seen", f"{summary['images_seen']} ({summary['images_seen'] / 1000:.1f} "
                             "kimg)")
    t.add_row("train time", f"{summary['train_seconds']} s")
    t.add_row("last losses", "  ".join(f"{k} {v:.4f}" for k, v in summary["last"].items()))
    t.add_row("checkpoints", ", ".join(summary["checkpoints"]) or "none")
    out.print(t)
    from .config import describe

    out.print(describe(cfg), markup=False, highlight=False)


_METRIC_LABELS = {
    "fid": "FID", "kid": "KID", "is": "IS", "precision": "precision", "recall": "recall",
    "density": "density", "coverage": "coverage", "classes_covered": "classes covered",
    "class_kl": "class KL (nats)", "confidence": "classifier confidence",
    "cond_acc": "conditional accuracy", "modes": "modes captured",
    "high_quality": "high quality (%)", "reverse_kl": "reverse KL",
    "l1": "L1 (on [0, 1])", "psnr": "PSNR (dB)", "ssim": "SSIM", "cycle": "cycle error (L1)",
    "l1_copy_input": "L1 of the input itself", "psnr_copy_input": "PSNR of the input itself",
    "ssim_copy_input": "SSIM of the input itself", "l1_bicubic": "L1 of bicubic",
    "psnr_bicubic": "PSNR of bicubic", "ssim_bicubic": "SSIM of bicubic",
    "ppl_z": "PPL in z", "ppl_w": "PPL in w",
    "copy_share_feat": "copies: share under 0.5 (features)",
    "copy_median_feat": "copies: median ratio (features)",
    "copy_share_pixel": "copies: share under 0.5 (pixels)",
    "copy_median_pixel": "copies: median ratio (pixels)",
    "cas": "CAS: trained on samples (accuracy)", "cas_real": "same classifier on real images",
}


def _metric_rows(m: dict) -> list[tuple[str, str]]:
    rows = []
    for k, v in m.items():
        if k in ("fid_std", "kid_std", "is_std", "classes_total",
                 "modes_total", "ppl_z_std", "ppl_w_std"):
            continue
        label = _METRIC_LABELS.get(k, k)
        if k == "fid" and "fid_std" in m:
            text = f"{v:.3f} ± {m['fid_std']:.3f} (bootstrap std)"
        elif k == "kid":
            text = f"{v:.5f} ± {m.get('kid_std', 0.0):.5f}"
        elif k == "is":
            text = f"{v:.3f} ± {m.get('is_std', 0.0):.3f}"
        elif k == "classes_covered":
            text = f"{v}/{m.get('classes_total', '?')}"
        elif k == "modes":
            text = f"{v:.0f}/{m.get('modes_total', 0):.0f}"
        elif k in ("ppl_z", "ppl_w") and isinstance(v, float):
            std = m.get(f"{k}_std")
            text = f"{v:.4g}" + (f" (std of the lengths {std:.4g})" if std is not None else "")
        elif isinstance(v, float):
            text = f"{v:.4f}"
        else:
            text = str(v)
        rows.append((label, text))
    return rows


def _print_report(report: dict, title: str) -> None:
    from rich.table import Table

    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("metric")
    t.add_column("value")
    for label, text in _metric_rows(report["metrics"]):
        t.add_row(label, text)
    out.print(t)
    out.print(f"features: {report['features']}", markup=False, highlight=False)
    if "ref_stats" in report:
        n_ref = report.get("n_real")
        out.print(f"reference statistics: {report['ref_stats']}"
                  + (f" ({n_ref} real images)" if n_ref else ""), markup=False,
                  highlight=False)
    if report.get("ref_stats_note"):
        out.print(f"note: {report['ref_stats_note']}", markup=False, highlight=False)
    if "ppl_distance" in report:
        out.print(f"ppl: {report['ppl_pairs']} pairs, t = 0 ({report['ppl_sampling']}-points), "
                  f"epsilon {report['ppl_epsilon']:g}, lengths in the 1st-99th percentile; "
                  f"distance: {report['ppl_distance']}", markup=False, highlight=False)
    if "cas_test" in report:
        out.print(f"cas: tested on {report['cas_test']} ({report['cas_test_images']} images); "
                  f"{report['cas_samples']} samples vs {report['cas_real_images']} real "
                  f"training images, {report['cas_steps']} classifier steps each",
                  markup=False, highlight=False)
    if "copies" in report:
        out.print(f"copy: vs the run's training set {report['copy_reference']} "
                  f"({report['copy_train_images']} images); worst cases (pixel space) in "
                  f"{report['copies']}", markup=False, highlight=False)


@app.command(name="eval", context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path), required=False)
@click.option("--data", help="real data to compare with  [default: the run's training data]")
@click.option("--metrics", "metrics", default="fid,kid,is,pr,dc,classes", show_default=True,
              help="comma-separated: fid, kid, is, pr (precision/recall), dc "
                   "(density/coverage), classes, ppl (perceptual path length in z, and in w "
                   "for StyleGAN runs; LPIPS-VGG16, else pixel MSE), copy (memorisation: "
                   "nearest training image vs the real-to-real gap, against the run's own "
                   "training set; writes RUN/copies.png), cas (classification accuracy score "
                   "of a conditional run: a classifier trained on its samples, tested on real "
                   "held-out images, beside one trained on the real ones)")
@click.option("--n", "n", type=int, default=10_000, show_default=True,
              help="generated samples (and real samples at most); ppl walks min(N, 10,000) "
                   "latent pairs")
@click.option("--features", default="auto", show_default=True,
              help="inception, dinov2 or clip (local weights; dinov2-vit-s-14, "
                   "clip-vit-b-32...), digits, a feature file (classifier or "
                   "self-supervised) from `ganforge features train`, or auto (Inception when "
                   "its weights are found, the digits classifier on digits)")
@click.option("--inception-weights", type=click.Path(path_type=Path),
              help="the FID Inception weights file (else $GANFORGE_INCEPTION_WEIGHTS or "
                   "torch's hub cache)")
@click.option("--real", "real_dir", help="compare two image sets: the real folder ...")
@click.option("--fake", "fake_dir", help="... and the generated folder")
@click.option("--resolution", type=int, help="--real/--fake: load both at this size  "
              "[default: the first fake image's]")
@click.option("--save-stats", "save_stats", type=click.Path(path_type=Path),
              help="with --real DIR alone: write its FID statistics (mu, sigma; the .npz of "
                   "pytorch-fid / clean-fid) to this file")
@click.option("--ref-stats", "ref_stats", type=click.Path(path_type=Path),
              help="FID of RUN (or --fake DIR) against these statistics (.npz from "
                   "--save-stats, pytorch-fid or clean-fid) instead of real images")
@click.option("--resize", type=click.Choice(["legacy", "clean"]),
              help="how images reach the feature network's input size: legacy (each "
                   "network's own; TF-bilinear for Inception, as published FIDs) or clean "
                   "(clean-fid's PIL bicubic on floats)  [default: legacy]")
@click.option("--reference", help="RUN's real side: train (its training data), test (its "
              "held-out split: NAME:test of a torchvision set, or the test/ or val/ folder "
              "beside a train/ folder), a statistics .npz, or a dataset  [default: train]")
@click.option("--checkpoint", help="a checkpoint of the run (e.g. best, step_00001000)  "
              "[default: latest]")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the samples")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps")
def evaluate(run: Path | None, data: str | None, metrics: str, n: int, features: str,
             inception_weights: Path | None, real_dir: str | None, fake_dir: str | None,
             resolution: int | None, save_stats: Path | None, ref_stats: Path | None,
             resize: str | None, reference: str | None, checkpoint: str | None, seed: int,
             device: str) -> None:
    """Score a run (FID, KID, IS, precision/recall, density/coverage, classes, perceptual path
    length; mode coverage for 2-D data) and write RUN/eval.json; or compare two image folders
    with --real/--fake."""
    from .evaluate import evaluate_folders, evaluate_run

    def say(msg: str) -> None:
        err.print(msg, markup=False, highlight=False)

    weights = str(inception_weights) if inception_weights else None
    if save_stats is not None:
        if not real_dir or fake_dir or run is not None or ref_stats is not None or reference:
            raise GanforgeError("--save-stats FILE writes the statistics of --real DIR: give "
                                "--real DIR alone (no RUN, --fake, --ref-stats or --reference)")
        _save_stats(real_dir, save_stats, features, weights, resolution, device, say, resize)
        return
    src = click.get_current_context().get_parameter_source("metrics")
    if src is click.core.ParameterSource.DEFAULT and (
            ref_stats is not None or str(reference or "").lower().endswith(".npz")):
        metrics = "fid"  # statistics give the FID alone
    if ref_stats is not None:
        if real_dir or data:
            raise GanforgeError("--ref-stats replaces the real images: drop --real/--data")
        if fake_dir:
            if run is not None:
                raise GanforgeError("give RUN or --fake DIR with --ref-stats, not both")
            report = evaluate_folders(None, fake_dir, metrics, features, weights, resolution,
                                      None, seed, device, log=say, ref_stats=str(ref_stats),
                                      resize=resize or "legacy")
            _print_report(report, f"{fake_dir} ({report['n_fake']} images, "
                                  f"{report['resolution']}px) vs {ref_stats}")
            return
    if reference is not None:
        if real_dir or fake_dir or run is None:
            raise GanforgeError("--reference picks a run's real side (`ganforge eval RUN "
                                "--reference test`); with --fake DIR use --real DIR or "
                                "--ref-stats FILE")
    if real_dir or fake_dir:
        if not (real_dir and fake_dir) or run is not None:
            raise GanforgeError("compare two image sets with both --real DIR and --fake DIR "
                                "(and no RUN), or evaluate a run with `ganforge eval RUN`")
        report = evaluate_folders(real_dir, fake_dir, metrics, features, weights, resolution,
                                  None, seed, device, log=say, resize=resize or "legacy")
        _print_report(report, f"{fake_dir} vs {real_dir} ({report['n_fake']} vs "
                              f"{report['n_real']} images, {report['resolution']}px)")
        return
    if run is None:
        raise GanforgeError("give a run folder (`ganforge eval RUN`) or --real DIR --fake DIR")
    report = evaluate_run(run, data, metrics, n, features, weights, seed, device, checkpoint,
                          log=say, ref_stats=str(ref_stats) if ref_stats else None,
                          reference=reference, resize=resize)
    _write_eval(run, report, n)


def _write_eval(run: Path, report: dict, n: int) -> None:
    from .metrics.evaluate import finite_json
    from .utils import atomic_write_text

    report["metrics"] = finite_json(report["metrics"])
    hub = _is_hub_spec(run)  # a model on the Hub: nowhere of the user's to keep eval.json
    if not hub:
        atomic_write_text(Path(run) / "eval.json", json.dumps(report, indent=2) + "\n")
    _print_report(report, f"{run} ({report['checkpoint']}, step {report['step']}) vs "
                          f"{report['data']}, {n} samples")
    if not hub:
        out.print(f"wrote {Path(run) / 'eval.json'}", markup=False, highlight=False)


def _save_stats(real_dir: str, save_stats: Path, features: str, weights: str | None,
                resolution: int | None, device: str, say, resize: str | None) -> None:
    from .evaluate import save_real_stats

    s = save_real_stats(real_dir, save_stats, features, weights, resolution, device, log=say,
                        resize=resize or "legacy")
    out.print(f"wrote {s['stats']}: mu [{s['dim']}], sigma [{s['dim']}, {s['dim']}] of "
              f"{s['n_real']} images at {s['resolution']}px\nfeatures: {s['features']}",
              markup=False, highlight=False)


@app.group(context_settings=CONTEXT)
def features() -> None:
    """Offline feature networks for the metrics: a small classifier (images in class
    sub-folders) or a self-supervised net (a flat folder of unlabelled images), trained on
    the real images, for `ganforge eval --features FILE` when Inception weights are not at
    hand. Their FIDs compare runs on the same data only."""


@features.command(name="train", context_settings=CONTEXT)
@click.option("--data", default="digits", show_default=True,
              help="the real images: a folder with one sub-folder per class (or a labelled "
                   "built-in dataset) for a classifier; a flat folder for self-supervised "
                   "features")
@click.option("--out", "out_file", type=click.Path(path_type=Path), required=True,
              help="the feature file to write (FILE.safetensors + FILE.json)")
@click.option("--method", type=click.Choice(["auto", "classifier", "contrastive"]),
              default="auto", show_default=True,
              help="classifier: supervised, needs >= 2 classes of labels; contrastive: "
                   "self-supervised (SimCLR-style), no labels needed; auto: classifier when "
                   "the data has >= 2 classes, else contrastive")
@click.option("--resolution", type=int, default=32, show_default=True,
              help="load the images at this size")
@click.option("--epochs", type=int,
              help="passes over the data  [default: 12 for a classifier; 20 for contrastive, "
                   "within 400-800 steps]")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
def features_train(data: str, out_file: Path, method: str, resolution: int,
                   epochs: int | None, seed: int, device: str) -> None:
    """Train a feature net on real images, for `ganforge eval --features FILE`: FID/KID/PR
    offline (and class histograms with a classifier)."""
    from .data import load_dataset
    from .metrics.classifier import save_classifier, train_classifier

    def say(m: str) -> None:
        out.print(m, markup=False, highlight=False)

    if epochs is not None and epochs < 1:
        raise GanforgeError(f"--epochs {epochs}: train at least 1 epoch")
    if out_file.suffix != ".safetensors":
        out_file = out_file.with_name(out_file.name + ".safetensors")
    ds = load_dataset(data, resolution=resolution,
                      log=lambda m: err.print(m, markup=False, highlight=False))
    if method == "auto":
        labelled = ds.labels is not None and ds.num_classes >= 2
        method = "classifier" if labelled else "contrastive"
        why = (f"{ds.num_classes} classes of labels" if labelled else
               "no class labels: a flat folder" if ds.labels is None else
               f"only {ds.num_classes} class of labels")
        say(f"method: {method} ({why})")
    if method == "classifier" and (ds.labels is None or ds.num_classes < 2):
        raise GanforgeError(f"--method classifier needs class labels ({data} has "
                            f"{'none' if ds.labels is None else 'one class'}): use a folder "
                            f"with class sub-folders, or --method contrastive (self-supervised)")
    if method == "contrastive":
        from .metrics.selfsup import train_contrastive

        model, stats = train_contrastive(ds, epochs=epochs, seed=seed, device=device, log=say)
        save_classifier(model, out_file)
        say(f"wrote {out_file} (+ {out_file.with_suffix('.json').name}): {len(ds)} images, "
            f"self-supervised (contrastive), {stats['seconds']:.0f}s")
        return
    model, _ = train_classifier(ds, epochs=epochs if epochs is not None else 12, batch_size=64,
                                lr=4e-3, seed=seed, device=device, log=say)
    save_classifier(model, out_file)
    acc = model.accuracy
    say(f"wrote {out_file} (+ {out_file.with_suffix('.json').name}): {len(ds)} images, "
        f"{ds.num_classes} classes" + (f", {100 * acc:.1f}% held-out accuracy" if acc is not None
                                       else ""))


def _image_io(fn):
    """RUN, --input and --out of the commands that convert image files (translate, upscale)."""
    fn = click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
                      help="output folder (same relative paths, PNG)")(fn)
    fn = click.option("--input", "input_path", type=click.Path(path_type=Path), required=True,
                      help="an image file or a folder of images (any size)")(fn)
    return click.argument("run", type=click.Path(path_type=Path))(fn)


def _run_options(fn):
    """--checkpoint and --device of the commands that use a trained run."""
    fn = click.option("--device", default="auto", show_default=True)(fn)
    return click.option("--checkpoint", help="a checkpoint of the run (e.g. best)  "
                        "[default: latest]")(fn)


_ARGV: list[str] = []  # the command line main() was called with (for --nproc)


def _launch(nproc: int, run: Path, resuming: bool, max_restarts: int) -> int:
    """Re-run this command under torchrun with ``nproc`` processes on this machine; this
    process is torchrun's agent. A process that fails ends the others; with ``max_restarts``
    the agent starts them all again and they resume from the run's last checkpoint."""
    import logging
    import os

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    args = list(_ARGV)
    for flag in ("--nproc", "--max-restarts"):  # drop --nproc N / --nproc=N ...
        while flag in args:
            i = args.index(flag)
            del args[i:i + 2]
        args = [a for a in args if not a.startswith(flag + "=")]
    if not resuming and "--out" not in args and not any(a.startswith("--out=") for a in args):
        args += ["--out", str(run)]
    launcher = ["--standalone", f"--nproc-per-node={nproc}", f"--max-restarts={max_restarts}",
                # a step and a checkpoint may take a while on a CPU: SIGTERM's grace period
                "--shutdown-timeout=300", "-m", "ganforge", *args]
    # torchrun's default is one thread a process: give each its share of the cores instead
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    err.print("launching: torchrun " + " ".join(launcher), markup=False, highlight=False)
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # one line below
    try:
        torchrun(get_args_parser().parse_args(launcher))
    except ChildFailedError as e:
        return _launch_failed(e, nproc, run, max_restarts)
    except SignalException as e:  # Ctrl-C or SIGTERM: passed on to the processes, which
        return 128 + int(e.sigval)  # finish their step, checkpoint and say so in a line
    return 0


def _launch_failed(e, nproc: int, run: Path, max_restarts: int) -> int:
    """One line for a multi-process run whose processes failed (after any restarts)."""
    from .checkpoint import latest_checkpoint

    failures = e.failures
    if all(f.exitcode in (2, 130, 143) for f in failures.values()):
        return max(f.exitcode for f in failures.values())  # the processes said why, in a line
    # the first to fail, of those not stopped by the others' failure (SIGTERM, a lost peer)
    causes = {r: f for r, f in failures.items() if f.exitcode not in (2, 130, 143, -15)}
    rank, first = min((causes or failures).items(), key=lambda kv: (kv[1].timestamp, kv[0]))
    how = (f"was killed by {first.signal_name()}" if first.exitcode < 0 else
           f"exited with code {first.exitcode}")
    tries = f" (after {max_restarts} restarts)" if max_restarts else ""
    good = latest_checkpoint(run)
    after = (f"the run keeps its last complete checkpoint {good.name}: continue with ganforge "
             f"train --resume {run} --nproc {nproc}" if good is not None else
             f"no checkpoint was written yet (remove {run} and start again)")
    hint = "" if max_restarts else ("; --max-restarts N restarts a run from its last "
                                    "checkpoint by itself")
    raise GanforgeError(f"process {rank} of {nproc} {how}{tries} and the others were stopped; "
                        f"{after}{hint}")


def _sampler(g):
    from .generate import Translator

    if isinstance(g, Translator):
        raise GanforgeError(f"this is a {g.kind} run: it translates images instead of "
                            f"sampling from noise; use `ganforge "
                            f"{'upscale' if g.kind == 'srgan' else 'translate'} RUN --input ...`")
    return g


def _image_files(path: Path, flag: str = "--input") -> list[Path]:
    from .data.images import image_files

    return image_files(path, flag)


def _convert_each(t, files: list[Path], root: Path, out_dir: Path, channels: int, fn) -> None:
    """Read each file (any Pillow mode, converted to ``channels``), run ``fn`` on it, and write
    the result as PNG under ``out_dir`` at the same relative path; unreadable files are
    skipped and named in one line at the end."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    from .data.images import describe_error, to_8bit
    from .utils import save_png

    failed = []
    done = 0
    for f in files:
        try:
            with Image.open(f) as img:
                img.load()
                img = to_8bit(ImageOps.exif_transpose(img), channels)
            arr = np.array(img, dtype=np.uint8)  # a writable copy
        except Exception as e:  # unreadable / corrupt: skip, count, name
            failed.append(f"{f.name} ({describe_error(e)})")
            continue
        x = torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())
        y = fn(x[None].float() / 127.5 - 1)[0]
        rel = f.relative_to(root) if root.is_dir() else Path(f.name)
        dest = (out_dir / rel).with_suffix(".png")
        save_png(((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8), dest)
        done += 1
    out.print(f"wrote {done} image(s) to {out_dir}", markup=False, highlight=False)
    if failed:
        err.print(f"skipped {len(failed)} unreadable file(s): " + ", ".join(failed[:5])
                  + (" ..." if len(failed) > 5 else ""), markup=False, highlight=False)
    if not done:
        raise GanforgeError(f"no image could be read from {root}")


@app.command(context_settings=CONTEXT)
@_image_io
@click.option("--direction", default="AtoB", show_default=True,
              help="CycleGAN runs: AtoB (G) or BtoA (F)")
@click.option("--resize", is_flag=True, help="run at the training resolution and resize the "
              "output back (default: the image's own size, padded to what the net needs)")
@_run_options
def translate(run: Path, input_path: Path, out_dir: Path, direction: str, resize: bool,
              checkpoint: str | None, device: str) -> None:
    """Translate images with a Pix2Pix or CycleGAN run (both directions for CycleGAN)."""
    import torch.nn.functional as F

    from .generate import load_translator

    t = load_translator(run, device, checkpoint)
    if t.kind == "srgan":
        raise GanforgeError("this is a super-resolution run: use `ganforge upscale`")
    cin, _ = t.channels_for(direction)
    r = t.cfg.model.resolution

    def fn(x):
        if not resize:
            return t.translate(x, direction)
        h, w = x.shape[-2:]
        y = t.translate(F.interpolate(x, size=(r, r), mode="bicubic", align_corners=False,
                                      antialias=True).clamp(-1, 1), direction)
        return F.interpolate(y, size=(h, w), mode="bicubic", align_corners=False)

    _convert_each(t, _image_files(input_path), input_path, out_dir, cin, fn)


@app.command(context_settings=CONTEXT)
@_image_io
@click.option("--tile", type=int, default=128, show_default=True,
              help="process big images in tiles of this many input pixels (0 = whole image)")
@_run_options
def upscale(run: Path, input_path: Path, out_dir: Path, tile: int, checkpoint: str | None,
            device: str) -> None:
    """Super-resolve images with an SRGAN run (x2/x4/x8, as trained), any size, tiled."""
    from .generate import load_translator

    if tile < 0 or 0 < tile < 16:
        raise GanforgeError(f"--tile {tile}: use 0 (whole image) or at least 16 pixels")
    t = load_translator(run, device, checkpoint)
    if t.kind != "srgan":
        raise GanforgeError(f"this is a {t.kind} run: use `ganforge translate`")
    _convert_each(t, _image_files(input_path), input_path, out_dir, t.in_channels,
                  lambda x: t.upscale(x, tile))


@app.command(name="demo", context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--port", type=int, default=7860, show_default=True, help="port of the page")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on (0.0.0.0: reachable from the network)")
@click.option("--share", is_flag=True, help="also a public link through Gradio's tunnel "
              "(needs the internet; without it the page stays local)")
@_run_options
def demo_cmd(run: Path, port: int, host: str, share: bool, checkpoint: str | None,
             device: str) -> None:
    """A web page to try a run in the browser (Gradio): samples, interpolations, or
    translation / upscaling of an uploaded image; vector runs: a scatter plot."""
    from .demo import check_port, launch, require_gradio

    require_gradio()  # a missing Gradio or a taken port fails before the run is loaded
    check_port(host, port)
    launch(run, host=host, port=port, share=share, checkpoint=checkpoint, device=device,
           say=lambda line: err.print(line, markup=False, highlight=False))


@app.command(name="project", context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--image", "image_path", type=click.Path(path_type=Path), required=True,
              help="an image file or a folder of images (converted to the run's channels, "
                   "centre-cropped to its aspect ratio and resized to its resolution)")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="folder for NAME.png, NAME_compare.png, NAME.safetensors and report.json")
@click.option("--space", type=click.Choice(["z", "w", "w+"]),
              help="latent space  [default: w for StyleGAN runs, z for the others]")
@click.option("--steps", type=int, default=500, show_default=True,
              help="optimisation steps (StyleGAN2-ADA's projector runs 1000)")
@click.option("--class", "cls", help="conditional runs: the class of the image(s)")
@click.option("--distance", type=click.Choice(["auto", "lpips", "pixel"]), default="auto",
              show_default=True, help="auto: LPIPS-VGG16 when its weights are found, else "
              "pixel: pixel MSE + D features")
@click.option("--gif", is_flag=True, help="also write NAME.gif: target beside the "
              "reconstruction during the optimisation")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the latent noise "
              "and the z draws")
@_run_options
def project_cmd(run: Path, image_path: Path, out_dir: Path, space: str | None, steps: int,
                cls: str | None, distance: str, gif: bool, seed: int, checkpoint: str | None,
                device: str) -> None:
    """Project images into a trained generator (GAN inversion): the latent of each, its
    reconstruction, PSNR and SSIM."""
    from . import project as pj
    from .generate import load

    def say(msg: str) -> None:
        err.print(msg, markup=False, highlight=False)

    g = pj.check_run(load(run, device=device, checkpoint=checkpoint))
    space = pj.check_space(g, space)
    pj.class_labels(g, 1, cls)  # a conditional run without --class: one line, before reading
    m = g.cfg.model
    x, files, failed, notes = pj.load_targets(_image_files(image_path, "--image"),
                                              m.resolution, m.channels)
    for note in notes:
        say(note)
    if failed:
        say(f"skipped {len(failed)} unreadable file(s): " + ", ".join(failed[:5])
            + (" ..." if len(failed) > 5 else ""))
    if not files:
        raise GanforgeError(f"no image could be read from {image_path}")
    every = max(1, steps // 50) if gif else 0
    p = pj.project(g, x, space, steps, cls, seed, distance, log=say, record_every=every)
    report = _write_projection(g, run, p, x, _projection_names(files, image_path), out_dir,
                               seed, cls)
    from rich.table import Table

    t = Table(title=f"projection into {p.space} ({p.steps} steps)", header_style="bold")
    for col in ("image", "PSNR (dB)", "SSIM"):
        t.add_column(col)
    for r in report["images"]:
        t.add_row(r["name"], f"{r['psnr']:.2f}", f"{r['ssim']:.4f}")
    t.add_row("mean", f"{report['mean_psnr']:.2f}", f"{report['mean_ssim']:.4f}")
    out.print(t)
    out.print(f"distance: {p.distance}", markup=False, highlight=False)
    out.print(f"wrote {len(files)} projection(s) and report.json to {out_dir}", markup=False,
              highlight=False)


def _projection_names(files: list[Path], root: Path) -> list[str]:
    """Output names: the path under ``root`` without suffix, made unique."""
    names: list[str] = []
    for f in files:
        base = (f.relative_to(root) if root.is_dir() else Path(f.name)).with_suffix("")
        name, i = base.as_posix(), 1
        while name in names or name == "report":
            i += 1
            name = f"{base.as_posix()}_{i}"
        names.append(name)
    return names


def _write_projection(g, run: Path, p, targets, names: list[str], out_dir: Path, seed: int,
                      cls: str | None) -> dict:
    """NAME.png, NAME_compare.png, NAME.safetensors (and NAME.gif) per image, report.json."""
    import torch
    from PIL import Image

    from .directions import save_latent
    from .utils import atomic_write_text, make_grid, save_grid, save_png, to_pil, to_uint8

    tgt, rec = to_uint8(targets), to_uint8(p.reconstructions)
    rows = []
    for i, name in enumerate(names):
        save_png(rec[i], out_dir / f"{name}.png")
        save_grid(torch.stack([tgt[i], rec[i]]), out_dir / f"{name}_compare.png", nrow=2)
        save_latent(out_dir / f"{name}.safetensors", p.latents[i:i + 1], p.space,
                    p.labels[i:i + 1] if p.labels is not None else None, str(run), g.step)
        if p.frames:
            scale = max(1, -(-128 // tgt.shape[-1]))  # at least 128 pixels high
            frames = [to_pil(make_grid(torch.stack([tgt[i], f[i]]), nrow=2)) for f in p.frames]
            frames = [im.resize((im.width * scale, im.height * scale), Image.NEAREST)
                      for im in frames]
            frames[0].save(out_dir / f"{name}.gif", save_all=True, append_images=frames[1:],
                           duration=80, loop=0)
        rows.append({"name": name, "psnr": float(p.psnr[i]), "ssim": float(p.ssim[i])})
    report = {"run": str(run), "checkpoint": str(g.checkpoint), "step": g.step,
              "space": p.space, "steps": p.steps, "distance": p.distance, "seed": seed,
              "class": cls, "noise": "per-image noise maps optimised; reconstructions "
              "rendered with the run's fixed noise" if p.noise is not None else None,
              "images": rows, "mean_psnr": float(p.psnr.mean()),
              "mean_ssim": float(p.ssim.mean())}
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2) + "\n")
    return report


@app.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("repo")
@click.option("--checkpoint", help="a checkpoint of the run (e.g. best, step_00001000)  "
              "[default: latest]")
@click.option("--private", is_flag=True, help="create the repository private (an existing "
              "one keeps its visibility)")
@click.option("--license", "license_", help="the model card's license id (mit, apache-2.0, "
              "cc-by-4.0...)  [default: other: the weights inherit the training data's terms]")
@click.option("--token", help="a Hugging Face token with write access  [default: HF_TOKEN or "
              "the `huggingface-cli login` one; prefer those: a command line is visible to "
              "other users]")
def push(run: Path, repo: str, checkpoint: str | None, private: bool, license_: str | None,
         token: str | None) -> None:
    """Upload RUN to the Hugging Face Hub as the model repository REPO (OWNER/NAME): the
    sampling weights (safetensors), config, a sample grid and a model card; then
    `ganforge.load("hf:OWNER/NAME")` loads it anywhere. RUN may also be a folder from
    `ganforge export RUN --format hub`."""
    from .hub import push as push_hub

    url = push_hub(run, repo, checkpoint, private, license_, token,
                   log=lambda m: err.print(m, markup=False, highlight=False))
    out.print(url, markup=False, highlight=False)


@app.command(name="export", context_settings=CONTEXT)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript", "hub"]),
              default="onnx", show_default=True,
              help="onnx (onnxruntime, TensorRT...), torchscript (torch.jit.load) or hub (a "
              "Hugging Face model folder for `ganforge push`)")
@click.option("--out", "out_path", type=click.Path(path_type=Path),
              help="the file to write  [default: RUN/export/generator.onnx or .pt, "
              "translator.* for image-to-image runs; hub: the folder RUN/export/hub]")
@click.option("--checkpoint", help="a checkpoint of the run (e.g. best, step_00001000)  "
              "[default: latest]")
@click.option("--direction", type=click.Choice(["AtoB", "BtoA"]),
              help="CycleGAN runs: export G (AtoB) or F (BtoA)  [default: AtoB]")
@click.option("--tolerance", type=float, help="the largest max abs difference from PyTorch "
              "the check after writing accepts  [default: 1e-4]")
@click.option("--device", help="torchscript: where the nets are traced and checked (cpu, "
              "cuda...); ONNX is exported and checked on the CPU  [default: cpu]")
@click.option("--license", "license_", help="--format hub: the model card's license id (mit, "
              "apache-2.0, cc-by-4.0...)")
def export_cmd(run: Path, fmt: str, out_path: Path | None, checkpoint: str | None,
               direction: str | None, tolerance: float | None, device: str | None,
               license_: str | None) -> None:
    """Export RUN's generator (or translator) as one ONNX or TorchScript file, checked against
    PyTorch after writing; or as a Hub model folder. Inputs: z [N, latent] (+ class [N] for
    conditional runs, + truncation [1] for StyleGAN runs), or image [N, C, H, W] in [-1, 1]
    of any size for image-to-image runs."""
    if fmt == "hub":
        return _export_hub(run, out_path, checkpoint, direction, tolerance, device, license_)
    from . import export as ex

    if license_ is not None:
        raise GanforgeError("--license is for --format hub (a model card): drop it")
    if fmt == "onnx" and device not in (None, "cpu"):
        raise GanforgeError(f"--device {device}: ONNX is exported and checked on the CPU "
                            f"(onnxruntime); --device is for --format torchscript")
    tol = ex.DEFAULT_TOLERANCE if tolerance is None else tolerance
    if out_path is not None:
        ex.check_out(out_path, fmt)
    if fmt == "onnx":
        rep = ex.export_onnx(run, out_path, checkpoint, direction, tol)
    else:
        rep = ex.export_torchscript(run, out_path, checkpoint, direction, tol, device or "cpu")
    meta = rep["metadata"]
    what = f"opset {ex.ONNX_OPSET}" if fmt == "onnx" else "torch.jit.load"
    show = out.print
    show(f"wrote {rep['path']} ({fmt}, {what}; {meta['preset']} run, step {meta['step']})",
         markup=False, highlight=False)
    for side in ("inputs", "outputs"):
        sig = "; ".join(f"{x['name']} {x['dtype']} [{', '.join(map(str, x['shape']))}]"
                        for x in rep[side])
        if side == "outputs" and isinstance(meta.get("value_range"), list):
            sig += " in [-1, 1]"
        show(f"  {side + ':':<8} {sig}", markup=False, highlight=False)
    show(f"max abs difference vs PyTorch: {rep['max_abs_diff']:.3g} (tolerance {tol:g})",
         markup=False, highlight=False)


def _export_hub(run: Path, out_path: Path | None, checkpoint: str | None,
                direction: str | None, tolerance: float | None, device: str | None,
                license_: str | None) -> None:
    for flag, value in (("--direction", direction), ("--tolerance", tolerance),
                        ("--device", device)):
        if value is not None:
            raise GanforgeError(f"{flag} is not used by --format hub (it copies the weights "
                                f"as they are): drop it")
    from .hub import export_hub

    dest = export_hub(run, out_path or Path(run) / "export" / "hub", checkpoint=checkpoint,
                      license=license_)
    out.print(f"wrote {dest}", markup=False, highlight=False)


@app.command(context_settings=CONTEXT)
def presets() -> None:
    """List the presets, one line each."""
    from .config import PRESETS

    width = max(len(k) for k in PRESETS)
    for name in sorted(PRESETS):
        out.print(f"{name:<{width}}  {PRESETS[name][0]}", markup=False, highlight=False)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app, turning every expected failure into one line and exit 2."""
    _ARGV[:] = list(argv if argv is not None else sys.argv[1:])
    try:
        rv = app.main(args=argv, standalone_mode=False, prog_name="ganforge")
        return rv if isinstance(rv, int) else 0
    except GanforgeError as e:
        if not getattr(e, "quiet", False):  # another process of the run said it already
            err.print(f"error: {e}", markup=False, highlight=False)
        return 2
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        err.print("aborted", markup=False)
        return 130
    except click.ClickException as e:
        cmd = " ".join(a for a in (argv if argv is not None else sys.argv[1:])[:1])
        hint = f"; see `ganforge {cmd} --help`" if cmd and not cmd.startswith("-") else \
            "; see `ganforge --help`"
        err.print(f"error: {e.format_message().rstrip('.')}{hint}", markup=False,
                  highlight=False)
        return 2
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        return 130
