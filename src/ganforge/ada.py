"""Adaptive discriminator augmentation (ADA; Karras et al. 2020, "Training Generative Adversarial
Networks with Limited Data"), pure PyTorch.

``ada_augment`` runs the ADA pipeline on real and fake images alike before D; it is
differentiable with respect to the images, so G gets gradients through it. Every op fires for
each sample independently with probability ``p``; ``AdaController`` tunes ``p`` during training
from the sign of D's outputs on real images (the r_t heuristic of the paper), so D's overfitting
stays near a target. Groups of ops (the letters of ``pipeline``):

- ``b`` (blit): x-flip, rotation by a multiple of 90 degrees, integer translation (uniform, up to
  1/8 of the side).
- ``g`` (geometric): isotropic scaling (lognormal, std 0.2 ln 2), rotation (uniform angle),
  anisotropic scaling (lognormal, std 0.2 ln 2), rotation, fractional translation (normal, std
  1/8 of the side). Each rotation fires with probability 1 - sqrt(1 - p), so that some rotation
  happens with probability p.
- ``c`` (colour): brightness (add normal, std 0.2), contrast (lognormal, std 0.5 ln 2), luma flip
  (reflection through the plane orthogonal to the luma axis), hue rotation (uniform angle around
  the luma axis), saturation (lognormal, std ln 2). Images with other than 3 channels get only
  brightness and contrast.

As in the paper and the official code, the x-flip, rotation by 90 degrees and luma flip draw
their outcome uniformly when they fire (no flip / flip; 0, 90, 180 or 270 degrees), so at p = 1
the augmented distribution is still symmetric. All b and g ops of a sample compose into one
affine matrix (pixel units, origin at the image centre), so the image is resampled once with
``F.grid_sample`` (bilinear, reflection padding), and the resample is skipped when every matrix
is the identity; all c ops compose into one 4x4 colour matrix (homogeneous RGB), applied once.

Deviations from the official stylegan2-ada-pytorch code:

- the geometric resample is one plain bilinear ``F.grid_sample`` with reflection padding; the
  official code pads by reflection, upsamples 2x with a wavelet (sym6) filter via upfirdn2d,
  samples bilinearly and filters/downsamples back, which suppresses aliasing for strong
  scalings/rotations. Expect slightly more blur and aliasing here; the b ops stay exact.
- no image-space filtering (``f``) and no corruption (``n``: noise, cutout) groups.
- 1-channel images skip the luma flip (the official code applies it as a sign flip).
- ``AdaController`` clamps p to [0, 1] (the official code only clamps at 0).

Images are float NCHW in [-1, 1]; every random draw takes an optional ``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Gen = torch.Generator | None

PIPELINE_LETTERS = "bgc"
XINT_MAX = 0.125  # integer translation: uniform, up to this fraction of the side
SCALE_STD = 0.2  # isotropic scaling: log2 of the factor ~ N(0, SCALE_STD)
ANISO_STD = 0.2  # anisotropic scaling: log2 of the factor ~ N(0, ANISO_STD)
XFRAC_STD = 0.125  # fractional translation: N(0, XFRAC_STD) of the side
BRIGHTNESS_STD = 0.2  # brightness: add N(0, BRIGHTNESS_STD)
CONTRAST_STD = 0.5  # contrast: log2 of the factor ~ N(0, CONTRAST_STD)
SATURATION_STD = 1.0  # saturation: log2 of the factor ~ N(0, SATURATION_STD)


# ---------------------------------------------------------------------------------------------
# batched homogeneous matrices: every argument is a [N] tensor, every result [N, K, K]


def _eye(n: int, k: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(k, device=like.device, dtype=like.dtype).expand(n, k, k).clone()


def _translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = _eye(tx.shape[0], 3, tx)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    m = _eye(sx.shape[0], 3, sx)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _rotate2d(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotation given cos and sin of the angle (exact for multiples of 90 degrees)."""
    m = _eye(cos.shape[0], 3, cos)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
    return m


def _translate3d(t: torch.Tensor) -> torch.Tensor:
    """Add ``t`` to all three channels: [N, 4, 4]."""
    m = _eye(t.shape[0], 4, t)
    m[:, :3, 3] = t.unsqueeze(1)
    return m


