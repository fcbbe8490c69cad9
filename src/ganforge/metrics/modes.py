"""Mode-collapse metrics for data drawn from a known Gaussian mixture (ring8, grid25).

The definitions of PacGAN (Lin et al. 2018, Sec. 5.1), with the isotropic std of the modes:

* a sample is **high quality** when its Euclidean distance to its nearest mode centre is at most
  ``threshold * std`` (3 std by default);
* a mode is **captured** when it is the nearest mode of at least one high-quality sample;
* **reverse KL** is ``KL(q || p) = sum_{k: q_k > 0} q_k log(q_k / p_k)`` (natural log), where
  ``q`` is the normalised histogram of the high-quality samples' nearest modes and ``p`` is
  uniform over the modes (the mixtures have equal weights). It is 0 when every mode holds the
  same share of the good samples and ``log M`` when they all sit on one mode. With no
  high-quality sample at all ``q`` is undefined and the value is ``inf`` (the worst score, not a
  made-up number; note that ``json.dumps`` writes it as ``Infinity``).

For real data the high-quality share is not 100%: in 2-D the distance of a Gaussian point to its
centre in units of std is Rayleigh-distributed, so P(within 3 std) = 1 - exp(-4.5) = 98.9%.
Samples holding NaN/inf are never high quality.
"""

from __future__ import annotations

import math

import torch

from ganforge.errors import GanforgeError

_CHUNK = 65_536  # samples per distance block: [chunk, M] float64


def nearest_modes(samples: torch.Tensor, modes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For samples [N, D] and mode centres [M, D]: (index [N] int64 of the nearest mode,
    Euclidean distance [N] float64 to it), computed exactly in float64."""
    x = samples.detach().double()
    m = modes.detach().to(x.device, torch.float64)
    idx, dist = [], []
    for s in range(0, x.shape[0], _CHUNK):
        d = (x[s:s + _CHUNK, None, :] - m[None]).pow(2).sum(-1).sqrt()  # [chunk, M]
        d = torch.nan_to_num(d, nan=math.inf)
        best, arg = d.min(1)
        idx.append(arg)
        dist.append(best)
    return torch.cat(idx), torch.cat(dist)


def mode_metrics(samples: torch.Tensor, modes: torch.Tensor, std: float,
                 threshold: float = 3.0) -> dict[str, float]:
    """Mode coverage of ``samples`` [N, D] for a mixture with centres ``modes`` [M, D] and
    per-mode std ``std``.

    Returns ``{"modes": captured modes, "modes_total": M, "high_quality": % of samples within
    threshold * std of their nearest mode (0..100), "reverse_kl": KL(q || uniform)}``, all
    floats (see the module docstring)."""
    if samples.ndim != 2 or modes.ndim != 2 or samples.shape[1] != modes.shape[1]:
        raise GanforgeError(f"mode metrics need samples [N, D] and modes [M, D] of the same D, "
                            f"got {tuple(samples.shape)} and {tuple(modes.shape)}")
    if samples.shape[0] == 0 or modes.shape[0] == 0:
        raise GanforgeError("mode metrics need at least one sample and one mode")
    if not (std > 0 and math.isfinite(std)) or not (threshold > 0 and math.isfinite(threshold)):
        raise GanforgeError(f"mode metrics need std > 0 and threshold > 0, got std={std!r}, "
                            f"threshold={threshold!r}")
    n, m = samples.shape[0], modes.shape[0]
    idx, dist = nearest_modes(samples, modes)
    good = dist <= threshold * std
    counts = torch.bincount(idx[good].cpu(), minlength=m).double()  # [M]
    hits = float(counts.sum())
    if hits:
        q = counts[counts > 0] / hits
        reverse_kl = float((q * (q * m).log()).sum().clamp(min=0.0))
    else:
        reverse_kl = math.inf
    return {
        "modes": float((counts > 0).sum()),
        "modes_total": float(m),
        "high_quality": 100.0 * hits / n,
        "reverse_kl": reverse_kl,
    }
