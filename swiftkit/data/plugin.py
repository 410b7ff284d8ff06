"""Built-in plugin: the shipped preprocessors and every dataset card in ``dataset_registry/*.yaml``."""

from __future__ import annotations

from swiftkit.core.hookspecs import hookimpl
from swiftkit.core.resources import data_dir
from swiftkit.data.preprocess import BUILTIN_PREPROCESSORS
from swiftkit.data.registry import load_cards


@hookimpl
def swiftkit_register_datasets(registry):
    for entry, card in load_cards(data_dir("dataset_registry")):
        registry.register(entry.name, entry, source=f"dataset_registry/{card.name}", override=entry.override)


@hookimpl
def swiftkit_register_preprocessors(registry):
    for name, fn in BUILTIN_PREPROCESSORS.items():
        registry.register(name, fn, source="swiftkit.data.preprocess")
