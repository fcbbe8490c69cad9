"""Feature spaces for the distribution metrics (FID, KID, precision/recall, IS, classes).

A :class:`FeatureSpace` turns uint8 images ``[N, C, H, W]`` into features ``[N, F]`` and, when
it has a classifier head, class probabilities ``[N, K]``. Two kinds:

* :class:`InceptionFeatures`: the TF-Inception-v3 of published FIDs (pool3, 2048-d; the 1008-way
  "unbiased" logits for IS), run through torch-fidelity's port, which matches the TensorFlow
  graph the numbers in papers come from. Its weights are looked up (:func:`find_inception_weights`)
  in ``--inception-weights PATH``, ``$GANFORGE_INCEPTION_WEIGHTS`` or torch's hub cache, checked
  by hash, and downloaded only when none is found; offline, a one-line error gives the address
  and the path to put the file at.
* :class:`ClassifierFeatures`: a small classifier trained on the real data (``ganforge features
  train``, or the built-in digits one): offline "domain features". Numbers on these features
  compare runs on the same data; they are not comparable with published (Inception) FIDs, and
  every report names the features it used.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..errors import GanforgeError
from .classifier import DomainClassifier, digits_classifier, load_classifier

INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_FILE = INCEPTION_URL.rsplit("/", 1)[-1]
INCEPTION_SHA256_PREFIX = "6726825d"  # torch.hub's convention: the name ends in the hash prefix
INCEPTION_ENV = "GANFORGE_INCEPTION_WEIGHTS"
SKIP_HASH_ENV = "GANFORGE_SKIP_HASH_CHECK"


class FeatureSpace:
    """``space(images)`` -> (features float32 [N, F], probabilities [N, K] or None)."""

    name: str = ""  # what reports say: which network, which weights
    key: str = ""  # identifies the weights, for the real-statistics cache
    class_names: list[str] | None = None  # set when the space has a classifier head
    batch_size: int = 256

    def extract(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise GanforgeError(f"features need images [N, 1 or 3, H, W], got "
                                f"{tuple(images.shape)}")
        if images.dtype != torch.uint8:
            images = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        feats, probs = [], []
        for i in range(0, images.shape[0], self.batch_size):
            f, p = self.extract(images[i:i + self.batch_size])
            feats.append(f.float().cpu())
            if p is not None:
                probs.append(p.float().cpu())
        if not feats:
            raise GanforgeError("no images to compute features of")
        return torch.cat(feats), (torch.cat(probs) if probs else None)


class ClassifierFeatures(FeatureSpace):
    def __init__(self, clf: DomainClassifier, source: str, device: str | torch.device = "cpu"):
        self.clf = clf.to(device).eval()
        self.device = torch.device(device)
        self.class_names = list(clf.class_names)
        acc = f", {100 * clf.accuracy:.1f}% held-out" if clf.accuracy is not None else ""
        self.name = (f"classifier features ({clf.feature_dim}-d, trained on "
                     f"{clf.trained_on or '?'}{acc}; {source}) - not Inception")
        h = hashlib.sha256()
        for k, v in sorted(clf.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        self.key = "clf-" + h.hexdigest()[:16]
        self.batch_size = 512

    @torch.no_grad()
    def extract(self, images):
        x = images.to(self.device)
        f = self.clf.features(x)
        return f, self.clf.head(f).softmax(1)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def inception_cache_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def _where_to_put() -> str:
    return (f"download {INCEPTION_URL} and put it at {inception_cache_path()} (or pass "
            f"--inception-weights PATH / set {INCEPTION_ENV})")


def find_inception_weights(path: str | Path | None = None, download: bool = True) -> Path:
    """The FID Inception weights file: ``path``, else ``$GANFORGE_INCEPTION_WEIGHTS``, else
    torch's hub cache, else downloaded there. Checked by SHA-256 prefix. Raises
    :class:`GanforgeError` with the address and the place to put the file when none can be had.
    """
    env = os.environ.get(INCEPTION_ENV, "").strip()
    given = Path(path).expanduser() if path else (Path(env).expanduser() if env else None)
    if given is not None:
        if not given.is_file():
            how = "--inception-weights" if path else f"${INCEPTION_ENV}"
            raise GanforgeError(f"Inception weights {given} ({how}) not found: "
                                + _where_to_put())
        found = given
    else:
        found = inception_cache_path()
        if not found.is_file():
            if not download:
                raise GanforgeError("Inception weights for FID not found: " + _where_to_put())
            found.parent.mkdir(parents=True, exist_ok=True)
            try:
                torch.hub.download_url_to_file(INCEPTION_URL, str(found), progress=False)
            except Exception as e:  # offline, proxy, disk
                reason = " ".join(str(e).split())[:80] or type(e).__name__
                raise GanforgeError(f"Inception weights for FID not found and the download "
                                    f"failed ({reason}): " + _where_to_put()) from None
    if os.environ.get(SKIP_HASH_ENV, "") != "1":
        digest = _sha256(found)
        if not digest.startswith(INCEPTION_SHA256_PREFIX):
            raise GanforgeError(f"{found} is not the FID Inception weights (SHA-256 {digest[:8]}"
                                f"..., expected {INCEPTION_SHA256_PREFIX}...): "
                                + _where_to_put() + f" (or set {SKIP_HASH_ENV}=1 to use it anyway)")
    return found


class InceptionFeatures(FeatureSpace):
    """torch-fidelity's TF-Inception-v3: pool3 features (2048) and unbiased logits (1008)."""

    def __init__(self, weights: str | Path | None = None, device: str | torch.device = "cpu",
                 download: bool = True):
        path = find_inception_weights(weights, download)
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        try:
            self.net = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048", "logits_unbiased"],
                feature_extractor_weights_path=str(path)).to(device).eval()
        except Exception as e:
            raise GanforgeError(f"cannot load the Inception weights {path} "
                                f"({type(e).__name__}): " + _where_to_put()) from None
        self.device = torch.device(device)
        self.name = "Inception-v3 pool3 (2048-d, TF FID weights via torch-fidelity)"
        self.key = "inception-" + INCEPTION_SHA256_PREFIX
        self.class_names = None  # the 1008 ImageNet logits serve IS only
        self.batch_size = 64

    @torch.no_grad()
    def extract(self, images):
        x = images.to(self.device)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1).contiguous()
        feats, logits = self.net(x)
        return feats, logits.double().softmax(1)


