"""``ganforge demo RUN``: a Gradio web page to try a trained run in the browser.

* noise-to-image runs: seed, number of samples, class (conditional runs) and truncation -> a
  grid; two seeds -> the walk between their latents (a strip and an animated GIF);
* image-to-image runs: an uploaded image -> translated (pix2pix, cyclegan with its direction)
  or upscaled (srgan);
* vector runs: seed and number of points -> a scatter plot.

The functions that make the pictures (:func:`grid_image`, :func:`walk`, :func:`convert_image`,
:func:`scatter_image`) are plain functions of a loaded run, tested without a browser;
:func:`build_demo` only lays them out, :func:`launch` serves the page. Gradio is optional
(``pip install "ganforge[demo]"``); its analytics and version check are switched off.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .errors import GanforgeError
from .generate import TrainedGAN, Translator, load, slerp
from .utils import make_grid, to_pil, to_uint8

if TYPE_CHECKING:
    import gradio

BALANCED = "all classes (balanced)"  # the class choice that spreads samples over every class
MAX_SAMPLES = 64  # samples in one grid
MAX_FRAMES = 64  # frames of one walk
MAX_POINTS = 10_000  # points of one scatter plot (vector runs)
MAX_UPLOAD_SIDE = 2048  # longest side of an uploaded image, in input pixels
MIN_WIDTH = 256  # small pictures are enlarged (nearest) to at least this width
TILE = 128  # srgan runs upscale big uploads in tiles of this many input pixels
# small images fill their box and stay sharp (nearest) when the browser scales them up
CSS = (".ganforge-pixels img { image-rendering: pixelated; object-fit: contain; "
       "width: 100%; height: 100%; }")
IMAGE_HEIGHT = 360  # px of the image boxes on the page


def require_gradio() -> Any:  # the gradio module
    """Import gradio with its telemetry off; a one-line error when it is not installed."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no analytics, no version check
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import gradio
    except ImportError:
        raise GanforgeError('the demo needs Gradio: pip install "ganforge[demo]"') from None
    return gradio


