"""Other tools' flag names: aliases of swiftkit's fields, and the flags swiftkit refuses on purpose.

An alias is declared on the field itself (``aliases=("tuner_type",)`` in its metadata): the command
line, YAML files and API keyword arguments accept it, ``--help`` shows it beside the field's own
name, and the config records the field's name. A refused flag (:data:`REFUSED`) is one swiftkit
knows from ms-swift (4.x, or 3.x) or LLaMA-Factory and deliberately does not take: giving it is a
one-line error with the reason and the alternative, never "unrecognized argument". The table in
``docs/flags.md`` lists both; a test checks it against these definitions.
"""

from __future__ import annotations

import dataclasses

from swiftkit.core.errors import ConfigError

# flag name -> why swiftkit does not take it, naming what to use instead (one line).
REFUSED: dict[str, str] = {}


def field_aliases(cfg_cls) -> dict[str, str]:
    """alias -> field name, for every field of ``cfg_cls``'s groups that declares aliases."""
    out: dict[str, str] = {}
    for _gname, gcls in cfg_cls.groups():
        for f in dataclasses.fields(gcls):
            for alias in f.metadata.get("aliases", ()):
                out[alias] = f.name
    return out


def refusal(cfg_cls, key: str) -> ConfigError | None:
    """The error for a refused flag ``key`` of ``cfg_cls``'s command, or None when it is not refused."""
    reason = REFUSED.get(key)
    if reason is None:
        return None
    return ConfigError(f"--{key} is not supported by `swiftkit {cfg_cls.command}`: {reason}")


def canonical_keys(cfg_cls, values: dict, source: str) -> dict:
    """``values`` with aliases renamed to their field's name; a key given twice (alias and name) is an
    error, and so is a refused flag."""
    aliases = field_aliases(cfg_cls)
    out: dict = {}
    for key, value in values.items():
        name = aliases.get(key, key)
        if name != key and name in values:
            raise ConfigError(f"{source} {key!r} is another name of {name!r}; give only one of them")
        refused = refusal(cfg_cls, key) if name == key and key not in cfg_cls.flat_fields() else None
        if refused is not None:
            raise refused
        out[name] = value
    return out
