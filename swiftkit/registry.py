"""Named registries (models, datasets, templates) that plugins fill through registration hooks.

A registry is an explicit object: built-in entries are added by built-in plugins through the same
hooks a third-party package uses. Registering a name twice is an error unless the second
registration says ``override=True``.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterator


class RegistryError(ValueError):
    """A registry lookup or registration failed; the message says what and where."""


def closest(name: str, candidates) -> str:
    """`` (did you mean 'x'?)`` for the nearest candidate, or an empty string."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


class Registry:
    """A name -> entry mapping that remembers which plugin registered each entry."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._sources: dict[str, str] = {}

    def register(self, name: str, entry: Any, *, source: str = "", override: bool = False) -> None:
        """Add ``entry`` under ``name``; a duplicate name raises unless ``override`` is true."""
        key = name.lower()
        if key in self._entries and not override:
            raise RegistryError(
                f"{self.kind} {name!r} is registered twice: first by {self._sources[key] or '?'}, "
                f"again by {source or '?'}; pass override=True in the second registration to replace it"
            )
        self._entries[key] = entry
        self._sources[key] = source

    def get(self, name: str) -> Any:
        """The entry for ``name`` (case-insensitive); unknown names name the closest one."""
        key = name.lower()
        if key not in self._entries:
            raise RegistryError(
                f"unknown {self.kind} {name!r}{closest(key, self._entries)}; "
                f"`swiftkit list {self.kind}s` shows the registered ones"
            )
        return self._entries[key]

    def source(self, name: str) -> str:
        return self._sources[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def items(self):
        return sorted(self._entries.items())
