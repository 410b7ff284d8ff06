"""Bad input gives a DatasetError naming the file, the 1-based line and what is wrong."""

from __future__ import annotations

import json

import pytest
from hosts import empty_registries, with_datasets

from swiftkit.core.registry import Registry
from swiftkit.data import DatasetError, load_rows

EMPTY = empty_registries()
GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


def jsonl(tmp_path, name: str, lines: list) -> str:
    path = tmp_path / name
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return str(path)


def error_of(specs, **kw) -> str:
    with pytest.raises(DatasetError) as info:
        load_rows(specs, registries=EMPTY, **kw)
    return str(info.value)


def test_invalid_json_line(tmp_path):
    path = jsonl(tmp_path, "bad.jsonl", [GOOD, "", GOOD, GOOD, '{"messages": [', GOOD])
    msg = error_of([path])
    assert msg.startswith(f"{path}:5: invalid JSON:")


def test_non_object_line(tmp_path):
    path = jsonl(tmp_path, "list.jsonl", [GOOD, "[1, 2]"])
    assert error_of([path]) == f"{path}:2: expected a JSON object per row, got list"


BAD_ROWS = {
    "missing_response": ({"query": "q only"}, "missing 'response' (found keys ['query'])"),
    "missing_output": ({"instruction": "do it", "input": "x"}, "missing 'output' (found keys ['input', 'instruction'])"),
    "unknown_keys": ({"question": "a", "answer": "b"}, "unknown row format: found keys ['answer', 'question']"),
    "wrong_role": (
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "Yo"}]},
        "messages[1]: invalid role 'bot'",
    ),
    "non_string_content": (
        {"messages": [{"role": "user", "content": ["Hi"]}, {"role": "assistant", "content": "Yo"}]},
        "messages[0] (user): content must be a string, got list",
    ),
    "ends_on_user": (
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"},
                      {"role": "user", "content": "More?"}]},
        "ends with a user message; it must end with an assistant reply",
    ),
    "empty_conversation": ({"messages": []}, "the conversation is empty"),
    "message_missing_content": ({"messages": [{"role": "user"}]}, "messages[0] is missing 'content'"),
    "bad_loss": (
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo", "loss": "yes"}]},
        "messages[1]: 'loss' must be true or false",
    ),
    "late_system": (
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "system", "content": "S"},
                      {"role": "assistant", "content": "Yo"}]},
        "messages[1]: a system message may only come first",
    ),
    "sharegpt_speaker": (
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "robot", "value": "Yo"}]},
        "conversations[1]: unknown speaker 'robot'",
    ),
    "bad_history": (
        {"query": "q", "response": "r", "history": [["only one"]]},
        "history[0] must be a [query, response] pair of strings",
    ),
    "non_string_query": ({"query": 3, "response": "r"}, "'query' must be a string, got int"),
    "text_in_sft": ({"text": "raw"}, "train on it with `swiftkit pt`"),
    "empty_reply": (
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  "}]},
        "messages[1] (assistant): empty content",
    ),
    "empty_query": ({"query": "", "response": "r"}, "messages[0] (user): empty content"),
    "message_missing_role": ({"messages": [{"content": "Hi"}]}, "messages[0] is missing 'role'"),
    "starts_with_assistant": (
        {"messages": [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Yo"},
                      {"role": "assistant", "content": "ok"}]},
        "messages[0] (assistant): a conversation must start with a user (or system) message",
    ),
    "two_users_in_a_row": (
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hello?"},
                      {"role": "assistant", "content": "Yo"}]},
        "messages[1] (user) follows a user message; expected assistant",
    ),
    "two_replies_in_a_row": (
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"},
                      {"role": "assistant", "content": "Yo again"}]},
        "messages[2] (assistant) follows an assistant message; expected user or tool",
    ),
    "tool_then_user": (
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "calling"},
                      {"role": "tool", "content": "42"}, {"role": "user", "content": "and?"},
                      {"role": "assistant", "content": "done"}]},
        "messages[3] (user) follows a tool message; expected tool or assistant",
    ),
    "no_assistant_turn": ({"messages": [{"role": "user", "content": "Hi"}]}, "ends with a user message"),
    "tool_calls_on_user": (
        {"messages": [{"role": "user", "content": "Hi", "tool_calls": []}, {"role": "assistant", "content": "Yo"}]},
        "messages[0] (user): 'tool_calls' must be a list on an assistant message",
    ),
    "tools_not_a_list": (
        {"query": "q", "response": "r", "tools": {"name": "f"}}, "'tools' must be a list of function schemas",
    ),
    "messages_not_a_list": ({"messages": "Hi there"}, "'messages' must be a list of {role, content} objects, got str"),
    "message_not_object": ({"messages": ["Hi", "Yo"]}, "messages[0] must be an object with 'role' and 'content', got str"),
    "sharegpt_missing_value": ({"conversations": [{"from": "human"}]}, "conversations[0] needs 'from' and 'value'"),
    "preference_prompts_differ": (
        {"chosen": [{"role": "user", "content": "A?"}, {"role": "assistant", "content": "a"}],
         "rejected": [{"role": "user", "content": "B?"}, {"role": "assistant", "content": "b"}]},
        "'chosen' and 'rejected' differ before their final reply",
    ),
    "preference_no_prompt": ({"chosen": "good", "rejected": "bad"}, "the row has no prompt"),
    "preference_mixed_types": (
        {"prompt": "q", "chosen": "good", "rejected": [{"role": "assistant", "content": "bad"}]},
        "'chosen' and 'rejected' must both be strings or both be message lists, got str and list",
    ),
    "preference_chosen_not_reply": (
        {"prompt": "q", "chosen": [{"role": "user", "content": "x"}], "rejected": [{"role": "assistant", "content": "b"}]},
        "'chosen' must end with an assistant reply",
    ),
    "empty_rejected_response": (
        {"query": "q", "response": "r", "rejected_response": ""}, "'rejected_response' is empty",
    ),
    "bad_kto_label": ({"prompt": "q", "completion": "c", "label": "good"}, "'label' must be true or false (or 1 / 0)"),
    "invalid_json_messages_cell": ({"messages": "[{\"role\": "}, "'messages' holds invalid JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_names_file_and_line(tmp_path, case):
    row, expected = BAD_ROWS[case]
    path = jsonl(tmp_path, f"{case}.jsonl", [GOOD, GOOD, "", row, GOOD])
    msg = error_of([path])
    assert msg.startswith(f"{path}:4: "), msg
    assert expected in msg


def test_every_bad_row_is_reported_with_counts_per_kind(tmp_path):
    rows = [GOOD, {"query": "", "response": "r"}, GOOD, {"query": "q"}, {"messages": []},
            {"query": " ", "response": "r"}]
    path = jsonl(tmp_path, "many.jsonl", rows)
    msg = error_of([path])
    lines = msg.splitlines()
    assert lines[0] == "4 of 6 rows are unusable (empty_content 2, missing_field 1, empty_conversation 1):"
    assert [line.split(": ")[0].strip() for line in lines[1:5]] == [f"{path}:{n}" for n in (2, 4, 5, 6)]
    assert "--skip_bad_rows" in lines[-1]


def test_long_problem_lists_are_cut_with_a_count(tmp_path):
    path = jsonl(tmp_path, "bad.jsonl", [GOOD] + [{"query": "q"}] * 25)
    msg = error_of([path])
    assert msg.startswith("25 of 26 rows are unusable (missing_field 25):")
    assert "... and 15 more" in msg


def test_skip_bad_rows_leaves_them_out_and_reports(tmp_path):
    from swiftkit.data.loader import LoadReport

    path = jsonl(tmp_path, "mixed.jsonl", [GOOD, {"query": "q"}, GOOD, {"messages": [{"role": "bot", "content": "x"}]}])
    report = LoadReport()
    rows = load_rows([path], registries=EMPTY, skip_bad_rows=True, report=report)
    assert [r["_origin"] for r in rows] == [f"{path}:1", f"{path}:3"]
    assert report.rows_read == 4 and [p.kind for p in report.skipped] == ["missing_field", "invalid_role"]
    assert report.summary() == "skipped 2 of 4 rows (missing_field 1, invalid_role 1)"


def test_skip_bad_rows_with_nothing_left_is_an_error(tmp_path):
    path = jsonl(tmp_path, "allbad.jsonl", [{"query": "q"}, {"query": "p"}])
    with pytest.raises(DatasetError, match="none of its 2 rows is usable"):
        load_rows([path], registries=EMPTY, skip_bad_rows=True)


def test_bad_row_in_json_list_names_its_line(tmp_path):
    path = tmp_path / "data.json"
    rows = [{"query": "a", "response": "b"}, {"query": "c", "response": "d"}, {"query": "no answer"}]
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    starts = [i + 1 for i, text in enumerate(path.read_text().splitlines()) if text == "  {"]
    assert len(starts) == 3  # the line where each object opens
    assert error_of([str(path)]).startswith(f"{path}:{starts[2]}: missing 'response'")


def test_invalid_json_in_json_list(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"query": "a", "response": "b"},\n  {"query": "c" "response": "d"}\n]\n', encoding="utf-8")
    assert error_of([str(path)]).startswith(f"{path}:3: invalid JSON: Expecting ',' delimiter")


