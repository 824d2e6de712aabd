"""The few error types a user sees.

Every mistake a user can make (a config value, a CLI argument, a file, a text) is reported as one
of these, with a message that names the problem and what would be accepted. The CLI prints the
message on one line and exits with status 2; Python callers can catch `JaxllmError`.
"""


class JaxllmError(Exception):
    """Base class: a problem in what the user asked for, not a bug in jaxllm."""


class ConfigError(JaxllmError, ValueError):
    """A preset, override key or config value that is unknown, of the wrong type or out of range."""


class DataError(JaxllmError, ValueError):
    """A corpus, dataset, text or batch that cannot be used (unknown, empty, too short, ...)."""


class CheckpointError(JaxllmError):
    """A run directory or checkpoint that is missing, incomplete or does not match the model."""


class OutputError(JaxllmError):
    """An output path that would overwrite something the user has, or cannot be written."""
