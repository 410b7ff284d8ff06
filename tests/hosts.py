"""Plugin hosts for tests: the built-in plugins only (installed entry points are not loaded), and
registries with nothing in them. The CLI and the Python API build their own host per command."""

from __future__ import annotations

from swiftkit.commands import builtin_plugins
from swiftkit.core.plugins import PluginHost, Registries
from swiftkit.core.registry import Registry


def builtin_host(files=(), disabled=()) -> PluginHost:
    """A host with swiftkit's built-in plugins and the given ``--plugins`` files."""
    return PluginHost.build(builtin_plugins(), files, disabled, entry_points=False)


HOST = builtin_host()


def registries() -> Registries:
    """The built-in registries (filled on first use, once per test session)."""
    return HOST.registries


def templates() -> Registry:
    return HOST.registries.templates


def empty_registries() -> Registries:
    return Registries(Registry("model"), Registry("dataset"), Registry("template"), Registry("preprocessor"),
                      Registry("reward"))


def with_datasets(datasets: Registry) -> Registries:
    """The built-in registries with ``datasets`` as the dataset registry (the built-in preprocessors stay)."""
    regs = HOST.registries
    return Registries(regs.models, datasets, regs.templates, regs.preprocessors, regs.rewards)
