"""Errors raised by the training stage for bad input (not bugs)."""


class TrainError(ValueError):
    """Training cannot start or continue; the message says why and what to change."""
