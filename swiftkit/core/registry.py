"""Named registries (models, datasets, templates, preprocessors, rewards) that plugins fill.

A registry is an explicit object: built-in entries are added by built-in plugins through the same
hooks a third-party package uses. Registering a name twice is an error unless the second
registration says ``override=True``. While a plugin's registration hook runs, the plugin host sets
:attr:`Registry.registering` to that plugin's name, so every entry (and every duplicate-name
error) names the plugin that registered it, whatever ``source`` text the plugin passed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

from swiftkit.core.errors import RegistryError

__all__ = ["Registry", "RegistryError", "closest"]


def closest(name: str, candidates) -> str:
    """`` (did you mean 'x'?)`` for the nearest candidate, or an empty string."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


class Registry:
    """A name -> entry mapping that remembers which plugin registered each entry."""

    def __init__(self, kind: str):
        self.kind = kind
        self.registering: str | None = None  # name of the plugin whose registration hook is running
        self._entries: dict[str, Any] = {}
        self._sources: dict[str, str] = {}
        self._plugins: dict[str, str] = {}

    def register(self, name: str, entry: Any, *, source: str = "", override: bool = False) -> None:
        """Add ``entry`` under ``name``; a duplicate name raises unless ``override`` is true."""
        key = name.lower()
        if key in self._entries and not override:
            raise RegistryError(
                f"{self.kind} {name!r} is registered twice: first by {self._who(key)}, again by "
                f"{_plugin_text(self.registering) if self.registering else source or '?'}; pass override=True in "
                "the second registration to replace it"
            )
        self._entries[key] = entry
        self._sources[key] = source or self.registering or ""
        self._plugins[key] = self.registering or ""

    def _who(self, key: str) -> str:
        plugin, source = self._plugins[key], self._sources[key]
        if plugin and source and source != plugin:
            return f"{_plugin_text(plugin)} ({source})"
        return _plugin_text(plugin) if plugin else source or "?"

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
        """The ``source`` text given when ``name`` was registered (the plugin's label when none)."""
        return self._sources[name.lower()]

    def plugin(self, name: str) -> str:
        """The name of the plugin that registered ``name`` (empty when registered outside a hook)."""
        return self._plugins[name.lower()]

    def registered_by(self, plugin: str) -> list[str]:
        """The entries the plugin called ``plugin`` registered (and that nobody replaced since)."""
        return sorted(k for k, p in self._plugins.items() if p == plugin)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def items(self):
        return sorted(self._entries.items())


def _plugin_text(name: str) -> str:
    return f"plugin {name!r}"
