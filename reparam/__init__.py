"""reparam: variational autoencoders built around the reparameterization trick."""

from . import latents, likelihoods, objectives
from .config import Config
from .errors import ConfigError, DataError, ReparamError, RunError
from .model import VAE
from .runs import load

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "DataError", "ReparamError", "RunError", "VAE", "latents", "likelihoods", "load", "objectives"]
