"""Feature spaces for the distribution metrics (FID, KID, precision/recall, IS, classes).

A :class:`FeatureSpace` turns uint8 images ``[N, C, H, W]`` into features ``[N, F]`` and, when
it has a classifier head, class probabilities ``[N, K]``. The kinds:

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
* :class:`DINOv2Features` (``dinov2``: ViT-L/14, which Stein et al. 2023 recommend for ranking
  generators; ``dinov2-vit-s-14`` / ``-b-14`` / ``-l-14`` / ``-g-14``) and :class:`CLIPFeatures`
  (``clip``: ViT-L/14; torch-fidelity's ``clip-*`` names): the features torch-fidelity computes
  (DINOv2's CLS token, CLIP's image embedding), from local files only, never downloaded: a
  one-line error gives the address and the path to put each file at.

Every space resizes in one of two ways (``resize``): ``legacy``, what the network does itself
(TF-1 bilinear inside torch-fidelity's nets; the classifier's antialiased bilinear), or
``clean``, clean-fid's resize (Parmar et al. 2022; :func:`clean_resize`) to the network's input
size before it. FIDs differ between the two: ``name`` says which, and ``key`` tells them apart.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import torch

from ..errors import GanforgeError
from .classifier import WORK_SIZE, DomainClassifier, digits_classifier, load_classifier

INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_FILE = INCEPTION_URL.rsplit("/", 1)[-1]
INCEPTION_SHA256_PREFIX = "6726825d"  # torch.hub's convention: the name ends in the hash prefix
INCEPTION_ENV = "GANFORGE_INCEPTION_WEIGHTS"
SKIP_HASH_ENV = "GANFORGE_SKIP_HASH_CHECK"

RESIZES = ("legacy", "clean")
CLEAN_RESIZE_NOTE = "clean resize (PIL bicubic)"

DINOV2_MODELS = {"dinov2-vit-s-14": ("dinov2_vits14", "ViT-S/14", 384),
                 "dinov2-vit-b-14": ("dinov2_vitb14", "ViT-B/14", 768),
                 "dinov2-vit-l-14": ("dinov2_vitl14", "ViT-L/14", 1024),
                 "dinov2-vit-g-14": ("dinov2_vitg14", "ViT-g/14", 1536)}  # hub entry, label, dim
DINOV2_DEFAULT = "dinov2-vit-l-14"  # Stein et al. 2023: the best for ranking generators
DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2/{arch}/{arch}_pretrain.pth"  # torch.hub's
DINOV2_REPO_URL = "https://github.com/facebookresearch/dinov2"
DINOV2_DIR_ENV = "GANFORGE_DINOV2_DIR"  # the repo code (hubconf.py)
DINOV2_WEIGHTS_ENV = "GANFORGE_DINOV2_WEIGHTS"  # the checkpoint file
CLIP_DEFAULT = "clip-vit-l-14"
CLIP_WEIGHTS_ENV = "GANFORGE_CLIP_WEIGHTS"


class FeatureSpace:
    """``space(images)`` -> (features float32 [N, F], probabilities [N, K] or None)."""

    name: str = ""  # what reports say: which network, which weights
    key: str = ""  # identifies the weights, for the real-statistics cache
    class_names: list[str] | None = None  # set when the space has a classifier head
    batch_size: int = 256
    input_size: int | None = None  # the network's input resolution (square)
    resize: str = "legacy"  # "clean": clean_resize to input_size before extract
    float_range: tuple[float, float] = (0.0, 255.0)  # the range extract takes float images in

    def extract(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Legacy: uint8 images of any size. Clean: float32 ``[n, C, input_size, input_size]``
        in ``float_range``."""
        raise NotImplementedError

    def set_resize(self, resize: str, legacy: str) -> None:
        """Use ``resize`` ("legacy" or "clean"); ``legacy`` names the network's own resize.
        Says which in :attr:`name`; clean features get their own :attr:`key`."""
        self.resize = check_resize(resize)
        if self.resize == "clean" and not self.input_size:
            raise GanforgeError(f"{self.name}: no input size known for the clean resize")
        self.name += "; " + (CLEAN_RESIZE_NOTE if self.resize == "clean"
                             else f"legacy resize ({legacy})")
        if self.resize == "clean":
            self.key += "-clean"

    def _clean(self, images: torch.Tensor) -> torch.Tensor:
        s = int(self.input_size or 0)
        x = images.float() if images.shape[2:] == (s, s) else clean_resize(images, s)
        lo, hi = self.float_range
        return x if (lo, hi) == (0.0, 255.0) else x * ((hi - lo) / 255.0) + lo

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise GanforgeError(f"features need images [N, 1 or 3, H, W], got "
                                f"{tuple(images.shape)}")
        if images.dtype != torch.uint8:
            images = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        feats, probs = [], []
        for i in range(0, images.shape[0], self.batch_size):
            x = images[i:i + self.batch_size]
            f, p = self.extract(self._clean(x) if self.resize == "clean" else x)
            feats.append(f.float().cpu())
            if p is not None:
                probs.append(p.float().cpu())
        if not feats:
            raise GanforgeError("no images to compute features of")
        return torch.cat(feats), (torch.cat(probs) if probs else None)


