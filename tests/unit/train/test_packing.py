"""Packing: the exactness probe, bin-packing encoded rows, the packed collator and padding waste.

The central check: inside any packed or padding-free batch, every sample's logits equal its logits
when run alone, so no sample attends to another.
"""

import itertools
import random

import pytest
import torch

from swiftkit.data.cache import EncodedDataset
from swiftkit.train.collate import make_collator
from swiftkit.train.errors import TrainError
from swiftkit.train.packing import (
    PackedCollator,
    pack_rows,
    packing_is_exact,
    padding_stats,
)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma2", "gpt2"])
def test_builtin_decoders_pack_exactly(arch):
    from tiny import make_tiny_model

    model = make_tiny_model(arch)
    model.train()
    assert packing_is_exact(model)
    assert model.training  # mode restored


class IgnoresPositions(torch.nn.Module):
    """A causal LM that drops position_ids, so packed sequences see each other."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.config = inner.config

    def forward(self, input_ids, position_ids=None, use_cache=None):
        return self.inner(input_ids=input_ids, use_cache=use_cache)


def test_model_that_ignores_position_ids_is_detected():
    from tiny import make_tiny_model

    assert not packing_is_exact(IgnoresPositions(make_tiny_model("llama")))


# -- pack_rows, PackedCollator, padding_stats -------------------------------------------------------


def random_samples(n, seed=0, low=3, high=20, vocab=512):
    rng = random.Random(seed)
    samples = []
    for _ in range(n):
        ids = [rng.randrange(1, vocab) for _ in range(rng.randint(low, high))]
        cut = rng.randint(1, len(ids) - 1)  # prompt tokens get no loss
        samples.append({"input_ids": ids, "labels": [-100] * cut + ids[cut:]})
    return samples


def segments(row):
    """(start, end) of each sample in a packed row, from its position_ids."""
    starts = [i for i, p in enumerate(row["position_ids"]) if p == 0] + [len(row["position_ids"])]
    return list(itertools.pairwise(starts))


def test_pack_rows_fills_bins_keeps_every_sample_and_restarts_positions():
    samples = random_samples(200, seed=1)
    packed = pack_rows(samples, 64)
    seen = []
    for row in packed:
        assert len(row["input_ids"]) == len(row["labels"]) == len(row["position_ids"]) <= 64
        for a, b in segments(row):
            assert row["position_ids"][a:b] == list(range(b - a))
            original = next(s for s in samples if s["input_ids"] == row["input_ids"][a:b])
            assert row["labels"][a:b] == [-100] + original["labels"][1:]
            seen.append(samples.index(original))
    assert sorted(seen) == list(range(200))
    total = sum(len(s["input_ids"]) for s in samples)
    assert len(packed) <= total // 64 + 2  # near the lower bound
    assert pack_rows(samples, 64) == packed  # deterministic


def test_pack_rows_finds_the_tight_packing_and_reads_encoded_datasets():
    samples = [{"input_ids": [7] * n, "labels": [7] * n} for n in (6, 4, 6, 4, 5, 5)]
    packed = pack_rows(samples, 10)
    assert sorted(len(r["input_ids"]) for r in packed) == [10, 10, 10]
    assert pack_rows(EncodedDataset.from_rows(samples), 10) == packed


def test_a_sample_over_the_packing_length_is_an_error():
    with pytest.raises(TrainError, match="encoded row 1 has 12 tokens, over the packing length 10"):
        pack_rows([{"input_ids": [1] * 3, "labels": [1] * 3}, {"input_ids": [1] * 12, "labels": [1] * 12}], 10)


def _logits_alone(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]


def _collators():
    from transformers import DataCollatorWithFlattening

    return {
        "packed-flat": (PackedCollator(pad_token_id=0, flatten=True), True),
        "packed-padded": (PackedCollator(pad_token_id=0, flatten=False), True),
        "padding-free": (DataCollatorWithFlattening(return_position_ids=True, separator_id=-100), False),
    }


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
@pytest.mark.parametrize("kind", ["packed-flat", "packed-padded", "padding-free"])
def test_no_sample_attends_to_another_in_a_batch(arch, kind):
    from tiny import make_tiny_model

    model = make_tiny_model(arch)
    samples = random_samples(9, seed=2)
    collator, takes_bins = _collators()[kind]
    features = pack_rows(samples, 40) if takes_bins else samples
    assert not takes_bins or len(features) > 1 and len({len(f["input_ids"]) for f in features}) > 1
    batch = collator(features)
    assert "attention_mask" not in batch
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    checked = 0
    for r in range(batch["input_ids"].shape[0]):
        row = {"position_ids": batch["position_ids"][r].tolist()}
        ids = batch["input_ids"][r].tolist()
        for a, b in segments(row):
            match = [s for s in samples if s["input_ids"] == ids[a:b]]
            if not match:  # the padding segment
                assert kind == "packed-padded" and all(t == 0 for t in ids[a:b])
                continue
            assert torch.allclose(logits[r, a:b], _logits_alone(model, ids[a:b]), atol=1e-4)
            checked += 1
    assert checked == len(samples)


def test_packed_loss_equals_the_padded_loss_of_the_same_samples():
    from tiny import make_tiny_model, make_tokenizer

    model = make_tiny_model("llama")
    samples = random_samples(8, seed=3)
    padded = make_collator(make_tokenizer("chatml"), padding_free=False)(samples)
    with torch.no_grad():
        reference = model(**padded, use_cache=False).loss
        for flatten in (False, True):
            batch = make_collator(make_tokenizer("chatml"), padding_free=flatten, packed=True)(pack_rows(samples, 48))
            assert torch.allclose(model(**batch, use_cache=False).loss, reference, atol=1e-5)


def test_make_collator_chooses_the_packed_layout_from_padding_free():
    from tiny import make_tokenizer

    tok = make_tokenizer("chatml")
    flat = make_collator(tok, padding_free=True, packed=True)
    padded = make_collator(tok, padding_free=False, packed=True)
    assert isinstance(flat, PackedCollator) and flat.flatten and flat.pad_token_id == tok.pad_token_id
    assert isinstance(padded, PackedCollator) and not padded.flatten


def test_padding_stats_counts_padded_per_real_token():
    from tiny import make_tokenizer
    from transformers import DataCollatorWithFlattening

    rows = [{"input_ids": [5] * n, "labels": [5] * n} for n in (2, 4, 6, 6)]
    batches = [rows[:2], rows[2:]]
    padded = make_collator(make_tokenizer("chatml"), padding_free=False)
    assert padding_stats(batches, padded) == pytest.approx(2 / 18)
    assert padding_stats(batches, DataCollatorWithFlattening(return_position_ids=True)) == 0
    bins = pack_rows(rows, 10)  # 6+4, 6+2 (best fit), -> [10, 8]
    assert padding_stats([bins], PackedCollator(flatten=False)) == pytest.approx(2 / 18)
    assert padding_stats([bins], PackedCollator(flatten=True)) == 0
    assert padding_stats([], padded) == 0
