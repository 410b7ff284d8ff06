"""Lazy readers give the list readers' rows with flat memory; take, interleave and shuffle_buffer."""

from __future__ import annotations

import csv
import itertools
import json
import time
import tracemalloc
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from swiftkit.data import DatasetError
from swiftkit.data.readers import read_file, read_folder
from swiftkit.data.streaming import interleave, iter_file, iter_folder, shuffle_buffer, take

ROWS = [{"query": f"question {i}", "response": f"answer {i}\nsecond line"} for i in range(5)]


def write(path, rows):
    """``rows`` in the format of ``path``'s extension."""
    suffix = path.suffix
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    elif suffix == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=1000)
    elif suffix == ".txt":
        path.write_text("".join(r["query"] + "\n\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet", ".txt"])
def test_iter_file_yields_the_rows_read_file_returns(tmp_path, suffix):
    path = write(tmp_path / f"data{suffix}", ROWS)
    stream = iter_file(path)
    assert not isinstance(stream, list)
    rows = list(stream)
    assert rows == read_file(path) and len(rows) == 5
    if suffix == ".txt":
        assert rows[1] == {"text": "question 1", "_origin": f"{path}:3"}  # blank lines skipped, numbers kept
    elif suffix == ".parquet":
        assert rows[1] == {**ROWS[1], "_origin": f"{path}:row 2"}
    else:
        assert {k: v for k, v in rows[1].items() if k != "_origin"} == ROWS[1]
    if suffix == ".csv":
        assert [r["_origin"] for r in rows[:2]] == [f"{path}:2", f"{path}:4"]  # a cell spans two lines


def test_missing_file_and_unknown_type_fail_at_the_call(tmp_path):
    with pytest.raises(DatasetError, match="file not found"):
        iter_file(tmp_path / "none.jsonl")
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(DatasetError, match="unsupported file type '.xml'"):
        iter_file(tmp_path / "x.xml")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no data files"):
        iter_folder(tmp_path / "empty")


def big_jsonl(path, n):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": f"row {i} " + "x" * 100}) + "\n" for i in range(n))
    return path


def test_first_row_arrives_before_the_file_is_read(tmp_path):
    """A line appended after the first row was yielded is still read: the file was not loaded whole."""
    path = big_jsonl(tmp_path / "big.jsonl", 20_000)  # ~2.4 MB
    stream = iter_file(path)
    assert next(stream)["text"].startswith("row 0 ")
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"text": "appended later"}) + "\n")
    rest = list(stream)
    assert len(rest) == 20_000 and rest[-1]["text"] == "appended later"
    assert rest[-1]["_origin"] == f"{path}:20001"


def _peak_bytes(consume) -> int:
    tracemalloc.start()
    try:
        consume()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".txt", ".parquet"])
def test_streaming_memory_stays_flat(tmp_path, suffix):
    rows = [{"query": f"q{i} " + "y" * 60, "response": f"r{i} " + "z" * 60} for i in range(15_000)]
    path = write(tmp_path / f"big{suffix}", rows)

    def stream():
        for _ in iter_file(path):
            pass

    streamed = _peak_bytes(stream)
    whole = _peak_bytes(lambda: read_file(path))
    assert whole > 3_000_000  # the list of rows really is that large
    assert streamed < 1_000_000, f"streaming {suffix} held {streamed} bytes"


def test_stream_stops_at_a_bad_line_after_the_good_rows(tmp_path):
    path = big_jsonl(tmp_path / "bad.jsonl", 3000)
    with open(path, "ab") as f:
        f.write(b'{"text": "caf\xe9"}\n')
    stream = iter_file(path)
    assert len(list(take(stream, 3000))) == 3000  # everything before the bad line comes through
    with pytest.raises(DatasetError, match=rf"^{path}:3001: not valid UTF-8"):
        next(stream)


def test_iter_folder_selects_like_read_folder(tmp_path):
    for subset in ("en", "zh"):
        (tmp_path / subset).mkdir()
    write(tmp_path / "en" / "train.jsonl", ROWS[:2])
    write(tmp_path / "en" / "test.csv", ROWS[2:3])
    write(tmp_path / "zh" / "train-0.parquet", ROWS[3:])
    for subset, split in [(None, "train"), ("en", "train"), ("en", "test"), ("zh", "train")]:
        assert list(iter_folder(tmp_path, subset, split)) == read_folder(tmp_path, subset, split)
    assert len(read_folder(tmp_path)) == 4 and len(read_folder(tmp_path, split="test")) == 1
    with pytest.raises(DatasetError, match="no files for subset 'fr'"):
        iter_folder(tmp_path, "fr")


