"""Turn a command config's dataclass fields into argparse flags, and argv (+ YAML) into a config.

Only flags the user actually gave reach the config (argparse defaults are suppressed), so a YAML
file supplies values and command-line flags override them; the dataclass defaults fill the rest,
and the config records which flags were given.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Literal, get_args, get_origin

from swiftkit.commands import Command, build_host, plugin_fields
from swiftkit.config import CommandConfig, PluginArgs
from swiftkit.config.files import load_yaml_config
from swiftkit.config.flagnames import canonical_keys, check_spellings, given_value, refusal
from swiftkit.config.values import coerce
from swiftkit.core.errors import ConfigError
from swiftkit.core.registry import closest


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


def _add_flag(group, name: str, tp, default, help_text: str, choices=(), aliases=()) -> None:
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
    group.add_argument(f"--{name}", *(f"--{a}" for a in aliases), **kw)


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors (a value of the wrong type, a flag without its value) raised as a
    one-line ConfigError instead of printing the usage and exiting."""

    def error(self, message: str):
        raise ConfigError(message)


def build_parser(cfg_cls: type[CommandConfig], fields_of_plugins: dict | None = None,
                 prog: str = "swiftkit") -> argparse.ArgumentParser:
    parser = _Parser(
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
            _add_flag(group, f.name, hints[f.name], default, f.metadata.get("help", ""),
                      aliases=f.metadata.get("aliases", ()))
    if fields_of_plugins:
        group = parser.add_argument_group("options added by plugins")
        for f in fields_of_plugins.values():
            _add_flag(group, f.name, f.type, f.default, f"{f.help} [plugin {f.plugin}]", f.choices)
    return parser


def add_plugin_options(parser: argparse.ArgumentParser) -> None:
    """``--plugins``, ``--disable_plugins`` (as PluginArgs defines them) and ``-p no:NAME``, for the
    tool commands (list, plugins) that have no config."""
    for f in dataclasses.fields(PluginArgs):
        parser.add_argument(f"--{f.name}", *(f"--{a}" for a in f.metadata.get("aliases", ())), dest=f.name,
                            nargs="+", default=[], help=f.metadata["help"])
    parser.add_argument("-p", action="append", default=[], dest="blocked", metavar="no:NAME",
                        help="Do not load the plugin NAME (as pytest's -p no:NAME).")


def blocked_names(values: list[str]) -> list[str]:
    """The plugin names of ``-p no:NAME`` values."""
    out = []
    for value in values:
        if not value.startswith("no:") or len(value) == 3:
            raise ConfigError(f"-p takes no:NAME to block a plugin, got {value!r}")
        out.append(value[3:])
    return out


def plugin_selection(argv: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(--plugins files, disabled plugin names, argv without ``-p no:NAME``) from the raw arguments.

    Read before the full parse: the loaded plugins decide which flags exist.
    """
    pre = _Parser(add_help=False, allow_abbrev=False)
    for f in dataclasses.fields(PluginArgs):
        pre.add_argument(f"--{f.name}", *(f"--{a}" for a in f.metadata.get("aliases", ())), dest=f.name,
                         nargs="+", default=[])
    ns, _ = pre.parse_known_args(argv)
    disabled = list(ns.disable_plugins)
    rest: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "-p" and i + 1 < len(argv):
            disabled += blocked_names([argv[i + 1]])
            skip = True
            continue
        rest.append(arg)
    return list(ns.plugins), disabled, rest


def yaml_config_file(argv: list[str]) -> str | None:
    """The YAML file given as the first argument, if any."""
    return next((a for a in argv[:1] if a.endswith((".yaml", ".yml"))), None)


def parse_config(command: Command, argv: list[str], host, yaml_values: dict) -> CommandConfig:
    """argv (after the command name, ``-p`` removed) + YAML values -> a validated config; unknown
    flags name the closest one."""
    cfg_cls = command.config
    extra = plugin_fields(host, command)
    parser = build_parser(cfg_cls, extra)
    ns, unknown = parser.parse_known_args(argv)
    check_spellings(cfg_cls, argv)
    fields = [*cfg_cls.flat_fields(), *extra]
    if unknown:
        bad = next((u for u in unknown if u.startswith("-")), unknown[0])
        flag = bad.split("=", 1)[0]
        refused = refusal(cfg_cls, flag.lstrip("-"))
        if refused is not None:
            raise refused
        hint = closest(flag.lstrip("-"), fields)
        if hint:
            hint = hint.replace("'", "'--", 1)
        raise ConfigError(f"unrecognized argument {flag!r} for `swiftkit {cfg_cls.command}`{hint}")
    given = vars(ns)
    config_file = yaml_config_file(argv)
    positional = given.pop("config_file", None)
    if positional is not None and positional != config_file:
        raise ConfigError(
            f"unexpected argument {positional!r}: the only positional argument is a .yaml config "
            "file, given first"
        )
    yaml_values = canonical_keys(cfg_cls, yaml_values, f"key in {config_file}", extra_names=extra)
    unknown_keys = [k for k in yaml_values if k not in fields]
    if unknown_keys:
        key = unknown_keys[0]
        raise refusal(cfg_cls, key) or ConfigError(f"unknown key in {config_file} {key!r}{closest(key, fields)}")
    values = {**yaml_values, **given}
    return cfg_cls.from_flat(values, source="flag", plugin_fields=extra)


def read_yaml_values(argv: list[str]) -> dict:
    config_file = yaml_config_file(argv)
    return load_yaml_config(config_file) if config_file else {}


def host_selection(argv: list[str], yaml_values: dict) -> tuple[list[str], list[str], list[str]]:
    """(plugin files, disabled names, argv without -p): flags first, the YAML file's otherwise."""
    files, disabled, rest = plugin_selection(argv)
    files = files or coerce("--plugins", given_value(yaml_values, PluginArgs, "plugins", []), list[str])
    disabled = disabled or coerce("--disable_plugins", yaml_values.get("disable_plugins", []), list[str])
    return files, disabled, rest


def config_and_host(command: Command, argv: list[str]):
    """``(config, host)`` for a recipe command's arguments: the one plugin host of the invocation
    (``--plugins``/``-p no:NAME``/``--disable_plugins`` from the flags, else the YAML file), then
    the flags (those plugins add included) parsed into the validated config."""
    yaml_values = read_yaml_values(argv)
    files, disabled, rest = host_selection(argv, yaml_values)
    host = build_host(files, disabled)
    if disabled:
        yaml_values = {**yaml_values, "disable_plugins": disabled}
    return parse_config(command, rest, host, yaml_values), host
