"""Detect each raw row's format and convert it to the canonical row shape.

Canonical rows are ``{"messages": [{"role", "content"[, "loss"]}, ...], "_origin": ...}`` for
supervised data, or ``{"text": ..., "_origin": ...}`` for pretraining (``text_only``).

Row formats, detected per row by their keys:

* ``messages``: a list of ``{"role", "content"[, "loss"]}`` (OpenAI / ms-swift), optional
  top-level ``system`` (used when the messages have no system message);
* ``conversations``: a list of ``{"from", "value"}`` (ShareGPT), optional top-level ``system``;
* ``instruction`` + ``output`` (+ ``input``, ``system``, ``history``) (Alpaca);
* ``query`` + ``response`` (+ ``system``, ``history`` as ``[[query, response], ...]``);
* ``text`` (or ``content``): raw text, for pretraining only.
"""

from __future__ import annotations

import json

from swiftkit.data.errors import DatasetError

ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "function_call": "assistant",
    "system": "system",
    "tool": "tool", "function": "tool", "observation": "tool",
}
_FORMATS = "'messages', 'conversations' (ShareGPT), 'instruction'+'output' (Alpaca), 'query'+'response'"


def _keys(row: dict) -> list[str]:
    return sorted(k for k in row if k != "_origin")


def _where(row: dict) -> str:
    return row.get("_origin", "?")


def _fail(row: dict, what: str) -> DatasetError:
    return DatasetError(f"{_where(row)}: {what}")


def rename_columns(row: dict, columns: dict[str, str]) -> dict:
    """Apply a registry entry's ``columns`` mapping (source -> canonical name)."""
    if not columns:
        return row
    return {columns.get(k, k): v for k, v in row.items()}


def _json_field(row: dict, key: str):
    """A list-valued field; CSV/parquet files may hold it as a JSON string."""
    value = row.get(key)
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise _fail(row, f"{key!r} holds invalid JSON: {exc.msg} (column {exc.colno})") from exc
    return value


def _string(row: dict, key: str, *, required: bool) -> str | None:
    value = row.get(key)
    if value is None:
        if required:
            raise _fail(row, f"missing {key!r} (found keys {_keys(row)})")
        return None
    if not isinstance(value, str):
        raise _fail(row, f"{key!r} must be a string, got {type(value).__name__}")
    return value


def _history(row: dict) -> list[dict]:
    history = _json_field(row, "history")
    if history is None:
        return []
    if not isinstance(history, list):
        raise _fail(row, f"'history' must be a list of [query, response] pairs, got {type(history).__name__}")
    turns = []
    for i, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise _fail(row, f"history[{i}] must be a [query, response] pair of strings, got {pair!r:.80}")
        turns += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return turns


def _with_system(row: dict, turns: list[dict]) -> list[dict]:
    system = _string(row, "system", required=False)
    return ([{"role": "system", "content": system}] if system else []) + turns


def _from_messages(row: dict) -> list[dict]:
    messages = _json_field(row, "messages")
    if not isinstance(messages, list):
        raise _fail(row, f"'messages' must be a list of {{role, content}} objects, got {type(messages).__name__}")
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise _fail(row, f"messages[{i}] must be an object with 'role' and 'content', got {type(msg).__name__}")
        missing = [k for k in ("role", "content") if k not in msg]
        if missing:
            raise _fail(row, f"messages[{i}] is missing {missing[0]!r} (found keys {sorted(msg)})")
        item = {"role": msg["role"], "content": msg["content"]}
        if msg.get("loss") is not None:
            item["loss"] = msg["loss"]
        out.append(item)
    if out and out[0]["role"] == "system":
        return out
    return _with_system(row, out)  # a top-level 'system' applies when the messages have none


