"""Built-in plugin: registers every template file shipped in ``swiftkit/templates/registered/``.

Imported by the plugin manager at start-up, so it stays free of torch / transformers imports.
"""

from __future__ import annotations

from pathlib import Path

from swiftkit.core.hookspecs import hookimpl
from swiftkit.templates.registry import load_template_file

REGISTERED_DIR = Path(__file__).resolve().parent / "registered"


def register_template_files(registry, folder: str | Path, source: str) -> int:
    """Register the template of every ``*.yaml`` file in ``folder``; returns how many were added.

    Plugin packages that ship their own template files can call this with their own folder.
    """
    count = 0
    for path in sorted(Path(folder).glob("*.yaml")):
        entry = load_template_file(path)
        registry.register(entry.name, entry, source=f"{source} ({path.name})", override=entry.override)
        count += 1
    return count


@hookimpl
def swiftkit_register_templates(registry):
    register_template_files(registry, REGISTERED_DIR, "swiftkit.templates.plugin")
