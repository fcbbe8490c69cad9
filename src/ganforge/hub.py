"""A trained run as a Hugging Face Hub model folder, and back.

The folder :func:`export_hub` writes (``ganforge push`` uploads the same)::

    config.json        the run's resolved config (``Config.load`` reads it) plus a "ganforge"
                       block: format, ganforge version, kind, step, images seen, and which of
                       the run's nets are in the weights file
    model.safetensors  the generator(s) the run samples with, keys ``G.<name>`` (CycleGAN also
                       ``F.<name>``); G is the EMA generator when the run kept one. No
                       discriminator, no optimiser state.
    classes.json       the class names, when the run has them
    samples.png        a grid drawn with seed 0 (image-to-image runs: input | output | target
                       rows from the run's held-out data, when it can still be read)
    README.md          the model card: YAML front matter (license, library_name, tags,
                       pipeline_tag); what the model is, its samples, its measured metrics,
                       its training data, how to load it

``ganforge.load(FOLDER)`` and ``ganforge.load("hf:OWNER/NAME[@REVISION]")`` (downloaded with
huggingface_hub into its own cache, ``HF_HOME``) rebuild the nets from config.json and fill
them from model.safetensors: the same :class:`~ganforge.generate.TrainedGAN` or
:class:`~ganforge.generate.Translator` the run gives, without its discriminator. Only JSON and
safetensors are read, nothing is unpickled. That reading side (and the download) is
:mod:`ganforge.hub_folder`, below ``generate``; this module, above it, writes and uploads.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .config import Config
from .errors import GanforgeError
from .hub_folder import (
    CONNECTION,
    FORMAT,
    WEIGHTS,
    class_names,
    error_cause,
    error_kinds,
    hub_module,
    is_hub_folder,
    is_spec,
    parse_repo,
    read_block,
    version,
)

FILES = ("config.json", WEIGHTS, "classes.json", "samples.png", "README.md")
GRID_SEED = 0
PAIR_ROWS = 6  # image-to-image grid: examples shown
MAX_CLASS_ROWS = 10  # conditional grid: classes shown
_LICENSE = re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}")
Log = Callable[[str], None]


# --- the Hub --------------------------------------------------------------------------------


def _saved_token(hf) -> str | None:
    """The token of ``huggingface-cli login`` or HF_TOKEN, None when there is none."""
    get = getattr(hf, "get_token", None)
    if get is None and getattr(hf, "HfFolder", None) is not None:
        get = hf.HfFolder.get_token
    try:
        return get() if get is not None else None
    except Exception:  # noqa: BLE001 - an unreadable token file is the same as none
        return None


def _push_error(repo: str, e: BaseException) -> str:
    names, status = error_kinds(e)
    if status in (401, 403):
        return (f"the Hugging Face Hub refused the token for {repo} (HTTP {status}): log in "
                f"again with `huggingface-cli login`, or pass a token with write access "
                f"(--token or HF_TOKEN); OWNER must be you or an organisation you write to")
    if "OfflineModeIsEnabled" in names:
        return f"cannot push to {repo}: HF_HUB_OFFLINE is set: unset it and run again"
    if names & CONNECTION:
        return (f"could not reach the Hugging Face Hub to push {repo} ({error_cause(e)}): "
                f"check the connection (and HF_ENDPOINT) and run the command again")
    return (f"pushing to {repo} failed ({error_cause(e)}): check the name and your write "
            f"access, and run the command again")


def push(run: str | Path, repo: str, checkpoint: str | None = None, private: bool = False,
         license: str | None = None, token: str | None = None,
         log: Log | None = None) -> str:
    """Upload ``run`` to the Hub model repository ``repo`` (``OWNER/NAME``, created when
    missing; ``private`` applies to a new one) as :func:`export_hub` lays it out, through a
    temporary folder that is always removed. ``run`` may also be a Hub folder already
    exported (uploaded as it is). ``token``: default the saved login or HF_TOKEN. Returns
    the repository's URL."""
    say = log or (lambda _m: None)
    repo_id, _ = parse_repo(repo, revision_ok=False)
    run = Path(run)
    ready = is_hub_folder(run)
    if ready and (checkpoint or license):
        raise GanforgeError(f"{run} is an exported Hub folder: its weights and card are fixed; "
                            f"drop --checkpoint/--license, or push the run folder")
    hf = hub_module("ganforge push")
    token = token or _saved_token(hf)
    if not token:
        raise GanforgeError("not logged in to the Hugging Face Hub: run `huggingface-cli "
                            "login` (or `hf auth login`), set HF_TOKEN, or pass --token")
    with tempfile.TemporaryDirectory(prefix="ganforge-push-") as tmp:
        folder = run if ready else export_hub(run, Path(tmp) / "model", checkpoint, license,
                                              repo=repo_id)
        step = (read_block(folder) or {}).get("step")
        api = hf.HfApi()
        try:
            url = api.create_repo(repo_id, token=token, private=private, exist_ok=True,
                                  repo_type="model")
            api.upload_folder(repo_id=repo_id, folder_path=str(folder), token=token,
                              repo_type="model", allow_patterns=list(FILES),
                              # a file an earlier push left that this model has not
                              delete_patterns=[f for f in FILES if not (folder / f).is_file()],
                              commit_message=f"ganforge push: step {step}")
        except Exception as e:  # noqa: BLE001 - every failure of the Hub calls is one line
            raise GanforgeError(_push_error(repo_id, e)) from None
    say(f"uploaded {run} (step {step}) to {repo_id}")
    return str(url or f"https://huggingface.co/{repo_id}")


