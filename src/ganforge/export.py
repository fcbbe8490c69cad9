"""Export a run's generator as one self-contained file: ONNX (``export_onnx``) or TorchScript
(``export_torchscript``), checked against PyTorch on fixed inputs after writing.

What goes in the file is what the run samples or translates with, wrapped so that the graph
alone is enough (no ganforge, no Python code of the nets at run time):

- noise-to-image runs (every family of :func:`ganforge.nets.build_nets`): the generator (the
  EMA one when the checkpoint has it, as :func:`ganforge.load` picks), inputs ``z`` float32
  [N, latent_dim] from N(0, I), ``class`` int64 [N] (conditional runs only) and, for StyleGAN
  runs only, ``truncation`` float32 [1] (psi: ``w = w_avg + psi (w - w_avg)``, 1 = off), with
  the per-pixel noise fixed (``noise_mode="const"``) so the output is a function of the
  inputs. For the other families truncation is how z is drawn (components beyond +-t redrawn,
  :meth:`ganforge.generate.TrainedGAN.noise`), not an input of the graph. Output ``image``
  float32 [N, C, R, R] clamped to [-1, 1] (vector runs: ``vector`` [N, D], the values
  ``ganforge sample`` writes to samples.csv, not clamped).
- image-to-image runs (pix2pix, cyclegan, srgan): G (or CycleGAN's F with
  ``direction="BtoA"``), input ``image`` float32 [N, C_in, H, W] in [-1, 1] of any size: the
  reflect padding to the net's size multiple and the crop back (as
  :func:`ganforge.nets.img2img.padded_call`) are inside the graph. Output ``output`` [N, C,
  H, W] (super-resolution: [N, C, H*s, W*s]) clamped to [-1, 1].

The batch axis is dynamic (and H, W for image inputs). The same metadata (ganforge version,
preset, step, the meaning of each input and output, the value range, class names) is written
into the ONNX model's ``metadata_props`` and into the TorchScript archive as
``extra/ganforge.json``.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import GanforgeError

ONNX_OPSET = 18
DEFAULT_TOLERANCE = 1e-4
SUFFIXES = {"onnx": (".onnx",), "torchscript": (".pt", ".pth")}
EXTRA_FILE = "ganforge.json"  # the metadata inside a TorchScript archive
INSTALL_HINT = 'pip install "ganforge[export]"'
CHECK_BATCH = 3  # the parity check runs a batch size other than the export's (2)
CHECK_SIZE = (37, 45)  # ... and, for image inputs, an odd size unlike the training one


# --- the wrappers that go into the file -----------------------------------------------------


class NoiseSampler(nn.Module):
    """A generator as a pure function of its inputs: ``(z [, class] [, truncation]) ->
    image`` (see the module docstring); the subclasses fix which inputs the graph has."""

    def __init__(self, G: nn.Module, style: bool, vector: bool):
        super().__init__()
        self.G, self.style, self.vector = G, style, vector

    def sample(self, z: torch.Tensor, c: torch.Tensor | None,
               psi: torch.Tensor | None) -> torch.Tensor:
        if self.style:
            w = self.G.mapping_net(z, c)  # [N, w_dim], untruncated
            if psi is not None:
                w_avg = self.G.mapping_net.w_avg.to(w.dtype)
                w = w_avg + psi.to(w.dtype).reshape(-1)[:1] * (w - w_avg)
            ws = w[:, None].expand(-1, self.G.num_ws, -1)
            y = self.G.synthesis(ws, noise_mode="const")
        else:
            y = self.G(z, c)
        return y if self.vector else y.clamp(-1, 1)


class _Z(NoiseSampler):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.sample(z, None, None)


class _ZC(NoiseSampler):
    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.sample(z, c, None)


class _ZT(NoiseSampler):
    def forward(self, z: torch.Tensor, truncation: torch.Tensor) -> torch.Tensor:
        return self.sample(z, None, truncation)


class _ZCT(NoiseSampler):
    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation: torch.Tensor
                ) -> torch.Tensor:
        return self.sample(z, c, truncation)


def pad_to_multiple(x: torch.Tensor, m: int) -> torch.Tensor:
    """``x`` [N, C, H, W] padded at the bottom and right to multiples of ``m``: reflected, or
    replicated when a side is too short to reflect, exactly as
    :func:`ganforge.nets.img2img.padded_call`. Written as index gathers with no branch on the
    sizes, so H and W stay symbolic in an exported graph (and it compiles with TorchScript)."""
    h, w = x.shape[2], x.shape[3]
    ih = torch.arange(h + (m - h % m) % m, device=x.device)
    iw = torch.arange(w + (m - w % m) % m, device=x.device)
    rh = torch.where(ih < h, ih, 2 * (h - 1) - ih)  # reflected rows (negative: too short)
    rw = torch.where(iw < w, iw, 2 * (w - 1) - iw)
    reflect = (rh.min() >= 0) & (rw.min() >= 0)  # padded_call reflects only if both sides can
    ih = torch.where(reflect, rh, ih.clamp(max=h - 1))
    iw = torch.where(reflect, rw, iw.clamp(max=w - 1))
    return x.index_select(2, ih).index_select(3, iw)


class ImageTranslator(nn.Module):
    """``image [N, C_in, H, W] -> [N, C_out, H*s, W*s]`` in [-1, 1] for any H, W: padded to
    the net's size multiple inside the graph, the output cropped back and clamped."""

    def __init__(self, net: nn.Module, multiple: int, scale: int):
        super().__init__()
        self.net, self.multiple, self.scale = net, multiple, scale

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[2], image.shape[3]
        x = image
        if self.multiple > 1:
            x = pad_to_multiple(image, self.multiple)
        y = self.net(x)
        return y[:, :, :h * self.scale, :w * self.scale].clamp(-1, 1)


