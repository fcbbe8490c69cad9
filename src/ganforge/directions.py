"""Latent directions of a trained run and editing along them (``ganforge directions``,
``ganforge edit``).

Methods:

- **SeFa** (Shen & Zhou 2021, "Closed-Form Factorization of Latent Semantics in GANs"): the
  directions are the top eigenvectors of ``A^T A``, A the weight of the layer(s) that first
  read the latent. StyleGAN2: the effective weights (``weight * weight_gain``) of the style
  affines, stacked, of every affine that reads the chosen w indices (default: all of them, as
  the paper's code for StyleGAN2; the paper's code also scales each affine row to unit norm,
  this one uses the weights as they act) -> directions in **w**. Other generators: the
  z-columns of the first layer (DCGAN's ConvTranspose2d ``[zin, out, k, k]`` as rows = outputs,
  the Linear of ResNet/BigGAN/R3GAN; a conditional G's label columns are left out; BigGAN's
  first layer reads only the first z chunk, the other z entries are zero columns) -> **z**.
- **GANSpace** (Härkönen et al. 2020): PCA of w for n sampled z (StyleGAN2 only). Generators
  without a mapping network are refused: PCA of z is isotropic, and the paper's feature
  variant on a first layer that is linear in z gives back SeFa's directions (the PCA of
  ``A z`` regressed on z is ``A^T u_i``, the right singular vectors of A).

Every direction has unit norm; ``values`` are SeFa's eigenvalues or GANSpace's variances,
largest first. **Strength unit**: a strength of 1 moves the latent by one standard deviation
of the run's latents along the direction (``stds``): exactly 1 in z (z ~ N(0, I)), in w the
std of ``<w, d>`` over the sampled w. The CLI's strengths are in these units; in Python
``dirs.step_of(k)`` is direction k times its std, and :func:`edit` adds ``strength * step``.

Directions file (``ganforge directions --out FILE.safetensors``; :func:`save_directions`):
tensors ``directions`` float32 [k, dim], ``values`` [k], ``stds`` [k]; metadata ``method``
(sefa / ganspace), ``space`` (z / w), ``layers`` (the w indices an edit moves, e.g.
``0,1,2``; empty = all), ``run``, ``step``.

Latent file (``ganforge edit --latent FILE``; :func:`save_latent` / :func:`load_latent`; what
projection writes): a safetensors file with

- tensor ``latent`` float32: ``[N, latent_dim]`` (space z), ``[N, w_dim]`` (space w: one w
  for every layer) or ``[N, num_ws, w_dim]`` (space w+: a w per synthesis layer);
- metadata ``space``: ``z``, ``w`` or ``w+`` (required);
- optional tensor ``labels`` int64 [N]: class labels of z latents of a conditional run (a w
  already holds its class);
- optional metadata ``run`` and ``step``: where it came from.

Edits use fixed per-pixel noise (StyleGAN) so only the latent moves; a strength of 0 gives
the source image exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import GanforgeError
from .generate import TrainedGAN
from .nets import biggan, dcgan, r3gan, resnet
from .utils import atomic_write_bytes, make_grid, to_uint8

METHODS = ("sefa", "ganspace")
SPACES = ("z", "w", "w+")


@dataclass
class Directions:
    """Unit-norm directions [k, dim] in ``space`` (z or w), with SeFa eigenvalues or GANSpace
    variances (``values``), the std of the run's latents along each (``stds``) and, for w,
    the w indices an edit moves (``layers``; None = all)."""

    vectors: torch.Tensor
    values: torch.Tensor
    stds: torch.Tensor
    space: str
    method: str
    layers: list[int] | None = None
    run: str = ""
    step: int = 0

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def step_of(self, k: int) -> torch.Tensor:
        """Direction ``k`` scaled to strength 1 (one std of the latents along it)."""
        if not 0 <= k < len(self):
            raise GanforgeError(f"direction {k} does not exist: this file has directions "
                                f"0..{len(self) - 1}")
        return self.vectors[k] * self.stds[k]


def _check_run(g: TrainedGAN) -> TrainedGAN:
    if not isinstance(g, TrainedGAN):
        raise GanforgeError(f"this is a {getattr(g, 'kind', 'image-to-image')} run: latent "
                            "directions need a run that generates from noise")
    if g.is_vector:
        raise GanforgeError("this run generates vectors, not images: latent directions and "
                            "edits need an image run")
    return g


def _check_k(k: int, dim: int) -> None:
    if not 1 <= k <= dim:
        raise GanforgeError(f"--k {k}: the latent has {dim} dimensions, ask for 1..{dim}")


def _style_affines(G: torch.nn.Module, layers: list[int] | None) -> list[torch.nn.Module]:
    """The style affines (EqualLinear w -> styles) that read the w indices ``layers``."""
    num_ws = G.num_ws
    layers = list(range(num_ws)) if layers is None else list(layers)
    bad = [i for i in layers if not 0 <= i < num_ws]
    if bad or not layers:
        got = ", ".join(map(str, bad[:3])) + (" ..." if len(bad) > 3 else "") or "none"
        raise GanforgeError(f"--layers: this generator has layers 0..{num_ws - 1} (got {got})")
    found, i = [], 0
    for block in G.synthesis_net.blocks:  # block's convs read ws[i + j], its toRGB the next
        readers = [(i + j, conv.conv) for j, conv in enumerate(block.convs)]
        readers.append((i + block.num_conv, block.torgb.conv))
        found += [mod.affine for idx, mod in readers if idx in layers]
        i += block.num_conv
    return found


def _first_layer(G: torch.nn.Module, latent_dim: int) -> torch.Tensor:
    """The z-part of the weight of G's first layer as [outputs, latent_dim]."""
    if isinstance(G, dcgan.Generator):
        w = G.main[0].weight  # ConvTranspose2d [zin, out, k, k]
        a = w.permute(1, 2, 3, 0).reshape(-1, w.shape[0])
    elif isinstance(G, (resnet.Generator, biggan.Generator)):
        a = G.linear.weight  # [16 * w0, zin]; BigGAN: [16 * w0, first z chunk]
    elif isinstance(G, r3gan.Generator):
        a = G.stages[0][0].linear.weight  # [C4, zin]
    else:
        raise GanforgeError(f"SeFa does not know the first layer of {type(G).__name__}")
    a = a.detach().float().cpu()[:, :latent_dim]  # drop a label embedding's columns
    if a.shape[1] < latent_dim:  # z entries the first layer does not read
        a = torch.cat([a, a.new_zeros(a.shape[0], latent_dim - a.shape[1])], dim=1)
    return a


