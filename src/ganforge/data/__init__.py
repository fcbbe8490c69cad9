"""Image datasets for ganforge: ``load_dataset(spec)`` -> :class:`ImageDataset` (uint8 NCHW).

Modules: ``dataset`` (the type, home folder), ``sources`` (folder, zip, digits),
``torchvision_sets`` (mnist, fashion-mnist, cifar10, svhn, celeba), ``images`` (decoding and
conversion rules), ``cache`` (on-disk cache for big sets), ``load`` (putting it together).
"""

from .dataset import ImageDataset, ganforge_home
from .images import IMAGE_EXTENSIONS
from .load import load_dataset

__all__ = ["IMAGE_EXTENSIONS", "ImageDataset", "ganforge_home", "load_dataset"]