class ClassifierFeatures(FeatureSpace):
    """Features of a :class:`DomainClassifier`: a supervised classifier (features and class
    probabilities) or a head-less self-supervised net (``kind="contrastive"``: features only,
    so IS and the class metrics are skipped)."""

    def __init__(self, clf: DomainClassifier, source: str, device: str | torch.device = "cpu",
                 resize: str = "legacy"):
        self.clf = clf.to(device).eval()
        self.device = torch.device(device)
        if clf.head is None:  # head-less (self-supervised) net: features only, no classes
            self.class_names = None
            count = f", {clf.n_images} images" if clf.n_images is not None else ""
            what = "self-supervised" if clf.kind == "contrastive" else "head-less"
            self.name = (f"{what} features ({clf.feature_dim}-d, {clf.kind}, trained "
                         f"on {clf.trained_on or '?'}{count}; {source}) - not Inception; "
                         f"compare runs on the same data only")
        else:
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
        self.input_size = WORK_SIZE  # DomainClassifier.prepare resizes to it
        self.float_range = (-1.0, 1.0)  # DomainClassifier.prepare reads float images so
        self.set_resize(resize, "bilinear, antialiased")

    @torch.no_grad()
    def extract(self, images):
        x = images.to(self.device)
        f = self.clf.features(x)
        if self.clf.head is None:
            return f, None
        return f, self.clf.head(f).softmax(1)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_resize(resize: str) -> str:
    r = (resize or "").strip().lower()
    if r not in RESIZES:
        raise GanforgeError(f"resize {resize!r}: use 'legacy' (the network's own resize, as "
                            f"torch-fidelity and most papers) or 'clean' (clean-fid's)")
    return r


def clean_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """clean-fid's resize (Parmar et al. 2022): every channel of every image as a float32 PIL
    image ('F') resized with BICUBIC to ``size`` x ``size`` and clipped to [0, 255], not
    re-quantised. uint8 ``[N, C, H, W]`` -> float32 ``[N, C, size, size]`` on the CPU, equal to
    ``cleanfid.resize.make_resizer("PIL", False, "bicubic", (size, size))``."""
    from PIL import Image

    a = images.detach().cpu().numpy().astype(np.float32)
    out = np.empty(a.shape[:2] + (size, size), np.float32)

    def one(i: int) -> None:
        for c in range(a.shape[1]):
            img = Image.fromarray(a[i, c])  # 2-d float32: mode 'F'
            out[i, c] = np.asarray(img.resize((size, size), Image.Resampling.BICUBIC))

    workers = min(len(a), os.cpu_count() or 1, 8)  # PIL lets go of the GIL while resizing
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, range(len(a))))
    else:
        for i in range(len(a)):
            one(i)
    return torch.from_numpy(out).clamp_(0, 255)


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
    """torch-fidelity's TF-Inception-v3: pool3 features (2048) and unbiased logits (1008).
    ``resize="clean"`` feeds clean-resized float 299x299 images through the same layers."""

    def __init__(self, weights: str | Path | None = None, device: str | torch.device = "cpu",
                 download: bool = True, resize: str = "legacy"):
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
        self.input_size = self.net.INPUT_IMAGE_SIZE
        self.set_resize(resize, "TF bilinear")

    @torch.no_grad()
    def extract(self, images):
        x = _rgb(images.to(self.device))
        if x.dtype == torch.uint8:
            feats, logits = self.net(x)  # TF-1 bilinear to 299 inside
        else:
            feats, logits = inception_float_forward(self.net, x)
        return feats, logits.double().softmax(1)


_INCEPTION_LAYERS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1",
                     "Conv2d_3b_1x1", "Conv2d_4a_3x3", "MaxPool_2", "Mixed_5b", "Mixed_5c",
                     "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                     "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool")