# --- what to export from a run ---------------------------------------------------------------


@dataclass
class Exportable:
    """A run's wrapper with its signature, example inputs and metadata."""

    module: nn.Module  # the wrapper, eval mode
    inputs: list[str]  # graph input names, in order
    output: str  # graph output name
    example: tuple[torch.Tensor, ...]  # what the export traces (batch 2)
    check: tuple[torch.Tensor, ...]  # what the parity check runs (batch 3, odd sizes)
    dynamic: list[dict[int, str]]  # per input: axis -> name
    metadata: dict[str, Any] = field(default_factory=dict)
    stem: str = "generator"  # the default file's name: RUN/export/STEM.onnx (.pt)
    image_input: bool = False  # an image-to-image run (H, W dynamic, scripted padding)


def _io(name: str, dtype: str, shape: list, meaning: str) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape, "meaning": meaning}


def _base_meta(cfg, step: int, path: Path, kind: str) -> dict[str, Any]:
    from .hub_folder import version

    return {"producer": "ganforge", "ganforge_version": version(), "preset": cfg.preset,
            "recipe": cfg.train.recipe, "arch": cfg.model.arch, "step": step,
            "checkpoint": path.name, "kind": kind}


def _noise_exportable(run: Path, checkpoint: str | Path | None) -> Exportable:
    from .generate import load

    g = load(run, device="cpu", checkpoint=checkpoint)
    cfg, m = g.cfg, g.cfg.model
    k, style, vector = g.num_classes, g.is_style, g.is_vector
    cls = {(False, False): _Z, (True, False): _ZC, (False, True): _ZT, (True, True): _ZCT}
    module = cls[(k > 0, style)](g.G, style, vector).eval()
    gen = torch.Generator().manual_seed(0)
    example: list[torch.Tensor] = [torch.randn(2, g.latent_dim, generator=gen)]
    check: list[torch.Tensor] = [torch.randn(CHECK_BATCH, g.latent_dim, generator=gen)]
    inputs = ["z"]
    dynamic: list[dict[int, str]] = [{0: "batch"}]
    io_in = [_io("z", "float32", ["N", g.latent_dim], "latent codes drawn from N(0, I)")]
    if k:
        example.append(torch.arange(2) % k)
        check.append(torch.arange(CHECK_BATCH) % k)
        inputs.append("class")
        dynamic.append({0: "batch"})
        io_in.append(_io("class", "int64", ["N"], f"class index in 0..{k - 1}"))
    if style:
        example.append(torch.tensor([1.0]))
        check.append(torch.tensor([0.7]))
        inputs.append("truncation")
        dynamic.append({})
        io_in.append(_io("truncation", "float32", [1], "StyleGAN truncation psi: w = w_avg + "
                         "psi (w - w_avg); 1 = off, 0.5-0.7 = closer to typical samples"))
        trunc = "the input `truncation` (psi); per-pixel noise fixed (noise_mode=const)"
    else:
        trunc = ("not an input of the graph: truncate z when drawing it (BigGAN's trick: "
                 "redraw every component beyond +-t, e.g. t = 0.5 to 2)")
    if vector:
        out = "vector"
        io_out = _io(out, "float32", ["N", m.channels], "samples (the values `ganforge "
                     "sample` writes to samples.csv)")
    else:
        out = "image"
        io_out = _io(out, "float32", ["N", m.channels, *m.size],
                     "images NCHW in [-1, 1] (clamped): uint8 = round((x + 1) * 127.5); "
                     + ("gray" if m.channels == 1 else "RGB"))
    meta = {**_base_meta(cfg, g.step, g.checkpoint, "noise-to-vector" if vector
                         else "noise-to-image"),
            "inputs": io_in, "outputs": [io_out], "truncation": trunc,
            "value_range": "not clamped" if vector else [-1, 1],
            "latent_dim": g.latent_dim, "num_classes": k}
    if k:
        meta["class_names"] = g.class_names
    return Exportable(module, inputs, out, tuple(example), tuple(check), dynamic, meta)


