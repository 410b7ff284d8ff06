"""How big and how deeply nested one row may be, measured without recursion.

A row over ``--max_row_bytes`` (default :data:`DEFAULT_MAX_ROW_BYTES`) or nested more than
:data:`MAX_ROW_DEPTH` levels is a bad row like any other (reported by ``data lint``, refused or
skipped by training). JSON lines are measured before they are parsed, so an oversized line never
sits in memory whole; rows from other sources (parquet, hub datasets, ``.json`` lists, CSV records)
are measured once read. The walks here use an explicit stack: a row nested 10,000 deep is measured,
not a ``RecursionError``. Keeping rows shallow also keeps every recursive step after loading
(``json.dumps`` for fingerprints, ``copy.deepcopy`` when sampling, chat-template rendering) far
from Python's recursion limit.
"""

from __future__ import annotations

from swiftkit.config.groups import DEFAULT_MAX_ROW_BYTES

__all__ = ["DEFAULT_MAX_ROW_BYTES", "MAX_ROW_DEPTH", "nesting_depth", "row_bytes", "too_big", "too_deep"]

# Real rows nest a few levels (messages > message > content parts > ...; tool schemas maybe 20).
# 100 leaves room for any of them and keeps recursive consumers (each level costs them 1-3 frames)
# well inside Python's default limit of 1000 frames.
MAX_ROW_DEPTH = 100

_SCALAR_BYTES = 1  # the least a number, true/false or null takes in JSON text


def nesting_depth(value, stop: int = MAX_ROW_DEPTH) -> int:
    """Levels of lists/dicts in ``value`` (a scalar is 0, ``[]`` is 1); counting stops just past
    ``stop``, so a pathological value is not walked whole."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > stop:
            return deepest
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, tuple)))
    return deepest


def _text_bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def row_bytes(row: dict) -> int:
    """The least number of bytes ``row`` takes as JSON text (its strings' UTF-8 bytes and quotes,
    brackets, a byte per other value; ``_origin`` left out), so a JSON line within the limit is
    never measured over it."""
    total = 0
    stack = [v for k, v in row.items() if k != "_origin"]
    stack += [k for k in row if isinstance(k, str) and k != "_origin"]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += _text_bytes(item) + 2
        elif isinstance(item, (bytes, bytearray)):
            total += len(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
            stack.extend(k for k in item if isinstance(k, str))
            total += 2
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
            total += 2
        else:
            total += _SCALAR_BYTES
    return total


def too_big(size: int, limit: int, *, at_least: bool = False) -> str:
    """The problem text of a row of ``size`` bytes over ``limit``."""
    amount = f"more than {limit:,}" if at_least else f"{size:,}"
    return (f"row is {amount} bytes, over --max_row_bytes {limit:,}; raise --max_row_bytes "
            "(0 turns the limit off) or split the row")


def too_deep() -> str:
    """The problem text of a row nested more than :data:`MAX_ROW_DEPTH` levels."""
    return f"row is nested more than {MAX_ROW_DEPTH} levels deep (lists/objects inside each other); " \
        "flatten it"
