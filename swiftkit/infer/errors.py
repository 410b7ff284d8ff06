"""The error raised when inference inputs (adapters, checkpoints, backend) are unusable."""

from __future__ import annotations

from swiftkit.config import ConfigError


class InferError(ConfigError):
    """An inference input is wrong; the message names the flag or path and what to do.

    A ``ConfigError`` (so a ``ValueError``): the CLI prints it as one line, without a traceback.
    """
