"""Form fields from a command's config, and form values back into a command line, YAML and errors.

Everything comes from the command table (:data:`swiftkit.commands.COMMANDS`): each config field
(and each field a loaded plugin adds) is one :class:`FieldSpec` with the flag's name, kind, default
and the help text ``swiftkit COMMAND --help`` prints, so a new flag appears in the UI without UI
code. Values go the other way: :func:`clean_values` turns what form widgets hold (text, numbers,
checkboxes) into typed flag values, :func:`validate` runs the config's own checks and puts each
message on the flag it names, and :func:`command_argv` / :func:`command_line` /
:func:`command_yaml` write the values as a command the CLI runs to the same config.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import typing
from dataclasses import dataclass
from typing import Any, Literal

from swiftkit.commands import COMMANDS, Command, plugin_fields
from swiftkit.config.flagnames import field_aliases, refusal
from swiftkit.config.values import coerce
from swiftkit.core.errors import ConfigError, SwiftkitError
from swiftkit.core.registry import closest

PLUGIN_GROUP = "plugin_options"  # the group of the fields plugins add (config.plugin_options)

_TRAINING = ("model", "train_type", "dataset", "val_dataset", "output_dir", "num_train_epochs", "max_steps",
             "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "max_length",
             "lora_rank", "lora_alpha", "save_steps", "logging_steps")
_EXPORT = ("model", "adapters", "output_dir", "quant_method", "quant_bits", "gguf_type", "to_ollama", "push_to_hub",
           "hub_model_id")
# The "key hyperparameters" of each command, shown open; the other flags go under Advanced.
BASIC_FLAGS: dict[str, tuple[str, ...]] = {
    "sft": _TRAINING,
    "pt": _TRAINING,
    "rlhf": ("rlhf_type", *_TRAINING, "beta", "reward_funcs", "reward_model"),
    "infer": ("model", "adapters", "template", "system", "max_new_tokens", "temperature", "top_p", "val_dataset",
              "result_path", "infer_backend"),
    "eval": ("model", "adapters", "eval_dataset", "val_dataset", "eval_limit", "compare", "eval_backend",
             "max_new_tokens", "temperature", "eval_output_dir"),
    "export": ("export_format", *_EXPORT),
    "quantize": _EXPORT,
    "deploy": ("model", "adapters", "host", "port", "served_model_name", "api_key", "infer_backend", "max_new_tokens",
               "temperature"),
    "rollout": ("model", "adapters", "infer_backend", "host", "port"),
    "data lint": ("dataset", "model", "template", "max_length", "max_problems", "pretrain", "rlhf_type"),
    "data preview": ("dataset", "model", "template", "max_length", "index", "show_tokens"),
}

_FLAG_RE = re.compile(r"--([A-Za-z_][A-Za-z0-9_]*)")
_BOOL_CHOICES = ("true", "false")


@dataclass(frozen=True)
class FieldSpec:
    """One flag of a command as a form field.

    ``kind`` is the widget it needs: ``bool`` (a checkbox), ``int``/``float`` (a number that may be
    empty when ``default`` is None), ``str``, ``choice`` (one of ``choices``; a true/false flag whose
    default is None, "decided at run time", is a choice of "true"/"false" so that leaving it empty
    keeps None), ``list`` (several values, typed as one text of space-separated, shell-quoted items)
    or ``dict`` (a JSON object, typed as its text). ``help`` is the text ``--help`` prints for it.
    """

    name: str
    group: str
    kind: str
    default: Any
    help: str
    choices: tuple | None = None
    aliases: tuple = ()
    basic: bool = False
    item_kind: str | None = None  # the kind of a list's items: str, int, float or bool
    plugin: str = ""  # the plugin that adds the flag ("" for built-in flags)


def command(command_name: str) -> Command:
    """The recipe command ``command_name`` of the command table (a ValueError for others)."""
    cmd = COMMANDS.get(command_name)
    if cmd is None or cmd.config is None:
        recipes = [name for name, c in COMMANDS.items() if c.config is not None]
        raise ValueError(f"{command_name!r} is not a command with flags; one of: {', '.join(recipes)}")
    return cmd


def field_default(f) -> Any:
    """A dataclass field's default value (a fresh one for a list)."""
    return f.default_factory() if callable(f.default_factory) else f.default


def _unwrap(tp) -> tuple[bool, Any]:
    """``(optional, inner type)`` of ``Optional[X]``."""
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return True, args[0]
    return False, tp


def _scalar_kind(tp) -> str:
    return {bool: "bool", int: "int", float: "float"}.get(tp, "str")


