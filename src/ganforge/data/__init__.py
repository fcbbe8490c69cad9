"""Image datasets for ganforge: ``load_dataset(spec)`` -> :class:`ImageDataset` (uint8 NCHW).

Modules: ``dataset`` (the type, home folder), ``sources`` (folder, zip, digits),
``torchvision_sets`` (mnist, fashion-mnist, cifar10, svhn, celeba), ``hf_sets`` (Hugging Face
datasets: ``hf:NAME[:CONFIG][:SPLIT]``, ``hf:PATH``), ``images`` (decoding and
conversion rules), ``cache`` (on-disk cache for big sets), ``load`` (putting it together).
Vector data (2-D toy sets, CSV, NPY): ``load_vectors(spec)`` -> :class:`VectorDataset`, in
``vectors``.
"""

from .dataset import ImageDataset, ganforge_home
from .images import IMAGE_EXTENSIONS
from .load import load_dataset
from .vectors import VECTOR_SPECS, VectorDataset, is_vector_spec, load_vectors

__all__ = ["IMAGE_EXTENSIONS", "VECTOR_SPECS", "ImageDataset", "VectorDataset", "ganforge_home",
           "is_vector_spec", "load_dataset", "load_vectors"]
