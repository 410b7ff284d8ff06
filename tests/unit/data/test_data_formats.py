"""Every file format x every row format, read from real files, gives the same canonical rows."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hosts import empty_registries

from swiftkit.data import load_rows

EMPTY = empty_registries()

# raw rows of each row format, and the canonical messages they must become
ROW_FORMATS = {
    "messages": (
        [
            {"messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!", "loss": True},
            ]},
            {"messages": [
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4", "loss": False},
                {"role": "user", "content": "and 3+3?"},
                {"role": "assistant", "content": "6"},
            ]},
        ],
        [
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
             {"role": "assistant", "content": "Hello!", "loss": True}],
            [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4", "loss": False},
             {"role": "user", "content": "and 3+3?"}, {"role": "assistant", "content": "6"}],
        ],
    ),
    "sharegpt": (
        [
            {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}],
             "system": "Be brief."},
            {"conversations": [
                {"from": "user", "value": "weather?"}, {"from": "function_call", "value": "get_weather()"},
                {"from": "observation", "value": "sunny"}, {"from": "assistant", "value": "It is sunny."},
            ]},
        ],
        [
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
             {"role": "assistant", "content": "Hello!"}],
            [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": "get_weather()"},
             {"role": "tool", "content": "sunny"}, {"role": "assistant", "content": "It is sunny."}],
        ],
    ),
    "alpaca": (
        [
            {"instruction": "Translate to French", "input": "cat", "output": "chat", "system": "You translate."},
            {"instruction": "And dog?", "output": "chien", "history": [["Translate cat", "chat"]]},
        ],
        [
            [{"role": "system", "content": "You translate."}, {"role": "user", "content": "Translate to French\ncat"},
             {"role": "assistant", "content": "chat"}],
            [{"role": "user", "content": "Translate cat"}, {"role": "assistant", "content": "chat"},
             {"role": "user", "content": "And dog?"}, {"role": "assistant", "content": "chien"}],
        ],
    ),
    "query_response": (
        [
            {"query": "Capital of France?", "response": "Paris."},
            {"query": "And Italy?", "response": "Rome.", "system": "Answer in one word.",
             "history": [["Capital of France?", "Paris."]]},
        ],
        [
            [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}],
            [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Capital of France?"},
             {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And Italy?"},
             {"role": "assistant", "content": "Rome."}],
        ],
    ),
}


def write_rows(path, rows: list[dict]) -> None:
    """Write ``rows`` in the format named by the path's extension, the way real exports look."""
    suffix = path.suffix
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".json":  # one object per line inside the list, so line numbers are predictable
        path.write_text("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n",
                        encoding="utf-8")
    elif suffix == ".csv":
        keys = sorted({k for r in rows for k in r})
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v
                                 for k, v in r.items()})
    elif suffix == ".parquet":  # every key in every row (nulls), as a real export has one schema
        keys = sorted({k for r in rows for k in r})
        pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows]), path)
    else:
        raise AssertionError(suffix)


EXPECTED_ORIGINS = {".jsonl": ["1", "2"], ".json": ["2", "3"], ".csv": ["2", "3"], ".parquet": ["row 1", "row 2"]}


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
@pytest.mark.parametrize("fmt", sorted(ROW_FORMATS))
def test_file_format_x_row_format(tmp_path, suffix, fmt):
    raw, expected = ROW_FORMATS[fmt]
    path = tmp_path / f"data{suffix}"
    write_rows(path, raw)
    rows = load_rows([str(path)], registries=EMPTY)
    assert [r["messages"] for r in rows] == expected
    assert [r["_origin"] for r in rows] == [f"{path}:{o}" for o in EXPECTED_ORIGINS[suffix]]
    assert all(set(r) == {"messages", "_origin"} for r in rows)


def test_pretty_printed_json_points_at_each_object(tmp_path):
    raw, expected = ROW_FORMATS["query_response"]
    path = tmp_path / "pretty.json"
    path.write_text(json.dumps(raw, indent=2), encoding="utf-8")
    lines = path.read_text().splitlines()
    rows = load_rows([str(path)], registries=EMPTY)
    assert [r["messages"] for r in rows] == expected
    for row in rows:
        line = int(row["_origin"].rsplit(":", 1)[1])
        assert lines[line - 1].strip() == "{"
    assert rows[0]["_origin"] != rows[1]["_origin"]


def test_top_level_system_with_messages(tmp_path):
    path = tmp_path / "sys.jsonl"
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    own = [{"role": "system", "content": "Own."}] + chat
    write_rows(path, [{"system": "Top.", "messages": chat}, {"system": "Top.", "messages": own}])
    rows = load_rows([str(path)], registries=EMPTY)
    assert rows[0]["messages"] == [{"role": "system", "content": "Top."}] + chat
    assert rows[1]["messages"] == own


def test_json_file_holding_json_lines(tmp_path):
    raw, expected = ROW_FORMATS["alpaca"]
    path = tmp_path / "lines.json"
    path.write_text("\n".join(json.dumps(r) for r in raw), encoding="utf-8")
    assert [r["messages"] for r in load_rows([str(path)], registries=EMPTY)] == expected


def test_jsonl_skips_blank_lines_and_keeps_line_numbers(tmp_path):
    raw, expected = ROW_FORMATS["messages"]
    path = tmp_path / "gaps.jsonl"
    path.write_text("\n" + json.dumps(raw[0]) + "\n\n   \n" + json.dumps(raw[1]) + "\n\n", encoding="utf-8")
    rows = load_rows([str(path)], registries=EMPTY)
    assert [r["messages"] for r in rows] == expected
    assert [r["_origin"] for r in rows] == [f"{path}:2", f"{path}:5"]


def test_csv_multiline_cell_keeps_start_line(tmp_path):
    path = tmp_path / "multi.csv"
    path.write_text('query,response\n"line one\nline two",ok\nsecond,fine\n', encoding="utf-8")
    rows = load_rows([str(path)], registries=EMPTY)
    assert rows[0]["messages"][0]["content"] == "line one\nline two"
    assert [r["_origin"] for r in rows] == [f"{path}:2", f"{path}:4"]


def test_text_only_txt_one_row_per_non_empty_line(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("First line of text.\n\n   \nSecond line.\nThird line.\n", encoding="utf-8")
    rows = load_rows([str(path)], registries=EMPTY, text_only=True)
    assert rows == [
        {"text": "First line of text.", "_origin": f"{path}:1"},
        {"text": "Second line.", "_origin": f"{path}:4"},
        {"text": "Third line.", "_origin": f"{path}:5"},
    ]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
@pytest.mark.parametrize("column", ["text", "content"])
def test_text_only_text_column_in_every_format(tmp_path, suffix, column):
    path = tmp_path / f"pt{suffix}"
    write_rows(path, [{column: "alpha beta", "id": "1"}, {column: "gamma", "id": "2"}])
    rows = load_rows([str(path)], registries=EMPTY, text_only=True)
    assert [r["text"] for r in rows] == ["alpha beta", "gamma"]
    assert all(set(r) == {"text", "_origin"} for r in rows)