def _scale3d(s: torch.Tensor) -> torch.Tensor:
    """Multiply all three channels by ``s``: [N, 4, 4]."""
    m = _eye(s.shape[0], 4, s)
    m[:, 0, 0], m[:, 1, 1], m[:, 2, 2] = s, s, s
    return m


def _luma_axis(like: torch.Tensor) -> torch.Tensor:
    """Unit luma axis (1, 1, 1) / sqrt(3) in homogeneous coordinates: [4]."""
    return torch.tensor([1.0, 1.0, 1.0, 0.0], device=like.device, dtype=like.dtype) / math.sqrt(3)


def _rotate3d(v: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotation by ``theta`` around the unit axis ``v`` [4] (Rodrigues): [N, 4, 4]."""
    vx, vy, vz = v[0], v[1], v[2]
    s, c = theta.sin(), theta.cos()
    cc = 1 - c
    m = _eye(theta.shape[0], 4, theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = vx * vx * cc + c, vx * vy * cc - vz * s, \
        vx * vz * cc + vy * s
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = vy * vx * cc + vz * s, vy * vy * cc + c, \
        vy * vz * cc - vx * s
    m[:, 2, 0], m[:, 2, 1], m[:, 2, 2] = vz * vx * cc - vy * s, vz * vy * cc + vx * s, \
        vz * vz * cc + c
    return m


# ---------------------------------------------------------------------------------------------
# random draws


def _rand(n: int, gen: Gen, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.rand((n,), generator=gen, device=device, dtype=dtype)


def _randn(n: int, gen: Gen, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn((n,), generator=gen, device=device, dtype=dtype)


def _fire(value: torch.Tensor, identity: float, prob: float, gen: Gen) -> torch.Tensor:
    """Keep ``value`` [N] (or [N, K]: one gate per sample) where the op fires, with probability
    ``prob`` per sample, else ``identity``."""
    fires = _rand(value.shape[0], gen, value.device, value.dtype) < prob
    fires = fires.view((-1,) + (1,) * (value.dim() - 1))
    return torch.where(fires, value, torch.full_like(value, identity))


def geometric_matrix(n: int, height: int, width: int, p: float, gen: Gen = None, *,
                     blit: bool = True, geom: bool = True,
                     device: torch.device | str | None = None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Random inverse geometric transforms of ``n`` images of ``height`` x ``width``: [N, 3, 3].

    Each matrix maps an output pixel position to the input position it samples, in pixel units
    with the origin at the image centre (x right, y down); ``blit`` adds the b ops, ``geom`` the g
    ops, each firing with probability ``p`` per sample (the two rotations with 1 - sqrt(1 - p)).
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    g_inv = torch.eye(3, device=device, dtype=dtype).expand(n, 3, 3)

    def rand() -> torch.Tensor:
        return _rand(n, gen, device, dtype)

    def randn() -> torch.Tensor:
        return _randn(n, gen, device, dtype)

    if blit:
        flip = _fire(torch.floor(rand() * 2), 0.0, p, gen)  # 0 or 1
        g_inv = g_inv @ _scale2d(1 - 2 * flip, torch.ones_like(flip))
        quarter = _fire(torch.floor(rand() * 4), 0.0, p, gen).long()  # 0..3 quarter turns
        cos = torch.tensor([1.0, 0.0, -1.0, 0.0], device=device, dtype=dtype)[quarter]
        sin = torch.tensor([0.0, 1.0, 0.0, -1.0], device=device, dtype=dtype)[quarter]
        g_inv = g_inv @ _rotate2d(cos, sin)  # the inverse of a rotation by -90 * quarter degrees
        t = torch.stack([rand(), rand()], 1)  # [N, 2]: one gate for both axes
        t = _fire((t * 2 - 1) * XINT_MAX, 0.0, p, gen)
        g_inv = g_inv @ _translate2d(-torch.round(t[:, 0] * width), -torch.round(t[:, 1] * height))
    if geom:
        p_rot = 1 - math.sqrt(min(max(1 - p, 0.0), 1.0))  # P(pre or post rotation) = p
        s = _fire(torch.exp2(randn() * SCALE_STD), 1.0, p, gen)
        g_inv = g_inv @ _scale2d(1 / s, 1 / s)
        theta = _fire((rand() * 2 - 1) * math.pi, 0.0, p_rot, gen)
        g_inv = g_inv @ _rotate2d(theta.cos(), theta.sin())  # before anisotropic scaling
        s = _fire(torch.exp2(randn() * ANISO_STD), 1.0, p, gen)
        g_inv = g_inv @ _scale2d(1 / s, s)
        theta = _fire((rand() * 2 - 1) * math.pi, 0.0, p_rot, gen)
        g_inv = g_inv @ _rotate2d(theta.cos(), theta.sin())  # after anisotropic scaling
        t = _fire(torch.stack([randn(), randn()], 1) * XFRAC_STD, 0.0, p, gen)  # [N, 2]
        g_inv = g_inv @ _translate2d(-t[:, 0] * width, -t[:, 1] * height)
    return g_inv.contiguous()


def apply_geometric(x: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
    """Resample images [N, C, H, W] once through the inverse transforms ``g_inv`` [N, 3, 3]
    (pixel units, origin at the centre; see ``geometric_matrix``): bilinear, reflection padding."""
    _, _, h, w = x.shape
    # pixel units -> grid_sample's [-1, 1] units (align_corners=False: the borders are at +-1)
    to_unit = torch.diag(torch.tensor([2 / w, 2 / h, 1.0], device=g_inv.device, dtype=g_inv.dtype))
    to_pix = torch.diag(torch.tensor([w / 2, h / 2, 1.0], device=g_inv.device, dtype=g_inv.dtype))
    theta = (to_unit @ g_inv @ to_pix)[:, :2, :].to(x.dtype)  # [N, 2, 3]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # [N, H, W, 2]
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def color_matrix(n: int, channels: int, p: float, gen: Gen = None, *,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Random colour transforms of ``n`` images, homogeneous in RGB: [N, 4, 4].

    Brightness and contrast always; luma flip, hue rotation and saturation only for
    ``channels == 3``. Each op fires with probability ``p`` per sample.
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    c = torch.eye(4, device=device, dtype=dtype).expand(n, 4, 4)
    b = _fire(_randn(n, gen, device, dtype) * BRIGHTNESS_STD, 0.0, p, gen)
    c = _translate3d(b) @ c
    s = _fire(torch.exp2(_randn(n, gen, device, dtype) * CONTRAST_STD), 1.0, p, gen)
    c = _scale3d(s) @ c
    if channels == 3:
        v = _luma_axis(c)
        vv = torch.outer(v, v)  # [4, 4] projector onto the luma axis
        eye = torch.eye(4, device=device, dtype=dtype)
        flip = _fire(torch.floor(_rand(n, gen, device, dtype) * 2), 0.0, p, gen)
        c = (eye - 2 * vv * flip.view(n, 1, 1)) @ c  # Householder reflection
        theta = _fire((_rand(n, gen, device, dtype) * 2 - 1) * math.pi, 0.0, p, gen)
        c = _rotate3d(v, theta) @ c  # hue rotation around the luma axis
        s = _fire(torch.exp2(_randn(n, gen, device, dtype) * SATURATION_STD), 1.0, p, gen)
        c = (vv + (eye - vv) * s.view(n, 1, 1)) @ c  # scale the chroma, keep the luma
    return c.contiguous()


def apply_color(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Apply colour matrices ``c`` [N, 4, 4] to images [N, C, H, W]. For C != 3 only the
    brightness/contrast part is used: x * c[:, 0, 0] + c[:, 0, 3]."""
    n = x.shape[0]
    c = c.to(x.dtype)
    if x.shape[1] == 3:
        return torch.einsum("nij,njhw->nihw", c[:, :3, :3], x) + c[:, :3, 3].view(n, 3, 1, 1)
    return x * c[:, 0, 0].view(n, 1, 1, 1) + c[:, 0, 3].view(n, 1, 1, 1)


def _check_pipeline(pipeline: str) -> None:
    bad = sorted(set(pipeline) - set(PIPELINE_LETTERS))
    if bad:
        raise ValueError(f"ada pipeline {pipeline!r}: unknown ops {''.join(bad)!r}; "
                         f"use letters of {PIPELINE_LETTERS!r} (b blit, g geometric, c colour)")


def ada_augment(x: torch.Tensor, p: float, gen: Gen = None, pipeline: str = "bgc") -> torch.Tensor:
    """The ADA pipeline on images [N, C, H, W]; every op fires per sample with probability ``p``.

    ``pipeline`` is any combination of ``b`` (blit), ``g`` (geometric) and ``c`` (colour); the
    groups always run in the order b, g, c. Returns ``x`` itself for ``p == 0`` and for non-image
    inputs (e.g. vectors [N, D]). Differentiable with respect to ``x``.
    """
    _check_pipeline(pipeline)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"ada p={p}: must be in [0, 1]")
    if p == 0 or x.dim() != 4:
        return x  # nothing to do / vector data: nothing to augment
    n, ch, h, w = x.shape
    mdtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    if "b" in pipeline or "g" in pipeline:
        g_inv = geometric_matrix(n, h, w, p, gen, blit="b" in pipeline, geom="g" in pipeline,
                                 device=x.device, dtype=mdtype)  # [N, 3, 3]
        eye = torch.eye(3, device=x.device, dtype=mdtype)
        if bool((g_inv != eye).any()):  # skip the resample when no sample moves
            x = apply_geometric(x, g_inv)
    if "c" in pipeline:
        x = apply_color(x, color_matrix(n, ch, p, gen, device=x.device, dtype=mdtype))
    return x


