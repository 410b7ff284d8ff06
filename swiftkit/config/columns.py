"""The canonical dataset column names, and the check of a column mapping (``--columns``, cards)."""

from __future__ import annotations

from swiftkit.core.errors import ConfigError
from swiftkit.core.registry import closest

CANONICAL_COLUMNS = (
    "messages", "conversations", "query", "response", "system", "history", "instruction", "input",
    "output", "text", "prompt", "chosen", "rejected", "rejected_response", "completion", "label",
    "tools", "solution",
)


def check_columns(columns: dict, where: str, error: type[Exception] = ConfigError) -> None:
    """A column mapping: source name -> canonical column, or null to drop a source column that
    would be misread (e.g. an unrelated ``label``). ``where`` prefixes errors, raised as ``error``."""
    for src, dst in columns.items():
        if not isinstance(src, str) or not (dst is None or isinstance(dst, str)):
            raise error(f"{where} must map column names to canonical names or null ({src!r}: {dst!r})")
        if dst is not None and dst not in CANONICAL_COLUMNS:
            raise error(
                f"{where} maps {src!r} to {dst!r}, which is not a canonical column"
                f"{closest(dst, CANONICAL_COLUMNS)}; canonical: {', '.join(CANONICAL_COLUMNS)}"
            )