def _translator_exportable(run: Path, checkpoint: str | Path | None,
                           direction: str | None) -> Exportable:
    from .generate import load_translator

    t = load_translator(run, device="cpu", checkpoint=checkpoint)
    if direction is not None and t.kind != "cyclegan":
        raise GanforgeError(f"--direction: a {t.kind} run translates one way only: drop it "
                            f"(CycleGAN runs export G with AtoB, F with BtoA)")
    direction = direction or "AtoB"
    net = t._net(direction)  # refuses a direction other than AtoB / BtoA
    mult = int(getattr(net, "size_multiple", 1))
    cin, cout = t.channels_for(direction)
    s = t.scale
    module = ImageTranslator(net, mult, s).eval()
    gen = torch.Generator().manual_seed(0)
    side = max(mult, 16)
    example = (torch.rand(2, cin, side, side, generator=gen) * 2 - 1,)
    check = (torch.rand(CHECK_BATCH, cin, *CHECK_SIZE, generator=gen) * 2 - 1,)
    out_shape = ["N", cout, "H" if s == 1 else f"H*{s}", "W" if s == 1 else f"W*{s}"]
    meta = {**_base_meta(t.cfg, t.step, t.checkpoint,
                         "super-resolution" if t.kind == "srgan" else "image-to-image"),
            "inputs": [_io("image", "float32", ["N", cin, "H", "W"], "images NCHW in [-1, 1] "
                           "(x = uint8 / 127.5 - 1), any H and W")],
            "outputs": [_io("output", "float32", out_shape, "images NCHW in [-1, 1] (clamped)")],
            "value_range": [-1, 1], "direction": direction, "scale": s,
            "size_multiple": mult,
            "padding": f"inside the graph: reflect to a multiple of {mult} (replicate for a "
                       f"side too short), output cropped back" if mult > 1 else "none needed"}
    if t.tile:
        meta["tile"] = (f"trained on {t.tile}px crops: `ganforge translate` runs big images "
                        f"in overlapping {t.tile}px windows; this graph runs them whole")
    return Exportable(module, ["image"], "output", example, check,
                      [{0: "batch", 2: "height", 3: "width"}], meta,
                      stem="translator" + ("_BtoA" if direction == "BtoA" else ""),
                      image_input=True)


def prepare(run: str | Path, checkpoint: str | Path | None = None,
            direction: str | None = None) -> Exportable:
    """The wrapper of a run's generator (translator), its signature and metadata."""
    from .config import Config

    run = Path(run)
    if not (run / "config.json").is_file():
        raise GanforgeError(f"{run} is not a run folder (no config.json): pass the --out "
                            f"folder of `ganforge train`")
    if Config.load(run / "config.json").data.task != "none":
        return _translator_exportable(run, checkpoint, direction)
    if direction is not None:
        raise GanforgeError("--direction is for CycleGAN runs (AtoB or BtoA): this run "
                            "generates from noise, drop it")
    return _noise_exportable(run, checkpoint)


# --- writing and checking --------------------------------------------------------------------


def default_out(run: str | Path, fmt: str, ex: Exportable) -> Path:
    """``RUN/export/generator.onnx`` (``.pt``; ``translator.*`` for image-to-image runs,
    ``translator_BtoA.*`` for CycleGAN's F)."""
    return Path(run) / "export" / f"{ex.stem}{SUFFIXES[fmt][0]}"


def check_out(out: str | Path, fmt: str) -> Path:
    """``out`` as a Path, refused unless its suffix fits the format."""
    out = Path(out)
    if out.suffix.lower() not in SUFFIXES[fmt]:
        want = " or ".join(SUFFIXES[fmt])
        kind = {"onnx": "an ONNX", "torchscript": "a TorchScript"}[fmt]
        raise GanforgeError(f"--out {out}: {kind} file ends in {want} (e.g. "
                            f"{out.with_suffix(SUFFIXES[fmt][0]).name})")
    if out.is_dir():
        raise GanforgeError(f"--out {out} is a folder: give a file name")
    return out


