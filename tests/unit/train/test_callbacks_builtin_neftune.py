"""neftune: noise on the input embeddings in a training forward only (not in eval mode, not under no_grad,
never in generation), scaled by each sequence's own length, on plain and peft models."""

from __future__ import annotations

import math

import pytest
import torch
from tiny import make_tiny_model

from swiftkit.config import SftConfig
from swiftkit.recipes.parts import callback_names, training_arguments
from swiftkit.train.builtin_callbacks import BUILTIN_CALLBACKS
from swiftkit.train.neftune import NEFTune, attach_neftune, sequence_lengths

ALPHA = 5.0
HIDDEN = 64


def embedded(model, **inputs):
    """What the decoder layers receive from the input embedding (after every hook on it)."""
    seen = []
    handle = model.get_input_embeddings().register_forward_hook(lambda m, i, out: seen.append(out.detach().clone()))
    try:
        model(**inputs)
    finally:
        handle.remove()
    return seen[-1]


def plain(model, ids):
    return model.get_input_embeddings().weight[ids].detach()


def bound(length: int) -> float:
    return ALPHA / math.sqrt(length * HIDDEN)


@pytest.fixture
def model():
    return make_tiny_model("llama")


def test_noise_in_train_mode_only(model):
    ids = torch.randint(1, 512, (2, 10), generator=torch.Generator().manual_seed(0))
    handles = attach_neftune(model, ALPHA)
    model.train()
    noise = embedded(model, input_ids=ids) - plain(model, ids)
    assert noise.abs().max() <= bound(10) * (1 + 1e-5)
    assert noise.abs().max() > 0.9 * bound(10)  # uniform noise over 1280 values reaches near its bound
    assert abs(noise.mean()) < 0.1 * bound(10)
    model.eval()
    assert torch.equal(embedded(model, input_ids=ids), plain(model, ids))
    model.train()
    with torch.no_grad():  # reference and rollout passes see plain embeddings
        assert torch.equal(embedded(model, input_ids=ids), plain(model, ids))
    for handle in handles:
        handle.remove()
    assert torch.equal(embedded(model, input_ids=ids), plain(model, ids))


def test_each_sequence_of_a_packed_row_gets_its_own_scale(model):
    """A padding-free row of a 3- and a 12-token sequence: each gets alpha / sqrt(L d) with its own L
    (transformers' built-in version would use L = 15 for both)."""
    ids = torch.randint(1, 512, (1, 15), generator=torch.Generator().manual_seed(1))
    positions = torch.tensor([[0, 1, 2, *range(12)]])
    attach_neftune(model, ALPHA)
    model.train()
    noise = (embedded(model, input_ids=ids, position_ids=positions) - plain(model, ids))[0]
    short, long = noise[:3].abs().max().item(), noise[3:].abs().max().item()
    assert 0.9 * bound(3) < short <= bound(3) * (1 + 1e-5)
    assert 0.9 * bound(12) < long <= bound(12) * (1 + 1e-5)


def test_padded_rows_use_their_real_length(model):
    ids = torch.randint(1, 512, (2, 10), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[0, 4:] = 0
    attach_neftune(model, ALPHA)
    model.train()
    noise = embedded(model, input_ids=ids, attention_mask=mask) - plain(model, ids)
    assert 0.9 * bound(4) < noise[0].abs().max() <= bound(4) * (1 + 1e-5)
    assert 0.9 * bound(10) < noise[1].abs().max() <= bound(10) * (1 + 1e-5)


def test_sequence_lengths():
    assert sequence_lengths(1, 6, torch.tensor([[0, 1, 0, 1, 2, 0]])).tolist() == [[2, 2, 3, 3, 3, 1]]
    assert sequence_lengths(1, 4, torch.tensor([[5, 6, 0, 1]])).tolist() == [[2, 2, 2, 2]]  # a row starts a sequence
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert sequence_lengths(2, 3, None, mask).tolist() == [[2, 2, 2], [3, 3, 3]]
    assert sequence_lengths(2, 3).tolist() == [[3, 3, 3], [3, 3, 3]]


@pytest.mark.parametrize("training", [False, True])
def test_generation_is_unaffected(model, training):
    ids = torch.randint(1, 512, (1, 6), generator=torch.Generator().manual_seed(3))
    model.train(training)
    before = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
    attach_neftune(model, ALPHA)
    after = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(before, after)


def test_callback_on_a_peft_model_adds_noise_while_training_and_removes_it_after(model):
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    ids = torch.randint(1, 512, (1, 12), generator=torch.Generator().manual_seed(4))
    callback = NEFTune(ALPHA)
    callback.on_train_begin(None, None, None, model=peft_model)
    peft_model.train()
    assert not torch.equal(embedded(peft_model, input_ids=ids), plain(peft_model, ids))
    noisy = peft_model(input_ids=ids, labels=ids).loss
    peft_model.eval()
    assert torch.equal(embedded(peft_model, input_ids=ids), plain(peft_model, ids))
    callback.on_train_end(None, None, None)
    peft_model.train()
    assert torch.equal(embedded(peft_model, input_ids=ids), plain(peft_model, ids))
    assert noisy.item() != peft_model(input_ids=ids, labels=ids).loss.item()


def config(**flags):
    return SftConfig.from_flat({"model": "tiny", "dataset": ["rows.jsonl"], **flags})


def test_flags_select_the_callback_and_keep_transformers_noise_off(tmp_path):
    assert "neftune" in callback_names(config(neftune_noise_alpha=3.0))
    assert "neftune" not in callback_names(config())
    assert BUILTIN_CALLBACKS["neftune"](config(neftune_noise_alpha=3.0)).alpha == 3.0
    assert BUILTIN_CALLBACKS["neftune"](config(callbacks=["neftune"])).alpha == 5.0
    args = training_arguments(config(neftune_noise_alpha=3.0), tmp_path, has_val=False)
    assert args["neftune_noise_alpha"] is None  # never noise twice
