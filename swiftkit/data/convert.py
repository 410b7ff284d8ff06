"""Detect each raw row's format and convert it to the canonical row shape, or say what is wrong.

Canonical supervised rows are ``{"messages": [...], "_origin": ...}`` plus, when the data has
them, ``images`` (one ref per ``<image>`` tag in the messages; :mod:`swiftkit.data.media`), ``tools``
(OpenAI function schemas), ``rejected_response`` (preference), ``label`` (KTO) and ``solution`` (a
reference answer for reward functions). Pretraining rows are
``{"text": ..., "_origin": ...}`` (``to_text_row``).

Row formats, detected per row by their keys (first match wins):

* ``chosen`` + ``rejected`` (preference pairs): strings with a ``prompt`` (or a query /
  instruction / messages prompt), message lists (full conversations sharing a prompt, or replies
  after ``prompt``), or ``Human:`` / ``Assistant:`` transcripts;
* ``messages``: OpenAI messages ``{"role", "content"[, "loss", "tool_calls", "tool_call_id", "name"]}``,
  optional top-level ``system`` and ``tools``;
* ``conversations``: ShareGPT ``{"from", "value"}`` turns (``function_call`` turns holding a
  JSON ``{"name", "arguments"}`` become tool calls; ``observation`` turns are tool results);
* ``instruction`` + ``output`` (+ ``input``, ``system``, ``history``): Alpaca;
* ``query`` + ``response`` (+ ``system``, ``history`` as ``[[query, response], ...]``);
* ``prompt`` + ``completion`` (or ``response``; a string or assistant messages) (+ ``label`` for KTO);
* ``text`` (or ``content``): raw text, for pretraining only.

Any supervised format may carry an ``images`` column, and message lists may give OpenAI content parts
(text and images); :mod:`swiftkit.data.media` says what is accepted and checked. ``videos`` and
``audios`` are refused.

Every problem is a :class:`RowError` carrying the row's origin (``file:line``), the problem and a
short ``kind`` used to count problems in lint reports.
"""

from __future__ import annotations

import json

from swiftkit.data.errors import RowError
from swiftkit.data.limits import DEFAULT_MAX_ROW_BYTES, MAX_ROW_DEPTH, nesting_depth, row_bytes, too_big, too_deep
from swiftkit.data.media import (
    MEDIA_KINDS,
    column_audios,
    column_images,
    column_videos,
    flatten_parts,
    gather_media,
    is_content_parts,
    part_key,
)
from swiftkit.data.readers import TOO_DEEP_TO_PARSE, UNREADABLE, UNREADABLE_KIND, source_folder

ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "function_call": "assistant",
    "system": "system",
    "tool": "tool", "function": "tool", "observation": "tool",
}
MESSAGE_KEYS = ("role", "content", "loss", "tool_calls", "tool_call_id", "name")
_FORMATS = ("'messages', 'conversations' (ShareGPT), 'instruction'+'output' (Alpaca), 'query'+'response', "
            "'prompt'+'completion', 'chosen'+'rejected' (preference)")
_TRANSCRIPT_SPEAKERS = {"Human": "user", "Assistant": "assistant"}


def _keys(row: dict) -> list[str]:
    return sorted(k for k in row if k != "_origin")


def _where(row: dict) -> str:
    return row.get("_origin", "?")


def _fail(row: dict, what: str, kind: str) -> RowError:
    return RowError(_where(row), what, kind)


def rename_columns(row: dict, columns: dict) -> dict:
    """Apply a ``columns`` mapping (source -> canonical name, or None to drop the column); a mapped
    column replaces any column that already had the canonical name."""
    if not columns:
        return row
    targets = {dst for dst in columns.values() if dst is not None}
    renamed = {k: v for k, v in row.items() if k not in columns and k not in targets}
    for src, dst in columns.items():
        if dst is not None and src in row:
            renamed[dst] = row[src]
    for dst in targets:  # a target whose source column is absent keeps its own value
        if dst not in renamed and dst in row and dst not in columns:
            renamed[dst] = row[dst]
    return renamed


