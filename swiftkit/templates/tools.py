"""Tool calling in conversations: check OpenAI-style tool data and shape it for the chat template.

A row may carry ``tools`` (a list of function schemas, handed to the chat template as its ``tools``
variable), assistant messages with ``tool_calls`` (``[{"type": "function", "function": {"name",
"arguments"}}]``) and ``tool`` messages with the results. ``arguments`` may be a dict or a JSON string;
both are decoded to one dict and then given to the template in the form it renders correctly, found
by rendering a probe call both ways (:func:`arguments_form`). So a call written either way gives the
same token ids. Nothing here knows a model's format.
"""

from __future__ import annotations

import json

from swiftkit.templates.errors import TemplateError

MAPPING, STRING = "mapping", "string"

_PROBE_ARGUMENTS = {"probe_argument": "probe value"}


def check_tools(tools, where: str) -> list[dict] | None:
    """``tools`` as given, or None for no tools (None or an empty list); a list of objects is required."""
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise TemplateError(
            f"{where}'tools' must be a list of tool schemas (objects), got {type(tools).__name__}"
        )
    for n, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise TemplateError(
                f"{where}'tools' item {n} must be an object (a function schema), got {type(tool).__name__}"
            )
    return tools or None


def decode_tool_calls(calls, where: str) -> list[dict]:
    """Checked copies of ``calls`` with ``arguments`` decoded to a dict; ``where`` names the message."""
    if not isinstance(calls, list):
        raise TemplateError(f"{where}: 'tool_calls' must be a list of calls, got {type(calls).__name__}")
    decoded = []
    for n, call in enumerate(calls):
        at = f"{where}: tool call {n}"
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            raise TemplateError(
                f'{at} must look like {{"type": "function", "function": {{"name": ..., '
                f'"arguments": ...}}}}, got {call!r}'
            )
        function = call["function"]
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise TemplateError(f"{at} has no function name ('function.name' must be a non-empty string)")
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                raise TemplateError(
                    f"{at} ({name}): 'arguments' is not valid JSON ({exc}): {arguments!r}"
                ) from exc
        if not isinstance(arguments, dict):
            raise TemplateError(
                f"{at} ({name}): 'arguments' must be a JSON object (dict or JSON string of one), "
                f"got {type(arguments).__name__}"
            )
        decoded.append({**call, "function": {**function, "arguments": arguments}})
    return decoded


def with_arguments_form(calls: list[dict], form: str) -> list[dict]:
    """``calls`` (arguments decoded) with arguments as dicts (``mapping``) or JSON strings (``string``)."""
    if form == MAPPING:
        return calls
    return [
        {**call, "function": {**call["function"],
                              "arguments": json.dumps(call["function"]["arguments"], ensure_ascii=False)}}
        for call in calls
    ]


def arguments_form(render) -> str:
    """How the chat template wants ``arguments``: ``mapping`` (a dict, the default) or ``string``.

    ``render(messages)`` renders a conversation. A probe call is rendered with its arguments as a
    dict and as a JSON string. ``string`` is chosen only when the dict fails to render or shows up as
    a Python repr (the template concatenates arguments as text); otherwise the template serialises
    them itself (``arguments | tojson``, as most templates do, which would double-encode a string).
    """
    def attempt(arguments):
        call = {"type": "function", "function": {"name": "probe_function", "arguments": arguments}}
        probe = [{"role": "user", "content": "Hi"},
                 {"role": "assistant", "content": "", "tool_calls": [call]}]
        try:
            return render(probe)
        except Exception:  # noqa: BLE001 - a template that cannot take this form at all
            return None

    as_mapping = attempt(dict(_PROBE_ARGUMENTS))
    as_string = attempt(json.dumps(_PROBE_ARGUMENTS))
    if as_string is None:
        return MAPPING
    if as_mapping is None or "'probe_argument'" in as_mapping:
        return STRING
    return MAPPING


def check_template_uses_tools(render, msgs: list[dict], tools, text: str, where: str,
                              shift: int = 0) -> None:
    """Raise when the template drops the row's ``tools`` or ``tool_calls`` from its rendering ``text``.

    ``render(messages, tools)`` renders the conversation the way ``text`` was rendered. A template
    that ignores them would train (or prompt) the model without the tool text, silently. ``shift``
    is how many messages were inserted before the row's own (the system prompt), for error indices.
    """
    if tools is not None and render(msgs, None) == text:
        raise TemplateError(
            f"{where}the row has 'tools' but the chat template cannot express tools (it renders the "
            "conversation the same with and without them); pick a tool-capable template: a model "
            "whose chat template renders 'tools', or --template NAME with one that does"
        )
    calling = [k for k, m in enumerate(msgs) if m.get("tool_calls")]
    if calling:
        plain = [{key: v for key, v in m.items() if key != "tool_calls"} for m in msgs]
        if render(plain, tools) == text:
            raise TemplateError(
                f"{where}message {calling[0] - shift} has 'tool_calls' but the chat template cannot express "
                "tool calls (it renders the conversation the same without them); pick a "
                "tool-capable template: a model whose chat template renders 'tool_calls', or "
                "--template NAME with one that does"
            )
