"""The error classes of the data layer: bad dataset input, named by file, line and field."""

from __future__ import annotations

from swiftkit.core.errors import SwiftkitError


class DatasetError(SwiftkitError, ValueError):
    """A dataset could not be loaded or a row is malformed.

    The message names the file (or hub id), the 1-based line or row, and what is wrong, e.g.
    ``data.jsonl:7: invalid JSON: Expecting ',' delimiter (column 12)``.
    """


class RowError(DatasetError):
    """One bad row: ``origin`` (file:line), ``problem`` (what is wrong) and ``kind`` (its category)."""

    def __init__(self, origin: str, problem: str, kind: str):
        super().__init__(f"{origin}: {problem}")
        self.origin, self.problem, self.kind = origin, problem, kind
