"""Pieces shared by every net family: conditioning, D's output head, minibatch std, PacGAN
packing and spectral norm. Plain modules and functions; no optimisers, no losses.

Conditioning modes (``ModelConfig.g_cond`` / ``d_cond``), the same for every family:

- G ``concat``: ``z`` gets ``nn.Embedding(K, E)(c)`` appended, ``E = min(latent_dim, 64)``.
- G ``cbn``: every BatchNorm of G becomes a :class:`CondBatchNorm` (per-class gamma, beta).
- D ``concat``: images get one extra H x W input channel, ``nn.Embedding(K, H*W)(c)``; vectors
  get ``E = min(hidden, 64)`` extra features (:class:`ConcatLabel`).
- D ``aux``: AC-GAN, a class-logit head beside the real/fake logit (:class:`DHead`).
- D ``projection``: ``linear(h) + <embed(c), h>`` (Miyato & Koyama 2018) (:class:`DHead`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from ..config import image_size

G_CONDS = ("none", "concat", "cbn")
D_CONDS = ("none", "concat", "aux", "projection")
LABEL_DIM = 64  # widest label embedding concatenated to z (G) or to a vector (D)


def channels_at(res: int, base: int, cmax: int) -> int:
    """Width of a layer working at ``res`` x ``res`` (StyleGAN's channel_base/channel_max)."""
    return max(1, min(cmax, base // res))


def aspect(resolution: int | str | tuple[int, int]) -> tuple[int, int, int]:
    """``(s, ah, aw)`` of a resolution (a side, ``"HxW"`` or ``(H, W)``): its shorter side
    ``s`` and the multiples ``ah = H / s``, ``aw = W / s`` ((1, 1) for a square). The conv
    families work through the levels r = 4, 8, .., s of the shorter side, each an
    ``(r*ah) x (r*aw)`` map (G starts from a ``4ah x 4aw`` base map, D ends on one), with the
    widths of r (:func:`channels_at`): a 32x64 net has the widths of the 32x32 one."""
    h, w = image_size(resolution)
    s = min(h, w)
    if s < 1 or h % s or w % s or (h * w // s**2) & (h * w // s**2 - 1):
        raise ValueError(f"resolution {h}x{w}: the aspect ratio must be a power of two "
                         "(1:1, 1:2, 2:1, 1:4...)")
    return s, h // s, w // s


def cond_classes(mode: str, num_classes: int, modes: tuple[str, ...], what: str) -> int:
    """Number of classes a net conditioned by ``mode`` embeds: 0 when ``mode == "none"``.

    Raises ValueError on an unknown mode or on a conditional mode with ``num_classes == 0``.
    """
    if mode not in modes:
        raise ValueError(f"{what}={mode!r}: use one of {', '.join(modes)}")
    if mode == "none":
        return 0
    if num_classes <= 0:
        raise ValueError(f"{what}={mode!r} needs num_classes > 0 (got {num_classes})")
    return num_classes


def need_labels(c: torch.Tensor | None, n: int, what: str) -> torch.Tensor:
    if c is None:
        raise ValueError(f"{what} was built class-conditional: pass labels c (int64 [N])")
    if c.shape != (n,):
        raise ValueError(f"{what}: labels c must have shape [{n}], got {list(c.shape)}")
    return c


def pack(x: torch.Tensor, m: int) -> torch.Tensor:
    """PacGAN (Lin et al. 2018): [N, C, H, W] -> [N/m, C*m, H, W] (vectors [N, D] -> [N/m, D*m]).

    Samples ``i*m .. i*m+m-1`` form group ``i``; sample ``j`` of a group fills channels
    ``j*C .. j*C+C-1``.
    """
    if m == 1:
        return x
    n = x.shape[0]
    if n % m:
        raise ValueError(f"pack={m}: batch size {n} is not a multiple of {m}")
    return x.reshape(n // m, x.shape[1] * m, *x.shape[2:])


class ConcatLabel(nn.Module):
    """Appends a learned per-class tensor of shape ``shape`` to ``x`` along dim 1.

    ``shape=(E,)`` for z or vectors ([N, F] -> [N, F+E]); ``shape=(1, R, R)`` for an image label
    map ([N, C, R, R] -> [N, C+1, R, R]). The table is ``nn.Embedding(K, prod(shape))``.
    """

    def __init__(self, num_classes: int, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)
        self.embed = nn.Embedding(num_classes, math.prod(self.shape))

    @property
    def extra(self) -> int:
        """Size added to dim 1."""
        return self.shape[0]

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        y = self.embed(c).view(x.shape[0], *self.shape).to(x.dtype)
        return torch.cat([x, y], dim=1)


class CondBatchNorm(nn.Module):
    """Class-conditional BatchNorm (de Vries et al. 2017; Miyato & Koyama 2018).

    ``BatchNorm{2,1}d(affine=False)`` then ``gamma[c] * x + beta[c]`` with per-class gamma
    (init 1) and beta (init 0). ``dim=2`` for [N, C, H, W], ``dim=1`` for [N, C].
    """

    takes_labels = True  # CondSequential passes c to this module

    def __init__(self, num_features: int, num_classes: int, dim: int = 2):
        super().__init__()
        if dim not in (1, 2):
            raise ValueError(f"CondBatchNorm: dim={dim}, use 2 (images) or 1 (vectors)")
        self.dim = dim
        self.bn = (nn.BatchNorm2d if dim == 2 else nn.BatchNorm1d)(num_features, affine=False)
        self.gamma = nn.Embedding(num_classes, num_features)
        self.beta = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.bn(x)
        shape = (x.shape[0], -1) + (1,) * (x.dim() - 2)  # [N, C, 1, 1] or [N, C]
        return h * self.gamma(c).view(shape) + self.beta(c).view(shape)


def batch_norm(num_features: int, num_classes: int = 0, dim: int = 2) -> nn.Module:
    """Plain BatchNorm when ``num_classes == 0``, else :class:`CondBatchNorm`."""
    if num_classes > 0:
        return CondBatchNorm(num_features, num_classes, dim)
    return (nn.BatchNorm2d if dim == 2 else nn.BatchNorm1d)(num_features)


class CondSequential(nn.Sequential):
    """``nn.Sequential`` whose modules marked ``takes_labels`` also get the labels ``c``.

    Same state_dict keys as ``nn.Sequential``, so an unconditional net keeps its layout.
    """

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        for m in self:
            x = m(x, c) if getattr(m, "takes_labels", False) else m(x)
        return x


class MinibatchStd(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018), one extra channel / feature.

    Splits the batch into groups of ``group_size`` (members of a group are samples
    ``m, m + N/G, m + 2N/G, ...`` as in StyleGAN), takes each feature's std over the group, averages
    it over all features (and pixels) and appends that scalar as a constant channel
    ([N, C, H, W] -> [N, C+1, H, W]) or feature ([N, F] -> [N, F+1]).

    A batch ``N`` that ``group_size`` does not divide uses ``G = gcd(N, group_size)``; when that
    gcd is 1 (no usable group) the whole batch is one group. ``N == 1`` gives std 0.
    """

    def __init__(self, group_size: int = 4):
        super().__init__()
        if group_size < 1:
            raise ValueError(f"MinibatchStd: group_size={group_size} must be >= 1")
        self.group_size = group_size

    def group(self, n: int) -> int:
        g = math.gcd(n, min(self.group_size, n))
        return g if g > 1 else n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        g = self.group(n)
        y = x.float().reshape(g, n // g, *x.shape[1:])  # [G, M, C, ...]: sample j*M + m
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [M, C, ...] std over the group
        y = y.mean(dim=tuple(range(1, y.dim())))  # [M]
        y = y.view(-1, 1, *([1] * (x.dim() - 2)))  # [M, 1, 1, 1] or [M, 1]
        y = y.repeat(g, 1, *x.shape[2:]).to(x.dtype)  # [N, 1, H, W] or [N, 1]
        return torch.cat([x, y], dim=1)


class DHead(nn.Module):
    """D's output from a flat feature vector ``h`` [N, F] (and labels ``c`` [N]).

    ``mode``: ``none`` / ``concat`` (labels already went in at D's input): ``linear(h)``;
    ``aux``: also class logits ``aux(h)`` [N, K] (AC-GAN, Odena et al. 2017);
    ``projection``: ``linear(h) + sum(embed(c) * h, 1)`` (Miyato & Koyama 2018).
    ``embed`` is marked for spectral norm (as in the SNGAN-projection, Mimicry and StudioGAN
    code), the other label tables are not: see :func:`apply_spectral_norm`.
    """

    def __init__(self, in_features: int, num_classes: int = 0, mode: str = "none",
                 bias: bool = True):
        super().__init__()
        cond_classes(mode, num_classes, D_CONDS, "d_cond")
        self.mode = mode
        self.linear = nn.Linear(in_features, 1, bias=bias)
        self.aux = nn.Linear(in_features, num_classes) if mode == "aux" else None
        self.embed = nn.Embedding(num_classes, in_features) if mode == "projection" else None
        if self.embed is not None:
            self.embed.spectral_norm_ok = True  # type: ignore[attr-defined]

    def forward(self, h: torch.Tensor, c: torch.Tensor | None = None, with_aux: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        out = self.linear(h).view(-1)  # logits [N]
        if self.embed is not None:
            c = need_labels(c, h.shape[0], "D (d_cond=projection)")
            out = out + (self.embed(c) * h).sum(dim=1)
        if with_aux:
            if self.aux is None:
                raise ValueError(f"with_aux=True needs d_cond='aux' (D has d_cond={self.mode!r})")
            return out, self.aux(h)  # [N], [N, K]
        return out


_SN_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
             nn.ConvTranspose3d, nn.Linear)


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral norm (Miyato et al. 2018) on every conv, transposed conv and linear layer of
    ``module``, and on embeddings marked ``spectral_norm_ok`` (D's projection embedding, which
    multiplies the features and so sets D's Lipschitz constant). Label tables that only add an
    input channel or feature (``ConcatLabel``) and CBN's gamma/beta are left alone: the first
    does not touch D's slope in x, and normalising the second would shrink gamma from 1.
    Layers already normalised are skipped. In place; returns ``module``.
    """
    for m in list(module.modules()):
        ok = isinstance(m, _SN_TYPES) or (isinstance(m, nn.Embedding)
                                          and getattr(m, "spectral_norm_ok", False))
        if ok and not parametrize.is_parametrized(m, "weight"):
            spectral_norm(m)
    return module


def has_spectral_norm(module: nn.Module) -> bool:
    """Whether any layer of ``module`` carries a spectral-norm parametrization."""
    return any(type(p).__name__ == "_SpectralNorm"
               for m in module.modules() if parametrize.is_parametrized(m, "weight")
               for p in m.parametrizations.weight)
