"""The plugin host: one pluggy manager and the registries it fills, built once per command.

The entry point (CLI or Python API) builds one :class:`PluginHost` and passes it to config parsing
and to the recipe; nothing below reaches for a module-level default. Load order, which decides who
wins when two plugins offer the same thing:

1. the built-in plugin modules the entry point passes (``swiftkit.commands.BUILTIN_PLUGIN_MODULES``);
2. installed entry points of the group ``swiftkit``, sorted by entry-point name;
3. ``--plugins`` files, in the order given.

Registration hooks (``swiftkit_register_*``) are called once per plugin in that order, so a later
plugin can replace an earlier entry (with ``override=True``); a plugin registered after the
registries exist (:meth:`PluginHost.register`) has its registration hooks called then. Choice
hooks are answered in pluggy's order: the last loaded plugin is asked first.

Every failure names the plugin and its package: an import error, a hook that does not exist (with
the closest hookspec), a hook whose arguments do not match the hookspec (with the expected
signature), and any exception raised inside a hook (:meth:`PluginHost.guard`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

import pluggy

from swiftkit.core import hookspecs
from swiftkit.core.errors import PluginError, SwiftkitError
from swiftkit.core.registry import Registry, closest

ENTRY_POINT_GROUP = "swiftkit"
PROJECT = "swiftkit"
REGISTRATION_HOOKS = (  # hook -> Registries attribute; preprocessors first (dataset cards name them)
    ("swiftkit_register_preprocessors", "preprocessors"),
    ("swiftkit_register_models", "models"),
    ("swiftkit_register_datasets", "datasets"),
    ("swiftkit_register_templates", "templates"),
    ("swiftkit_register_reward_funcs", "rewards"),
    ("swiftkit_register_benchmarks", "benchmarks"),
)


@dataclass
class Registries:
    """The registries, filled by every plugin's registration hooks."""

    models: Registry
    datasets: Registry
    templates: Registry
    preprocessors: Registry
    rewards: Registry
    benchmarks: Registry = field(default_factory=lambda: Registry("benchmark"))


@dataclass
class PluginInfo:
    """One plugin: its name in the manager, where it came from, its package, and (when it is
    broken and the host was built tolerant) what is wrong with it."""

    name: str
    origin: str  # "builtin", "entry point MODULE:ATTR", "file PATH"
    package: str  # the distribution ("swiftkit" for built-ins) or the file
    error: str | None = None

    @property
    def label(self) -> str:
        """How errors name the plugin: ``plugin 'NAME' (package PKG)``."""
        where = f"file {self.package}" if self.origin.startswith("file") else f"package {self.package}"
        return f"plugin {self.name!r} ({where})"