def inception_float_forward(net, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torch-fidelity's ``FeatureExtractorInceptionV3.forward`` (features "2048",
    "logits_unbiased") on float images ``[N, 3, 299, 299]`` in [0, 255], without its uint8
    check and its resize; equal to it on uint8 images of 299x299."""
    if x.shape[2:] != (net.INPUT_IMAGE_SIZE,) * 2:
        raise GanforgeError(f"the Inception float path takes {net.INPUT_IMAGE_SIZE}px images, "
                            f"got {tuple(x.shape)}")
    x = (x.to(net.feature_extractor_internal_dtype) - 128) / 128
    for layer in _INCEPTION_LAYERS:
        x = getattr(net, layer)(x)
    x = torch.flatten(x, 1)
    return x.to(torch.float32), x.mm(net.fc.weight.T).to(torch.float32)


def _rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x


def _short(e: BaseException) -> str:
    return (" ".join(str(e).split()) or type(e).__name__)[:120]


def _hub() -> Path:
    return Path(torch.hub.get_dir())


def _env_path(var: str) -> Path | None:
    value = os.environ.get(var, "").strip()
    return Path(value).expanduser() if value else None


def _dinov2_model(model: str) -> str:
    m = (model or "").strip().lower()
    m = DINOV2_DEFAULT if m == "dinov2" else m
    if m not in DINOV2_MODELS:
        raise GanforgeError(f"--features {model!r}: DINOv2 models are 'dinov2' (= "
                            f"{DINOV2_DEFAULT}) and {', '.join(DINOV2_MODELS)}")
    return m


def dinov2_paths(model: str = DINOV2_DEFAULT) -> tuple[Path, Path]:
    """Where DINOv2's repo code and checkpoint are looked up: ``$GANFORGE_DINOV2_DIR`` else
    ``<torch hub>/facebookresearch_dinov2_main`` (torch.hub's clone), and
    ``$GANFORGE_DINOV2_WEIGHTS`` else ``<torch hub>/checkpoints/dinov2_vitl14_pretrain.pth``
    (torch.hub's download)."""
    arch = DINOV2_MODELS[_dinov2_model(model)][0]
    repo = _env_path(DINOV2_DIR_ENV) or _hub() / "facebookresearch_dinov2_main"
    ckpt = _env_path(DINOV2_WEIGHTS_ENV) or _hub() / "checkpoints" / f"{arch}_pretrain.pth"
    return repo, ckpt


def find_dinov2(model: str = DINOV2_DEFAULT) -> tuple[Path, Path]:
    """(repo code folder, checkpoint) of a DINOv2 model (:func:`dinov2_paths`); never
    downloads. Raises :class:`GanforgeError` with the addresses and paths when one is missing."""
    model = _dinov2_model(model)
    arch, label, _ = DINOV2_MODELS[model]
    repo, ckpt = dinov2_paths(model)
    has_code, has_weights = (repo / "hubconf.py").is_file(), ckpt.is_file()
    if has_code and has_weights:
        return repo, ckpt
    what = " and ".join(w for w, ok in (("weights", has_weights),
                                        ("repo code (hubconf.py)", has_code)) if not ok)
    fixes = []
    if not has_weights:
        fixes.append(f"download {DINOV2_URL.format(arch=arch)} to {ckpt}")
    if not has_code:
        fixes.append(f"put the repo code at {repo} (git clone {DINOV2_REPO_URL} {repo})")
    raise GanforgeError(f"DINOv2 {label} {what} not found: {' and '.join(fixes)} (or set "
                        f"${DINOV2_WEIGHTS_ENV} to the weights file, ${DINOV2_DIR_ENV} to the "
                        f"repo code)")


class DINOv2Features(FeatureSpace):
    """DINOv2's CLS token, as torch-fidelity's ``dinov2-vit-*-14`` extractor computes it
    (legacy: TF-1 bilinear to 224; ImageNet mean/std), from local files (:func:`find_dinov2`):
    ``torch.hub.load(repo, "dinov2_vitl14", source="local", pretrained=False)`` and the
    checkpoint loaded into it, so nothing touches the network."""

    def __init__(self, model: str = DINOV2_DEFAULT, device: str | torch.device = "cpu",
                 resize: str = "legacy"):
        model = _dinov2_model(model)
        arch, label, dim = DINOV2_MODELS[model]
        repo, ckpt = find_dinov2(model)
        os.environ.setdefault("XFORMERS_DISABLED", "1")  # as torch-fidelity: plain attention
        try:
            with redirect_stdout(sys.stderr), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                net = torch.hub.load(str(repo), arch, source="local", pretrained=False)
                state = torch.load(ckpt, map_location="cpu", weights_only=True)
            missing = net.load_state_dict(state, strict=False).missing_keys
        except Exception as e:
            raise GanforgeError(f"cannot load DINOv2 {label} from {repo} and {ckpt} "
                                f"({type(e).__name__}: {_short(e)}): download "
                                f"{DINOV2_URL.format(arch=arch)} to {ckpt} and git clone "
                                f"{DINOV2_REPO_URL} {repo} again") from None
        if missing:
            raise GanforgeError(f"{ckpt} is not the DINOv2 {label} weights ({len(missing)} "
                                f"tensors missing, e.g. {missing[0]}): download "
                                f"{DINOV2_URL.format(arch=arch)} to {ckpt}")
        self.model = net.to(device).eval().requires_grad_(False)
        self.device = torch.device(device)
        dim = getattr(net, "embed_dim", dim)
        self.name = f"DINOv2 {label} CLS token ({dim}-d, LVD-142M weights via torch.hub)"
        self.key = f"{model}-{_sha256(ckpt)[:8]}"
        self.class_names = None
        self.batch_size = 32
        self.input_size = 224  # torch-fidelity's FeatureExtractorDinoV2.INPUT_IMAGE_SIZE
        self.set_resize(resize, "TF bilinear")

    @torch.no_grad()
    def extract(self, images):
        import torchvision.transforms.functional as TF
        from torch_fidelity.interpolate_compat_tensorflow import (
            interpolate_bilinear_2d_like_tensorflow1x,
        )

        x = _rgb(images.to(self.device))
        if x.dtype == torch.uint8:
            x = interpolate_bilinear_2d_like_tensorflow1x(
                x.float(), size=(self.input_size, self.input_size), align_corners=False)
        x = TF.normalize(x.float(), (255 * 0.485, 255 * 0.456, 255 * 0.406),
                         (255 * 0.229, 255 * 0.224, 255 * 0.225))
        return self.model(x).float(), None


def _clip_meta(model: str) -> tuple[str, dict, str]:
    from torch_fidelity.feature_extractor_clip import MODEL_METADATA, MODEL_URLS

    m = (model or "").strip().lower()
    m = CLIP_DEFAULT if m == "clip" else m
    if m not in MODEL_METADATA:
        raise GanforgeError(f"--features {model!r}: CLIP models are 'clip' (= {CLIP_DEFAULT}) "
                            f"and {', '.join(MODEL_METADATA)}")
    return m, MODEL_METADATA[m], MODEL_URLS[m]


def _clip_label(filename: str) -> str:  # ViT-L-14-336px -> ViT-L/14@336px
    v = re.fullmatch(r"ViT-(\w)-(\d+)(?:-(\d+px))?", filename)
    return filename if v is None else f"ViT-{v[1]}/{v[2]}" + (f"@{v[3]}" if v[3] else "")


def clip_cache_path(model: str = CLIP_DEFAULT) -> Path:
    """Where torch-fidelity downloads a CLIP model: ``<torch hub>/checkpoints/NAME-SHA256.pt``."""
    m, meta, _ = _clip_meta(model)
    return _hub() / "checkpoints" / f"{m}-{meta['hash']}.pt"


def find_clip_weights(model: str = CLIP_DEFAULT) -> Path:
    """The CLIP weights (OpenAI's JIT file): ``$GANFORGE_CLIP_WEIGHTS``, else torch-fidelity's
    download (:func:`clip_cache_path`), else the openai/CLIP package's
    ``~/.cache/clip/ViT-L-14.pt``. Checked by SHA-256 (the one in its address) unless
    ``$GANFORGE_SKIP_HASH_CHECK=1``; never downloaded."""
    m, meta, url = _clip_meta(model)
    label = _clip_label(meta["filename"])
    where = (f"download {url} to {clip_cache_path(m)} (or set ${CLIP_WEIGHTS_ENV} to the "
             f"file)")
    given = _env_path(CLIP_WEIGHTS_ENV)
    if given is not None:
        if not given.is_file():
            raise GanforgeError(f"CLIP weights {given} (${CLIP_WEIGHTS_ENV}) not found: " + where)
        found = given
    else:
        places = (clip_cache_path(m), Path("~/.cache/clip").expanduser() / f"{meta['filename']}.pt")
        found = next((p for p in places if p.is_file()), None)
        if found is None:
            raise GanforgeError(f"CLIP {label} weights not found: " + where)
    if os.environ.get(SKIP_HASH_ENV, "") != "1":
        digest = _sha256(found)
        if digest != meta["hash"]:
            raise GanforgeError(f"{found} is not the CLIP {label} weights (SHA-256 {digest[:8]}"
                                f"..., expected {meta['hash'][:8]}...): {where} (or set "
                                f"{SKIP_HASH_ENV}=1 to use it anyway)")
    return found


class CLIPFeatures(FeatureSpace):
    """CLIP's image embedding through torch-fidelity's ``clip-*`` extractor (legacy: TF-1
    bilinear to its input size, CLIP's mean/std), weights from :func:`find_clip_weights`."""

    def __init__(self, model: str = CLIP_DEFAULT, device: str | torch.device = "cpu",
                 resize: str = "legacy"):
        m, meta, url = _clip_meta(model)
        label = _clip_label(meta["filename"])
        path = find_clip_weights(m)
        from torch_fidelity.feature_extractor_clip import FeatureExtractorCLIP

        try:
            with redirect_stdout(sys.stderr), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.net = FeatureExtractorCLIP(m, ["clip"], feature_extractor_weights_path=str(
                    path)).to(device).eval()
        except Exception as e:
            raise GanforgeError(f"cannot load the CLIP {label} weights {path} "
                                f"({type(e).__name__}: {_short(e)}): download {url} to "
                                f"{clip_cache_path(m)}") from None
        self.device = torch.device(device)
        dim = self.net.model.visual.output_dim
        self.name = f"CLIP {label} image embedding ({dim}-d, OpenAI weights via torch-fidelity)"
        checked = os.environ.get(SKIP_HASH_ENV, "") != "1"  # then the file's hash is meta's
        self.key = f"{m}-{(meta['hash'] if checked else _sha256(path))[:8]}"
        self.class_names = None
        self.batch_size = 32
        self.input_size = int(self.net.resolution)
        self.set_resize(resize, "TF bilinear")

    @torch.no_grad()
    def extract(self, images):
        import torchvision.transforms.functional as TF

        x = _rgb(images.to(self.device))
        if x.dtype == torch.uint8:
            return self.net(x)[0], None  # TF-1 bilinear to the input size inside
        x = TF.normalize(x.to(self.net.feature_extractor_internal_dtype),
                         (255 * 0.48145466, 255 * 0.4578275, 255 * 0.40821073),
                         (255 * 0.26862954, 255 * 0.26130258, 255 * 0.27577711))
        return self.net.model.visual(x).float(), None


def feature_space(spec: str = "auto", data: str | None = None,
                  inception_weights: str | Path | None = None, device: str = "cpu",
                  log=None, resize: str = "legacy") -> FeatureSpace:
    """``spec``: ``inception``; ``dinov2`` (ViT-L/14) or ``dinov2-vit-{s,b,l,g}-14``;
    ``clip`` (ViT-L/14) or torch-fidelity's ``clip-*`` names; ``digits`` (the built-in digits
    classifier); a classifier file from ``ganforge features train`` (``.safetensors`` with its
    ``.json``); or ``auto``: Inception when its weights are at hand (never downloading), else
    the digits classifier for digits data, else the missing-Inception-weights error.
    ``resize``: ``legacy`` (each network's own) or ``clean`` (:func:`clean_resize`)."""
    spec = (spec or "auto").strip()
    resize = check_resize(resize)
    if spec == "inception":
        return InceptionFeatures(inception_weights, device, resize=resize)
    if spec == "digits":
        return ClassifierFeatures(digits_classifier(), "built-in digits classifier", device, resize)
    low = spec.lower()
    if low in ("dinov2", "clip") or (low.startswith(("dinov2-", "clip-"))
                                     and not Path(spec).expanduser().exists()):
        cls = DINOv2Features if low.startswith("dinov2") else CLIPFeatures
        return cls(low, device, resize)
    if spec == "auto":
        try:
            return InceptionFeatures(inception_weights, device, download=False, resize=resize)
        except GanforgeError as missing:
            if data is not None and str(data).strip().lower() == "digits":
                if log is not None:
                    log("no Inception weights: using the built-in digits classifier's features")
                return ClassifierFeatures(digits_classifier(), "built-in digits classifier", device,
                                   resize)
            raise GanforgeError(f"{missing}; offline, train features on the real images with "
                                f"`ganforge features train --data DIR --out FILE` (class "
                                f"sub-folders: a classifier; a flat folder: self-supervised) "
                                f"and pass --features FILE") from None
    path = Path(spec).expanduser()
    if not path.suffix:
        path = path.with_suffix(".safetensors")
    if not path.is_file():
        raise GanforgeError(f"--features {spec!r}: not 'auto', 'inception', 'dinov2', 'clip', "
                            f"'digits' or a classifier file (make one with `ganforge features "
                            f"train`)")
    return ClassifierFeatures(load_classifier(path, device), f"file {path}", device, resize)
