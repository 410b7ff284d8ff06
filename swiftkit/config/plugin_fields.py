"""Config fields that plugins contribute (``swiftkit_add_config_fields``): flags like built-in ones.

A plugin declares :class:`PluginField` objects; they become ``--flags`` with help text in the
command's ``--help``, keys in YAML configs and Python API keyword arguments, and their values reach
the plugin as ``config.plugin_options[name]`` (and are saved in ``args.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from swiftkit.config.values import coerce, shown
from swiftkit.core.errors import ConfigError, PluginError


@dataclass(frozen=True)
class PluginField:
    """One config field (``--name``) a plugin adds to one or more commands."""

    name: str
    type: type = str
    default: Any = None
    help: str = ""
    choices: tuple = ()
    commands: tuple[str, ...] = ()  # empty: every command
    plugin: str = ""  # filled in by swiftkit: which plugin declared it

    def coerce(self, value: Any, source: str) -> Any:
        """A value from YAML, a flag or the Python API, checked against the field's type and choices
        as built-in flags are (:func:`swiftkit.config.values.coerce`); None stays None."""
        flag = f"--{self.name}" if source == "flag" else f"{source} {self.name!r}"
        if value is not None and self.type in (bool, int, float, str):
            try:
                value = coerce(flag, value, self.type)
            except ConfigError as exc:
                raise ConfigError(f"{exc} (a flag of plugin {self.plugin})") from None
        elif value is not None and not isinstance(value, self.type):
            try:
                value = self.type(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"{flag} (from plugin {self.plugin}) must be {self.type.__name__}, got {shown(value)}"
                ) from exc
        if self.choices and value not in self.choices:
            raise ConfigError(f"{flag} must be one of {list(self.choices)}, got {shown(value)}")
        return value


def collect_plugin_fields(host, command: str, builtin_names) -> dict[str, PluginField]:
    """Every field the loaded plugins declare for ``command``; clashes name both sides."""
    out: dict[str, PluginField] = {}
    for plugin, declared in host.all_answers("swiftkit_add_config_fields", command=command):
        for f in declared or []:
            if not isinstance(f, PluginField):
                raise PluginError(
                    f"{host.label(plugin)}: swiftkit_add_config_fields must return PluginField "
                    f"objects, got {type(f).__name__}"
                )
            if f.commands and command not in f.commands:
                continue
            if f.name in builtin_names:
                raise PluginError(f"{host.label(plugin)} declares --{f.name}, a built-in flag")
            if f.name in out:
                raise PluginError(
                    f"--{f.name} is declared by two plugins: {out[f.name].plugin!r} and {plugin!r}"
                )
            out[f.name] = PluginField(**{**f.__dict__, "plugin": plugin})
    return out