@torch.no_grad()
def latent_weight(g: TrainedGAN, layers: list[int] | None = None) -> tuple[torch.Tensor, str]:
    """``(A, space)``: the matrix SeFa factorises, [outputs, dim], and the space its columns
    index (w for StyleGAN runs, z for the others)."""
    _check_run(g)
    if g.is_style:
        rows = [m.weight.detach().float().cpu() * m.weight_gain
                for m in _style_affines(g.G, layers)]
        return torch.cat(rows), "w"
    if layers is not None:
        raise GanforgeError("--layers picks StyleGAN layers; this run's generator is "
                            f"{g.cfg.model.arch}: drop --layers")
    return _first_layer(g.G, g.latent_dim), "z"


def _orient(vectors: torch.Tensor) -> torch.Tensor:
    """Signs fixed so each row's largest-magnitude entry is positive (eigh's are arbitrary)."""
    idx = vectors.abs().argmax(dim=1, keepdim=True)
    return vectors * vectors.gather(1, idx).sign()


@torch.no_grad()
def sample_w(g: TrainedGAN, n: int, seed: int = 0, batch_size: int = 1000) -> torch.Tensor:
    """w [n, w_dim] (CPU, float32) for ``n`` z drawn with ``seed`` (classes balanced)."""
    z, c = g.noise(n, seed), g.labels(n)
    out = []
    for i in range(0, n, batch_size):
        ci = c[i:i + batch_size].to(g.device) if c is not None else None
        out.append(g.G.mapping_net(z[i:i + batch_size].to(g.device), ci).float().cpu())
    return torch.cat(out)


def _stds(g: TrainedGAN, vectors: torch.Tensor, space: str, n: int, seed: int
          ) -> torch.Tensor:
    if space == "z":
        return torch.ones(vectors.shape[0])
    return (sample_w(g, n, seed) @ vectors.t()).std(dim=0)