def _from_sharegpt(row: dict) -> list[dict]:
    turns = _json_field(row, "conversations")
    if not isinstance(turns, list):
        raise _fail(row, f"'conversations' must be a list of {{from, value}} objects, got {type(turns).__name__}")
    out = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise _fail(row, f"conversations[{i}] must be an object with 'from' and 'value', got {type(turn).__name__}")
        speaker = turn.get("from", turn.get("role"))
        value = turn.get("value", turn.get("content"))
        if speaker is None or ("value" not in turn and "content" not in turn):
            raise _fail(row, f"conversations[{i}] needs 'from' and 'value' (found keys {sorted(turn)})")
        if speaker not in SHAREGPT_ROLES:
            raise _fail(
                row, f"conversations[{i}]: unknown speaker {speaker!r}; expected one of {sorted(SHAREGPT_ROLES)}"
            )
        out.append({"role": SHAREGPT_ROLES[speaker], "content": value})
    return _with_system(row, out)


def _turns(row: dict, prompt: str, reply: str | None) -> list[dict]:
    turns = _history(row) + [{"role": "user", "content": prompt}]
    if reply is not None:
        turns.append({"role": "assistant", "content": reply})
    return _with_system(row, turns)


def _from_alpaca(row: dict, require_reply: bool) -> list[dict]:
    instruction = _string(row, "instruction", required=True)
    extra = _string(row, "input", required=False)
    output = _string(row, "output", required=require_reply)
    return _turns(row, f"{instruction}\n{extra}" if extra else instruction, output)


def _from_query_response(row: dict, require_reply: bool) -> list[dict]:
    query = _string(row, "query", required=True)
    return _turns(row, query, _string(row, "response", required=require_reply))


def validate_messages(messages: list[dict], row: dict, require_reply: bool = True) -> None:
    """Roles valid, contents strings, ``loss`` boolean, system first, ends on an assistant reply
    (unless ``require_reply`` is false: prompts for inference end on a user turn)."""
    if not messages:
        raise _fail(row, "the conversation is empty")
    for i, msg in enumerate(messages):
        if msg["role"] not in ROLES:
            raise _fail(row, f"messages[{i}]: invalid role {msg['role']!r}; expected one of {list(ROLES)}")
        if not isinstance(msg["content"], str):
            raise _fail(row, f"messages[{i}] ({msg['role']}): content must be a string, got {type(msg['content']).__name__}")
        if "loss" in msg and not isinstance(msg["loss"], bool):
            raise _fail(row, f"messages[{i}]: 'loss' must be true or false, got {msg['loss']!r}")
        if msg["role"] == "system" and i > 0:
            raise _fail(row, f"messages[{i}]: a system message may only come first")
    if not any(m["role"] == "user" for m in messages):
        raise _fail(row, "the conversation has no user message")
    if require_reply and messages[-1]["role"] != "assistant":
        raise _fail(
            row, f"the conversation ends with a {messages[-1]['role']} message; it must end with an "
            "assistant reply to train on"
        )


def to_messages_row(row: dict, require_reply: bool = True) -> dict:
    """A supervised row in any supported format -> ``{"messages": [...], "_origin": ...}``.

    With ``require_reply=False`` (inference prompts) a row may end on a user turn, and a
    query/instruction row may have no response/output."""
    if "messages" in row:
        messages = _from_messages(row)
    elif "conversations" in row:
        messages = _from_sharegpt(row)
    elif "instruction" in row:
        messages = _from_alpaca(row, require_reply)
    elif "query" in row:
        messages = _from_query_response(row, require_reply)
    elif "text" in row:
        raise _fail(row, "a raw 'text' row is pretraining data: train on it with `swiftkit pt`, not sft")
    else:
        raise _fail(row, f"unknown row format: found keys {_keys(row)}; expected {_FORMATS}")
    validate_messages(messages, row, require_reply)
    return {"messages": messages, "_origin": _where(row)}


def to_text_row(row: dict) -> dict:
    """A pretraining row with a ``text`` (or ``content``) string column -> ``{"text", "_origin"}``."""
    key = "text" if "text" in row else "content" if "content" in row else None
    if key is None:
        raise _fail(
            row, f"pretraining data needs a 'text' (or 'content') column; found keys {_keys(row)} "
            "(map a column to 'text' in the dataset card, or use `swiftkit sft` for conversations)"
        )
    value = row[key]
    if not isinstance(value, str):
        raise _fail(row, f"{key!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise _fail(row, f"{key!r} is empty")
    return {"text": value, "_origin": _where(row)}
