"""Rows that are too big or nested too deeply: a clear error naming file:line, the size (or depth)
and the flag, through the real CLI; bounded memory while reading them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tracemalloc

import pytest
from hosts import empty_registries

from swiftkit.cli.main import main
from swiftkit.data import load_rows
from swiftkit.data.convert import RowError
from swiftkit.data.streaming import stream_rows

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
LIMIT = 4096


def big_row(content_bytes: int) -> dict:
    return {"messages": [{"role": "user", "content": "word " * (content_bytes // 5)},
                         {"role": "assistant", "content": "ok"}]}


def write_jsonl(path, rows) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return str(path)


def lint(argv: list[str], capsys) -> tuple[int, list[str], list[str]]:
    code = main(["data", "lint", *argv])
    out = capsys.readouterr()
    return code, out.out.splitlines(), out.err.splitlines()


def one_line_error(argv: list[str], capsys) -> str:
    capsys.readouterr()  # what fixtures printed (a tiny model being written)
    code = main(argv)
    err = capsys.readouterr().err.splitlines()
    assert code == 2, err
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


# -- --max_row_bytes ---------------------------------------------------------------------------------


def test_lint_reports_a_jsonl_row_over_the_limit_and_reads_on(tmp_path, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, big_row(20_000), {"query": "q", "response": "r"}])
    size = len(json.dumps(big_row(20_000)).encode())
    code, out, err = lint(["--dataset", path, "--max_row_bytes", str(LIMIT)], capsys)
    assert code == 1 and not err
    assert [line for line in out if line.startswith(path)] == [
        f"{path}:2: error: row is {size:,} bytes, over --max_row_bytes {LIMIT:,}; raise --max_row_bytes "
        "(0 turns the limit off) or split the row [row_too_big]"]
    assert out[-1].startswith("1 error, 0 warnings in 3 rows (2 usable)")


def test_zero_turns_the_limit_off(tmp_path, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, big_row(20_000)])
    code, out, _ = lint(["--dataset", path, "--max_row_bytes", "0"], capsys)
    assert code == 0 and out[-1].startswith("0 errors")


def test_the_default_limit_applies(tmp_path, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, "x" * (16 * 1024 * 1024 + 1)])
    code, out, _ = lint(["--dataset", path], capsys)
    assert code == 1
    assert f"{path}:2: error: row is 16,777,217 bytes, over --max_row_bytes 16,777,216" in "\n".join(out)


def test_training_refuses_a_row_over_the_limit_in_one_line(tmp_path, tiny_model_dir, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, GOOD, big_row(20_000)])
    size = len(json.dumps(big_row(20_000)).encode())
    line = one_line_error(["sft", "--model", str(tiny_model_dir()), "--dataset", path, "--max_row_bytes",
                           str(LIMIT), "--output_dir", str(tmp_path / "out"), "--max_steps", "1"], capsys)
    assert line == (f"swiftkit sft: error: {path}:3: row is {size:,} bytes, over --max_row_bytes {LIMIT:,}; raise "
                    "--max_row_bytes (0 turns the limit off) or split the row")
    assert not (tmp_path / "out").exists()


def test_json_list_item_over_the_limit(tmp_path, capsys):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([GOOD, big_row(20_000), GOOD], indent=1))
    code, out, _ = lint(["--dataset", str(path), "--max_row_bytes", str(LIMIT)], capsys)
    assert code == 1
    errors = [line for line in out if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith(f"{path}:") and "over --max_row_bytes 4,096" in errors[0]


def test_csv_record_over_the_limit_and_cells_over_the_csv_module_limit(tmp_path, capsys):
    path = tmp_path / "d.csv"
    long_cell = ("q" * 999 + "\n") * 200  # 200 KB over 200 lines: over csv's own 128 KiB cell limit
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["query", "response", "system"])
        writer.writerow(["q", "r", "s"])
        writer.writerow([long_cell, "r", "s"])  # under the row limit
        writer.writerow([long_cell, long_cell, long_cell])  # 600 KB: over the row limit
        writer.writerow(["q2", "r2", "s"])
    code, out, err = lint(["--dataset", str(path), "--max_row_bytes", "500000"], capsys)
    assert code == 1, err
    errors = [line for line in out if ": error: " in line]
    assert errors == [f"{path}:204: error: row is 600,000 bytes, over --max_row_bytes 500,000; raise "
                      "--max_row_bytes (0 turns the limit off) or split the row [row_too_big]"]
    assert out[-1].startswith("1 error, 0 warnings in 4 rows (3 usable)")


def test_csv_cell_over_the_limit_stops_the_file_in_one_line(tmp_path, capsys):
    path = tmp_path / "d.csv"
    cell = ("q" * 999 + "\n") * 200  # over the csv module's cell limit (128 KiB), which stays when larger
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([["query", "response"], ["q", "r"], [cell, "r"]])
    line = one_line_error(["data", "lint", "--dataset", str(path), "--max_row_bytes", str(LIMIT)], capsys)
    assert line.startswith(f"swiftkit data lint: error: {path}:3: a cell of this record is over --max_row_bytes 4,096 bytes")


def test_csv_line_over_the_limit_stops_the_file_in_one_line(tmp_path, capsys):
    path = tmp_path / "d.csv"
    path.write_text("query,response\nq,r\n" + "q" * 10_000 + ",r\n")
    line = one_line_error(["data", "lint", "--dataset", str(path), "--max_row_bytes", str(LIMIT)], capsys)
    assert line.startswith(f"swiftkit data lint: error: {path}:3: line is 10,002 bytes, over --max_row_bytes 4,096")


def test_parquet_row_over_the_limit(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"query": ["q", "q" * 20_000], "response": ["r", "r"]}), path)
    code, out, _ = lint(["--dataset", str(path), "--max_row_bytes", str(LIMIT)], capsys)
    assert code == 1
    assert f"{path}:row 2: error: row is 20," in "\n".join(out)


def test_streaming_meets_the_limit_when_it_reaches_the_row(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, big_row(20_000)])
    rows = stream_rows([path], registries=empty_registries(), buffer_size=1, max_row_bytes=LIMIT)
    assert next(rows)["messages"][0]["content"] == "Hi"
    with pytest.raises(RowError, match=r"d\.jsonl:2: row is [\d,]+ bytes, over --max_row_bytes 4,096"):
        next(rows)


def test_an_oversized_line_is_never_held_whole(tmp_path):
    """A 24 MB line under a 1 MiB limit: Python allocations stay near the limit (reading the line
    whole would hold the bytes and the decoded text, ~48 MB)."""
    path = tmp_path / "d.jsonl"
    with open(path, "w") as f:
        f.write(json.dumps(GOOD) + "\n")
        f.write('{"messages": [{"role": "user", "content": "' + "x" * (24 * 1024 * 1024) + '"}]}\n')
        f.write(json.dumps(GOOD) + "\n")
    tracemalloc.start()
    try:
        rows = load_rows([str(path)], registries=empty_registries(), skip_bad_rows=True, max_row_bytes=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(rows) == 2
    assert peak < 6 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


MEASURE = """
import resource, sys
from swiftkit.cli.main import main
code = main(sys.argv[1:])
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "EXIT", code)
"""


def peak_rss_mb(argv: list[str]) -> tuple[float, int, str]:
    done = subprocess.run([sys.executable, "-c", MEASURE, *argv], capture_output=True, text=True, timeout=600)
    line = next(x for x in done.stdout.splitlines() if x.startswith("PEAK_KB"))
    _, kb, _, code = line.split()
    return int(kb) / 1024, int(code), done.stdout


def test_a_multi_megabyte_row_under_a_raised_limit_keeps_memory_bounded(tmp_path, tiny_model_dir):
    """An 8 MB conversation far over --max_length, the limit raised above it, linted with a model:
    it is reported as too long without being tokenized (tokenizing it took 3.7 GB and 25 s with this
    byte-level tokenizer; now ~0.35 GB and 4 s for the whole command)."""
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, big_row(8 * 1024 * 1024), {"query": "q", "response": "r"}])
    model = str(tiny_model_dir())
    baseline, _, _ = peak_rss_mb(["data", "lint", "--dataset", write_jsonl(tmp_path / "s.jsonl", [GOOD]),
                                  "--model", model])
    peak, code, out = peak_rss_mb(["data", "lint", "--dataset", path, "--model", model, "--max_row_bytes", "0"])
    assert code == 0, out
    assert f"{path}:2: warning: at least " in out and "(counted without tokenizing) is over max_length 2048" in out
    assert peak - baseline < 150, f"{peak:.0f} MB vs {baseline:.0f} MB without the big row"


# -- deep nesting ---------------------------------------------------------------------------------------

DEPTH = 10_000


def deep_lines() -> dict[str, str]:
    return {
        "list": '{"messages": ' + "[" * DEPTH + "]" * DEPTH + "}",
        "dict": '{"messages": [{"role": "user", "content": "x", "meta": ' + '{"a": ' * DEPTH + "1" + "}" * DEPTH + "}]}",
        "parseable": json.dumps({**GOOD, "solution": json.loads("[" * 300 + "]" * 300)}),
    }


@pytest.mark.parametrize("kind", ["list", "dict", "parseable"])
def test_lint_reports_a_deeply_nested_jsonl_row(tmp_path, capsys, kind):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, deep_lines()[kind], GOOD])
    code, out, err = lint(["--dataset", path], capsys)
    assert code == 1 and not err
    errors = [line for line in out if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith(f"{path}:2: error: ") and errors[0].endswith("[too_deep]")
    assert "nested" in errors[0] and "100 levels" in errors[0]


def test_training_refuses_a_deeply_nested_row_in_one_line(tmp_path, tiny_model_dir, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, deep_lines()["list"]])
    line = one_line_error(["sft", "--model", str(tiny_model_dir()), "--dataset", path,
                           "--output_dir", str(tmp_path / "out"), "--max_steps", "1"], capsys)
    assert line == (f"swiftkit sft: error: {path}:2: nested too deeply for the JSON parser (rows may nest at most "
                    "100 levels of lists/objects)")


def test_deep_json_files(tmp_path, capsys):
    listed = tmp_path / "list.json"
    other = {"query": "q", "response": "r"}
    listed.write_text("[" + json.dumps(GOOD) + ",\n" + deep_lines()["list"] + ",\n" + json.dumps(other) + "]")
    one = tmp_path / "one.json"
    one.write_text('{"a": ' * DEPTH + "1" + "}" * DEPTH)
    code, out, _ = lint(["--dataset", str(listed)], capsys)
    assert code == 1 and f"{listed}:2: error: nested too deeply for the JSON parser" in "\n".join(out)
    assert out[-1].startswith("1 error, 0 warnings in 3 rows (2 usable)")
    code, out, _ = lint(["--dataset", str(one)], capsys)
    assert code == 1 and f"{one}:1: error: nested too deeply for the JSON parser" in "\n".join(out)


def test_deep_json_inside_csv_cells_and_tool_arguments(tmp_path, capsys):
    table = tmp_path / "d.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["query", "response", "history"])
        writer.writerow(["q", "r", "[]"])
        writer.writerow(["q", "r", "[" * DEPTH + "]" * DEPTH])
    call = {"type": "function", "function": {"name": "f", "arguments": '{"a": ' * 3000 + "1" + "}" * 3000}}
    tools = write_jsonl(tmp_path / "t.jsonl", [{"messages": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "1"}, {"role": "assistant", "content": "ok"}]}])
    code, out, _ = lint(["--dataset", str(table)], capsys)
    assert code == 1 and f"{table}:3: error: 'history' holds JSON nested too deeply" in "\n".join(out)
    code, out, _ = lint(["--dataset", tools], capsys)
    assert code == 1 and f"{tools}:1: error: messages[1]: tool call arguments are nested too deeply" in "\n".join(out)


def test_skip_bad_rows_leaves_deep_and_big_rows_out(tmp_path, tiny_model_dir, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, deep_lines()["dict"], big_row(20_000)])
    code = main(["data", "preview", "--dataset", path, "--model", str(tiny_model_dir()),
                 "--max_row_bytes", str(LIMIT)])
    out = capsys.readouterr()
    assert code == 0 and f"row 0: {path}:1" in out.out and not out.err