def run_path(g: TrainedGAN) -> str:
    """The run (or Hub folder) ``g`` was loaded from: a run's checkpoint is RUN/checkpoints/NAME,
    a Hub folder holds its model.safetensors itself."""
    path = Path(g.checkpoint)
    return str(path if (path / "model.safetensors").is_file() else path.parent.parent)


def sefa(g: TrainedGAN, k: int = 10, layers: list[int] | None = None, n: int = 10_000,
         seed: int = 0) -> Directions:
    """SeFa: the top-``k`` unit eigenvectors of ``A^T A`` (:func:`latent_weight`) and their
    eigenvalues, largest first. ``layers``: StyleGAN w indices (default all). ``n`` w drawn
    with ``seed`` give the stds along the directions (w space)."""
    a, space = latent_weight(g, layers)
    _check_k(k, a.shape[1])
    a = a.double()
    values, vectors = torch.linalg.eigh(a.t() @ a)  # ascending
    values, vectors = values.flip(0)[:k], vectors.flip(1)[:, :k].t()
    vectors = _orient(vectors / vectors.norm(dim=1, keepdim=True)).float()
    return Directions(vectors, values.clamp(min=0).float(), _stds(g, vectors, space, n, seed),
                      space, "sefa", None if layers is None else sorted(set(layers)),
                      run_path(g), g.step)


def ganspace(g: TrainedGAN, k: int = 10, n: int = 10_000, seed: int = 0) -> Directions:
    """GANSpace: the top-``k`` principal components of w for ``n`` z drawn with ``seed``
    (StyleGAN runs); ``values`` are the variances along them."""
    _check_run(g)
    if not g.is_style:
        raise GanforgeError(f"GANSpace needs a mapping network (StyleGAN runs); this run's "
                            f"generator is {g.cfg.model.arch}: use --method sefa")
    _check_k(k, g.G.w_dim)
    if n < 2:
        raise GanforgeError(f"--n {n}: PCA needs at least 2 samples")
    w = sample_w(g, n, seed).double()
    w = w - w.mean(dim=0)
    values, vectors = torch.linalg.eigh(w.t() @ w / (n - 1))
    values, vectors = values.flip(0)[:k].clamp(min=0), vectors.flip(1)[:, :k].t()
    vectors = _orient(vectors / vectors.norm(dim=1, keepdim=True)).float()
    return Directions(vectors, values.float(), values.sqrt().float(), "w", "ganspace", None,
                      run_path(g), g.step)


def find_directions(g: TrainedGAN, method: str = "sefa", k: int = 10,
                    layers: list[int] | None = None, n: int = 10_000, seed: int = 0
                    ) -> Directions:
    """:func:`sefa` or :func:`ganspace` by name."""
    if method not in METHODS:
        raise GanforgeError(f"--method {method!r}: use sefa or ganspace")
    if method == "ganspace":
        if layers is not None:
            raise GanforgeError("--layers is for --method sefa (GANSpace's PCA is of the whole w)")
        return ganspace(g, k, n, seed)
    return sefa(g, k, layers, n, seed)


# --- files ------------------------------------------------------------------------------


def _save(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> Path:
    from safetensors.torch import save

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, save(tensors, metadata=meta))
    return path


