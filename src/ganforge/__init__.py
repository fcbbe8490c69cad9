"""ganforge: train, evaluate and use generative adversarial networks.

    >>> import ganforge
    >>> cfg = ganforge.build_config("dcgan", {"source": "digits", "max_steps": 200})
    >>> ganforge.train.train(cfg, "runs/quick")
    >>> g = ganforge.load("runs/quick")
    >>> images = g.sample(16)            # float tensor [16, C, R, R] in [-1, 1]
    >>> pil = g.sample_images(4)         # PIL images
"""

from . import train
from .config import Config, build_config
from .errors import GanforgeError
from .generate import TrainedGAN, load

__version__ = "0.1.0"

__all__ = ["Config", "GanforgeError", "TrainedGAN", "build_config", "load", "train",
           "__version__"]
