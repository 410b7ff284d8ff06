"""The --dataset syntax: [hf::|ms::]SOURCE[:SUBSETS][#N|#R], ratios, subsets and forced hubs."""

from __future__ import annotations

import json

import pytest
from hosts import empty_registries, with_datasets

from swiftkit.core.registry import Registry
from swiftkit.data import DatasetEntry, DatasetError, load_rows
from swiftkit.data.loader import DatasetSpec, parse_spec

EMPTY = empty_registries()


def rows_file(path, n: int, tag: str = "q"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"query": f"{tag}{i}", "response": "r"}) + "\n" for i in range(n)))
    return path


def queries(rows):
    return [r["messages"][0]["content"] for r in rows]


@pytest.mark.parametrize("text, expected", [
    ("alpaca", DatasetSpec("alpaca", "alpaca")),
    ("alpaca#500", DatasetSpec("alpaca#500", "alpaca", count=500)),
    ("alpaca#0.25", DatasetSpec("alpaca#0.25", "alpaca", ratio=0.25)),
    ("alpaca#2.", DatasetSpec("alpaca#2.", "alpaca", ratio=2.0)),
    ("hf::org/data", DatasetSpec("hf::org/data", "org/data", hub="hf")),
    ("ms::org/data:en/zh#10", DatasetSpec("ms::org/data:en/zh#10", "org/data", hub="ms", subsets=["en", "zh"], count=10)),
    ("org/data:main", DatasetSpec("org/data:main", "org/data", subsets=["main"])),
])
def test_parse_spec(text, expected):
    assert parse_spec(text) == expected


@pytest.mark.parametrize("text, message", [
    ("data#0", "must be > 0"),
    ("data#0.0", "ratio after '#' must be > 0"),
    ("data#-1", "after '#' expected a positive integer"),
    ("data#1e3", "after '#' expected a positive integer"),
    ("data:", "expected SOURCE:SUBSET"),
    (":en", "expected SOURCE:SUBSET"),
    ("hf::", "no dataset name or path"),
])
def test_bad_specs_say_what_is_expected(text, message):
    with pytest.raises(DatasetError, match=message) as info:
        parse_spec(text)
    assert repr(text) in str(info.value)


def test_existing_path_with_colon_or_hash_is_a_path(tmp_path):
    path = rows_file(tmp_path / "odd:name#3.jsonl", 4)
    assert parse_spec(str(path)) == DatasetSpec(str(path), str(path))
    assert len(load_rows([str(path)], registries=EMPTY)) == 4


def test_ratio_samples_a_share_and_oversamples_above_one(tmp_path):
    a = rows_file(tmp_path / "a.jsonl", 40, "a")
    b = rows_file(tmp_path / "b.jsonl", 10, "b")
    mixed = queries(load_rows([f"{a}#0.25", f"{b}#2.0"], registries=EMPTY, seed=1))
    assert sum(q.startswith("a") for q in mixed) == 10
    assert sum(q.startswith("b") for q in mixed) == 20
    assert sorted(q for q in mixed if q.startswith("b")) == sorted([f"b{i}" for i in range(10)] * 2)
    again = queries(load_rows([f"{a}#0.25", f"{b}#2.0"], registries=EMPTY, seed=1))
    assert again == mixed  # seeded
    assert queries(load_rows([f"{a}#0.25", f"{b}#2.0"], registries=EMPTY, seed=2)) != mixed


def test_subsets_select_folders_and_override_the_cards(tmp_path):
    folder = tmp_path / "ds"
    rows_file(folder / "en" / "train.jsonl", 3, "en")
    rows_file(folder / "zh" / "train.jsonl", 2, "zh")
    rows_file(folder / "fr" / "train.jsonl", 1, "fr")
    assert sorted(queries(load_rows([f"{folder}:zh/fr"], registries=EMPTY))) == ["fr0", "zh0", "zh1"]
    registry = Registry("dataset")
    registry.register("multi", DatasetEntry(name="multi", path=str(folder), subsets=["en"]))
    assert queries(load_rows(["multi"], registries=with_datasets(registry))) == ["en0", "en1", "en2"]
    assert queries(load_rows(["multi:fr"], registries=with_datasets(registry))) == ["fr0"]


def test_subsets_on_a_file_are_an_error(tmp_path):
    path = rows_file(tmp_path / "a.jsonl", 2)
    with pytest.raises(DatasetError, match="subsets apply to folders and hub datasets, not files"):
        load_rows([f"{path}:en"], registries=EMPTY)


def test_forced_hub_needs_that_hubs_id():
    registry = Registry("dataset")
    registry.register("ms-only", DatasetEntry(name="ms-only", ms_id="org/ms-only"))
    with pytest.raises(DatasetError, match="dataset 'ms-only' has no Hugging Face id; drop the 'hf::' prefix"):
        load_rows(["hf::ms-only"], registries=with_datasets(registry))


def test_columns_flag_maps_custom_columns_and_drops_others(tmp_path):
    path = tmp_path / "custom.jsonl"
    path.write_text(json.dumps({"q": "Hi", "a": "Hello", "label": {"not": "kto"}}) + "\n")
    rows = load_rows([str(path)], registries=EMPTY, columns={"q": "query", "a": "response", "label": None})
    assert rows[0]["messages"] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert "label" not in rows[0]
