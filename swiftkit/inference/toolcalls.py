"""Tool calls parsed out of a generated reply, in the OpenAI ``tool_calls`` shape.

:func:`parse_tool_calls` recognises the formats chat models commonly write:

- Hermes / Qwen: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, one block per call,
  possibly with text before, between or after them (a last block left open at the end of the
  reply counts too);
- Mistral: ``[TOOL_CALLS]`` followed by a JSON list of calls (or one call object);
- Llama 3.1: the whole reply is one JSON object ``{"name": ..., "parameters"|"arguments": {...}}``
  (or a list of them), optionally after ``<|python_tag|>``.

Only functions named in the request's ``tools`` count as calls; a block whose JSON does not parse,
or names an unknown function, stays in the content as the model wrote it.
"""

from __future__ import annotations

import json
import re
import uuid

HERMES_OPEN, HERMES_CLOSE = "<tool_call>", "</tool_call>"
MISTRAL_MARK = "[TOOL_CALLS]"
PYTHON_TAG = "<|python_tag|>"

_HERMES_BLOCK = re.compile(re.escape(HERMES_OPEN) + r"(.*?)(?:" + re.escape(HERMES_CLOSE) + r"|\Z)", re.DOTALL)


def tool_names(tools) -> set[str]:
    """The function names offered by ``tools`` (OpenAI ``{"type": "function", "function": {...}}``)."""
    names = set()
    for tool in tools or []:
        if isinstance(tool, dict):
            fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
            if isinstance(fn.get("name"), str):
                names.add(fn["name"])
    return names


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def _call(obj, names: set[str]) -> dict | None:
    """One OpenAI tool call from a parsed ``{"name", "arguments"|"parameters"}`` object, or None."""
    if not isinstance(obj, dict) or obj.get("name") not in names:
        return None
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return {"id": new_call_id(), "type": "function",
            "function": {"name": obj["name"], "arguments": json.dumps(arguments, ensure_ascii=False)}}


def _calls(value, names: set[str]) -> list[dict] | None:
    """Calls from one object or a non-empty list of them; None unless every item is a known call."""
    items = value if isinstance(value, list) else [value]
    calls = [_call(item, names) for item in items]
    return calls if calls and all(calls) else None


def _loads(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def _content(text: str) -> str | None:
    text = text.strip()
    return text or None


def _hermes(text: str, names: set[str]) -> tuple[str | None, list[dict]]:
    calls, kept, last = [], [], 0
    for match in _HERMES_BLOCK.finditer(text):
        found = _calls(_loads(match.group(1).strip()), names)
        if found is None:
            continue  # stays in the content as written
        kept.append(text[last:match.start()])
        last = match.end()
        calls.extend(found)
    kept.append(text[last:])
    return (_content("".join(kept)), calls) if calls else (text, [])


def _mistral(text: str, names: set[str]) -> tuple[str | None, list[dict]]:
    at = text.find(MISTRAL_MARK)
    rest = text[at + len(MISTRAL_MARK):]
    start = len(rest) - len(rest.lstrip())
    try:
        value, end = json.JSONDecoder().raw_decode(rest, start)
    except ValueError:
        return text, []
    calls = _calls(value, names)
    if calls is None:
        return text, []
    return _content(text[:at] + rest[end:]), calls


def _bare_json(text: str, names: set[str]) -> tuple[str | None, list[dict]]:
    body = text.strip()
    if body.startswith(PYTHON_TAG):
        body = body[len(PYTHON_TAG):].strip()
    if not body.startswith(("{", "[")):
        return text, []
    calls = _calls(_loads(body), names)
    return (None, calls) if calls else (text, [])


def parse_tool_calls(text: str, tools) -> tuple[str | None, list[dict]]:
    """``(content, calls)`` of a reply: the text outside the calls (None when nothing is left) and
    the OpenAI tool calls (``{"id", "type": "function", "function": {"name", "arguments": <JSON>}}``).

    Without a recognised call of a function in ``tools`` it is ``(text, [])``, the text unchanged.
    """
    names = tool_names(tools)
    if not names or not text:
        return text, []
    if HERMES_OPEN in text:
        return _hermes(text, names)
    if MISTRAL_MARK in text:
        return _mistral(text, names)
    return _bare_json(text, names)