def counting(n=None):
    """An iterator of numbered rows that records how many were pulled from it."""
    pulled = []

    def rows():
        for i in itertools.count() if n is None else range(n):
            pulled.append(i)
            yield {"i": i}

    return rows(), pulled


def test_take_reads_no_more_than_asked():
    rows, pulled = counting()
    assert [r["i"] for r in take(rows, 3)] == [0, 1, 2] and pulled == [0, 1, 2]
    assert list(take(iter([{"a": 1}]), 5)) == [{"a": 1}]
    assert list(take(counting()[0], 0)) == []
    with pytest.raises(DatasetError, match=">= 0"):
        take([], -1)


def _tags(rows):
    return [r["s"] for r in rows]


def stream(name, size):
    for i in range(size):
        yield {"s": name, "i": i}


def streams(*sizes):
    return [stream(name, size) for name, size in zip("abc", sizes)]


def infinite():
    return [itertools.repeat({"s": "a"}), itertools.repeat({"s": "b"})]


def test_interleave_is_seeded_and_follows_the_probabilities():
    mix = _tags(take(interleave(infinite(), [0.8, 0.2], seed=7), 4000))
    assert mix == _tags(take(interleave(infinite(), [0.8, 0.2], seed=7), 4000))
    assert mix != _tags(take(interleave(infinite(), [0.8, 0.2], seed=8), 4000))
    share = Counter(mix)["a"] / len(mix)
    assert 0.77 < share < 0.83
    equal = Counter(_tags(take(interleave(infinite()), 4000)))
    assert 0.46 < equal["a"] / 4000 < 0.54


def test_interleave_stop_rules():
    first = list(interleave(streams(1000, 5), [0.5, 0.5], seed=1))
    assert Counter(_tags(first))["b"] == 5 and len(first) < 100  # ends when "b" runs out
    every = list(interleave(streams(50, 5, 20), [1, 1, 0.5], seed=1, stop="all"))
    assert Counter(_tags(every)) == {"a": 50, "b": 5, "c": 20}
    for name in "abc":  # each stream keeps its own order
        order = [r["i"] for r in every if r["s"] == name]
        assert order == sorted(order)
    zero = list(interleave(streams(10, 10), [1, 0], seed=1, stop="all"))
    assert _tags(zero) == ["a"] * 10


@pytest.mark.parametrize("probs, message", [
    ([1.0], "2 streams but 1 probabilities"),
    ([1.0, -1.0], "probabilities must be"),
    ([0, 0], "probabilities must be"),
    ([1.0, float("nan")], "probabilities must be"),
])
def test_interleave_bad_probabilities(probs, message):
    with pytest.raises(DatasetError, match=message):
        interleave(streams(1, 1), probs)


def test_interleave_bad_stop_and_no_streams():
    with pytest.raises(DatasetError, match="stop must be one of"):
        interleave(streams(1), stop="longest")
    with pytest.raises(DatasetError, match="no streams"):
        interleave([])


def test_shuffle_buffer_is_a_seeded_permutation_in_bounded_memory():
    rows = [{"i": i} for i in range(500)]
    out = [r["i"] for r in shuffle_buffer(iter(rows), 64, seed=3)]
    assert sorted(out) == list(range(500)) and out != list(range(500))
    assert out == [r["i"] for r in shuffle_buffer(iter(rows), 64, seed=3)]
    assert out != [r["i"] for r in shuffle_buffer(iter(rows), 64, seed=4)]
    source, pulled = counting()
    first = next(shuffle_buffer(source, 10, seed=0))
    assert len(pulled) == 11 and 0 <= first["i"] <= 10  # a buffer's worth plus one, no more
    with pytest.raises(DatasetError, match="buffer_size must be >= 1"):
        shuffle_buffer(iter(rows), 0)


def test_csv_with_old_mac_line_ends(tmp_path):
    path = tmp_path / "cr.csv"
    path.write_bytes(b'query,response\r"two\r\nlines",x\rq2,r2\r')
    rows = list(iter_file(path))
    assert [r["response"] for r in rows] == ["x", "r2"] and rows[1]["_origin"] == f"{path}:4"


@pytest.mark.serial  # timed: run alone, not beside another test
def test_large_json_list_reads_in_linear_time(tmp_path):
    """Each row's line number is counted on from the previous row, not from the file start."""
    path = tmp_path / "big.json"
    path.write_text(json.dumps([{"text": f"row {i}"} for i in range(60_000)], indent=1), encoding="utf-8")
    start = time.monotonic()
    rows = list(iter_file(path))
    assert time.monotonic() - start < 5  # counting from the file start for each row took ~19 s here
    assert rows[-1] == {"text": "row 59999", "_origin": f"{path}:{2 + 3 * 59_999}"}
