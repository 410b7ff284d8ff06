"""The encoded-data cache: a hit skips tokenization, any change that alters encoding misses,
and a damaged entry is rebuilt."""

import json
import random

import numpy as np
import pytest
from encode_helpers import CountingTemplate

from swiftkit.data.cache import cache_key, tokenizer_fingerprint
from swiftkit.data.encode import encode_dataset

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "hello", "how", "can", "I", "help", "you", "today"]


def make_rows(n=30, seed=0):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.randint(60, 80) if i % 10 == 4 else rng.randint(1, 8)  # every tenth is too long
        rows.append({"messages": [
            {"role": "user", "content": " ".join(rng.choices(WORDS, k=3))},
            {"role": "assistant", "content": " ".join(rng.choices(WORDS, k=words))},
        ], "_origin": f"rows.jsonl:{i + 1}"})
    return rows


def make_template(style="chatml", extra_tokens=(), **options):
    from tiny import make_tokenizer

    tok = make_tokenizer(style)
    if extra_tokens:
        tok.add_tokens(list(extra_tokens))
    options.setdefault("max_length", 48)
    return CountingTemplate(tok, "model", tok.chat_template, **options)


def arrays(data):
    return [np.asarray(getattr(data, name)) for name in ("input_ids", "labels", "offsets")]


def assert_same(a, b):
    for x, y in zip(arrays(a), arrays(b)):
        assert np.array_equal(x, y)


def test_a_hit_loads_the_arrays_without_encoding(tmp_path):
    rows = make_rows()
    first = make_template()
    built, skipped = encode_dataset(rows, first, cache_dir=tmp_path)
    assert first.calls == len(rows) and skipped == 3 and not built.from_cache
    second = make_template()  # a new tokenizer and template with the same content
    loaded, skipped_again = encode_dataset(rows, second, cache_dir=tmp_path)
    assert second.calls == 0
    assert loaded.from_cache and skipped_again == 3
    assert_same(built, loaded)
    assert [loaded[i] for i in range(len(loaded))] == [built[i] for i in range(len(built))]
    entries = list(tmp_path.iterdir())  # one entry, no temporary folder left behind
    assert entries == [loaded.cache_path]
    assert sorted(p.name for p in entries[0].iterdir()) == [
        "input_ids.npy", "labels.npy", "meta.json", "offsets.npy"]
    assert json.loads((entries[0] / "meta.json").read_text())["rows"] == len(rows) - 3


def _truncate_ids(entry):
    path = entry / "input_ids.npy"
    path.write_bytes(path.read_bytes()[:-10])


def _drop_offsets(entry):
    (entry / "offsets.npy").unlink()


def _garble_meta(entry):
    (entry / "meta.json").write_text("{not json")


def _shift_offsets(entry):
    offsets = np.load(entry / "offsets.npy")
    offsets[1] = offsets[-1] + 1
    np.save(entry / "offsets.npy", offsets)


def _ids_out_of_vocab(entry):
    ids = np.load(entry / "input_ids.npy")
    ids[0] = 10_000
    np.save(entry / "input_ids.npy", ids)


@pytest.mark.parametrize("damage", [_truncate_ids, _drop_offsets, _garble_meta, _shift_offsets, _ids_out_of_vocab])
def test_a_damaged_entry_is_ignored_and_rebuilt(tmp_path, damage):
    rows = make_rows()
    built, _ = encode_dataset(rows, make_template(), cache_dir=tmp_path)
    damage(built.cache_path)
    again = make_template()
    rebuilt, skipped = encode_dataset(rows, again, cache_dir=tmp_path)
    assert again.calls == len(rows) and not rebuilt.from_cache and skipped == 3
    assert_same(built, rebuilt)
    third = make_template()
    loaded, _ = encode_dataset(rows, third, cache_dir=tmp_path)
    assert third.calls == 0 and loaded.from_cache
    assert_same(built, loaded)


VARIANTS = {
    "system prompt": {"system": "You are a pirate."},
    "chat template": {"style": "chatml_default_system"},
    "tokenizer vocab": {"extra_tokens": ["<|new_token|>"]},
    "max_length": {"max_length": 47},
    "truncation strategy": {"truncation_strategy": "left"},
    "loss_scale": {"loss_scale": "all"},
}


@pytest.mark.parametrize("change", VARIANTS, ids=list(VARIANTS))
def test_a_change_that_alters_encoding_misses(tmp_path, change):
    rows = make_rows()
    encode_dataset(rows, make_template(), cache_dir=tmp_path)
    changed = make_template(**VARIANTS[change])
    assert cache_key(rows, changed) != cache_key(rows, make_template())
    data, _ = encode_dataset(rows, changed, cache_dir=tmp_path)
    assert changed.calls == len(rows) and not data.from_cache
    assert len(list(tmp_path.iterdir())) == 2


def test_changed_rows_miss_and_origins_do_not_count(tmp_path):
    rows = make_rows()
    encode_dataset(rows, make_template(), cache_dir=tmp_path)
    moved = [{**row, "_origin": "elsewhere.jsonl:1"} for row in rows]
    same = make_template()
    encode_dataset(moved, same, cache_dir=tmp_path)
    assert same.calls == 0
    edited = make_rows()
    edited[5]["messages"][1]["content"] += " fox"
    other = make_template()
    encode_dataset(edited, other, cache_dir=tmp_path)
    assert other.calls == len(rows)


def test_tokenizer_fingerprint_is_stable_and_sees_added_tokens():
    from tiny import make_tokenizer

    a, b = make_tokenizer("chatml"), make_tokenizer("chatml")
    assert tokenizer_fingerprint(a) == tokenizer_fingerprint(b)
    b.add_tokens(["<|new_token|>"])
    assert tokenizer_fingerprint(a) != tokenizer_fingerprint(b)


def test_without_cache_nothing_is_written(tmp_path):
    encode_dataset(make_rows(), make_template(), cache_dir=tmp_path, use_cache=False)
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_cache_warns_and_still_returns_the_rows(tmp_path, capsys):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    data, skipped = encode_dataset(make_rows(), make_template(), cache_dir=blocker)
    assert len(data) == 27 and skipped == 3 and data.cache_path is None
    assert "could not write the encoded-data cache" in capsys.readouterr().err


def test_several_processes_fill_the_same_entry(tmp_path):
    rows = make_rows(200, seed=3)
    built, _ = encode_dataset(rows, make_template(), cache_dir=tmp_path, num_proc=2)
    single, _ = encode_dataset(rows, make_template(), use_cache=False)
    assert_same(built, single)
    loaded, _ = encode_dataset(rows, make_template(), cache_dir=tmp_path)
    assert loaded.from_cache
