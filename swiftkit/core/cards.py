"""Reading and schema-checking the YAML cards of the model, dataset and template registries.

Every registry describes its entries in YAML files and wants the same thing from them: an error
that names the file (and line) when the YAML is broken or unreadable, and one that names the file
and key for an unknown key (with the closest allowed name), a missing required key or a value of
the wrong type. Each registry raises its own error class and may reword a message through
``messages``. No torch / transformers imports, and yaml only when a file is read: the plugin
manager imports the registries at CLI start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from swiftkit.core.registry import closest

# Message formats; a caller's ``messages`` replaces any of them by key.
MESSAGES = {
    # read_yaml: path, at (" (line L, column C)" or ""), problem, what, error
    "yaml": "{path}: not valid YAML{at}: {problem}",
    "read": "{path}: cannot read {what}: {error}",
    # check_mapping: where, key, hint, allowed, expected, got, value
    "mapping": "{where}: expected a mapping with keys {allowed}, got {got}",
    "unknown": "{where}: unknown key {key!r}{hint}; allowed: {allowed}",
    "missing": "{where}: missing required key {key!r}",
    "type": "{where}: key {key!r} must be {expected}, got {got}",
}
_TYPE_TEXT = {
    str: "a string",
    list: "a list",
    dict: "a mapping",
    bool: "true or false",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


def _message(kind: str, messages: Mapping[str, str] | None, **fields: Any) -> str:
    return ((messages or {}).get(kind) or MESSAGES[kind]).format(**fields)


def read_yaml(
    path: str | Path, error_cls: type[Exception], what: str, messages: Mapping[str, str] | None = None
) -> Any:
    """The parsed content of the YAML file ``path``; ``error_cls`` naming the file when it is not
    valid YAML (with line and column) or cannot be read (``what`` says what the file is)."""
    import yaml  # defers yaml

    path = Path(path)
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser, ~5x faster, when built
        return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        parts = [getattr(exc, "problem", None), getattr(exc, "context", None)]
        problem = " ".join(" ".join(p for p in parts if p).split()) or " ".join(str(exc).split())
        raise error_cls(_message("yaml", messages, path=path, at=at, problem=problem, what=what)) from exc
    except OSError as exc:
        raise error_cls(_message("read", messages, path=path, what=what, error=exc)) from exc


def _types_of(spec: tuple) -> tuple[type, ...]:
    return spec[0] if isinstance(spec[0], tuple) else (spec[0],)


def type_text(spec: tuple) -> str:
    """How an error names the accepted types of a schema entry (its optional third item, if any)."""
    if len(spec) > 2:
        return spec[2]
    return " or ".join(_TYPE_TEXT.get(t, t.__name__) for t in _types_of(spec))


def check_mapping(
    data: Any,
    schema: Mapping[str, tuple],
    where: str,
    error_cls: type[Exception],
    messages: Mapping[str, str] | None = None,
) -> None:
    """Check ``data`` against ``schema``; the first problem raises ``error_cls`` naming ``where``.

    ``schema`` maps each allowed key to ``(type or tuple of types, required)``, optionally with a
    third item: the text naming the accepted value in errors (default: from the types). Checked in
    this order: ``data`` is a mapping, no unknown key, no missing required key, every value's type.
    """
    allowed = ", ".join(schema)
    if not isinstance(data, dict):
        raise error_cls(
            _message("mapping", messages, where=where, allowed=allowed, got=type(data).__name__)
        )
    for key in data:
        if key not in schema:
            hint = closest(str(key), schema)
            raise error_cls(
                _message("unknown", messages, where=where, key=key, hint=hint, allowed=allowed)
            )
    for key, spec in schema.items():
        if key not in data:
            if spec[1]:
                raise error_cls(_message("missing", messages, where=where, key=key))
            continue
        value = data[key]
        if not isinstance(value, _types_of(spec)):
            text = _message(
                "type", messages, where=where, key=key, expected=type_text(spec),
                got=type(value).__name__, value=value,
            )
            raise error_cls(text)


def markdown_cell(text: Any) -> str:
    """``text`` safe inside a Markdown table cell (generated registry pages)."""
    return str(text or "").replace("|", "\\|").replace("\n", " ")
