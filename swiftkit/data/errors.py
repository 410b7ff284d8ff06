"""The one error class of the data layer: bad dataset input, named by file, line and field."""

from __future__ import annotations

from swiftkit.core.errors import SwiftkitError


class DatasetError(SwiftkitError, ValueError):
    """A dataset could not be loaded or a row is malformed.

    The message names the file (or hub id), the 1-based line or row, and what is wrong, e.g.
    ``data.jsonl:7: invalid JSON: Expecting ',' delimiter (column 12)``.
    """
