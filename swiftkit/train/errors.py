"""Errors raised by the training stage for bad input or a run that cannot go on (not bugs)."""

from swiftkit.core.errors import SwiftkitError


class TrainError(SwiftkitError, ValueError):
    """Training cannot start or continue; the message says why and what to change."""