def _read(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise GanforgeError(f"{what} file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same problem for a user
        raise GanforgeError(f"{path} is not a readable safetensors {what} file "
                            f"({type(e).__name__})") from None


def save_directions(dirs: Directions, path: str | Path) -> Path:
    """Write ``dirs`` as a safetensors file (format: the module docstring)."""
    meta = {"method": dirs.method, "space": dirs.space, "run": dirs.run,
            "step": str(dirs.step), "unit": "std",
            "layers": ",".join(map(str, dirs.layers)) if dirs.layers is not None else ""}
    return _save(Path(path), {"directions": dirs.vectors.float(), "values": dirs.values.float(),
                              "stds": dirs.stds.float()}, meta)


def load_directions(path: str | Path) -> Directions:
    """Read a file written by :func:`save_directions`; a malformed one is one-line error."""
    t, meta = _read(path, "directions")
    vec = t.get("directions")
    if vec is None or vec.dim() != 2 or meta.get("space") not in ("z", "w"):
        raise GanforgeError(f"{path} is not a directions file (it needs a 'directions' tensor "
                            "[k, dim] and metadata space z or w): write one with `ganforge "
                            "directions`")
    k = vec.shape[0]
    values = t.get("values", torch.zeros(k)).float()
    stds = t.get("stds", torch.ones(k)).float()
    if values.shape != (k,) or stds.shape != (k,):
        raise GanforgeError(f"{path}: 'values' and 'stds' must have one entry per direction")
    try:
        layers = [int(x) for x in meta["layers"].split(",")] if meta.get("layers") else None
        step = int(meta.get("step") or 0)
    except ValueError:
        raise GanforgeError(f"{path}: unreadable 'layers' or 'step' metadata") from None
    return Directions(vec.float(), values, stds, meta["space"], meta.get("method", "?"),
                      layers, meta.get("run", ""), step)


def save_latent(path: str | Path, latent: torch.Tensor, space: str,
                labels: torch.Tensor | None = None, run: str = "", step: int = 0) -> Path:
    """Write latents as a latent file (format: the module docstring)."""
    _check_latent_shape(latent, space, str(path))
    tensors = {"latent": latent.float()}
    if labels is not None:
        tensors["labels"] = labels.long()
    return _save(Path(path), tensors, {"space": space, "run": str(run), "step": str(step)})


def _check_latent_shape(latent: torch.Tensor, space: str, where: str) -> None:
    if space not in SPACES:
        raise GanforgeError(f"{where}: latent space {space!r}: use z, w or w+")
    if latent.dim() != (3 if space == "w+" else 2) or latent.shape[0] < 1:
        raise GanforgeError(f"{where}: a {space} latent is [N, "
                            f"{'num_ws, w_dim' if space == 'w+' else 'dim'}], got "
                            f"{list(latent.shape)}")


def load_latent(path: str | Path) -> tuple[torch.Tensor, str, torch.Tensor | None]:
    """``(latent, space, labels or None)`` from a latent file."""
    t, meta = _read(path, "latent")
    if "latent" not in t or "space" not in meta:
        raise GanforgeError(f"{path} is not a latent file: it needs a 'latent' tensor and "
                            "metadata space z, w or w+")
    latent, space, labels = t["latent"].float(), meta["space"], t.get("labels")
    _check_latent_shape(latent, space, str(path))
    if labels is not None and labels.shape != (latent.shape[0],):
        raise GanforgeError(f"{path}: 'labels' must be [N] for its {latent.shape[0]} latents")
    return latent, space, labels


# --- editing -----------------------------------------------------------------------------


def check_latent(g: TrainedGAN, latent: torch.Tensor, space: str) -> None:
    """A one-line error unless ``latent`` (of ``space``) fits the run ``g``."""
    _check_run(g)
    _check_latent_shape(latent, space, "latent")
    if space != "z" and not g.is_style:
        raise GanforgeError(f"a {space} latent needs a StyleGAN run; this run's generator is "
                            f"{g.cfg.model.arch} (its latents are z)")
    want = ([g.G.num_ws, g.G.w_dim] if space == "w+" else
            [g.G.w_dim] if space == "w" else [g.latent_dim])
    if list(latent.shape[1:]) != want:
        raise GanforgeError(f"the {space} latents are {list(latent.shape[1:])} each; this run's "
                            f"are {want}")


def check_fits(g: TrainedGAN, dirs: Directions, latent_space: str | None = None) -> None:
    """A one-line error unless ``dirs`` fit the run (space, size, layers) and, when given,
    a latent of ``latent_space``."""
    _check_run(g)
    if dirs.space == "w" and not g.is_style:
        raise GanforgeError(f"these directions live in w (a StyleGAN run's); this run's "
                            f"generator is {g.cfg.model.arch}, its latents are z")
    dim = g.G.w_dim if dirs.space == "w" else g.latent_dim
    if dirs.vectors.shape[1] != dim:
        raise GanforgeError(f"these {dirs.space} directions have {dirs.vectors.shape[1]} "
                            f"dimensions; this run's {dirs.space} has {dim}: they come from "
                            f"another run")
    if dirs.layers is not None and g.is_style:
        _style_affines(g.G, dirs.layers)  # raises on layers the run does not have
    if latent_space is not None and (latent_space == "z") != (dirs.space == "z"):
        raise GanforgeError(f"the direction lives in {dirs.space} but the latents are "
                            f"{latent_space}: use directions and latents of the same space")


def shift(latent: torch.Tensor, direction: torch.Tensor, strength: float, space: str = "z",
          layers: list[int] | None = None, num_ws: int | None = None) -> torch.Tensor:
    """``latent + strength * direction``; a w+ latent moves on every layer (or ``layers``;
    a w latent with ``layers`` becomes w+, which needs ``num_ws``)."""
    if direction.dim() != 1 or direction.shape[0] != latent.shape[-1]:
        raise GanforgeError(f"the direction has {list(direction.shape)} entries; the latents "
                            f"have {latent.shape[-1]}")
    step = strength * direction.to(latent.dtype)
    if layers is None or space == "z":
        return latent + step
    if space == "w":
        if num_ws is None:
            raise ValueError("shift: a w latent edited on some layers needs num_ws")
        latent = latent[:, None].expand(-1, num_ws, -1)
    out = latent.clone()
    out[:, layers] += step
    return out


@torch.no_grad()
def render(g: TrainedGAN, latent: torch.Tensor, space: str = "z",
           c: torch.Tensor | None = None) -> torch.Tensor:
    """Images float [N, C, R, R] (CPU) of latents of ``space``; fixed per-pixel noise.
    ``c``: class labels of z latents (conditional runs; default balanced)."""
    check_latent(g, latent, space)
    if space == "z":
        return g.generate(latent, c, noise_mode="const")
    ws = latent[:, None].expand(-1, g.G.num_ws, -1) if space == "w" else latent
    return g.synthesize(ws, noise_mode="const")


def edit(g: TrainedGAN, latent: torch.Tensor, direction: torch.Tensor, strength: float,
         space: str = "z", c: torch.Tensor | None = None, layers: list[int] | None = None
         ) -> torch.Tensor:
    """Images of ``latent`` moved by ``strength * direction`` (e.g. ``dirs.step_of(k)``);
    ``space``: z, w or w+ (w+ moves every layer, or ``layers``)."""
    check_latent(g, latent, space)
    num_ws = g.G.num_ws if g.is_style else None
    moved = shift(latent, direction, strength, space, layers, num_ws)
    return render(g, moved, "w+" if moved.dim() == 3 else space, c)


def seed_latent(g: TrainedGAN, n: int, seed: int, space: str,
                c: int | str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` latents drawn with ``seed`` in ``space`` (z, or w through the mapping network)
    and their class labels (None for unconditional runs)."""
    z, labels = g.noise(n, seed), g.labels(n, c)
    if space == "z":
        return z, labels
    with torch.no_grad():
        cl = labels.to(g.device) if labels is not None else None
        return g.G.mapping_net(z.to(g.device), cl).float().cpu(), labels


def direction_grid(g: TrainedGAN, dirs: Directions, k: int, latent: torch.Tensor,
                   strengths: list[float], c: torch.Tensor | None = None) -> torch.Tensor:
    """Images [rows * cols, C, R, R], row-major: each latent (a row) moved along direction
    ``k`` by each strength (a column). A column is rendered as one batch the size of
    ``latent``, so a strength-0 column equals :func:`render` of the latents exactly."""
    space = "z" if dirs.space == "z" else ("w+" if latent.dim() == 3 else "w")
    step = dirs.step_of(k)
    cols = [edit(g, latent, step, s, space, c, dirs.layers) for s in strengths]
    return torch.stack(cols, dim=1).flatten(0, 1)


def grid_png(images: torch.Tensor, cols: int) -> torch.Tensor:
    """Float images (row-major, ``cols`` a row) -> one uint8 grid [C, H, W]."""
    return make_grid(to_uint8(images), nrow=cols)


__all__ = ["Directions", "check_fits", "check_latent", "direction_grid", "edit",
           "find_directions", "ganspace", "latent_weight", "load_directions", "load_latent",
           "render", "sample_w", "save_directions", "save_latent", "seed_latent", "sefa",
           "shift"]
