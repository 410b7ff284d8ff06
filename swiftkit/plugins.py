"""The plugin manager: built-ins, entry points (group ``swiftkit``) and ``--plugins`` files.

Built-in behaviour is a list of plugin modules registered through the same hooks as third-party
code. Discovery order: built-ins, then installed entry points, then local files. A plugin that fails
to import, or implements a hook that does not exist, stops start-up with an error naming it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import pluggy

from swiftkit import hookspecs
from swiftkit.registry import Registry

ENTRY_POINT_GROUP = "swiftkit"

BUILTIN_PLUGINS = (
    "swiftkit.models.plugin",
    "swiftkit.data.plugin",
    "swiftkit.templates.plugin",
    "swiftkit.train.plugin",
    "swiftkit.infer.plugin",
    "swiftkit.evaluate.plugin",
    "swiftkit.export.plugin",
)


class PluginError(RuntimeError):
    """A plugin could not be loaded or is invalid; the message names the plugin."""


def _register(pm: pluggy.PluginManager, plugin, name: str, origin: str) -> None:
    try:
        pm.register(plugin, name=name)
    except Exception as exc:  # pluggy raises PluginValidationError / ValueError
        raise PluginError(f"plugin {name!r} ({origin}) is invalid: {exc}") from exc
    pm.swiftkit_origins[name] = origin


def _load_file(path: str):
    file = Path(path)
    if not file.is_file():
        raise PluginError(f"plugin file {path!r} does not exist")
    # A unique module name per absolute path: two files called plugin.py do not collide.
    digest = hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:10]
    mod_name = f"swiftkit_local_plugin_{file.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(mod_name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[mod_name]
        raise PluginError(f"plugin file {path!r} failed to import: {type(exc).__name__}: {exc}") from exc
    return module


def _load_entry_points(pm: pluggy.PluginManager, disabled: set[str]) -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in disabled or pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(
                f"plugin {ep.name!r} (entry point {ep.value!r}) failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        dist = getattr(getattr(ep, "dist", None), "name", None)
        _register(pm, plugin, ep.name, f"entry point {ep.value}" + (f" (package {dist})" if dist else ""))


def get_plugin_manager(
    plugin_files: Iterable[str] = (), disabled: Iterable[str] = (), entry_points: bool = True
) -> pluggy.PluginManager:
    """A plugin manager with built-ins, entry points and the given local plugin files loaded."""
    pm = pluggy.PluginManager("swiftkit")
    pm.swiftkit_origins = {}  # plugin name -> where it came from, for `swiftkit plugins list`
    pm.add_hookspecs(hookspecs)
    disabled = set(disabled)
    for mod in BUILTIN_PLUGINS:
        if mod not in disabled:
            _register(pm, importlib.import_module(mod), mod, "builtin")
    if entry_points:
        _load_entry_points(pm, disabled)
    for path in plugin_files:
        module = _load_file(path)
        _register(pm, module, f"file:{path}", f"file {path}")
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} implements an unknown hook: {exc}") from exc
    return pm


@dataclass
class Registries:
    """The registries, filled by every plugin's registration hooks."""

    models: Registry
    datasets: Registry
    templates: Registry
    preprocessors: Registry
    rewards: Registry


def _registration_calls(pm: pluggy.PluginManager, regs: Registries):
    return (
        (pm.hook.swiftkit_register_preprocessors, regs.preprocessors),
        (pm.hook.swiftkit_register_models, regs.models),
        (pm.hook.swiftkit_register_datasets, regs.datasets),
        (pm.hook.swiftkit_register_templates, regs.templates),
        (pm.hook.swiftkit_register_reward_funcs, regs.rewards),
    )


def _run_registration(hook, registry: Registry, impls) -> None:
    for impl in impls:
        try:
            impl.function(registry=registry)
        except Exception as exc:
            raise PluginError(
                f"plugin {impl.plugin_name!r} failed in {hook.name}: {type(exc).__name__}: {exc}"
            ) from exc


def build_registries(pm: pluggy.PluginManager) -> Registries:
    """Fill fresh registries from every plugin's registration hooks.

    Implementations run one by one in registration order (built-ins, entry points, files), so a
    later plugin can override an earlier one and a failure names its plugin. The registries are
    remembered so a plugin registered later (:func:`register_plugin`) is replayed into them, which
    is what the hooks' ``historic`` marking promises.
    """
    regs = Registries(Registry("model"), Registry("dataset"), Registry("template"), Registry("preprocessor"),
                      Registry("reward"))
    for hook, registry in _registration_calls(pm, regs):
        _run_registration(hook, registry, hook.get_hookimpls())
    _check_preprocessors(regs)
    pm.swiftkit_registries = regs
    return regs


def _check_preprocessors(regs: Registries) -> None:
    """Every dataset's ``preprocessor`` must be registered (by any plugin)."""
    from swiftkit.registry import closest

    for name, entry in regs.datasets.items():
        pre = getattr(entry, "preprocessor", None)
        if pre and pre not in regs.preprocessors:
            raise PluginError(
                f"dataset {name!r} ({regs.datasets.source(name) or '?'}): unknown preprocessor {pre!r}"
                f"{closest(pre, regs.preprocessors)}; registered: {', '.join(regs.preprocessors) or 'none'}"
            )


def register_plugin(pm: pluggy.PluginManager, plugin, name: str) -> None:
    """Register a plugin after start-up; its registration hooks run against the built registries."""
    _register(pm, plugin, name, "registered at run time")
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(plugin)
        raise PluginError(f"plugin {name!r} implements an unknown hook: {exc}") from exc
    regs = getattr(pm, "swiftkit_registries", None)
    if regs is not None:
        for hook, registry in _registration_calls(pm, regs):
            _run_registration(hook, registry, [i for i in hook.get_hookimpls() if i.plugin is plugin])
        _check_preprocessors(regs)


def describe_plugins(pm: pluggy.PluginManager) -> list[tuple[str, str, list[str]]]:
    """(name, where it came from, hooks it implements) for every loaded plugin, in load order."""
    origins = pm.swiftkit_origins
    rows = []
    for name, origin in origins.items():
        plugin = pm.get_plugin(name)
        if plugin is None:
            continue
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        rows.append((name, origin, hooks))
    return rows


@lru_cache(maxsize=1)
def default_plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager for the Python API when no plugin options are given."""
    return get_plugin_manager()


@lru_cache(maxsize=1)
def default_registries() -> Registries:
    return build_registries(default_plugin_manager())
