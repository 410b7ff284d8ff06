"""Preference, KTO, prompt/completion and tool-calling rows become canonical rows."""

from __future__ import annotations

import json

from hosts import empty_registries

from swiftkit.data import load_rows

EMPTY = empty_registries()
USER_Q = {"role": "user", "content": "2+2?"}
GOOD_A = {"role": "assistant", "content": "4"}


def load(tmp_path, rows, **kw):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_rows([str(path)], registries=EMPTY, **kw)


def test_preference_pairs_in_every_layout(tmp_path):
    rows = load(tmp_path, [
        {"prompt": "2+2?", "chosen": "4", "rejected": "5"},  # strings with a prompt
        {"query": "2+2?", "chosen": "4", "rejected": "5"},  # prompt from a query column
        {"prompt": "2+2?", "chosen": [USER_Q, GOOD_A], "rejected": [USER_Q, {"role": "assistant", "content": "5"}]},
        {"prompt": [USER_Q], "chosen": [GOOD_A], "rejected": [{"role": "assistant", "content": "5"}]},
        {"chosen": [USER_Q, GOOD_A], "rejected": [USER_Q, {"role": "assistant", "content": "5"}]},
        {"chosen": "\n\nHuman: 2+2?\n\nAssistant: 4", "rejected": "\n\nHuman: 2+2?\n\nAssistant: 5"},
        {"messages": [USER_Q, GOOD_A], "rejected_response": "5"},  # prompt + chosen + rejected_response
    ])
    for row in rows:
        assert row["messages"] == [USER_Q, GOOD_A], row["_origin"]
        assert row["rejected_response"] == "5", row["_origin"]


def test_hh_transcripts_keep_every_turn_and_multi_paragraph_replies(tmp_path):
    chosen = "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Tell me a joke\n\nAssistant: Why?\n\nBecause."
    rejected = "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Tell me a joke\n\nAssistant: No."
    (row,) = load(tmp_path, [{"chosen": chosen, "rejected": rejected}])
    assert [m["role"] for m in row["messages"]] == ["user", "assistant", "user", "assistant"]
    assert row["messages"][-1]["content"] == "Why?\n\nBecause."
    assert row["rejected_response"] == "No."


def test_kto_rows_carry_a_boolean_label(tmp_path):
    rows = load(tmp_path, [
        {"prompt": "2+2?", "completion": "4", "label": True},
        {"prompt": [USER_Q], "completion": "5", "label": 0},
        {"messages": [USER_Q, GOOD_A], "label": 1},
        {"prompt": [USER_Q], "completion": [GOOD_A], "label": False},  # message lists
        {"prompt": "2+2?", "response": "4", "label": True},
    ])
    assert [r["label"] for r in rows] == [True, False, True, False, True]
    assert rows[3]["messages"] == rows[4]["messages"] == [USER_Q, GOOD_A]
    assert rows[1]["messages"] == [USER_Q, {"role": "assistant", "content": "5"}]


def test_tool_calls_and_tools_pass_through(tmp_path):
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    call = {"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 2}}}
    (row,) = load(tmp_path, [{
        "tools": json.dumps(tools),  # a JSON string, as CSV / parquet often hold it
        "messages": [USER_Q, {"role": "assistant", "content": None, "tool_calls": [call]},
                     {"role": "tool", "content": "4", "tool_call_id": "c1"}, GOOD_A],
    }])
    assert row["tools"] == tools
    assert row["messages"][1] == {"role": "assistant", "content": "", "tool_calls": [call]}
    assert row["messages"][2] == {"role": "tool", "content": "4", "tool_call_id": "c1"}


def test_sharegpt_function_call_json_becomes_a_tool_call(tmp_path):
    (row,) = load(tmp_path, [{"conversations": [
        {"from": "human", "value": "2+2?"},
        {"from": "function_call", "value": json.dumps({"name": "add", "arguments": {"a": 2, "b": 2}})},
        {"from": "observation", "value": "4"},
        {"from": "gpt", "value": "4"},
    ], "tools": json.dumps([{"name": "add"}])}])
    call = row["messages"][1]["tool_calls"][0]["function"]
    assert call == {"name": "add", "arguments": {"a": 2, "b": 2}}
    assert row["messages"][2]["role"] == "tool" and row["tools"] == [{"name": "add"}]


def test_solution_column_is_kept_for_rewards(tmp_path):
    (row,) = load(tmp_path, [{"query": "2+2?", "response": "4", "solution": "4"}])
    assert row["solution"] == "4"


def test_empty_system_messages_are_dropped(tmp_path):
    (row,) = load(tmp_path, [{"messages": [{"role": "system", "content": ""}, USER_Q, GOOD_A]}])
    assert row["messages"] == [USER_Q, GOOD_A]


def test_prompt_only_rows_for_inference(tmp_path):
    (row,) = load(tmp_path, [{"prompt": "2+2?"}], require_reply=False)
    assert row["messages"] == [USER_Q]
