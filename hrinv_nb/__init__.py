"""hrinv_nb: a literate reproduction of HRInversion on plain-PyTorch StyleGAN2-ADA networks.

Importing the package only defines names; nothing is computed, loaded or downloaded.
"""

from . import metrics
from .blending import blend_generators, blend_latents, layer_swap, mix
from .checkpoints import Networks, load_networks, save_networks
from .directions import sefa_directions
from .errors import CheckpointError, UnsafePickleError
from .images import load_image, save_image
from .losses import perceptual_loss
from .lso import LSOResult, lso
from .networks import Discriminator, Generator, discriminator_features, enable_fp16, noise_buffers, set_noise_buffers
from .projector import BatchProjectionResult, ProjectionResult, load_projection, project, project_batch, save_projection
from .retrieval import id_retrieval

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "BatchProjectionResult",
    "Discriminator",
    "Generator",
    "LSOResult",
    "Networks",
    "ProjectionResult",
    "UnsafePickleError",
    "blend_generators",
    "blend_latents",
    "discriminator_features",
    "enable_fp16",
    "id_retrieval",
    "layer_swap",
    "load_image",
    "load_networks",
    "load_projection",
    "lso",
    "metrics",
    "mix",
    "noise_buffers",
    "perceptual_loss",
    "project",
    "project_batch",
    "save_image",
    "save_networks",
    "save_projection",
    "sefa_directions",
    "set_noise_buffers",
    "__version__",
]