def test_json_single_object_is_an_error(tmp_path):
    path = tmp_path / "obj.json"
    path.write_text(json.dumps({"data": [GOOD]}, indent=2), encoding="utf-8")
    assert "expected a list of objects" in error_of([str(path)])


def test_csv_row_error_names_line(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("query,response\nq1,r1\nq2,\nq3,r3\n", encoding="utf-8")
    msg = error_of([str(path)])
    assert msg.startswith(f"{path}:3: missing 'response'")


def test_csv_too_many_fields(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("query,response\nq1,r1\nq2,r2,extra\n", encoding="utf-8")
    assert error_of([str(path)]) == f"{path}:3: 3 fields but the header has 2"


def test_csv_history_with_invalid_json(tmp_path):
    path = tmp_path / "hist.csv"
    path.write_text('query,response,history\nq,r,"[[""a"", ""b""]]"\nq,r,"[[""a"""\n', encoding="utf-8")
    assert error_of([str(path)]).startswith(f"{path}:3: 'history' holds invalid JSON")


def test_not_utf8_names_line(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b'\n{"query": "caf\xe9", "response": "x"}\n')
    assert error_of([str(path)]).startswith(f"{path}:2: not valid UTF-8")


def test_missing_file_and_unsupported_extension(tmp_path):
    missing = tmp_path / "nope.jsonl"
    assert error_of([str(missing)]) == f"{missing}: file not found"
    other = tmp_path / "data.xml"
    other.write_text("<rows/>")
    msg = error_of([str(other)])
    assert msg.startswith(f"{other}: unsupported file type '.xml'") and ".parquet" in msg


def test_empty_file_is_an_error(tmp_path):
    path = jsonl(tmp_path, "empty.jsonl", [""])
    assert "has no rows" in error_of([path])


def test_text_only_rejects_conversations(tmp_path):
    path = jsonl(tmp_path, "chat.jsonl", [GOOD])
    msg = error_of([path], text_only=True)
    assert msg.startswith(f"{path}:1: pretraining data needs a 'text'") and "['messages']" in msg


def test_text_only_rejects_non_string_and_empty_text(tmp_path):
    path = jsonl(tmp_path, "pt.jsonl", [{"text": "ok"}, {"text": 5}])
    assert error_of([path], text_only=True) == f"{path}:2: 'text' must be a string, got int"
    path = jsonl(tmp_path, "pt2.jsonl", [{"text": "ok"}, {"text": "  "}])
    assert error_of([path], text_only=True) == f"{path}:2: 'text' is empty"


def test_txt_in_sft_mode_points_to_pt(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("some raw text\n", encoding="utf-8")
    assert "`swiftkit pt`" in error_of([str(path)])


@pytest.mark.parametrize("spec", ["data.jsonl#0", "data.jsonl#abc", "data.jsonl#-3"])
def test_bad_sample_count(tmp_path, spec):
    jsonl(tmp_path, "data.jsonl", [GOOD])
    msg = error_of([str(tmp_path / spec)])
    assert "#" in msg and ("> 0" in msg or "positive integer" in msg)


def test_unknown_source_suggests_registered_name():
    from swiftkit.data.registry import DatasetEntry

    registry = Registry("dataset")
    registry.register("self-cognition", DatasetEntry(name="self-cognition", path="x.jsonl"))
    with pytest.raises(DatasetError, match=r"'self-cognitoin' is not a file.*did you mean 'self-cognition'"):
        load_rows(["self-cognitoin"], registries=with_datasets(registry))


def test_no_specs():
    assert "no dataset given" in error_of([])


def test_unreadable_lines_are_collected_with_the_other_bad_rows(tmp_path):
    from swiftkit.data.loader import LoadReport

    path = jsonl(tmp_path, "broken.jsonl", [GOOD, '{"messages": [', GOOD, "[1, 2]", {"query": "q"}])
    msg = error_of([path])
    assert msg.startswith("3 of 5 rows are unusable (invalid_json 2, missing_field 1):")
    assert f"{path}:2: invalid JSON: Expecting value" in msg
    assert f"{path}:4: expected a JSON object per row, got list" in msg
    report = LoadReport()
    rows = load_rows([path], registries=EMPTY, skip_bad_rows=True, report=report)
    assert [r["_origin"] for r in rows] == [f"{path}:1", f"{path}:3"]


def test_csv_row_with_too_many_fields_is_skippable(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("query,response\nq1,r1\nq2,r2,extra\nq3,r3\n", encoding="utf-8")
    rows = load_rows([str(path)], registries=EMPTY, skip_bad_rows=True)
    assert [r["messages"][0]["content"] for r in rows] == ["q1", "q3"]