def _kind(tp, default, json_object: bool) -> tuple[str, tuple | None, str | None]:
    """``(kind, choices, item kind)`` of a field of type ``tp``."""
    _, inner = _unwrap(tp)
    origin = typing.get_origin(inner)
    if origin is list:
        return "list", None, _scalar_kind(typing.get_args(inner)[0])
    if origin is Literal:
        return "choice", tuple(str(c) for c in typing.get_args(inner)), None
    if inner is bool and default is None:
        return "choice", _BOOL_CHOICES, None
    if inner is str and json_object:
        return "dict", None, None
    return _scalar_kind(inner), None, None


def cli_help(text: str, default: Any) -> str:
    """A flag's help as ``swiftkit COMMAND --help`` prints it (swiftkit.cli.args adds the default)."""
    return f"{text} (default: {default!r})"


def field_specs(command_name: str, host=None) -> list[FieldSpec]:
    """Every flag of ``command_name`` in ``--help`` order, with the fields ``host``'s plugins add last."""
    cmd = command(command_name)
    basic = set(BASIC_FLAGS.get(command_name, ()))
    specs = []
    for name, (group, f, tp) in cmd.config.flat_fields().items():
        default = field_default(f)
        kind, choices, item = _kind(tp, default, f.metadata.get("json_object", False))
        specs.append(FieldSpec(name, group, kind, default, cli_help(f.metadata.get("help", ""), default), choices,
                               tuple(f.metadata.get("aliases", ())), name in basic, item))
    for f in _plugin_fields(cmd, host).values():
        kind = "choice" if f.choices else _scalar_kind(f.type)
        specs.append(FieldSpec(f.name, PLUGIN_GROUP, kind, f.default, cli_help(f"{f.help} [plugin {f.plugin}]",
                                                                                  f.default),
                               tuple(str(c) for c in f.choices) or None, (), f.name in basic, None, f.plugin))
    return specs


def _plugin_fields(cmd: Command, host) -> dict:
    return plugin_fields(host, cmd) if host is not None else {}


# -- values ----------------------------------------------------------------------------------------


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (
        isinstance(value, (list, tuple, dict)) and not value)