def feature_space(spec: str = "auto", data: str | None = None,
                  inception_weights: str | Path | None = None, device: str = "cpu",
                  log=None) -> FeatureSpace:
    """``spec``: ``inception``; ``digits`` (the built-in digits classifier); a classifier file
    from ``ganforge features train`` (``.safetensors`` with its ``.json``); or ``auto``:
    Inception when its weights are at hand (never downloading), else the digits classifier
    for digits data, else the missing-Inception-weights error."""
    spec = (spec or "auto").strip()
    if spec == "inception":
        return InceptionFeatures(inception_weights, device)
    if spec == "digits":
        return ClassifierFeatures(digits_classifier(), "built-in digits classifier", device)
    if spec == "auto":
        try:
            return InceptionFeatures(inception_weights, device, download=False)
        except GanforgeError as missing:
            if data is not None and str(data).strip().lower() == "digits":
                if log is not None:
                    log("no Inception weights: using the built-in digits classifier's features")
                return ClassifierFeatures(digits_classifier(), "built-in digits classifier",
                                          device)
            raise GanforgeError(f"{missing}; offline, train domain features with `ganforge "
                                f"features train --data SPEC --out FILE` and pass --features "
                                f"FILE") from None
    path = Path(spec).expanduser()
    if not path.suffix:
        path = path.with_suffix(".safetensors")
    if not path.is_file():
        raise GanforgeError(f"--features {spec!r}: not 'auto', 'inception', 'digits' or a "
                            f"classifier file (make one with `ganforge features train`)")
    return ClassifierFeatures(load_classifier(path, device), f"file {path}", device)
