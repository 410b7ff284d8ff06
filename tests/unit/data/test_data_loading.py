"""Sampling (#N), mixing, validation split, fingerprints, folders and registered local datasets."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest
from hosts import empty_registries, with_datasets

from swiftkit.core.registry import Registry
from swiftkit.data import DatasetEntry, DatasetError, data_fingerprint, load_rows, split_rows

EMPTY = empty_registries()


def qr_file(tmp_path, name: str, n: int, tag: str = "q") -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps({"query": f"{tag}{i}", "response": f"r{i}"}) + "\n" for i in range(n)))
    return str(path)


def queries(rows) -> list[str]:
    return [r["messages"][0]["content"] for r in rows]


def test_single_file_keeps_file_order(tmp_path):
    path = qr_file(tmp_path, "a.jsonl", 5)
    assert queries(load_rows([path], registries=EMPTY)) == ["q0", "q1", "q2", "q3", "q4"]


def test_sample_smaller_than_data(tmp_path):
    path = qr_file(tmp_path, "a.jsonl", 20)
    rows = load_rows([f"{path}#5"], registries=EMPTY, seed=1)
    assert len(rows) == 5 and len(set(queries(rows))) == 5
    assert set(queries(rows)) <= {f"q{i}" for i in range(20)}


def test_sample_is_deterministic_by_seed(tmp_path):
    path = qr_file(tmp_path, "a.jsonl", 50)
    first = queries(load_rows([f"{path}#10"], registries=EMPTY, seed=7))
    assert first == queries(load_rows([f"{path}#10"], registries=EMPTY, seed=7))
    assert first != queries(load_rows([f"{path}#10"], registries=EMPTY, seed=8))


def test_sample_larger_than_data_repeats_whole_copies(tmp_path):
    path = qr_file(tmp_path, "a.jsonl", 4)
    rows = load_rows([f"{path}#11"], registries=EMPTY, seed=3)
    counts = Counter(queries(rows))
    assert len(rows) == 11 and set(counts) == {"q0", "q1", "q2", "q3"}
    # 11 = 2 full copies + 3 distinct extra rows
    assert sorted(counts.values()) == [2, 3, 3, 3]
    rows[0]["messages"][0]["content"] = "changed"  # repeated rows are independent copies
    assert sum(q == "changed" for q in queries(rows)) == 1


def test_mixing_two_datasets_shuffles_with_seed(tmp_path):
    a = qr_file(tmp_path, "a.jsonl", 10, tag="a")
    b = qr_file(tmp_path, "b.jsonl", 10, tag="b")
    rows = load_rows([a, f"{b}#4"], registries=EMPTY, seed=5)
    tags = Counter(q[0] for q in queries(rows))
    assert tags == {"a": 10, "b": 4}
    assert queries(rows) != sorted(queries(rows), key=lambda q: (q[0], int(q[1:])))  # interleaved
    assert queries(rows) == queries(load_rows([a, f"{b}#4"], registries=EMPTY, seed=5))
    assert {r["_origin"].rsplit(":", 1)[0] for r in rows} == {a, b}


def test_split_rows(tmp_path):
    rows = load_rows([qr_file(tmp_path, "a.jsonl", 20)], registries=EMPTY)
    train, val = split_rows(rows, 0.2, seed=3)
    assert len(val) == 4 and len(train) == 16
    assert sorted(queries(train + val), key=lambda q: int(q[1:])) == queries(rows)
    assert queries(val) == [q for q in queries(rows) if q in set(queries(val))]  # input order kept
    assert split_rows(rows, 0.2, seed=3) == (train, val)
    assert split_rows(rows, 0.2, seed=4)[1] != val


def test_split_rows_edges():
    two = [{"text": "a"}, {"text": "b"}]
    assert len(split_rows(two, 0.01)[1]) == 1  # tiny ratio still gives one validation row
    assert len(split_rows(two, 0.99)[0]) == 1  # never takes every row
    assert split_rows(two, 0.0) == (two, [])
    assert split_rows(two[:1], 0.5) == (two[:1], [])
    with pytest.raises(DatasetError, match="split ratio"):
        split_rows(two, 1.0)


def test_fingerprint_stable_order_sensitive_ignores_origin(tmp_path):
    rows = load_rows([qr_file(tmp_path, "a.jsonl", 3)], registries=EMPTY)
    fp = data_fingerprint(rows)
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert data_fingerprint(rows) == fp
    moved = [dict(r, _origin="elsewhere:1") for r in rows]
    assert data_fingerprint(moved) == fp
    assert data_fingerprint(list(reversed(rows))) != fp
    changed = json.loads(json.dumps(rows))
    changed[1]["messages"][1]["content"] = "r1!"
    assert data_fingerprint(changed) != fp
    assert data_fingerprint([]) != fp
    # canonical JSON (sorted keys): the value does not depend on the process or on key order
    expected = hashlib.sha256(b'{"a":1,"text":"x"}\n').hexdigest()
    assert data_fingerprint([{"text": "x", "a": 1, "_origin": "f:1"}]) == expected
    assert data_fingerprint([{"a": 1, "text": "x"}]) == expected


def test_registered_local_entry_with_column_mapping(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer,sys\nHow?,Like this.,Be kind.\n", encoding="utf-8")
    registry = Registry("dataset")
    registry.register("my-qa", DatasetEntry(
        name="my-qa", path=str(path), columns={"question": "query", "answer": "response", "sys": "system"}
    ))
    rows = load_rows(["my-qa"], registries=with_datasets(registry))
    assert rows[0]["messages"] == [
        {"role": "system", "content": "Be kind."}, {"role": "user", "content": "How?"},
        {"role": "assistant", "content": "Like this."},
    ]
    assert rows[0]["_origin"] == f"{path}:2"


def test_folder_with_splits_and_subsets(tmp_path):
    folder = tmp_path / "ds"
    (folder / "en").mkdir(parents=True)
    (folder / "zh").mkdir()
    qr_file(folder / "en", "train-00000-of-00001.jsonl", 3, tag="en-train")
    qr_file(folder / "en", "test-00000-of-00001.jsonl", 2, tag="en-test")
    qr_file(folder / "zh", "train-00000-of-00001.jsonl", 4, tag="zh-train")
    (folder / "dataset_infos.json").write_text("{}")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "stale.jsonl").write_text("not json\n")
    registry = Registry("dataset")
    registry.register("ds-en-test", DatasetEntry(name="ds-en-test", path=str(folder), subsets=["en"], split="test"))
    registry.register("ds-zh", DatasetEntry(name="ds-zh", path=str(folder), subsets=["zh"]))
    registry.register("ds-fr", DatasetEntry(name="ds-fr", path=str(folder), subsets=["fr"]))
    registry.register("ds-both", DatasetEntry(name="ds-both", path=str(folder), subsets=["zh", "en"]))
    assert queries(load_rows(["ds-en-test"], registries=with_datasets(registry))) == ["en-test0", "en-test1"]
    assert len(load_rows(["ds-zh"], registries=with_datasets(registry))) == 4
    both = queries(load_rows(["ds-both"], registries=with_datasets(registry)))
    assert sorted(both) == sorted([f"zh-train{i}" for i in range(4)] + [f"en-train{i}" for i in range(3)])
    assert len(load_rows([str(folder)], registries=EMPTY)) == 3 + 4  # a folder path: its train files
    with pytest.raises(DatasetError, match="no files for subset 'fr'"):
        load_rows(["ds-fr"], registries=with_datasets(registry))


def test_folder_without_split_names_is_train(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    qr_file(folder, "part1.jsonl", 2)
    qr_file(folder, "part2.jsonl", 3)
    assert len(load_rows([str(folder)], registries=EMPTY)) == 5
    registry = Registry("dataset")
    registry.register("plain-val", DatasetEntry(name="plain-val", path=str(folder), split="validation"))
    with pytest.raises(DatasetError, match="no files for split 'validation'"):
        load_rows(["plain-val"], registries=with_datasets(registry))


def test_text_only_sampling_and_mixing(tmp_path):
    txt = tmp_path / "a.txt"
    txt.write_text("\n".join(f"line {i}" for i in range(6)) + "\n")
    other = tmp_path / "b.jsonl"
    other.write_text(json.dumps({"text": "from jsonl"}) + "\n")
    rows = load_rows([f"{txt}#3", str(other)], registries=EMPTY, text_only=True)
    assert len(rows) == 4 and all(set(r) == {"text", "_origin"} for r in rows)
    assert "from jsonl" in [r["text"] for r in rows]


def test_prompts_without_reply_are_accepted_only_for_inference(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        json.dumps({"messages": [{"role": "user", "content": "Who are you?"}]}) + "\n"
        + json.dumps({"query": "What is 1+1?"}) + "\n"
        + json.dumps({"instruction": "Add", "input": "1 2"}) + "\n"
    )
    with pytest.raises(DatasetError, match=r"prompts\.jsonl:1"):
        load_rows([str(path)], registries=EMPTY)
    rows = load_rows([str(path)], registries=EMPTY, require_reply=False)
    assert [r["messages"][-1]["role"] for r in rows] == ["user", "user", "user"]
    assert rows[2]["messages"][-1]["content"] == "Add\n1 2"