def _check_tolerance(tolerance: float) -> float:
    if not tolerance >= 0:  # also NaN
        raise GanforgeError(f"--tolerance {tolerance}: give a max abs difference >= 0 (e.g. "
                            f"{DEFAULT_TOLERANCE})")
    return float(tolerance)


@torch.no_grad()
def _reference(ex: Exportable, device: torch.device | str = "cpu") -> torch.Tensor:
    ex.module.to(device)
    return ex.module(*(x.to(device) for x in ex.check)).float().cpu()


def _parity(diff: float, tolerance: float, out: Path, what: str) -> None:
    if not diff <= tolerance:  # also NaN
        raise GanforgeError(f"{what} differs from PyTorch by {diff:.3g} (max abs) on the check "
                            f"inputs, over the tolerance {tolerance:g}: {out} is left for "
                            f"inspection (raise --tolerance to accept it)")


def _report(ex: Exportable, out: Path, fmt: str, diff: float, tolerance: float) -> dict:
    return {"path": str(out), "format": fmt, "inputs": ex.metadata["inputs"],
            "outputs": ex.metadata["outputs"], "max_abs_diff": diff, "tolerance": tolerance,
            "metadata": ex.metadata}


def _flat_meta(meta: dict[str, Any]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress lines and warnings (tracer, deprecation)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        level = logging.getLogger("torch").level
        logging.getLogger("torch").setLevel(logging.ERROR)
        try:
            yield
        finally:
            logging.getLogger("torch").setLevel(level)


def _need_onnx() -> tuple[Any, Any]:
    """onnx and onnxruntime (onnxscript: torch's exporter), or one line naming the fix."""
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401 - torch.onnx.export(dynamo=True) needs it
    except ImportError as e:
        raise GanforgeError(f"ONNX export needs onnx, onnxscript and onnxruntime "
                            f"({e.name or 'one'} is missing): {INSTALL_HINT}") from None
    params = inspect.signature(torch.onnx.export).parameters
    if "dynamo" not in params or "dynamic_shapes" not in params:
        raise GanforgeError(f"ONNX export needs torch >= 2.6 (its dynamo exporter; this is "
                            f"{torch.__version__}): upgrade torch, or use --format torchscript")
    return onnx, onnxruntime


def _check_onnx_able(module: nn.Module) -> None:
    from .nets.mlp import MixtureLatent

    if any(isinstance(m, MixtureLatent) for m in module.modules()):
        raise GanforgeError("this run's latent mixture prior (latent_mixture > 0) needs erfinv "
                            "and a float64 erf, which ONNX (onnxruntime) lacks: use --format "
                            "torchscript")


def _one_line(e: BaseException) -> str:
    """The gist of an exporter's many-line error: its exception summary, else its first line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    if "## Exception summary" in lines:
        lines = lines[lines.index("## Exception summary") + 1:]
    gist = lines[0] if lines else type(e).__name__
    return gist if len(gist) <= 300 else gist[:297] + "..."


def _write_onnx(ex: Exportable, out: Path) -> None:
    from torch.export import Dim

    onnx, _ = _need_onnx()
    dims: dict[str, Any] = {}
    shapes = tuple({axis: dims.setdefault(name, Dim(name)) for axis, name in d.items()} or None
                   for d in ex.dynamic)
    tmp = out.with_name(out.name + ".tmp")
    try:
        with _quiet():
            torch.onnx.export(ex.module, ex.example, str(tmp), input_names=ex.inputs,
                              output_names=[ex.output], dynamic_shapes=shapes,
                              opset_version=ONNX_OPSET, external_data=False, dynamo=True,
                              verbose=False)
        model = onnx.load(str(tmp))
        for key, value in _flat_meta(ex.metadata).items():
            model.metadata_props.add(key=key, value=value)
        model.doc_string = f"ganforge {ex.metadata['kind']} generator ({ex.metadata['preset']})"
        onnx.save(model, str(tmp))
        tmp.replace(out)
    except GanforgeError:
        raise
    except Exception as e:  # an exporter failure: one line, the cause named
        raise GanforgeError(f"ONNX export of this run failed ({_one_line(e)}): try --format "
                            f"torchscript") from e
    finally:
        tmp.unlink(missing_ok=True)


def export_onnx(run: str | Path, out: str | Path | None = None,
                checkpoint: str | Path | None = None, direction: str | None = None,
                tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """Write the run's generator (translator) as ONNX (opset 18, dynamic batch and image
    sizes, metadata in ``metadata_props``), then run it with onnxruntime (CPU) on fixed inputs
    of another batch size and compare with PyTorch: raises GanforgeError, leaving the file,
    when the max abs difference exceeds ``tolerance``. Returns {path, format, inputs,
    outputs, max_abs_diff, tolerance, metadata}."""
    _, ort = _need_onnx()
    tolerance = _check_tolerance(tolerance)
    ex = prepare(run, checkpoint, direction)
    _check_onnx_able(ex.module)
    out = check_out(out or default_out(run, "onnx", ex), "onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_onnx(ex, out)
    try:
        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = sess.run(None, {n: x.numpy() for n, x in zip(ex.inputs, ex.check)})[0]
    except Exception as e:  # a graph onnxruntime cannot load or run
        raise GanforgeError(f"onnxruntime could not run {out} ({_one_line(e)}): the file is "
                            f"left for inspection; try --format torchscript") from e
    diff = float((torch.from_numpy(got).float() - _reference(ex)).abs().max())
    _parity(diff, tolerance, out, "the ONNX model")
    return _report(ex, out, "onnx", diff, tolerance)


def _script(ex: Exportable, device: torch.device) -> torch.jit.ScriptModule:
    """Trace the net (shape-generic ops); script the padding around it (image inputs)."""
    example = tuple(x.to(device) for x in ex.example)
    ex.module.to(device)
    with _quiet(), torch.no_grad():
        if not ex.image_input:
            return torch.jit.trace(ex.module, example, check_trace=False)
        wrapper = ex.module
        xin = example[0]
        if wrapper.multiple > 1:
            xin = pad_to_multiple(xin, wrapper.multiple)
        net = torch.jit.trace(wrapper.net, (xin,), check_trace=False)
        return torch.jit.script(ImageTranslator(net, wrapper.multiple, wrapper.scale))


def export_torchscript(run: str | Path, out: str | Path | None = None,
                       checkpoint: str | Path | None = None, direction: str | None = None,
                       tolerance: float = DEFAULT_TOLERANCE, device: str = "cpu") -> dict:
    """Write the run's generator (translator) as TorchScript (``torch.jit.load(path)``; the
    metadata as JSON in the archive's ``extra/ganforge.json``), then load it and compare with
    PyTorch on fixed inputs of another batch size (and image size): raises GanforgeError,
    leaving the file, when the max abs difference exceeds ``tolerance``. ``device``: where it
    is traced and checked. Returns the same report as :func:`export_onnx`."""
    from .utils import pick_device

    tolerance = _check_tolerance(tolerance)
    dev = pick_device(device)
    ex = prepare(run, checkpoint, direction)
    out = check_out(out or default_out(run, "torchscript", ex), "torchscript")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        scripted = _script(ex, dev)
    except Exception as e:
        raise GanforgeError(f"TorchScript export of this run failed ({_one_line(e)}): try "
                            f"--format onnx") from e
    meta = json.dumps(ex.metadata, indent=1)
    tmp = out.with_name(out.name + ".tmp")
    with _quiet():  # torch.jit's deprecation warnings
        torch.jit.save(scripted, str(tmp), _extra_files={EXTRA_FILE: meta})
        tmp.replace(out)
        try:
            with torch.no_grad():
                loaded = torch.jit.load(str(out), map_location=dev)
                got = loaded(*(x.to(dev) for x in ex.check)).float().cpu()
        except Exception as e:  # traced code that does not generalise to the check inputs
            raise GanforgeError(f"{out} does not run on the check inputs ({_one_line(e)}): "
                                f"the file is left for inspection; try --format onnx") from e
    diff = float((got - _reference(ex, dev)).abs().max())
    _parity(diff, tolerance, out, "the TorchScript module")
    return _report(ex, out, "torchscript", diff, tolerance)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ganforge metadata of an exported file (.onnx or TorchScript .pt), values decoded
    from JSON where they are JSON."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        try:
            import onnx
        except ImportError:
            raise GanforgeError(f"reading ONNX metadata needs onnx: {INSTALL_HINT}") from None
        raw = {p.key: p.value for p in onnx.load(str(path), load_external_data=False)
               .metadata_props}
        out: dict[str, Any] = {}
        for k, v in raw.items():
            try:
                out[k] = json.loads(v)
            except ValueError:
                out[k] = v
        return out
    extra = {EXTRA_FILE: ""}
    with _quiet():
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[EXTRA_FILE] or "{}")