class AdaController:
    """Tunes the ADA probability ``p`` from the sign of D's outputs on real images, like
    stylegan2-ada-pytorch: every ``interval`` D steps, with r_t = E[sign D(real)] over those
    steps, ``p += sign(r_t - target) * batch_size * interval / (speed_kimg * 1000)``, clamped to
    [0, 1]; so p can move from 0 to 1 in ``speed_kimg`` thousand images.

    Usage per D step: ``ctl.accumulate(d_real_logits)``, ``ctl.step(batch_size)``, and augment
    with ``ada_augment(x, ctl.p, ...)``. The sign sum stays a tensor (no host sync per step).
    """

    def __init__(self, target: float = 0.6, interval: int = 4, speed_kimg: float = 500.0,
                 p: float = 0.0) -> None:
        if not 0.0 < target < 1.0:
            raise ValueError(f"AdaController target={target}: must be in (0, 1) (0.6 typical)")
        if int(interval) != interval or interval < 1:
            raise ValueError(f"AdaController interval={interval}: must be an integer >= 1")
        if not speed_kimg > 0:
            raise ValueError(f"AdaController speed_kimg={speed_kimg}: must be > 0")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"AdaController p={p}: must be in [0, 1]")
        self.target, self.interval = float(target), int(interval)
        self.speed_kimg = float(speed_kimg)
        self.p = float(p)
        self.rt = 0.0  # the last r_t (0.0 before the first adjustment)
        self.calls = 0  # step() calls so far
        self._sign_sum: float | torch.Tensor = 0.0  # sum of sign(D(real)) since the last adjustment
        self._count = 0  # number of logits in _sign_sum

    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Add the signs of D's logits on real images (any shape) to the running statistics."""
        self._sign_sum = self._sign_sum + real_logits.detach().sign().sum(dtype=torch.float32)
        self._count += real_logits.numel()

    def step(self, batch_size: int,
             reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Call once per D step; every ``interval`` calls adjusts ``p`` (when logits were seen).
        ``batch_size`` is the global batch; ``reduce`` sums a tensor over the processes of a
        multi-process run, so every rank gets the same r_t and p."""
        self.calls += 1
        if self.calls % self.interval != 0:
            return
        s = torch.as_tensor(self._sign_sum, dtype=torch.float32)
        stats = torch.stack([s, torch.tensor(float(self._count), device=s.device)])
        if reduce is not None:
            stats = reduce(stats)
        total, count = (float(v) for v in stats)
        if count == 0:
            return
        self.rt = total / count
        diff = self.rt - self.target
        sign = (diff > 0) - (diff < 0)  # 0 when exactly on target, like np.sign
        adjust = sign * batch_size * self.interval / (self.speed_kimg * 1000)
        self.p = min(max(self.p + adjust, 0.0), 1.0)
        self._sign_sum, self._count = 0.0, 0

    def state_dict(self) -> dict[str, float | int]:
        """Plain python numbers: p, rt, calls and the pending sign sum and count."""
        return {"p": self.p, "rt": self.rt, "calls": self.calls,
                "sign_sum": float(self._sign_sum), "count": self._count}

    def load_state_dict(self, d: dict[str, float | int]) -> None:
        """Restore what ``state_dict`` returned, so a resumed run continues with the same p."""
        self.p, self.rt = float(d["p"]), float(d["rt"])
        self.calls, self._count = int(d["calls"]), int(d["count"])
        self._sign_sum = float(d["sign_sum"])
