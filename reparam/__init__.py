"""reparam: variational autoencoders built around the reparameterization trick."""

from importlib import metadata

from . import latents, likelihoods, objectives
from .config import Config
from .errors import ConfigError, DataError, ReparamError, RunError
from .model import VAE
from .runs import load

try:
    __version__ = metadata.version("reparam")  # the one version: pyproject.toml's, as installed
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
__all__ = ["Config", "ConfigError", "DataError", "ReparamError", "RunError", "VAE", "latents", "likelihoods", "load", "objectives"]
