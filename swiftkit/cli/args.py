"""Turn a command config's dataclass fields into argparse flags, and argv (+ YAML) into a config.

Only flags the user actually gave reach the config (argparse defaults are suppressed), so a YAML
file supplies values and command-line flags override them; the dataclass defaults fill the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Literal, get_args, get_origin

from swiftkit.config import CommandConfig, ConfigError
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


def _add_flag(group, name: str, field, tp) -> None:
    tp = _unwrap_optional(tp)
    default = field.default_factory() if callable(field.default_factory) else field.default
    help_text = f"{field.metadata.get('help', '')} (default: {default!r})".replace("%", "%%")
    kw: dict[str, Any] = {"help": help_text, "default": argparse.SUPPRESS, "dest": name}
    origin = get_origin(tp)
    if tp is bool:
        kw.update(nargs="?", const=True, type=_str2bool, metavar="BOOL")
    elif origin is list:
        kw.update(nargs="+", type=get_args(tp)[0], metavar=name.upper())
    elif origin is Literal:
        kw.update(choices=list(get_args(tp)), type=str)
    else:
        kw.update(type=tp, metavar=name.upper())
    group.add_argument(f"--{name}", **kw)


def build_parser(cfg_cls: type[CommandConfig], prog: str = "swiftkit") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{prog} {cfg_cls.command}",
        description=cfg_cls.description,
        usage=f"{prog} {cfg_cls.command} [config.yaml] [--flag value ...]",
        allow_abbrev=False,
    )
    parser.add_argument(
        "config_file", nargs="?", help="Optional YAML file of flag values; flags given here override it."
    )
    hints_cache: dict = {}
    for gname, gcls in cfg_cls.groups():
        group = parser.add_argument_group(f"{gname} options")
        hints = hints_cache.setdefault(gcls, typing.get_type_hints(gcls))
        for f in dataclasses.fields(gcls):
            _add_flag(group, f.name, f, hints[f.name])
    return parser


def parse_config(cfg_cls: type[CommandConfig], argv: list[str]) -> CommandConfig:
    """argv (after the command name) -> a validated config; unknown flags name the closest one."""
    parser = build_parser(cfg_cls)
    ns, unknown = parser.parse_known_args(argv)
    fields = cfg_cls.flat_fields()
    if unknown:
        bad = next((u for u in unknown if u.startswith("-")), unknown[0])
        flag = bad.split("=", 1)[0]
        hint = closest(flag.lstrip("-"), fields)
        if hint:
            hint = hint.replace("'", "'--", 1)
        raise ConfigError(f"unrecognized argument {flag!r} for `swiftkit {cfg_cls.command}`{hint}")
    given = vars(ns)
    values: dict[str, Any] = {}
    config_file = given.pop("config_file", None)
    if config_file:
        if not config_file.endswith((".yaml", ".yml")):
            raise ConfigError(
                f"unexpected argument {config_file!r}: the only positional argument is a .yaml config file"
            )
        values.update(load_yaml_config(config_file))
        source = f"key in {config_file}"
        unknown_keys = [k for k in values if k not in fields]
        if unknown_keys:
            key = unknown_keys[0]
            raise ConfigError(f"unknown {source} {key!r}{closest(key, fields)}")
    values.update(given)
    return cfg_cls.from_flat(values, source="flag")
