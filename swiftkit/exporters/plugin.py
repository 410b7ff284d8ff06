"""Built-in plugin for export: the ``merged`` format, through the public export hook."""

from __future__ import annotations

from swiftkit.core.hookspecs import hookimpl
from swiftkit.exporters.formats import export_merged


@hookimpl
def swiftkit_choice_names(kind):
    return ["merged"] if kind == "export_format" else []


@hookimpl
def swiftkit_get_export_format(name, config):
    if name != "merged":
        return None

    return export_merged
