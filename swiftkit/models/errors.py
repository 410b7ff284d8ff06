"""The error raised when ``--model`` cannot be turned into a local model directory."""

from __future__ import annotations

from swiftkit.core.errors import SwiftkitError


class ModelNotFoundError(SwiftkitError, ValueError):
    """A model could not be found, downloaded or converted; the message says why and what to try."""
