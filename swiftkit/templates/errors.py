"""Errors raised while choosing a template or encoding a conversation with it."""

from __future__ import annotations

from swiftkit.core.errors import SwiftkitError


class TemplateError(SwiftkitError, ValueError):
    """A template could not be chosen, loaded or applied; the message says what and where."""


class SequenceTooLong(TemplateError):
    """An encoded row is longer than ``max_length`` (strategy ``delete``) or loses every labelled
    token to truncation; callers skip such rows and count them."""