def _json_field(row: dict, key: str):
    """A list/object-valued field; CSV/parquet files may hold it as a JSON string."""
    value = row.get(key)
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _fail(row, f"{key!r} holds invalid JSON: {exc.msg} (column {exc.colno})", "invalid_json") from exc
        except RecursionError as exc:  # the standard parser recurses once per nesting level
            raise _fail(row, f"{key!r} holds JSON {TOO_DEEP_TO_PARSE}", "too_deep") from exc
        if nesting_depth(parsed) > MAX_ROW_DEPTH - 1:
            raise _fail(row, f"{key!r} holds JSON nested more than {MAX_ROW_DEPTH} levels deep", "too_deep")
        return parsed
    return value


def _string(row: dict, key: str, *, required: bool) -> str | None:
    value = row.get(key)
    if value is None:
        if required:
            raise _fail(row, f"missing {key!r} (found keys {_keys(row)})", "missing_field")
        return None
    if not isinstance(value, str):
        raise _fail(row, f"{key!r} must be a string, got {type(value).__name__}", "wrong_type")
    return value


def _history(row: dict) -> list[dict]:
    history = _json_field(row, "history")
    if history is None:
        return []
    if not isinstance(history, list):
        raise _fail(row, f"'history' must be a list of [query, response] pairs, got {type(history).__name__}",
                    "wrong_type")
    turns = []
    for i, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise _fail(row, f"history[{i}] must be a [query, response] pair of strings, got {pair!r:.80}",
                        "wrong_type")
        turns += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return turns


def _with_system(row: dict, turns: list[dict]) -> list[dict]:
    if turns and turns[0]["role"] == "system":
        return turns  # a top-level 'system' applies only when the conversation has none
    system = _string(row, "system", required=False)
    return ([{"role": "system", "content": system}] if system else []) + turns


def _message_list(row: dict, messages, key: str) -> list[dict]:
    if not isinstance(messages, list):
        raise _fail(row, f"{key!r} must be a list of {{role, content}} objects, got {type(messages).__name__}",
                    "wrong_type")
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise _fail(row, f"{key}[{i}] must be an object with 'role' and 'content', got {type(msg).__name__}",
                        "wrong_type")
        if "role" not in msg:
            raise _fail(row, f"{key}[{i}] is missing 'role' (found keys {sorted(msg)})", "missing_role")
        if "content" not in msg and not msg.get("tool_calls"):
            raise _fail(row, f"{key}[{i}] is missing 'content' (found keys {sorted(msg)})", "missing_field")
        item = {k: msg[k] for k in MESSAGE_KEYS if msg.get(k) is not None}
        item.setdefault("content", "")
        if is_content_parts(item["content"]):  # OpenAI content parts: text, images, videos and audio
            item["content"], media = flatten_parts(item["content"], _where(row), f"{key}[{i}]", source_folder(row))
            for kind, (_, media_key) in MEDIA_KINDS.items():
                if media[media_key]:
                    item[part_key(kind)] = media[media_key]
        out.append(item)
    return out


def _from_messages(row: dict) -> list[dict]:
    return _with_system(row, _message_list(row, _json_field(row, "messages"), "messages"))


