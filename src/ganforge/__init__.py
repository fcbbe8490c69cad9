"""ganforge: train, evaluate and use generative adversarial networks.

    >>> import ganforge
    >>> cfg = ganforge.build_config("dcgan", {"source": "digits", "max_steps": 200})
    >>> ganforge.train.train(cfg, "runs/quick")
    >>> g = ganforge.load("runs/quick")
    >>> images = g.sample(16)            # float tensor [16, C, R, R] in [-1, 1]
    >>> pil = g.sample_images(4)         # PIL images
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import Config
from .errors import GanforgeError
from .options import build_config

if TYPE_CHECKING:
    from . import train
    from .directions import (
        Directions,
        edit,
        ganspace,
        load_directions,
        load_latent,
        save_directions,
        save_latent,
        sefa,
    )
    from .export import export_onnx, export_torchscript
    from .generate import TrainedGAN, load
    from .project import Projection, project_images
    from .transfer import finetune_config

__version__ = "0.1.0"

# imported when first used: torch and the nets load only for the commands that need them, so
# `ganforge --help` and `ganforge presets` start at once
_LAZY = {"train": ".train", "TrainedGAN": ".generate", "load": ".generate",
         "finetune_config": ".transfer"}
_LAZY.update(dict.fromkeys(["Directions", "sefa", "ganspace", "edit", "save_directions",
                            "load_directions", "save_latent", "load_latent"], ".directions"))
# projection: the function is exported as `project_images` (`ganforge.project` is the module,
# `from ganforge.project import project` the same function)
_LAZY.update(dict.fromkeys(["project_images", "Projection"], ".project"))
_LAZY.update(dict.fromkeys(["export_onnx", "export_torchscript"], ".export"))


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'ganforge' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name], __name__)
    return module if name == "train" else getattr(module, name)

__all__ = ["Config", "GanforgeError", "TrainedGAN", "build_config", "finetune_config", "load",
           "train",
           "__version__"]
__all__ += ["Directions", "edit", "ganspace", "load_directions", "load_latent",
            "save_directions", "save_latent", "sefa"]
__all__ += ["Projection", "project_images"]
__all__ += ["export_onnx", "export_torchscript"]
