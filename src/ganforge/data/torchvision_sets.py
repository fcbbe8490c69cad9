"""torchvision datasets, downloaded into ``ganforge_home()/datasets/<name>``: the train split,
or the test split for ``NAME:test`` (the reference of ``ganforge eval --reference test``).

Offline, the download fails; we turn that into one line saying which files to fetch from
where and the exact folder to put them in (torchvision then finds them and skips the
download). URLs and layouts follow torchvision 0.2x's ``datasets/{mnist,cifar,svhn,celeba}.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ganforge.errors import GanforgeError

from .base import ArraySource, FileSource, Source

_MNIST_FILES = "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, " \
    "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"
_CELEBA_FILES = (
    "img_align_celeba.zip (unzipped there, giving img_align_celeba/), list_eval_partition.txt, "
    "list_attr_celeba.txt, identity_CelebA.txt, list_bbox_celeba.txt and "
    "list_landmarks_align_celeba.txt"
)

# name -> (torchvision class, constructor kwargs, what to fetch, from where, sub-folder of root)
_SETS: dict[str, tuple[str, dict, str, str, str]] = {
    "mnist": ("MNIST", {"train": True}, _MNIST_FILES,
              "https://ossci-datasets.s3.amazonaws.com/mnist/", "MNIST/raw"),
    "fashion-mnist": ("FashionMNIST", {"train": True}, _MNIST_FILES,
                      "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      "FashionMNIST/raw"),
    "cifar10": ("CIFAR10", {"train": True}, "cifar-10-python.tar.gz",
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", ""),
    "svhn": ("SVHN", {"split": "train"}, "train_32x32.mat",
             "http://ufldl.stanford.edu/housenumbers/train_32x32.mat", ""),
    "celeba": ("CelebA", {"split": "train", "target_type": []}, _CELEBA_FILES,
               "https://drive.google.com/drive/folders/0B7EVK8r0v71pWEZsZE9oNnFzTm8", "celeba"),
}


# the test split's constructor kwargs (and, where it is another file, what to fetch from where)
_TEST_SPLIT: dict[str, tuple[dict, str | None, str | None]] = {
    "mnist": ({"train": False}, None, None),
    "fashion-mnist": ({"train": False}, None, None),
    "cifar10": ({"train": False}, None, None),
    "svhn": ({"split": "test"}, "test_32x32.mat",
             "http://ufldl.stanford.edu/housenumbers/test_32x32.mat"),
    "celeba": ({"split": "test", "target_type": []}, None, None),
}


def download_hint(name: str, root: Path, split: str = "train") -> str:
    """'put FILES from URL into FOLDER' for one dataset."""
    _, _, files, url, sub = _SETS[name]
    if split == "test":
        files, url = _TEST_SPLIT[name][1] or files, _TEST_SPLIT[name][2] or url
    folder = root / sub if sub else root
    return f"put {files} from {url} into {folder}/"


def torchvision_source(name: str, root: Path, split: str = "train") -> Source:
    """Instantiate the torchvision dataset (download=True) and expose its ``split`` ("train"
    or "test") images."""
    import torchvision.datasets as tvd

    cls_name, kwargs, *_ = _SETS[name]
    if split == "test":
        kwargs = _TEST_SPLIT[name][0]
    elif split != "train":
        raise GanforgeError(f"{name}:{split}: the split is 'train' or 'test'")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GanforgeError(f"cannot create dataset folder {root}: {exc.strerror}; "
                            "set GANFORGE_HOME to a writable folder") from exc
    try:
        ds = getattr(tvd, cls_name)(root=str(root), download=True, **kwargs)
    except ModuleNotFoundError as exc:
        raise GanforgeError(
            f"loading {name} needs the Python package '{exc.name}': pip install {exc.name}"
        ) from exc
    except Exception as exc:  # URLError, RuntimeError, OSError, md5 mismatch...
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        said = (lines[-1] if lines else type(exc).__name__)[:160]
        why = "it needs network and 'pip install gdown'" if "gdown" in said else "no network?"
        raise GanforgeError(
            f"could not download {name} ({why}): {download_hint(name, root, split)} and run again "
            f"(torchvision said: {said})"
        ) from exc
    fp = ["torchvision", name, str(root.resolve()), len(ds)] + ([split] if split != "train" else [])
    name = name if split == "train" else f"{name}:{split}"
    if name.startswith("celeba"):
        folder = root / "celeba" / "img_align_celeba"
        paths = [folder / f for f in ds.filename]
        return FileSource(
            name=name, where=str(folder), names=list(ds.filename), read=lambda i: paths[i],
            labels=None, class_names=[], fingerprint=lambda: fp, default_channels=3,
        )
    data = np.asarray(ds.data)
    if data.ndim == 3:  # MNIST: [N, H, W]
        data = data[:, None]
    elif data.shape[-1] == 3:  # CIFAR: [N, H, W, 3]
        data = data.transpose(0, 3, 1, 2)
    targets = getattr(ds, "targets", None)
    if targets is None:
        targets = ds.labels  # SVHN
    labels = np.asarray(targets, dtype=np.int64)
    classes = list(getattr(ds, "classes", None) or [str(i) for i in range(int(labels.max()) + 1)])
    return ArraySource(name=name, images=data, labels=labels, class_names=classes,
                       fingerprint=lambda: fp)