def _sharegpt_turn(row: dict, i: int, turn) -> dict:
    if not isinstance(turn, dict):
        raise _fail(row, f"conversations[{i}] must be an object with 'from' and 'value', got {type(turn).__name__}",
                    "wrong_type")
    speaker = turn.get("from", turn.get("role"))
    if speaker is None or ("value" not in turn and "content" not in turn):
        raise _fail(row, f"conversations[{i}] needs 'from' and 'value' (found keys {sorted(turn)})",
                    "missing_field")
    if speaker not in SHAREGPT_ROLES:
        raise _fail(row, f"conversations[{i}]: unknown speaker {speaker!r}; expected one of "
                    f"{sorted(SHAREGPT_ROLES)}", "invalid_role")
    value = turn.get("value", turn.get("content"))
    if speaker == "function_call" and isinstance(value, str):
        try:
            call = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            call = None
        if isinstance(call, dict) and isinstance(call.get("name"), str):
            function = {"name": call["name"], "arguments": call.get("arguments", {})}
            return {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": function}]}
    return {"role": SHAREGPT_ROLES[speaker], "content": value}


def _from_sharegpt(row: dict) -> list[dict]:
    turns = _json_field(row, "conversations")
    if not isinstance(turns, list):
        raise _fail(row, f"'conversations' must be a list of {{from, value}} objects, got {type(turns).__name__}",
                    "wrong_type")
    return _with_system(row, [_sharegpt_turn(row, i, t) for i, t in enumerate(turns)])


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


def _prompt_messages(row: dict) -> list[dict] | None:
    """The prompt of a preference / KTO row, or None when the row states none."""
    if "prompt" in row:
        prompt = _json_field(row, "prompt")
        if isinstance(prompt, str):
            return _turns(row, prompt, None)
        return _with_system(row, _message_list(row, prompt, "prompt"))
    for key, convert in (("messages", _from_messages), ("conversations", _from_sharegpt)):
        if key in row:
            return convert(row)
    if "instruction" in row:
        return _from_alpaca(row, require_reply=False)
    if "query" in row:
        return _from_query_response(row, require_reply=False)
    return None


def _parse_transcript(text: str) -> list[dict] | None:
    """``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` -> messages; None when ``text`` is not one."""
    turns: list[dict] = []
    for block in text.split("\n\n"):
        speaker, sep, content = block.partition(":")
        if sep and speaker in _TRANSCRIPT_SPEAKERS:
            turns.append({"role": _TRANSCRIPT_SPEAKERS[speaker], "content": content.strip()})
        elif turns:
            turns[-1]["content"] = f"{turns[-1]['content']}\n\n{block}".strip()
        elif block.strip():
            return None
    return turns or None


def _split_reply(row: dict, conversation: list[dict], key: str) -> tuple[list[dict], dict]:
    if not conversation or conversation[-1]["role"] != "assistant":
        raise _fail(row, f"{key!r} must end with an assistant reply", "missing_reply")
    return conversation[:-1], conversation[-1]


def _from_preference(row: dict) -> tuple[list[dict], str]:
    """``(messages ending with the chosen reply, rejected reply)``."""
    chosen, rejected = _json_field(row, "chosen"), _json_field(row, "rejected")
    prompt = _prompt_messages(row)
    if isinstance(chosen, list) and isinstance(rejected, list):
        chosen_msgs = _message_list(row, chosen, "chosen")
        rejected_msgs = _message_list(row, rejected, "rejected")
    elif isinstance(chosen, str) and isinstance(rejected, str):
        if prompt is not None:
            chosen_msgs = [{"role": "assistant", "content": chosen}]
            rejected_msgs = [{"role": "assistant", "content": rejected}]
        else:
            chosen_msgs, rejected_msgs = _parse_transcript(chosen), _parse_transcript(rejected)
            if chosen_msgs is None or rejected_msgs is None:
                raise _fail(row, "'chosen' and 'rejected' are plain strings but the row has no prompt: add a "
                            "'prompt' (or 'query') column, or give Human:/Assistant: transcripts", "missing_field")
    else:
        raise _fail(row, f"'chosen' and 'rejected' must both be strings or both be message lists, got "
                    f"{type(chosen).__name__} and {type(rejected).__name__}", "wrong_type")
    chosen_prompt, chosen_reply = _split_reply(row, chosen_msgs, "chosen")
    rejected_prompt, rejected_reply = _split_reply(row, rejected_msgs, "rejected")
    if prompt is None or chosen_prompt:  # full conversations: the shared part is the prompt
        if chosen_prompt != rejected_prompt:
            raise _fail(row, "'chosen' and 'rejected' differ before their final reply; they must share the "
                        "prompt", "preference_mismatch")
        if prompt is not None and chosen_prompt and _strip_system(chosen_prompt) != _strip_system(prompt):
            raise _fail(row, "'prompt' differs from the conversation in 'chosen'", "preference_mismatch")
        prompt = _with_system(row, chosen_prompt) if chosen_prompt else prompt
    return prompt + [chosen_reply], rejected_reply["content"]


def _strip_system(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m["role"] != "system"]


def _completion(row: dict, require_reply: bool) -> list[dict]:
    """The reply of a prompt/completion row (``completion`` or ``response``: a string or messages)."""
    key = "completion" if "completion" in row else "response"
    value = _json_field(row, key)
    if isinstance(value, list):
        return _message_list(row, value, key)
    text = _string(row, key, required=require_reply)
    return [] if text is None else [{"role": "assistant", "content": text}]


def _label(row: dict) -> bool:
    value = row["label"]
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _fail(row, f"'label' must be true or false (or 1 / 0), got {value!r:.40}", "wrong_type")


def _tools(row: dict) -> list | None:
    tools = _json_field(row, "tools")
    if tools is None or tools == "":
        return None
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise _fail(row, "'tools' must be a list of function schemas (objects)", "wrong_type")
    return tools


def validate_messages(messages: list[dict], row: dict, require_reply: bool = True) -> list[dict]:
    """Check roles, contents, ``loss`` flags and turn order; return the messages with empty system
    messages dropped. With ``require_reply`` false (inference prompts) a conversation may end on a
    user turn."""
    messages = [m for m in messages if not (m["role"] == "system" and m["content"] in ("", None))]
    if not messages:
        raise _fail(row, "the conversation is empty", "empty_conversation")
    for i, msg in enumerate(messages):
        role, content = msg["role"], msg["content"]
        if role not in ROLES:
            raise _fail(row, f"messages[{i}]: invalid role {role!r}; expected one of {list(ROLES)}", "invalid_role")
        if not isinstance(content, str):
            raise _fail(row, f"messages[{i}] ({role}): content must be a string, got {type(content).__name__}",
                        "wrong_type")
        if "loss" in msg and not isinstance(msg["loss"], bool):
            raise _fail(row, f"messages[{i}]: 'loss' must be true or false, got {msg['loss']!r}", "wrong_type")
        if "tool_calls" in msg and (role != "assistant" or not isinstance(msg["tool_calls"], list)):
            raise _fail(row, f"messages[{i}] ({role}): 'tool_calls' must be a list on an assistant message",
                        "wrong_type")
        for call in msg.get("tool_calls") or ():
            _check_arguments_depth(row, i, call)
        if not content.strip() and not msg.get("tool_calls"):
            raise _fail(row, f"messages[{i}] ({role}): empty content", "empty_content")
        _check_order(row, messages, i)
    if require_reply and messages[-1]["role"] != "assistant":
        raise _fail(row, f"the conversation ends with a {messages[-1]['role']} message; it must end with an "
                    "assistant reply to train on", "missing_reply")
    return messages


def _check_arguments_depth(row: dict, i: int, call) -> None:
    """Tool-call arguments given as a JSON string stay within the nesting rows may have (the chat
    template decodes them); other problems with a call are the template's to report."""
    function = call.get("function") if isinstance(call, dict) else None
    arguments = function.get("arguments") if isinstance(function, dict) else None
    if not isinstance(arguments, str) or arguments.strip()[:1] not in ("[", "{"):
        return
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError:
        return
    except RecursionError as exc:  # the standard parser recurses once per nesting level
        raise _fail(row, f"messages[{i}]: tool call arguments are {TOO_DEEP_TO_PARSE}", "too_deep") from exc
    if nesting_depth(parsed) > MAX_ROW_DEPTH:
        raise _fail(row, f"messages[{i}]: tool call arguments are nested more than {MAX_ROW_DEPTH} levels deep",
                    "too_deep")


_NEXT = {  # role -> roles that may follow it
    "system": ("user",),
    "user": ("assistant",),
    "assistant": ("user", "tool"),
    "tool": ("tool", "assistant"),
}


def _check_order(row: dict, messages: list[dict], i: int) -> None:
    role = messages[i]["role"]
    if i == 0:
        if role not in ("system", "user"):
            raise _fail(row, f"messages[0] ({role}): a conversation must start with a user (or system) message",
                        "role_order")
        return
    before = messages[i - 1]["role"]
    if role == "system":
        raise _fail(row, f"messages[{i}]: a system message may only come first", "role_order")
    if role not in _NEXT[before]:
        article = "an" if before == "assistant" else "a"
        raise _fail(row, f"messages[{i}] ({role}) follows {article} {before} message; expected "
                    f"{' or '.join(_NEXT[before])}", "role_order")


def _check_readable(row: dict) -> None:
    if UNREADABLE in row:
        problem = row[UNREADABLE]
        kind = row.get(UNREADABLE_KIND) or ("invalid_json" if "JSON" in problem else "unreadable")
        raise _fail(row, problem, kind)


def check_row_limits(row: dict, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> None:
    """A :class:`RowError` when a raw row is nested more than :data:`~swiftkit.data.limits.MAX_ROW_DEPTH`
    levels or is over ``max_row_bytes`` (0: no limit); measured without recursion. Rows the reader
    could not read pass through (the converter reports them)."""
    if UNREADABLE in row:
        return
    if nesting_depth(row) > MAX_ROW_DEPTH:
        raise _fail(row, too_deep(), "too_deep")
    if max_row_bytes:
        size = row_bytes(row)
        if size > max_row_bytes:
            raise _fail(row, too_big(size, max_row_bytes), "row_too_big")


def to_messages_row(row: dict, require_reply: bool = True) -> dict:
    """A supervised row in any supported format -> the canonical row (see the module docstring).

    With ``require_reply=False`` (inference prompts) a row may end on a user turn, and a
    query/instruction row may have no response/output."""
    _check_readable(row)
    extra: dict = {}
    if "chosen" in row and "rejected" in row:
        messages, extra["rejected_response"] = _from_preference(row)
    elif "messages" in row:
        messages = _from_messages(row)
    elif "conversations" in row:
        messages = _from_sharegpt(row)
    elif "instruction" in row:
        messages = _from_alpaca(row, require_reply)
    elif "query" in row:
        messages = _from_query_response(row, require_reply)
    elif "prompt" in row and ("completion" in row or "response" in row or not require_reply):
        messages = _prompt_messages(row) + _completion(row, require_reply)
    elif "text" in row:
        raise _fail(row, "a raw 'text' row is pretraining data: train on it with `swiftkit pt`, not sft",
                    "text_in_sft")
    else:
        raise _fail(row, f"unknown row format: found keys {_keys(row)}; expected {_FORMATS}", "unknown_format")
    if "rejected_response" in row and "rejected_response" not in extra:
        extra["rejected_response"] = _string(row, "rejected_response", required=True)
    if "rejected_response" in extra and not extra["rejected_response"].strip():
        raise _fail(row, "'rejected_response' is empty", "empty_content")
    if row.get("label") is not None:
        extra["label"] = _label(row)
    tools = _tools(row)
    if tools is not None:
        extra["tools"] = tools
    if row.get("solution") is not None:
        extra["solution"] = row["solution"]
    messages = validate_messages(messages, row, require_reply)
    where, folder = _where(row), source_folder(row)
    columns = {"images": column_images(_json_field(row, "images"), where, folder),
               "videos": column_videos(_json_field(row, "videos"), where, folder),
               "audios": column_audios(_json_field(row, "audios"), where, folder)}
    messages, media = gather_media(messages, columns, where, extra.get("rejected_response"))
    return {"messages": messages, **media, **extra, "_origin": _where(row)}


def to_text_row(row: dict) -> dict:
    """A pretraining row with a ``text`` (or ``content``) string column -> ``{"text", "_origin"}``."""
    _check_readable(row)
    key = "text" if "text" in row else "content" if "content" in row else None
    if key is None:
        raise _fail(
            row, f"pretraining data needs a 'text' (or 'content') column; found keys {_keys(row)} "
            "(map a column to 'text' with --columns or in the dataset card, or use `swiftkit sft` for "
            "conversations)", "missing_field",
        )
    value = row[key]
    if not isinstance(value, str):
        raise _fail(row, f"{key!r} must be a string, got {type(value).__name__}", "wrong_type")
    if not value.strip():
        raise _fail(row, f"{key!r} is empty", "empty_content")
    return {"text": value, "_origin": _where(row)}
