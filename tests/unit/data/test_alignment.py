"""Alignment rows: preference pairs, KTO labels and prompts with extra columns, from every row shape."""

from __future__ import annotations

import pytest

from swiftkit.data.alignment import to_kto_rows, to_preference_row, to_prompt_row
from swiftkit.data.convert import RowError

USER = {"role": "user", "content": "2+2?"}


@pytest.mark.parametrize("row", [
    {"prompt": "2+2?", "chosen": "4", "rejected": "5"},
    {"query": "2+2?", "chosen": "4", "rejected": "5"},
    {"messages": [USER, {"role": "assistant", "content": "4"}], "rejected_response": "5"},
    {"chosen": [USER, {"role": "assistant", "content": "4"}], "rejected": [USER, {"role": "assistant", "content": "5"}]},
    {"prompt": [USER], "chosen": [{"role": "assistant", "content": "4"}],
     "rejected": [{"role": "assistant", "content": "5"}]},
    {"chosen": "\n\nHuman: 2+2?\n\nAssistant: 4", "rejected": "\n\nHuman: 2+2?\n\nAssistant: 5"},
])
def test_every_pair_shape_gives_the_same_canonical_row(row):
    out = to_preference_row({**row, "_origin": "f.jsonl:1"})
    assert out["messages"] == [USER, {"role": "assistant", "content": "4"}]
    assert out["rejected_response"] == "5" and out["_origin"] == "f.jsonl:1"


def test_a_pair_keeps_its_system_prompt():
    out = to_preference_row({"system": "Be exact.", "prompt": "2+2?", "chosen": "4", "rejected": "5"})
    assert out["messages"][0] == {"role": "system", "content": "Be exact."}


@pytest.mark.parametrize("row,message", [
    ({"messages": [USER, {"role": "assistant", "content": "4"}]}, "not a preference pair"),
    ({"prompt": "2+2?", "chosen": "4", "rejected": "4"}, "identical"),
    ({"prompt": "2+2?", "chosen": "4", "rejected": ""}, "empty"),
    ({"prompt": "2+2?", "chosen": "4", "rejected": 5}, "both be strings"),
])
def test_bad_pairs_name_the_row(row, message):
    with pytest.raises(RowError, match=message) as info:
        to_preference_row({**row, "_origin": "p.jsonl:7"})
    assert info.value.origin == "p.jsonl:7"


def test_kto_rows_from_labels_and_from_pairs():
    [good] = to_kto_rows({"prompt": "2+2?", "completion": "4", "label": 1})
    assert good["label"] is True and good["messages"][-1]["content"] == "4"
    chosen, rejected = to_kto_rows({"prompt": "2+2?", "chosen": "4", "rejected": "5"})
    assert (chosen["label"], rejected["label"]) == (True, False)
    assert chosen["messages"][:-1] == rejected["messages"][:-1] == [USER]
    assert rejected["messages"][-1] == {"role": "assistant", "content": "5"}
    assert "rejected_response" not in chosen and "rejected_response" not in rejected


@pytest.mark.parametrize("row,message", [
    ({"prompt": "2+2?", "completion": "4"}, "need a 'label'"),
    ({"prompt": "2+2?", "completion": "4", "label": 2}, "'label' must be true or false"),
])
def test_bad_kto_rows(row, message):
    with pytest.raises(RowError, match=message):
        to_kto_rows(row)


def test_prompt_rows_drop_the_reference_reply_and_keep_extra_columns():
    out = to_prompt_row({"query": "2+2?", "response": "4", "solution": "4", "level": 3, "tags": ["math"]})
    assert out["messages"] == [USER]
    assert out["solution"] == "4" and out["level"] == 3 and out["tags"] == ["math"]
    out = to_prompt_row({"messages": [USER], "answer": "4"})
    assert out["messages"] == [USER] and out["answer"] == "4"


def test_a_prompt_row_needs_a_user_turn():
    with pytest.raises(RowError, match="no prompt to answer"):
        to_prompt_row({"messages": [{"role": "system", "content": "Be brief."}]})
