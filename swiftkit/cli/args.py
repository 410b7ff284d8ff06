"""Turn a command config's dataclass fields into argparse flags, and argv (+ YAML) into a config.

Only flags the user actually gave reach the config (argparse defaults are suppressed), so a YAML
file supplies values and command-line flags override them; the dataclass defaults fill the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Literal, get_args, get_origin

from swiftkit.config import CommandConfig, ConfigError, PluginArgs
from swiftkit.config.files import load_yaml_config
from swiftkit.registry import closest


def _str2bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "y", "on"):
        return True
    if low in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _unwrap_optional(tp):
    if get_origin(tp) is typing.Union:
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _add_flag(group, name: str, tp, default, help_text: str, choices=()) -> None:
    tp = _unwrap_optional(tp)
    help_text = f"{help_text} (default: {default!r})".replace("%", "%%")
    kw: dict[str, Any] = {"help": help_text, "default": argparse.SUPPRESS, "dest": name}
    origin = get_origin(tp)
    if tp is bool:
        kw.update(nargs="?", const=True, type=_str2bool, metavar="BOOL")
    elif origin is list:
        kw.update(nargs="+", type=get_args(tp)[0], metavar=name.upper())
    elif origin is Literal or choices:
        kw.update(choices=list(choices or get_args(tp)), type=str if origin is Literal else tp)
    else:
        kw.update(type=tp, metavar=name.upper())
    group.add_argument(f"--{name}", **kw)


def build_parser(cfg_cls: type[CommandConfig], plugin_fields: dict | None = None,
                 prog: str = "swiftkit") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{prog} {cfg_cls.command}",
        description=cfg_cls.description,
        usage=f"{prog} {cfg_cls.command} [config.yaml] [--flag value ...]",
        allow_abbrev=False,
    )
    parser.add_argument(
        "config_file", nargs="?", help="Optional YAML file of flag values; flags given here override it."
    )
    for gname, gcls in cfg_cls.groups():
        group = parser.add_argument_group(f"{gname} options")
        hints = typing.get_type_hints(gcls)
        for f in dataclasses.fields(gcls):
            default = f.default_factory() if callable(f.default_factory) else f.default
            _add_flag(group, f.name, hints[f.name], default, f.metadata.get("help", ""))
    if plugin_fields:
        group = parser.add_argument_group("options added by plugins")
        for f in plugin_fields.values():
            _add_flag(group, f.name, f.type, f.default, f"{f.help} [plugin {f.plugin}]", f.choices)
    return parser


def add_plugin_options(parser: argparse.ArgumentParser) -> None:
    """``--plugins`` and ``--disable_plugins`` as PluginArgs defines them, for commands without a config."""
    for f in dataclasses.fields(PluginArgs):
        parser.add_argument(f"--{f.name}", nargs="+", default=[], help=f.metadata["help"])


def _plugin_selection(argv: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(--plugins files, disabled plugin names, argv without `-p no:NAME`) from the raw arguments.

    Read before the full parse: the loaded plugins decide which flags exist. YAML values for
    ``plugins``/``disable_plugins`` are added by the caller.
    """
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_plugin_options(pre)
    pre.add_argument("-p", action="append", default=[], dest="pytest_style")
    ns, _ = pre.parse_known_args(argv)
    disabled = list(ns.disable_plugins)
    rest: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "-p" and i + 1 < len(argv):
            value = argv[i + 1]
            if not value.startswith("no:"):
                raise ConfigError(f"-p takes no:NAME to block a plugin, got {value!r}")
            disabled.append(value[3:])
            skip = True
            continue
        rest.append(arg)
    return list(ns.plugins), disabled, rest


def plugin_fields_for(cfg_cls: type[CommandConfig], plugin_files, disabled) -> dict:
    """The fields loaded plugins add to this command (name -> PluginField)."""
    from swiftkit.config.plugin_fields import collect_plugin_fields
    from swiftkit.plugins import get_plugin_manager

    pm = get_plugin_manager(plugin_files, disabled)
    return collect_plugin_fields(pm, cfg_cls.command, cfg_cls.flat_fields())


def parse_config(cfg_cls: type[CommandConfig], argv: list[str]) -> CommandConfig:
    """argv (after the command name) -> a validated config; unknown flags name the closest one."""
    files, disabled, argv = _plugin_selection(argv)
    config_file = next((a for a in argv[:1] if a.endswith((".yaml", ".yml"))), None)
    yaml_values = load_yaml_config(config_file) if config_file else {}
    files = files or as_list(yaml_values.get("plugins"))
    disabled = disabled or as_list(yaml_values.get("disable_plugins"))
    plugin_fields = plugin_fields_for(cfg_cls, files, disabled)

    parser = build_parser(cfg_cls, plugin_fields)
    ns, unknown = parser.parse_known_args(argv)
    fields = [*cfg_cls.flat_fields(), *plugin_fields]
    if unknown:
        bad = next((u for u in unknown if u.startswith("-")), unknown[0])
        flag = bad.split("=", 1)[0]
        hint = closest(flag.lstrip("-"), fields)
        if hint:
            hint = hint.replace("'", "'--", 1)
        raise ConfigError(f"unrecognized argument {flag!r} for `swiftkit {cfg_cls.command}`{hint}")
    given = vars(ns)
    positional = given.pop("config_file", None)
    if positional is not None and positional != config_file:
        raise ConfigError(
            f"unexpected argument {positional!r}: the only positional argument is a .yaml config "
            "file, given first"
        )
    values: dict[str, Any] = {}
    if config_file:
        unknown_keys = [k for k in yaml_values if k not in fields]
        if unknown_keys:
            key = unknown_keys[0]
            raise ConfigError(f"unknown key in {config_file} {key!r}{closest(key, fields)}")
        values.update(yaml_values)
    values.update(given)
    values["disable_plugins"] = disabled
    return cfg_cls.from_flat(values, source="flag", plugin_fields=plugin_fields)


def as_list(value) -> list[str]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
