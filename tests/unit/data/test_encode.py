"""Encoding rows for training: one process or several (same result), eager or lazy."""

import random

import numpy as np
import pytest
from encode_helpers import CountingTemplate

from swiftkit.data.datasets import LazyEncodedDataset
from swiftkit.data.encode import encode_dataset, encode_rows
from swiftkit.data.errors import DatasetError
from swiftkit.templates import TemplateError
from swiftkit.train.collate import make_collator

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "hello", "how", "can", "I", "help", "you", "today", "capital", "of", "France"]


def make_rows(n, seed=0, long_every=7):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.randint(70, 90) if long_every and i % long_every == long_every // 2 else rng.randint(1, 8)
        messages = []
        for _ in range(rng.randint(1, 2)):
            messages.append({"role": "user", "content": " ".join(rng.choices(WORDS, k=rng.randint(1, 5)))})
            messages.append({"role": "assistant", "content": " ".join(rng.choices(WORDS, k=words))})
        rows.append({"messages": messages, "_origin": f"data.jsonl:{i + 1}"})
    return rows


@pytest.fixture(scope="module")
def template():
    from tiny import make_tokenizer

    tok = make_tokenizer("chatml")
    return CountingTemplate(tok, "model", tok.chat_template, max_length=64)


def as_lists(data):
    return [data[i] for i in range(len(data))]


def test_matches_encode_rows_and_skips_long_rows(template):
    rows = make_rows(60)
    data, skipped = encode_dataset(rows, template, use_cache=False)
    expected, expected_skipped = encode_rows(rows, template)
    assert skipped == expected_skipped > 0
    assert len(data) + skipped == len(rows)
    assert as_lists(data) == expected
    assert not data.from_cache


def test_several_processes_give_identical_arrays(template):
    rows = make_rows(300, seed=1)
    one, skipped_one = encode_dataset(rows, template, num_proc=1, use_cache=False)
    two, skipped_two = encode_dataset(rows, template, num_proc=2, use_cache=False)
    assert skipped_one == skipped_two > 0
    for name in ("input_ids", "labels", "offsets"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name


@pytest.mark.parametrize("num_proc", [1, 2])
def test_one_render_spans_give_the_per_reply_arrays(num_proc, monkeypatch):
    from tiny import make_tokenizer

    from swiftkit.templates import template as template_module

    monkeypatch.setattr(template_module, "SPANS_CHECKED_ROWS", 0)  # every row from its one rendering
    rows = make_rows(150, seed=2)
    tok = make_tokenizer("chatml")
    fast = CountingTemplate(tok, "model", tok.chat_template, max_length=64)
    exact = CountingTemplate(tok, "model", tok.chat_template, max_length=64)
    exact._frame = None  # every reply found by rendering its history
    assert fast._reply_frame() is not None
    one, skipped_one = encode_dataset(rows, fast, num_proc=num_proc, use_cache=False)
    two, skipped_two = encode_dataset(rows, exact, num_proc=num_proc, use_cache=False)
    assert skipped_one == skipped_two > 0
    for name in ("input_ids", "labels", "offsets"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name


def test_every_row_too_long_is_an_error(template):
    long_rows = make_rows(14, long_every=1)
    for num_proc in (1, 2):
        with pytest.raises(DatasetError, match=r"every row of --dataset \(14\) is longer than --max_length 64"):
            encode_dataset(long_rows, template, num_proc=num_proc, use_cache=False)


def test_a_bad_row_in_a_worker_names_its_line(template):
    rows = make_rows(50)
    rows[37]["messages"][0]["role"] = "robot"
    with pytest.raises(TemplateError, match=r"data.jsonl:38: message 0: role 'robot'"):
        encode_dataset(rows, template, num_proc=2, use_cache=False)


@pytest.mark.parametrize("num_proc", [0, -1, 1.5, True])
def test_num_proc_must_be_a_positive_integer(template, num_proc):
    with pytest.raises(DatasetError, match="--dataset_num_proc must be a positive integer"):
        encode_dataset(make_rows(3), template, num_proc=num_proc, use_cache=False)


def test_empty_rows_give_an_empty_dataset(template, tmp_path):
    data, skipped = encode_dataset([], template, cache_dir=tmp_path)
    assert (len(data), skipped) == (0, 0)
    assert list(tmp_path.iterdir()) == []


def test_lazy_encodes_on_read_and_replaces_long_rows_with_the_next_that_fits(template):
    from tiny import make_tokenizer

    tok = make_tokenizer("chatml")
    counting = CountingTemplate(tok, "model", tok.chat_template, max_length=64)
    rows = make_rows(12, long_every=7)  # rows 3 and 10 are over-long
    rows[-1] = rows[3]  # the last row too: it wraps around to row 0
    data, skipped = LazyEncodedDataset(rows, counting), 0
    assert isinstance(data, LazyEncodedDataset)
    assert (len(data), skipped, counting.calls, data.replaced) == (12, 0, 0, 0)
    eager = {i: template.encode(rows[i]) for i in (0, 4)}
    assert data[0] == eager[0]
    assert counting.calls == 1
    assert data[3] == eager[4]
    assert data[10] == eager[0]  # 10 and 11 are both too long, wrap to 0
    assert data.replaced == 3
    calls = counting.calls
    assert data[3] == eager[4]  # a known over-long row is not encoded again
    assert counting.calls == calls + 1


def test_lazy_with_every_row_too_long_is_an_error(template):
    data = LazyEncodedDataset(make_rows(5, long_every=1), template)
    with pytest.raises(DatasetError, match=r"every row of --dataset \(5\) is longer"):
        data[2]


@pytest.mark.parametrize("padding_free", [False, True])
def test_encoded_dataset_batches_with_the_collator(template, padding_free):
    import torch

    rows = make_rows(20, long_every=0)
    data, _ = encode_dataset(rows, template, use_cache=False)
    collator = make_collator(template.tokenizer, padding_free)
    loader = torch.utils.data.DataLoader(data, batch_size=4, collate_fn=collator)
    batches = list(loader)
    assert len(batches) == 5
    first = [data[i] for i in range(4)]
    real = sum(len(f["input_ids"]) for f in first)
    if padding_free:
        assert batches[0]["input_ids"].shape == (1, real)
        expected = [p for f in first for p in range(len(f["input_ids"]))]
        assert batches[0]["position_ids"][0].tolist() == expected
    else:
        assert int(batches[0]["attention_mask"].sum()) == real


@pytest.mark.parametrize("layout", ["eager", "lazy", "packed"])
def test_transformers_trainer_trains_on_the_encoded_rows(template, tmp_path, layout):
    import torch
    from tiny import make_tiny_model
    from transformers import Trainer, TrainingArguments

    from swiftkit.train.packing import pack_rows

    rows = make_rows(24)
    data = LazyEncodedDataset(rows, template) if layout == "lazy" else encode_dataset(rows, template, use_cache=False)[0]
    if layout == "packed":
        data = pack_rows(data, 64)
    torch.manual_seed(0)
    model = make_tiny_model("llama", vocab_size=len(template.tokenizer))
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=4,
                             save_strategy="no", report_to="none", remove_unused_columns=False,
                             dataloader_pin_memory=False, use_cpu=True)
    collator = make_collator(template.tokenizer, padding_free=False, packed=layout == "packed")
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collator)
    output = trainer.train()
    assert output.global_step == 6 and np.isfinite(output.training_loss)
    if layout == "lazy":  # one epoch read every row: rows 3, 10 and 17 are over-long
        assert data.replaced == 3
