"""Config values from YAML files and Python API arguments, checked against the fields' types.

The command line gets its values typed by argparse; a YAML file or a keyword argument can hold
anything (a list where a number is expected, a nested mapping, ``null``). :func:`coerce` turns a
value into the field's type the way the command line would read its text (``"8"`` is 8, ``"1e-4"``
is 0.0001, ``"yes"`` is true) and otherwise raises a one-line :class:`ConfigError` naming the
flag, the value and the expected type. Numbers must be finite.
"""

from __future__ import annotations

import contextlib
import json
import math
import reprlib
import typing
from typing import Any, Literal

from swiftkit.core.errors import ConfigError
from swiftkit.core.registry import closest

TRUE_WORDS = ("1", "true", "yes", "y", "on")
FALSE_WORDS = ("0", "false", "no", "n", "off")

_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict = 2, 60, 60, 4, 4


def shown(value: Any) -> str:
    """A value as the user wrote it, short (nested or long values are cut, never walked whole)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return _SHORT.repr(value)


def expected(tp) -> str:
    """What a field of type ``tp`` takes, in words."""
    optional, tp = _optional(tp)
    origin = typing.get_origin(tp)
    if origin is Literal:
        text = "one of " + ", ".join(map(str, typing.get_args(tp)))
    elif origin is list:
        item = typing.get_args(tp)[0]
        text = f"{_one(item)} or a list of {_PLURALS.get(item, 'them')}"
    else:
        text = _one(tp)
    return f"{text} or null" if optional else text


_SINGULARS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_PLURALS = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}


def _one(tp) -> str:
    return _SINGULARS.get(tp, getattr(tp, "__name__", str(tp)))


def _optional(tp) -> tuple[bool, Any]:
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return True, args[0]
    return False, tp


def _wrong(flag: str, value: Any, tp, hint: str = "") -> ConfigError:
    return ConfigError(f"{flag} must be {expected(tp)}, got {shown(value)}{hint}")


def coerce(flag: str, value: Any, tp, *, json_object: bool = False) -> Any:
    """``value`` as type ``tp`` (``bool``, ``int``, ``float``, ``str``, ``Optional``, ``Literal``,
    ``list[...]``); ``flag`` names the value in errors (``--lora_rank``). With ``json_object`` a
    ``str`` field also takes a mapping, stored as its JSON text (``--columns`` in YAML)."""
    optional, inner = _optional(tp)
    if value is None:
        if optional:
            return None
        raise _wrong(flag, value, tp)
    origin = typing.get_origin(inner)
    if origin is list:
        item = typing.get_args(inner)[0]
        if isinstance(value, (list, tuple)):
            return [_scalar(f"{flag}[{i}]", v, item, item) for i, v in enumerate(value)]
        if isinstance(value, dict):
            raise _wrong(flag, value, tp)
        return [_scalar(flag, value, item, tp)]
    if json_object and inner is str and isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return _scalar(flag, value, inner, tp)


def _scalar(flag: str, value: Any, tp, shown_tp) -> Any:
    """One value of a scalar type; ``shown_tp`` is the type errors name (the list, for list items)."""
    if typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, str) and value in choices:
            return value
        hint = closest(value, [str(c) for c in choices]) if isinstance(value, str) else ""
        raise _wrong(flag, value, shown_tp, hint)
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower() if isinstance(value, (str, int)) else None
        if text in TRUE_WORDS:
            return True
        if text in FALSE_WORDS:
            return False
        raise _wrong(flag, value, shown_tp)
    if tp is int:
        return _integer(flag, value, shown_tp)
    if tp is float:
        return _number(flag, value, shown_tp)
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. YAML `output_dir: 2024`
        hint = " (quote it in YAML: yes/no/on/off are read as true/false)" if isinstance(value, bool) else ""
        raise _wrong(flag, value, shown_tp, hint)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise _wrong(flag, value, shown_tp)
    return value


def _integer(flag: str, value: Any, shown_tp) -> int:
    if isinstance(value, bool):
        raise _wrong(flag, value, shown_tp)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value.strip())
    raise _wrong(flag, value, shown_tp)


def _number(flag: str, value: Any, shown_tp) -> float:
    if isinstance(value, bool):
        raise _wrong(flag, value, shown_tp)
    number = None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an int too large for a float
            number = math.inf
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value.strip())  # YAML reads 1e-4 (no dot) as a string
    if number is None:
        raise _wrong(flag, value, shown_tp)
    if not math.isfinite(number):
        raise ConfigError(f"{flag} must be a finite number, got {shown(value)}")
    return number