class PluginHost:
    """The plugin manager of one command and the registries its plugins fill (built on first use)."""

    def __init__(self, pm: pluggy.PluginManager, infos: dict[str, PluginInfo], tolerant: bool = False):
        self.pm = pm
        self.infos = infos  # every plugin seen, in load order, broken ones included
        self.tolerant = tolerant
        self._registries: Registries | None = None

    # -- building ----------------------------------------------------------------------------------

    @classmethod
    def build(cls, builtins: Sequence[ModuleType] = (), files: Iterable[str] = (), disabled: Iterable[str] = (),
              *, entry_points: bool = True, tolerant: bool = False) -> PluginHost:
        """Load ``builtins`` (modules), installed entry points and local plugin ``files``, skipping the
        plugin names in ``disabled``. ``tolerant`` records broken plugins in :attr:`infos` instead of
        raising (``swiftkit plugins list``)."""
        pm = pluggy.PluginManager(PROJECT)
        pm.add_hookspecs(hookspecs)
        host = cls(pm, {}, tolerant)
        disabled = set(disabled)
        for module in builtins:
            if module.__name__ not in disabled:
                host._add(module, PluginInfo(module.__name__, "builtin", "swiftkit"))
        if entry_points:
            host._load_entry_points(disabled)
        for path in files:
            info = PluginInfo(f"file:{path}", f"file {path}", str(path))
            host._guarded_load(info, lambda p=path: _import_file(p))
        return host

    def _load_entry_points(self, disabled: set[str]) -> None:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in disabled or ep.name in self.infos:
                continue
            dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
            info = PluginInfo(ep.name, f"entry point {ep.value}", dist)
            self._guarded_load(info, ep.load)

    def _guarded_load(self, info: PluginInfo, load) -> None:
        try:
            try:
                plugin = load()
            except PluginError:
                raise
            except Exception as exc:  # any import failure of third-party code
                raise PluginError(f"{info.label} failed to import: {type(exc).__name__}: {exc}") from exc
        except PluginError as exc:
            self._broken(info, exc)
            return
        self._add(plugin, info)

    def _broken(self, info: PluginInfo, exc: PluginError) -> None:
        """Record a broken plugin (tolerant host) or raise its error."""
        if not self.tolerant:
            raise exc
        info.error = str(exc)
        self.infos[info.name] = info

    def _add(self, plugin, info: PluginInfo) -> None:
        try:
            try:
                _validate(plugin, info, self.pm)
                self.pm.register(plugin, name=info.name)
            except ValueError as exc:  # pluggy: a plugin name or object registered twice
                raise PluginError(f"{info.label} cannot be registered: {exc}") from exc
        except PluginError as exc:
            self._broken(info, exc)
            return
        self.infos[info.name] = info

    def register(self, plugin, name: str) -> None:
        """Register a plugin after start-up; its registration hooks run against the built registries."""
        info = PluginInfo(name, "registered at run time", getattr(plugin, "__name__", name))
        self._add(plugin, info)
        if info.error is None and self._registries is not None:
            self._fill(self._registries, only=plugin)

    # -- registries --------------------------------------------------------------------------------

    @property
    def registries(self) -> Registries:
        """The registries, filled by every plugin's registration hooks on first use."""
        if self._registries is None:
            regs = Registries(Registry("model"), Registry("dataset"), Registry("template"),
                              Registry("preprocessor"), Registry("reward"), Registry("benchmark"))
            self._fill(regs)
            self._registries = regs
        return self._registries

    def _fill(self, regs: Registries, only=None) -> None:
        order = list(self.infos)
        for hook_name, attr in REGISTRATION_HOOKS:
            registry = getattr(regs, attr)
            impls = getattr(self.pm.hook, hook_name).get_hookimpls()
            for impl in sorted(impls, key=lambda i: order.index(i.plugin_name)):
                if only is not None and impl.plugin is not only:
                    continue
                if self.infos[impl.plugin_name].error is not None:
                    continue
                registry.registering = impl.plugin_name
                try:
                    with self.guard(impl.plugin_name, hook_name, always_wrap=True):
                        impl.function(registry=registry)
                except PluginError as exc:
                    self._broken(self.infos[impl.plugin_name], exc)
                finally:
                    registry.registering = None
        self._check_preprocessors(regs)

    def _check_preprocessors(self, regs: Registries) -> None:
        """Every dataset's ``preprocessor`` must be registered (by any plugin)."""
        for name, entry in regs.datasets.items():
            pre = getattr(entry, "preprocessor", None)
            if pre and pre not in regs.preprocessors:
                plugin = regs.datasets.plugin(name)
                message = (f"dataset {name!r} ({regs.datasets.source(name) or '?'}, from {self.label(plugin)}): "
                           f"unknown preprocessor {pre!r}{closest(pre, regs.preprocessors)}; registered: "
                           f"{', '.join(regs.preprocessors) or 'none'}")
                if plugin not in self.infos:
                    raise PluginError(message)
                self._broken(self.infos[plugin], PluginError(message))

    # -- calling plugins ---------------------------------------------------------------------------

    def label(self, plugin_name: str) -> str:
        info = self.infos.get(plugin_name)
        return info.label if info is not None else f"plugin {plugin_name!r}"

    def guard(self, plugin_name: str, what: str, *, always_wrap: bool = False):
        """:func:`guarded` with this host's label of the plugin (name and package)."""
        return guarded(self.label(plugin_name), what, always_wrap=always_wrap)

    def first_answer(self, hook_name: str, **kwargs):
        """``(result, plugin name)`` of a firstresult hook: its implementations are asked in pluggy's
        order (last loaded first) until one returns something other than None; ``(None, None)``
        when none does."""
        for impl in reversed(self._working(hook_name)):
            with self.guard(impl.plugin_name, hook_name):
                result = impl.function(*(kwargs[arg] for arg in impl.argnames))
            if result is not None:
                return result, impl.plugin_name
        return None, None

    def all_answers(self, hook_name: str, **kwargs) -> list[tuple[str, object]]:
        """``(plugin name, result)`` of every implementation of an all-results hook, in load order."""
        out = []
        for impl in self._working(hook_name):
            with self.guard(impl.plugin_name, hook_name):
                out.append((impl.plugin_name, impl.function(*(kwargs[arg] for arg in impl.argnames))))
        return out

    def _working(self, hook_name: str) -> list:
        """The hook's implementations, in pluggy's order, without those of broken plugins."""
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        return [i for i in impls if i.plugin_name not in self.infos or self.infos[i.plugin_name].error is None]

    def hooks_of(self, plugin_name: str) -> list[str]:
        plugin = self.pm.get_plugin(plugin_name)
        return sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or []) if plugin else []