# --- writing a Hub folder -------------------------------------------------------------------


def _check_license(license: str | None) -> str:
    lic = (license or "other").strip().lower()
    if not _LICENSE.fullmatch(lic):
        raise GanforgeError(f"--license {license!r}: give a license id as the Hub spells it "
                            f"(e.g. mit, apache-2.0, cc-by-4.0, cc-by-nc-4.0; other = the "
                            f"training data's terms)")
    return lic


def _check_out(out: Path) -> None:
    """``out`` must be new, empty (hidden entries such as .git aside) or an earlier export."""
    if not out.exists():
        return
    if not out.is_dir():
        raise GanforgeError(f"{out} is a file: give a folder to write the Hub model into")
    if any(not p.name.startswith(".") for p in out.iterdir()) and not is_hub_folder(out):
        raise GanforgeError(f"{out} is not empty and is not a ganforge Hub folder: give a new or "
                            f"empty folder (an earlier export is replaced in place)")


def export_hub(run: str | Path, out: str | Path, checkpoint: str | None = None,
               license: str | None = None, repo: str | None = None,
               log: Log | None = None) -> Path:
    """Write ``run`` (its latest checkpoint, or ``checkpoint``) as a Hugging Face model folder
    at ``out`` (see the module docstring) and return it. ``out`` must be new, empty or an
    earlier export (replaced in place; other files in it are kept). ``license``: the card's
    license id (default ``other``: the weights inherit the training data's terms); ``repo``:
    ``OWNER/NAME`` shown in the card's loading example."""
    from .generate import load

    run, out = Path(run), Path(out).resolve()
    lic = _check_license(license)
    if is_spec(run) or is_hub_folder(run):
        raise GanforgeError(f"{run} is a Hub model already: export from the run folder (a Hub "
                            f"folder is uploaded as it is by `ganforge push DIR OWNER/NAME`)")
    if repo is not None:
        repo = parse_repo(repo, revision_ok=False)[0]
    _check_out(out)
    g = load(run, device="cpu", checkpoint=checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _write_folder(g, run, tmp, lic, repo, log or (lambda _m: None))
        if not out.exists():
            os.replace(tmp, out)
        else:
            made = {p.name for p in tmp.iterdir()}
            for name in FILES:
                if name not in made:
                    (out / name).unlink(missing_ok=True)
            for p in tmp.iterdir():
                os.replace(p, out / p.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_folder(g, run: Path, folder: Path, lic: str, repo: str | None, say: Log) -> None:
    """config.json, model.safetensors, classes.json, samples.png and README.md of ``g``."""
    from safetensors.torch import save_file

    from . import checkpoint as ck
    from .utils import _umask

    translator = hasattr(g, "translate")
    nets = g.nets() if translator else {"G": g.G}
    has_ema = (g.checkpoint / "G_ema.safetensors").is_file()
    state = ck.load_state(g.checkpoint)
    block = {"format": FORMAT, "version": version(),
             "kind": "image-to-image" if translator else "noise",
             "recipe": g.cfg.train.recipe, "step": int(g.step),
             "images_seen": int(state.get("images_seen", 0)),
             "train_seconds": round(float(state.get("train_seconds", 0.0)), 1), "weights": WEIGHTS,
             "nets": {n: "G_ema" if n == "G" and has_ema else n for n in nets},
             "checkpoint": g.checkpoint.name}
    tensors = {f"{n}.{k}": v.detach().contiguous().cpu()
               for n, net in nets.items() for k, v in net.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS),
              metadata={"format": "ganforge-hub", "ganforge_version": version(),
                        "nets": ",".join(nets), "step": str(g.step)})
    os.chmod(folder / WEIGHTS, 0o666 & ~_umask())  # safetensors writes 0600: as the others
    pub = public_config(g.cfg)
    (folder / "config.json").write_text(json.dumps({**pub.to_dict(), "ganforge": block},
                                                   indent=2) + "\n")
    names = class_names(run)
    if names is not None:
        (folder / "classes.json").write_text(json.dumps(names) + "\n")
    say(f"drawing the sample grid of {run} (step {g.step})")
    if translator:
        grid = _pairs_grid(g, folder / "samples.png")
    else:
        grid = _noise_grid(g, folder / "samples.png", _where(repo))
    card = model_card(pub, block, grid, _eval_report(run), lic, names, repo,
                      float(state.get("train_seconds", 0.0)))
    (folder / "README.md").write_text(card)


def public_source(source: str) -> str:
    """What a published folder says of a run's data: built-in names (digits, mnist:test...) and
    ``hf:`` specs as they are; a local path by its last component only, so a card pushed to
    the Hub does not publish the user's directory layout (``/home/ann/photos`` -> ``photos``)."""
    text = str(source).strip()
    if text.startswith("hf:"):
        return text
    # a name (digits, mnist:test) stays itself; a path of either OS keeps its last part
    return re.split(r"[\\/]", text.rstrip("/\\"))[-1] or text


def public_config(cfg: Config) -> Config:
    """A copy of ``cfg`` with its local paths (data source, ``--init`` checkpoint) reduced to
    their last component."""
    pub = copy.deepcopy(cfg)
    pub.data.source = public_source(cfg.data.source)
    if pub.train.init:
        pub.train.init = Path(str(cfg.train.init)).name
    return pub


# --- the sample grid ------------------------------------------------------------------------


def _noise_grid(g, path: Path, where: str) -> str:
    """Samples of a noise-to-image (or vector) run drawn with seed 0; returns the card's
    caption (the ``ganforge sample`` command that draws the same from ``where``)."""
    caption = _draw_noise_grid(g, path, where)
    if g.is_style:
        caption += (" StyleGAN's per-pixel noise is drawn afresh each time: the fine detail "
                    "of a redraw differs.")
    return caption


def _draw_noise_grid(g, path: Path, where: str) -> str:
    from .utils import save_grid, to_uint8

    if g.is_vector:
        from .plot import scatter_png

        scatter_png(g.sample(1000, seed=GRID_SEED), path)
        return ("1,000 samples drawn with seed 0 (their first two coordinates): `ganforge "
                f"sample {where} --n 1000 --seed 0` writes them to samples.csv.")
    r = max(g.cfg.model.size)  # the longer side sets how many fit a card
    if g.num_classes:
        cols = 8 if r <= 64 else 4
        k = min(g.num_classes, MAX_CLASS_ROWS)
        rows = [to_uint8(g.sample(cols, seed=GRID_SEED + c, c=c)) for c in range(k)]
        save_grid(torch.cat(rows), path, nrow=cols)
        shown = f"the first {k} of {g.num_classes} classes" if k < g.num_classes else \
            f"classes {', '.join(g.class_names)}"
        return (f"One row per class ({shown}), {cols} samples each, drawn with seed 0 "
                f"(`ganforge sample {where} --by-class --n {cols} --seed 0`).")
    n = 64 if r <= 64 else 36 if r <= 128 else 16 if r <= 256 else 4
    save_grid(to_uint8(g.sample(n, seed=GRID_SEED)), path)
    return f"{n} samples drawn with seed 0 (`ganforge sample {where} --n {n} --seed 0`)."


def _pairs_grid(t, path: Path) -> str | None:
    """Rows of an image-to-image run's held-out examples (its training ones when none is
    held out): input | output | target (CycleGAN: A | G(A) | B | F(B)). When the run's data
    cannot be read any more, no grid: returns None."""
    import torch.nn.functional as F

    from .train.batches import load_data, make_batches
    from .utils import save_grid, to_uint8

    try:
        data = load_data(t.cfg, log=lambda _m: None)
        fixed = make_batches(data, PAIR_ROWS, t.cfg.train.seed, torch.device("cpu")) \
            .fixed(PAIR_ROWS)
    except (GanforgeError, OSError):
        return None
    if "a" in fixed:
        a, b = fixed["a"], fixed["b"]
        cols = [a, t.translate(a, "AtoB"), b, t.translate(b, "BtoA")]
        what = "A | G(A) | B | F(B)"
    else:
        src, tgt = fixed["source"], fixed["target"]
        cols = [src, t.upscale(src) if t.kind == "srgan" else t.translate(src), tgt]
        what = "input | output | target" + (" (the input enlarged, nearest neighbour)"
                                            if t.kind == "srgan" else "")
    size = max(c.shape[-1] for c in cols)
    ch = max(c.shape[1] for c in cols)
    shown = []
    for c in cols:
        c = c.float().cpu()
        if c.shape[-1] != size:
            c = F.interpolate(c, size=(size, size), mode="nearest")
        shown.append(to_uint8(c.expand(-1, ch, -1, -1) if c.shape[1] == 1 else c))
    k = min(c.shape[0] for c in shown)
    save_grid(torch.stack([c[:k] for c in shown], 1).flatten(0, 1), path, nrow=len(shown))
    return (f"{k} examples from the run's held-out data (its training data when none is held "
            f"out), one a row: {what}.")


# --- the model card -------------------------------------------------------------------------


def _eval_report(run: Path) -> dict[str, Any] | None:
    try:
        rep = json.loads((run / "eval.json").read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(rep, dict) and isinstance(rep.get("metrics"), dict) and rep["metrics"]
    return rep if ok else None


def _metric_table(m: dict[str, Any]) -> list[str]:
    rows = ["| metric | value |", "|---|---|"]
    for k, v in m.items():
        if k.endswith(("_std", "_total")) or isinstance(v, bool):
            continue
        total = m.get(f"{k.removesuffix('_covered')}_total")
        if total is not None:
            text = f"{v}/{total}"
        elif isinstance(v, (int, float)):
            text = f"{v:.4g}"
            std = m.get(f"{k}_std")
            if isinstance(std, (int, float)):
                text += f" ± {std:.2g}"
        else:
            text = str(v).replace("|", "/")
        rows.append(f"| {k} | {text} |")
    return rows


def _metrics_section(rep: dict[str, Any] | None, block: dict[str, Any]) -> list[str]:
    lines = ["## Metrics", ""]
    if rep is None:
        return lines + ["No metrics were measured for this model. Measure them on the run with "
                        "`ganforge eval RUN` (it writes RUN/eval.json) and export again to "
                        "report them here.", ""]
    ck, step = rep.get("checkpoint", "?"), rep.get("step", "?")
    setup = f"Measured by `ganforge eval` on checkpoint `{ck}` (step {step}) against " \
            f"`{rep.get('data', '?')}`"
    if "n" in rep:
        setup += f", {rep['n']} samples"
    if "heldout" in rep:
        setup += f" ({rep['heldout']} held-out examples)"
    lines += [setup + ".", ""]
    if ck != block["checkpoint"]:
        lines += [f"Note: this folder holds checkpoint `{block['checkpoint']}` (step "
                  f"{block['step']}); the metrics were measured on `{ck}`.", ""]
    lines += [f"Feature space: {rep.get('features', 'not named')}", ""]
    return lines + _metric_table(rep["metrics"]) + [""]


def _front_matter(cfg: Config, lic: str, kind: str) -> list[str]:
    tags = ["gan", "ganforge", cfg.preset]
    if cfg.model.arch not in tags:
        tags.append(cfg.model.arch)
    pipeline = None
    if kind == "image-to-image":
        pipeline = "image-to-image"
        tags += ["image-to-image"] + (["image-super-resolution"]
                                      if cfg.train.recipe == "srgan" else [])
    elif cfg.model.resolution and cfg.model.num_classes:
        tags.append("class-conditional-image-generation")
    elif cfg.model.resolution:
        pipeline = "unconditional-image-generation"
        tags.append(pipeline)
    lines = ["---", f"license: {lic}", "library_name: ganforge", "tags:"]
    lines += [f"- {json.dumps(t) if not _LICENSE.fullmatch(t) else t}" for t in tags]
    if pipeline:
        lines.append(f"pipeline_tag: {pipeline}")
    return lines + ["---", ""]


def _summary(cfg: Config, block: dict[str, Any], names: list[str] | None,
             seconds: float) -> list[str]:
    m, t = cfg.model, cfg.train
    if block["kind"] == "image-to-image":
        scale = f", x{cfg.data.scale} super-resolution" if t.recipe == "srgan" else ""
        output = (f"{m.in_channels}-channel images to {m.channels}-channel images{scale} "
                  f"(trained at {m.resolution}x{m.resolution}; any size works)")
    elif m.resolution:
        output = f"{m.channels}-channel {m.size[0]}x{m.size[1]} images"
    else:
        output = f"{m.channels}-d vectors"
    if m.num_classes:
        shown = ", ".join((names or [])[:20]) + (" ..." if m.num_classes > 20 else "")
        cond = f"{m.num_classes} classes" + (f": {shown}" if names else "")
    else:
        cond = "unconditional"
    nets = ", ".join(f"{k} (the run's {v})" for k, v in block["nets"].items())
    return ["| | |", "|---|---|", f"| preset | `{cfg.preset}` |",
            f"| family | `{m.arch}` nets, `{t.recipe}` recipe, `{t.loss}` loss |",
            f"| output | {output} |",
            f"| task | `{cfg.data.task}` |" if block["kind"] == "image-to-image" else
            f"| conditioning | {cond} |",
            f"| training | {block['step']} steps, {block['images_seen'] / 1000:.1f} kimg, "
            f"{seconds:.0f} s |",
            f"| weights | {nets} from checkpoint `{block['checkpoint']}` |",
            f"| made with | ganforge {block['version']} |", ""]


def _where(repo: str | None) -> str:
    """How the card's commands name the model: its Hub name once known, else the folder."""
    return f"hf:{repo}" if repo else "path/to/this/folder"


def _usage(cfg: Config, block: dict[str, Any], repo: str | None) -> list[str]:
    spec = _where(repo)
    lines = ["## Use", "", "```bash", "pip install ganforge", "```", "", "```python",
             "import ganforge", "",
             f'model = ganforge.load("{spec}")'
             + ('  # or ganforge.load("path/to/this/folder")' if repo else
                '  # or ganforge.load("hf:OWNER/NAME") once pushed')]
    if block["kind"] == "image-to-image":
        verb = "upscale" if cfg.train.recipe == "srgan" else "translate"
        lines += [f"y = model.{verb}(x)  # x: float [N, {cfg.model.in_channels}, H, W] in "
                  f"[-1, 1]", "```", "", "From the command line (a folder of images in, PNGs "
                  "out):", "", "```bash", f"ganforge {verb} {spec} --input images/ --out out/"]
    else:
        cls = ", c=0)  # c: a class index or name" if cfg.model.num_classes else ")"
        lines += [f"x = model.sample(16, seed=0{cls}", "# float [16, C, R, R] in [-1, 1]; "
                  "model.sample_images(16) gives PIL images" if cfg.model.resolution else
                  "# float [16, D]", "```", "", "From the command line:", "", "```bash",
                  f"ganforge sample {spec} --n 64 --out samples/"]
    return lines + ["```", ""]


def model_card(cfg: Config, block: dict[str, Any], grid: str | None,
               evaluation: dict[str, Any] | None, license: str, names: list[str] | None,
               repo: str | None = None, seconds: float = 0.0) -> str:
    """The README.md of a Hub folder: YAML front matter, then what the model is, its sample
    grid (``grid``: the caption, None when no grid was drawn), its metrics (``evaluation``:
    the run's eval.json), its training data and how to use it."""
    d = cfg.data
    source = d.source.replace("`", "'")
    title = Path(d.source).name or d.source
    lines = _front_matter(cfg, license, block["kind"])
    lines += [f"# {cfg.preset} on {title}", "",
              f"A generative adversarial network trained with ganforge (`{cfg.preset}` "
              f"preset).", ""]
    lines += _summary(cfg, block, names, seconds)
    lines += ["## Samples", ""]
    if grid is not None:
        lines += ["![samples](samples.png)", "", grid, ""]
    else:
        lines += [f"No sample grid: the run's data (`{source}`) could not be read when this "
                  f"folder was made, and an image-to-image model needs inputs to show.", ""]
    lines += _metrics_section(evaluation, block)
    data = [f"- source: `{source}`"]
    if d.task != "none":
        data.append(f"- task: `{d.task}`, direction `{d.direction}`"
                    + (f", scale x{d.scale}" if d.task == "lowres2highres" else ""))
    data.append(f"- resolution {d.resolution}"
                + (f" (fit={d.fit})" if d.fit != "crop" else "") + ", channels "
                f"{d.channels if d.channels is not None else 'from the data'}")
    lines += ["## Training data", ""] + data + [""]
    lines += _usage(cfg, block, repo)
    lines += ["## License", ""]
    if license == "other":
        lines += [f"License `other`: these weights inherit the terms of their training data "
                  f"(`{source}`); check them before use.", ""]
    else:
        lines += [f"License `{license}`, as set by the uploader (the training data's terms "
                  f"may also apply).", ""]
    return "\n".join(lines)
