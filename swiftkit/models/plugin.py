"""Built-in plugin: registers every model card shipped in ``model_registry/``.

Imported by the plugin manager at start-up, so it stays free of torch / transformers imports.
"""

from __future__ import annotations

from pathlib import Path

from swiftkit.core.hookspecs import hookimpl
from swiftkit.core.resources import data_dir
from swiftkit.models.registry import load_model_card


def register_cards(registry, folder: str | Path, source: str) -> int:
    """Register the entries of every ``*.yaml`` card in ``folder``; returns how many were added.

    Plugin packages that ship their own cards can call this with their own folder.
    """
    count = 0
    for path in sorted(Path(folder).glob("*.yaml")):
        for entry in load_model_card(path):
            registry.register(
                entry.name, entry, source=f"{source} ({path.name})", override=entry.override
            )
            count += 1
    return count


@hookimpl
def swiftkit_register_models(registry):
    register_cards(registry, data_dir("model_registry"), "swiftkit.models.plugin")