def _plain(value: Any) -> Any:
    """Paths as their text (also in a list)."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
    return value


def _split_items(text: str) -> list[str]:
    """A list typed as text: space- (or newline-) separated items, quoted as in a shell."""
    try:
        return shlex.split(text)
    except ValueError:  # an unclosed quote: split on blanks, the config check reports what is wrong
        return text.split()


def _canonical(cmd: Command, key: str) -> str:
    return field_aliases(cmd.config).get(key, key)


def _coerced(cmd: Command, name: str, value: Any, extra: dict) -> Any:
    """``value`` as flag ``name`` takes it; a value it cannot take is kept as given (validate reports it)."""
    fields = cmd.config.flat_fields()
    try:
        if name in fields:
            _, f, tp = fields[name]
            _, inner = _unwrap(tp)
            if typing.get_origin(inner) is list and isinstance(value, str):
                value = _split_items(value)
            if f.metadata.get("json_object") and isinstance(value, dict):
                return json.dumps(value, ensure_ascii=False)
            if inner is int and isinstance(value, str) and _is_number(value):
                value = float(value)  # "16.0" from a number box; coerce takes integral floats
            return coerce(f"--{name}", value, tp)
        if name in extra:
            return extra[name].coerce(value, "flag")
    except SwiftkitError:
        pass
    return value


def _default_of(cmd: Command, name: str, extra: dict) -> Any:
    fields = cmd.config.flat_fields()
    if name in fields:
        return field_default(fields[name][1])
    if name in extra:
        return extra[name].default
    return None


def clean_values(command_name: str, raw: dict[str, Any], host=None) -> dict[str, Any]:
    """The flag values a form gives: empty ones (None, blank text, an empty list) and those equal to
    the flag's default dropped, aliases renamed to the flag's name, text typed as the flag's kind
    ("8" -> 8, "true" -> True, "a.jsonl b.jsonl" -> a list, a mapping -> its JSON text). A value the
    flag cannot take is kept as it is, for :func:`validate` to report. Keys that are no flag are
    kept too (:func:`validate` names them). Cleaning cleaned values changes nothing."""
    cmd = command(command_name)
    extra = _plugin_fields(cmd, host)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if _empty(value):
            continue
        name = _canonical(cmd, key)
        value = _coerced(cmd, name, _plain(value), extra)
        if _empty(value):
            continue
        default = _default_of(cmd, name, extra)
        if value == default and isinstance(value, bool) == isinstance(default, bool):
            continue
        out[name] = value
    return out


def flag_of(message: str, names) -> str:
    """The flag an error message is about: the first ``--flag`` in it that is one of ``names``
    (aliases count as their flag), or "" when it names none."""
    for match in _FLAG_RE.finditer(message):
        name = match.group(1)
        if name in names:
            return names[name] if isinstance(names, dict) else name
    return ""


def validate(command_name: str, values: dict[str, Any], host=None) -> dict[str, str]:
    """``{}`` when the values make a valid config, else ``{flag: message}`` from the config's own
    checks (``from_flat``), each message under the flag it names ("" when it names no flag).

    One check stops at the first problem; the flag it names is then left out and the config built
    again, so every flag with a problem of its own gets its message (a rule that involves a missing
    flag, such as "needs --model", ends the search)."""
    cmd = command(command_name)
    extra = _plugin_fields(cmd, host)
    names = {name: name for name in (*cmd.config.flat_fields(), *extra)}
    names.update(field_aliases(cmd.config))
    errors: dict[str, str] = {}
    for key in values:
        name = names.get(key, key)
        if name != key and name in values:  # a flag under its name and an alias
            errors[name] = f"--{key} is another name of --{name}; give only one of them"
    values = clean_values(command_name, values, host)
    for key in [k for k in values if k not in names]:
        refused = refusal(cmd.config, key)
        errors[key] = str(refused) if refused is not None else \
            f"unknown flag --{key} for `swiftkit {command_name}`{closest(key, [*cmd.config.flat_fields(), *extra])}"
        del values[key]
    while True:
        try:
            cmd.config.from_flat(values, source="flag", plugin_fields=extra)
            return errors
        except SwiftkitError as exc:
            message = str(exc)
            flag = flag_of(message, names)
            errors.setdefault(flag, message)
            if not flag or flag not in values:
                return errors
            del values[flag]


# -- the command --------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _ordered(cmd: Command, values: dict, extra: dict) -> list[tuple[str, Any]]:
    """The values in ``--help`` order (flags plugins add, then unknown keys, last)."""
    order = {name: i for i, name in enumerate((*cmd.config.flat_fields(), *extra))}
    return sorted(values.items(), key=lambda kv: order.get(kv[0], len(order)))


def command_argv(command_name: str, values: dict[str, Any], host=None) -> list[str]:
    """``["swiftkit", "sft", "--model", "m", ...]``: the command that runs with ``values`` (cleaned
    first, see :func:`clean_values`). A list's items follow its flag; a true/false flag takes
    ``true``/``false``. A ConfigError names a value a command line cannot hold (a list item that
    starts with "-"); :func:`command_yaml` can."""
    cmd = command(command_name)
    extra = _plugin_fields(cmd, host)
    argv = ["swiftkit", *command_name.split()]
    for name, value in _ordered(cmd, clean_values(command_name, values, host), extra):
        if isinstance(value, (list, tuple)):
            items = [_text(v) for v in value]
            if len(items) == 1 and items[0].startswith("-"):
                argv.append(f"--{name}={items[0]}")
                continue
            dashed = [item for item in items if item.startswith("-") and not _is_number(item)]
            if dashed:
                raise ConfigError(f"--{name}: the item {dashed[0]!r} starts with '-', so a command line would read "
                                  "it as a flag; give it in a YAML config")
            argv += [f"--{name}", *items]
        else:
            text = _text(value)
            argv += [f"--{name}={text}"] if text.startswith("-") else [f"--{name}", text]
    return argv


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def command_line(command_name: str, values: dict[str, Any], host=None) -> str:
    """:func:`command_argv` as one shell line, quoted where needed (copy, paste, run)."""
    return shlex.join(command_argv(command_name, values, host))


def command_yaml(command_name: str, values: dict[str, Any], host=None) -> str:
    """The values (cleaned) as a YAML config file the CLI reads: ``swiftkit COMMAND FILE.yaml``.
    A JSON-object flag (``--columns``) is written as a mapping when that reads back to the same
    text, as its JSON text otherwise."""
    import yaml  # defers yaml

    cmd = command(command_name)
    extra = _plugin_fields(cmd, host)
    fields = cmd.config.flat_fields()
    data = {}
    for name, value in _ordered(cmd, clean_values(command_name, values, host), extra):
        if name in fields and fields[name][1].metadata.get("json_object") and isinstance(value, str):
            value = _mapping_if_same(value)
        data[name] = list(value) if isinstance(value, tuple) else value
    body = yaml.safe_dump(data, allow_unicode=True, sort_keys=False, default_flow_style=None, width=1000) \
        if data else "{}\n"
    return f"# swiftkit {command_name} config: run it with `swiftkit {command_name} THIS_FILE.yaml`\n{body}"


def _mapping_if_same(text: str) -> Any:
    """A JSON object's text as a mapping when swiftkit would store that mapping as the same text."""
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return text
    if isinstance(parsed, dict) and json.dumps(parsed, ensure_ascii=False) == text:
        return parsed
    return text
