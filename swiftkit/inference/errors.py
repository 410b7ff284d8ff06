"""The error raised when inference inputs (adapters, checkpoints, backend) are unusable."""

from __future__ import annotations

from swiftkit.core.errors import ConfigError


class InferError(ConfigError):
    """An inference input is wrong; the message names the flag or path and what to do."""