def describe_run(model: TrainedGAN | Translator) -> str:
    """The page's header (Markdown): preset, step, resolution, channels and classes."""
    cfg = model.cfg
    m = cfg.model
    parts = [f"preset **{cfg.preset}**", f"step **{model.step}**"]
    if isinstance(model, Translator):
        if model.kind == "srgan":
            parts.append(f"**x{model.scale}** super-resolution")
        else:
            parts.append(f"{model.kind}, task {cfg.data.task}, trained at {m.resolution} px")
        parts.append(f"{model.in_channels} -> {model.out_channels} channels")
    elif model.is_vector:
        parts.append(f"{m.channels}-d vectors ({cfg.data.source})")
    else:
        parts.append(f"{m.size[0]}x{m.size[1]} px, "
                     f"{'grayscale' if m.channels == 1 else 'RGB'}")
    if getattr(model, "num_classes", 0):
        names = model.class_names
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        parts.append(f"{model.num_classes} classes ({shown})")
    elif not isinstance(model, Translator):
        parts.append("unconditional")
    return "## ganforge demo\n" + " · ".join(parts)


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    """``value`` as an integer in [lo, hi], or a one-line error naming ``name``."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = math.nan
    if not math.isfinite(f) or f != int(f) or not lo <= f <= hi:
        raise GanforgeError(f"{name} {value!r}: use a whole number from {lo} to {hi}")
    return int(f)


def truncation_value(g: TrainedGAN, value: float | None) -> float | None:
    """The slider's value as :meth:`TrainedGAN.sample`'s ``truncation``: StyleGAN psi (1 =
    off), else the latent threshold (0 = off)."""
    if value is None:
        return None
    value = float(value)
    if g.is_style:
        t = None if value == 1 else value
    else:
        t = None if value == 0 else value
    g.check_truncation(t)
    return t


def _class(g: TrainedGAN, cls: str | int | None) -> str | int | None:
    if cls in (None, "", BALANCED):
        return None
    if not g.num_classes:
        raise GanforgeError("this run is unconditional: leave the class empty")
    return cls


def enlarge(img, min_width: int = MIN_WIDTH):
    """``img`` (PIL) scaled by the smallest whole factor that makes it ``min_width`` wide,
    nearest neighbour, so small samples stay crisp."""
    from PIL import Image

    k = max(1, math.ceil(min_width / img.width))
    return img if k == 1 else img.resize((img.width * k, img.height * k), Image.NEAREST)


def grid_image(g: TrainedGAN, seed: int = 0, n: int = 16, cls: str | int | None = BALANCED,
               truncation: float | None = None):
    """``n`` samples of seed ``seed`` as one grid (PIL), enlarged to at least 256 px wide.
    ``cls``: a class name or index, or :data:`BALANCED`; ``truncation`` as the page's slider
    (:func:`truncation_value`)."""
    seed = _int(seed, "seed", 0, 2**63 - 1)
    n = _int(n, "number of samples", 1, MAX_SAMPLES)
    with torch.no_grad():
        x = g.sample(n, seed=seed, c=_class(g, cls), truncation=truncation_value(g, truncation))
    return enlarge(to_pil(make_grid(to_uint8(x))))


def walk(g: TrainedGAN, seed_a: int = 0, seed_b: int = 1, frames: int = 16,
         cls: str | int | None = None, truncation: float | None = None,
         gif_dir: Path | None = None, fps: int = 10) -> tuple[Any, Path]:
    """The walk from seed ``seed_a``'s latent to seed ``seed_b``'s (slerp in z, ``frames``
    steps, one class): a strip (PIL) and an animated GIF that goes there and back (its path,
    in ``gif_dir`` or the temp folder). StyleGAN runs keep their per-pixel noise fixed."""
    seed_a = _int(seed_a, "first seed", 0, 2**63 - 1)
    seed_b = _int(seed_b, "second seed", 0, 2**63 - 1)
    frames = _int(frames, "number of frames", 2, MAX_FRAMES)
    t = truncation_value(g, truncation)
    za, zb = g.noise(1, seed_a, t), g.noise(1, seed_b, t)
    z = torch.cat([slerp(za, zb, i / (frames - 1)) for i in range(frames)])
    c = _class(g, cls)
    labels = g.labels(frames, 0 if c is None else c) if g.num_classes else None
    with torch.no_grad():
        x = to_uint8(g.generate(z, labels, truncation=t,
                                noise_mode="const" if g.is_style else "random"))
    strip = enlarge(to_pil(make_grid(x, nrow=frames)), MIN_WIDTH * 2)
    pics = [enlarge(to_pil(im)) for im in x]
    pics += pics[-2:0:-1]  # and back, so the loop has no jump
    fd, name = tempfile.mkstemp(suffix=".gif", prefix="ganforge-walk-", dir=gif_dir)
    os.close(fd)
    pics[0].save(name, save_all=True, append_images=pics[1:], duration=int(1000 / fps),
                 loop=0)
    return strip, Path(name)


def _to_tensor(image, channels: int) -> torch.Tensor:
    """A PIL image of any mode -> float [1, channels, H, W] in [-1, 1] (as ``ganforge
    translate`` reads files: EXIF rotation, alpha on black, 16-bit scaled)."""
    import numpy as np
    from PIL import ImageOps

    from .data.images import to_8bit

    arr = np.array(to_8bit(ImageOps.exif_transpose(image), channels), dtype=np.uint8)
    x = torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())
    return x[None].float() / 127.5 - 1


def convert_image(t: Translator, image, direction: str = "AtoB", tile: int = TILE):
    """An uploaded image (PIL, any mode and size) through an image-to-image run: translated
    (pix2pix; cyclegan in ``direction`` AtoB or BtoA) or upscaled (srgan, in tiles of
    ``tile`` input pixels). Returns a PIL image."""
    if image is None:
        raise GanforgeError("no image: upload one first")
    if max(image.size) > MAX_UPLOAD_SIDE:
        raise GanforgeError(f"the image is {image.width}x{image.height}: the demo takes sides "
                            f"up to {MAX_UPLOAD_SIDE} px (use `ganforge translate` or "
                            f"`ganforge upscale` for bigger files)")
    if t.kind == "srgan":
        if direction != "AtoB":
            raise GanforgeError("a super-resolution run has no direction: use AtoB")
        x = _to_tensor(image, t.in_channels)
        y = t.upscale(x, tile)
    else:
        x = _to_tensor(image, t.channels_for(direction)[0])
        y = t.translate(x, direction)
    return to_pil(to_uint8(y)[0])


def scatter_image(g: TrainedGAN, seed: int = 0, n: int = 1000):
    """Vector runs: ``n`` samples of seed ``seed`` as a scatter plot (PIL), over the mode
    centres of ring8 / grid25 runs."""
    from PIL import Image

    from .plot import scatter_png

    seed = _int(seed, "seed", 0, 2**63 - 1)
    n = _int(n, "number of points", 1, MAX_POINTS)
    with torch.no_grad():
        x = g.sample(n, seed=seed)
    modes = None
    if g.cfg.data.source in ("ring8", "grid25"):
        from .data import load_vectors

        modes = load_vectors(g.cfg.data.source, n=10).modes
    with tempfile.TemporaryDirectory(prefix="ganforge-demo-") as d:
        path = Path(d) / "scatter.png"
        scatter_png(x, path, modes=modes)
        with Image.open(path) as im:
            return im.copy()


def _ui(gr, fn: Callable) -> Callable:
    """``fn`` with its one-line errors shown on the page (gr.Error) instead of a traceback."""

    def call(*args):
        try:
            return fn(*args)
        except GanforgeError as e:
            raise gr.Error(str(e)) from None

    call.__name__ = fn.__name__
    return call


def _sample_tab(gr, g: TrainedGAN) -> None:
    """Seed, count, class, truncation -> a grid."""
    with gr.Row():
        seed = gr.Number(value=0, precision=0, minimum=0, label="seed", elem_id="seed")
        n = gr.Slider(1, MAX_SAMPLES, value=16, step=1, label="number of samples",
                      elem_id="n")
    with gr.Row():
        inputs = [seed, n, _class_choice(gr, g, balanced=True, elem_id="class"),
                  _truncation_slider(gr, g, "truncation")]
    button = gr.Button("Generate", variant="primary", elem_id="generate")
    out = gr.Image(label="samples", type="pil", format="png", interactive=False,
                   elem_id="grid", elem_classes="ganforge-pixels", height=IMAGE_HEIGHT + 40)
    fn = _ui(gr, lambda s, k, c, tr: grid_image(g, s, k, c, tr))
    button.click(fn, inputs, out, api_name="generate")


def _walk_tab(gr, g: TrainedGAN, gif_dir: Path) -> None:
    """Two seeds, frames, class, truncation -> a strip and an animated GIF."""
    with gr.Row():
        a = gr.Number(value=0, precision=0, minimum=0, label="from seed", elem_id="seed_a")
        b = gr.Number(value=1, precision=0, minimum=0, label="to seed", elem_id="seed_b")
        frames = gr.Slider(2, MAX_FRAMES, value=8, step=1, label="frames", elem_id="frames")
    with gr.Row():
        inputs = [a, b, frames, _class_choice(gr, g, balanced=False, elem_id="walk_class"),
                  _truncation_slider(gr, g, "walk_truncation")]
    button = gr.Button("Walk", variant="primary", elem_id="walk")
    strip = gr.Image(label="the walk, frame by frame", type="pil", format="png",
                     interactive=False, elem_id="strip")
    gif = gr.Image(label="animated (there and back)", type="filepath", format="gif",
                   interactive=False, elem_id="gif", elem_classes="ganforge-pixels",
                   height=IMAGE_HEIGHT)

    def fn(sa, sb, k, c, tr):
        im, path = walk(g, sa, sb, k, c, tr, gif_dir=gif_dir)
        return im, str(path)

    button.click(_ui(gr, fn), inputs, [strip, gif], api_name="walk")


def _class_choice(gr, g: TrainedGAN, balanced: bool, elem_id: str):
    """A class dropdown (a hidden, empty one for unconditional runs)."""
    if not g.num_classes:
        return gr.Textbox(value="", visible=False, elem_id=elem_id)
    names = ([BALANCED] if balanced else []) + list(g.class_names)
    return gr.Dropdown(names, value=names[0], label="class", elem_id=elem_id)


def _truncation_slider(gr, g: TrainedGAN, elem_id: str):
    if g.is_style:
        return gr.Slider(0, 1, value=1, step=0.05, elem_id=elem_id,
                         label="truncation psi (1 = off; 0 = the mean image)")
    return gr.Slider(0, 3, value=0, step=0.05, elem_id=elem_id,
                     label="truncation threshold of z (0 = off; smaller = more typical)")


def _convert_tab(gr, t: Translator) -> None:
    """Upload -> translated or upscaled image (and the direction for CycleGAN)."""
    verb = "Upscale" if t.kind == "srgan" else "Translate"
    with gr.Row():
        inp = gr.Image(label="input image", type="pil", image_mode=None, format="png",
                       sources=["upload", "clipboard"], elem_id="input",
                       elem_classes="ganforge-pixels", height=IMAGE_HEIGHT)
        out = gr.Image(label="output", type="pil", format="png", interactive=False,
                       elem_id="output", elem_classes="ganforge-pixels", height=IMAGE_HEIGHT)
    direction = gr.Radio(["AtoB", "BtoA"], value="AtoB", elem_id="direction",
                         label="direction (AtoB: G, BtoA: F)", visible=t.kind == "cyclegan")
    button = gr.Button(verb, variant="primary", elem_id="convert")
    button.click(_ui(gr, lambda im, d: convert_image(t, im, d)), [inp, direction], out,
                 api_name="convert")


def _vector_tab(gr, g: TrainedGAN) -> None:
    with gr.Row():
        seed = gr.Number(value=0, precision=0, minimum=0, label="seed", elem_id="seed")
        n = gr.Slider(10, MAX_POINTS, value=1000, step=10, label="number of points",
                      elem_id="n")
    button = gr.Button("Generate", variant="primary", elem_id="generate")
    out = gr.Image(label="samples", type="pil", format="png", interactive=False,
                   elem_id="grid", height=IMAGE_HEIGHT + 160)
    button.click(_ui(gr, lambda s, k: scatter_image(g, s, k)), [seed, n], out,
                 api_name="generate")


def _model(run_or_model: str | Path | TrainedGAN | Translator, checkpoint: str | None,
           device: str) -> TrainedGAN | Translator:
    if isinstance(run_or_model, (TrainedGAN, Translator)):
        if checkpoint is not None or device != "auto":
            raise GanforgeError("checkpoint and device choose how a run folder is loaded: "
                                "drop them when passing a loaded model")
        return run_or_model
    return load(run_or_model, device=device, checkpoint=checkpoint)


def build_demo(run_or_model: str | Path | TrainedGAN | Translator,
               checkpoint: str | None = None, device: str = "auto") -> gradio.Blocks:
    """The demo page (a ``gradio.Blocks``) for a run folder or an already loaded
    :class:`TrainedGAN` / :class:`Translator`; serve it with :func:`launch` (or its own
    ``.launch()``, then pass ``css=ganforge.demo.CSS`` for crisp small images)."""
    gr = require_gradio()
    model = _model(run_or_model, checkpoint, device)
    with gr.Blocks(title=f"ganforge demo: {model.cfg.preset}", analytics_enabled=False) as page:
        gr.Markdown(describe_run(model), elem_id="header")
        gif_dir = None
        if isinstance(model, Translator):
            _convert_tab(gr, model)
        elif model.is_vector:
            _vector_tab(gr, model)
        else:
            gif_dir = Path(tempfile.mkdtemp(prefix="ganforge-demo-"))
            with gr.Tab("Samples", elem_id="tab_samples"):
                _sample_tab(gr, model)
            with gr.Tab("Interpolation", elem_id="tab_walk"):
                _walk_tab(gr, model, gif_dir)
    page.ganforge_model = model
    page.ganforge_tmp = gif_dir  # the walks' GIFs (Gradio serves copies); removed on close
    return page


@dataclass
class Served:
    """A running demo: the page, its local address, and the public one (``share``) or None."""

    page: Any
    url: str
    share_url: str | None

    def close(self) -> None:
        """Stop the server (and remove the walks' GIFs)."""
        import shutil

        with contextlib.redirect_stdout(io.StringIO()):  # Gradio's "Closing server ..."
            self.page.close()
        if getattr(self.page, "ganforge_tmp", None):
            shutil.rmtree(self.page.ganforge_tmp, ignore_errors=True)


def check_port(host: str, port: int) -> None:
    """A one-line error unless ``port`` is a valid, free port on ``host``."""
    if not 1 <= port <= 65535:
        raise GanforgeError(f"--port {port}: use a port from 1 to 65535 (e.g. 7860)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise GanforgeError(f"--host {host}: not an address of this machine ({e}); use "
                            f"127.0.0.1 (this machine) or 0.0.0.0 (every network)") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind(addr)
        except OSError as e:
            if e.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
                raise GanforgeError(f"port {port} on {host} is in use: pick another with "
                                    f"--port (e.g. --port {port + 1 if port < 65535 else 7860})"
                                    ) from None
            raise GanforgeError(f"cannot listen on {host}:{port} ({e.strerror or e}): use "
                                f"--host 127.0.0.1 or another --port") from None


def launch(run_or_model: Any, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           checkpoint: str | None = None, device: str = "auto", block: bool = True,
           say: Callable[[str], None] = print) -> Served:
    """Serve the demo of a run (folder, loaded model, or a page from :func:`build_demo`) at
    ``http://host:port``; ``share``: also a public link through Gradio's tunnel (needs the
    internet: when it fails, ``say`` tells so and the page stays local). ``block``: serve
    until Ctrl+C; else return at once (call ``.close()``)."""
    gr = require_gradio()
    check_port(host, port)
    page = run_or_model if isinstance(run_or_model, gr.Blocks) else \
        build_demo(run_or_model, checkpoint, device)
    if share:
        say("asking Gradio for a share link (needs the internet; gives up after ~30 s) ...")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # Gradio's prints: ours instead
            page.launch(server_name=host, server_port=port, share=share, quiet=True,
                        prevent_thread_lock=True, ssr_mode=False, mcp_server=False,
                        css=CSS, footer_links=["api", "settings"])
    except OSError as e:  # the port was taken between the check and the start
        raise GanforgeError(f"cannot serve on {host}:{port} ({e}): pick another --port"
                            ) from None
    served = Served(page, page.local_url, page.share_url if share else None)
    model = getattr(page, "ganforge_model", None)
    what = f"{model.cfg.preset} run (step {model.step})" if model else "page"
    say(f"demo of the {what} at {served.url}"
        + (f" and {served.share_url}" if served.share_url else ""))
    if share and not served.share_url:
        say("could not create a share link (Gradio's tunnel needs the internet); the page "
            f"works locally at {served.url}")
    if block:
        say("Ctrl+C to stop")
        try:
            while page.is_running:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            served.close()
        say("stopped")
    return served
