"""hrinv_nb: a literate reproduction of HRInversion on plain-PyTorch StyleGAN2-ADA networks.

Importing the package only defines names; nothing is computed or loaded.
"""

from .checkpoints import CheckpointError, Networks, UnsafePickleError, load_networks, save_networks
from .networks import Discriminator, Generator, discriminator_features, noise_buffers, set_noise_buffers

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "Discriminator",
    "Generator",
    "Networks",
    "UnsafePickleError",
    "discriminator_features",
    "load_networks",
    "noise_buffers",
    "save_networks",
    "set_noise_buffers",
    "__version__",
]