@contextlib.contextmanager
def guarded(label: str, what: str, *, always_wrap: bool = False):
    """Turn an exception raised by plugin code into one :class:`PluginError` naming the plugin
    (``label``: ``plugin 'NAME' (package PKG)``) and ``what`` it was doing. A
    :class:`SwiftkitError` a plugin raises on purpose (e.g. a ``ConfigError`` naming its flag)
    passes through unchanged, unless ``always_wrap`` (registration: the plugin must be named)."""
    try:
        yield
    except PluginError:
        raise
    except SwiftkitError as exc:
        if not always_wrap:
            raise
        raise PluginError(f"{label} failed in {what}: {exc}") from exc
    except Exception as exc:  # third-party code; the original is chained (--debug shows it)
        raise PluginError(f"{label} failed in {what}: {type(exc).__name__}: {exc}") from exc


# -- loading and checking plugins ------------------------------------------------------------------


def _import_file(path: str) -> ModuleType:
    file = Path(path)
    if not file.is_file():
        raise PluginError(f"plugin file {path!r} does not exist")
    # A unique module name per absolute path: two files called plugin.py do not collide.
    digest = hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:10]
    mod_name = f"swiftkit_local_plugin_{file.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(mod_name, file)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin file {path!r} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[mod_name]
        raise PluginError(f"plugin file {path!r} failed to import: {type(exc).__name__}: {exc}") from exc
    return module


def hook_signature(name: str) -> str:
    spec = getattr(hookspecs, name)
    return f"{name}({', '.join(inspect.signature(spec).parameters)})"


def _validate(plugin, info: PluginInfo, pm: pluggy.PluginManager) -> None:
    """Every hook implementation names a hookspec and takes only its arguments; a function named
    like a hook but not marked ``@swiftkit.hookimpl`` is an error too (pluggy would ignore it)."""
    specs = {n for n in dir(hookspecs) if n.startswith("swiftkit_")}
    for attr in dir(plugin):
        value = getattr(plugin, attr, None)
        marked = pm.parse_hookimpl_opts(plugin, attr) is not None
        if not marked:
            if attr in specs and inspect.isfunction(value) and getattr(value, "__module__", None) != hookspecs.__name__:
                raise PluginError(f"{info.label} defines {attr}() without @swiftkit.hookimpl, so it would never be "
                                  "called; decorate it")
            continue
        opts = pm.parse_hookimpl_opts(plugin, attr) or {}
        if opts.get("hookwrapper") or opts.get("wrapper"):
            raise PluginError(f"{info.label}: {attr} is a hook wrapper; swiftkit hooks take plain implementations")
        name = opts.get("specname") or attr
        if name not in specs:
            raise PluginError(f"{info.label} implements {name}, which is not a swiftkit hook"
                              f"{closest(name, specs)}; `swiftkit plugins list` and docs/reference/hooks.md list them")
        expected = list(inspect.signature(getattr(hookspecs, name)).parameters)
        got = list(inspect.signature(value).parameters)
        extra = [a for a in got if a not in expected]
        if extra:
            raise PluginError(f"{info.label}: {name}({', '.join(got)}) does not match the hook; expected "
                              f"{hook_signature(name)} (or a subset of its arguments); unknown: {', '.join(extra)}")
