"""The error raised when ``--model`` cannot be turned into a local model directory."""

from __future__ import annotations


class ModelNotFoundError(ValueError):
    """A model could not be found, downloaded or converted; the message says why and what to try."""
