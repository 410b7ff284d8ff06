"""Canonical rows for alignment training (``swiftkit rlhf``), built on the supervised row formats.

Each function takes one raw row (any format :func:`swiftkit.data.convert.to_messages_row` reads) and
returns canonical rows or raises a :class:`~swiftkit.data.convert.RowError` naming the row:

* :func:`to_preference_row` (dpo, orpo, simpo, cpo, rm): ``messages`` ending with the chosen reply
  plus ``rejected_response``;
* :func:`to_kto_rows` (kto): ``messages`` ending with the reply plus a boolean ``label``; a preference
  pair gives two rows (chosen -> true, rejected -> false);
* :func:`to_prompt_row` (grpo, ppo): ``messages`` ending on the user (or tool) turn the model answers,
  plus every extra column of the source row, which GRPO hands to the reward functions (``solution``
  and any other).
"""

from __future__ import annotations

from swiftkit.data.convert import RowError, _keys, to_messages_row

# Columns that belong to a row format (or to swiftkit); every other column is extra data.
FORMAT_COLUMNS = frozenset({
    "messages", "conversations", "instruction", "input", "output", "query", "response", "history", "system",
    "prompt", "completion", "chosen", "rejected", "rejected_response", "label", "tools", "text", "content",
    "images", "videos", "audios", "_origin",
})


def to_preference_row(row: dict) -> dict:
    """A preference pair: ``chosen``/``rejected`` (strings with a prompt, message lists or transcripts),
    or any conversation with a ``rejected_response`` column."""
    out = to_messages_row(row)
    if "rejected_response" not in out:
        raise RowError(out["_origin"], "not a preference pair: needs 'chosen' + 'rejected', or a conversation "
                       f"with 'rejected_response' (found keys {_keys(row)})", "missing_field")
    if out["rejected_response"] == out["messages"][-1]["content"]:
        raise RowError(out["_origin"], "the chosen and rejected replies are identical", "preference_mismatch")
    return out


def to_kto_rows(row: dict) -> list[dict]:
    """Rows for KTO: a reply with a desirable (true) / undesirable (false) ``label``."""
    out = to_messages_row(row)
    if "rejected_response" in out:  # a pair gives one desirable and one undesirable example
        rejected = out.pop("rejected_response")
        out.pop("label", None)
        worse = {**out, "messages": out["messages"][:-1] + [{"role": "assistant", "content": rejected}],
                 "label": False}
        return [{**out, "label": True}, worse]
    if "label" not in out:
        raise RowError(out["_origin"], "KTO rows need a 'label' (true for a desirable reply, false for an "
                       f"undesirable one), or 'chosen' + 'rejected' (found keys {_keys(row)})", "missing_field")
    return [out]


def to_prompt_row(row: dict) -> dict:
    """A prompt for online methods: the conversation up to the turn the model answers.

    A final assistant message (a reference reply) is dropped from the prompt; extra columns are
    kept for reward functions (``solution`` already is)."""
    out = to_messages_row(row, require_reply=False)
    messages = out["messages"]
    while messages and messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    if not messages or messages[-1]["role"] not in ("user", "tool"):
        raise RowError(out["_origin"], "no prompt to answer: the conversation has no user turn", "missing_field")
    out["messages"] = messages
    out.pop("rejected_response", None)
    for key, value in row.items():
        if key not in FORMAT_COLUMNS and key not in out:
            out[key] = value
    return out


CONVERTERS = {
    "dpo": to_preference_row, "orpo": to_preference_row, "simpo": to_preference_row, "cpo": to_preference_row,
    "rm": to_preference_row, "kto": to_kto_rows, "grpo": to_prompt_row, "ppo": to_prompt_row,
}
