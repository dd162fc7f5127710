"""Typed errors. Every user mistake raises a subclass of ReparamError.

The command line turns a ReparamError into one line on stderr and exit code 2;
the Python API lets it propagate so callers can catch it by type.
"""


class ReparamError(Exception):
    """A problem with what the user asked for (config, data, run folder, checkpoint)."""


class ConfigError(ReparamError):
    """An unknown key, a wrong type or an invalid value in the configuration."""


class DataError(ReparamError):
    """A data file that is missing, malformed or holds values the model cannot use."""


class RunError(ReparamError):
    """A run folder that is missing, already used, or holds a corrupt checkpoint."""


class OutputError(ReparamError):
    """An output path that must not be written: a folder, a device, a FIFO or a socket, a missing
    folder, or an existing file that the user did not allow to be replaced (--overwrite)."""


class Diverged(ReparamError):
    """Training kept taking non-finite steps after every allowed rollback."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived during training; the run was checkpointed and can be resumed."""

    def __init__(self, run_dir, step: int, signum: int):
        import signal

        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; resume with: reparam train --resume {run_dir}")
        self.exit_code = 128 + signum


def require(ok: bool, message: str) -> None:
    """ConfigError(message) unless ``ok``: a config rule in one line."""
    if not ok:
        raise ConfigError(message)


def one_of(key: str, value, valid) -> None:
    """ConfigError naming ``key`` unless ``value`` is one of ``valid``."""
    require(value in valid, f"{key} must be one of {', '.join(valid)}; got {value!r}")


#: Seeds are integers in [0, SEED_LIMIT): what torch's generators take, in every command.
SEED_LIMIT = 2**63


def check_seed(key: str, value) -> None:
    """ConfigError naming ``key`` unless ``value`` is an integer seed in [0, 2**63)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < SEED_LIMIT
    require(ok, f"{key} must be an integer in [0, 2**63), got {value!r}")
