"""--recompute_granularity: selective and full recomputation give the gradients of keeping everything."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

from swiftkit.train.recompute import checkpoint_kwargs, keeps

aten = torch.ops.aten


def _model():
    config = AutoConfig.for_model("llama", vocab_size=300, hidden_size=256, intermediate_size=512,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(config)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules="all-linear",
                                            init_lora_weights=False))  # B not zero: A gets a gradient too
    return model


def _grads(model, granularity):
    model = copy.deepcopy(model)
    kwargs = checkpoint_kwargs(granularity, {"use_reentrant": False})
    if kwargs is not None:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.train()
    ids = torch.randint(1, 300, (1, 40))
    position_ids = torch.cat([torch.arange(15), torch.arange(25)])[None]  # two packed sequences
    torch.manual_seed(1)  # the same dropout masks
    loss = model(input_ids=ids, labels=ids, position_ids=position_ids, use_cache=False).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("granularity", ["selective", "full"])
def test_recomputing_gives_the_gradients_of_keeping_everything(granularity):
    model = _model()
    torch.manual_seed(5)
    loss, grads = _grads(model, "none")
    torch.manual_seed(5)
    other_loss, other = _grads(model, granularity)
    assert other_loss == loss
    assert grads.keys() == other.keys() and len(grads) == 2 * 7 * 2  # lora A and B of 7 modules x 2 layers
    for name, grad in grads.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(other[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_selective_keeps_the_wide_products_and_attention_and_recomputes_the_rest():
    x, wide, rank = torch.ones(10, 576), torch.ones(576, 576), torch.ones(576, 8)
    assert keeps(aten.mm.default, (x, wide))
    assert not keeps(aten.mm.default, (x, rank))  # LoRA's A: narrow output
    assert not keeps(aten.mm.default, (torch.ones(10, 8), rank.T))  # LoRA's B: narrow contraction
    assert keeps(aten.addmm.default, (torch.ones(576), x, wide))
    assert not keeps(aten.bmm.default, (torch.ones(9, 10, 64), torch.ones(9, 64, 10)))  # eager attention scores
    assert keeps(aten._scaled_dot_product_flash_attention_for_cpu.default, ())
    assert not keeps(aten.mul.Tensor, (x, x)) and not keeps(aten.silu.default, (x,))


def test_none_is_no_checkpointing_and_selective_refuses_nothing_it_needs():
    assert checkpoint_kwargs("none", {"use_reentrant": False}) is None
    assert checkpoint_kwargs("full", {"use_reentrant": True}) == {"use_reentrant": True}
    selective = checkpoint_kwargs("selective", {"preserve_rng_state": True})
    assert selective["use_reentrant"] is False and selective["preserve_rng_state"] and callable(selective["context_fn"])
