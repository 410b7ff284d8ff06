"""The LM head and cross-entropy fused by chunks: the unfused loss and gradients, no vocabulary-wide tensor kept."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

import swiftkit.train.head_loss as head_loss
from swiftkit.train.head_loss import plain_head
from swiftkit.train.lora_dropout import fuse_lora_dropout
from swiftkit.train.losses import token_cross_entropy
from swiftkit.train.trainer import label_only_loss

VOCAB = 300


def _base(model_type="llama", **extra):
    config = AutoConfig.for_model(model_type, vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                  pad_token_id=0, **extra)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config)


def _lora(base):
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules="all-linear",
                                            init_lora_weights=False))
    fuse_lora_dropout(model)
    return model


def _batch():
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(1, VOCAB, (1, 64), generator=g)
    labels = ids.clone()
    labels[0, :10] = -100  # a prompt
    labels[0, 30:38] = -100  # and a second one: ignored targets between labelled ones
    return {"input_ids": ids, "labels": labels}


def _unfused(model, batch, count):
    """The label-only loss as it runs without the fusion: the model's logits, then cross-entropy."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    targets = batch["labels"][:, 1:]
    keep = (targets != -100).any(dim=0).nonzero().squeeze(-1)
    logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits
    return token_cross_entropy(logits, targets[:, keep], count)


def _loss_and_grads(model, fn, scale=1.0):
    model.train()
    torch.manual_seed(1)  # the same dropout masks for both
    loss = fn(model)
    (loss * scale).backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("count", [None, 40])
@pytest.mark.parametrize("lora", [True, False])
def test_fused_head_gives_the_unfused_loss_and_gradients(monkeypatch, lora, count):
    monkeypatch.setattr(head_loss, "CHUNK_LOGITS", 7 * VOCAB)  # several chunks of 7 rows
    model = _lora(_base()) if lora else _base()
    other = copy.deepcopy(model)
    batch = _batch()
    assert plain_head(model, batch) is model.get_output_embeddings()
    loss, grads = _loss_and_grads(model, lambda m: label_only_loss(m, batch, count)[0], scale=0.5)
    ref, ref_grads = _loss_and_grads(other, lambda m: _unfused(m, batch, count), scale=0.5)
    assert torch.allclose(loss, ref, rtol=1e-6, atol=0)
    assert grads.keys() == ref_grads.keys() and grads
    if not lora:
        assert "lm_head.weight" in grads or "model.embed_tokens.weight" in grads  # the head's weight trains
    for name, grad in grads.items():
        assert grad.abs().sum() > 0, name
        assert torch.allclose(grad, ref_grads[name], rtol=1e-5, atol=1e-7), name


def test_no_vocabulary_wide_tensor_is_kept_for_backward():
    model = _lora(_base())
    batch = _batch()
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    shapes = []
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params:
            shapes.append(tuple(t.shape))
        return t

    def kept_vocabulary_wide(fn):
        shapes.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn()
        return [s for s in shapes if s and s[-1] == VOCAB]

    assert (labelled, VOCAB) in kept_vocabulary_wide(lambda: _unfused(model, batch, None))  # the log-softmax
    assert kept_vocabulary_wide(lambda: label_only_loss(model, batch)) == []


def test_bf16_autocast_stays_within_bf16_rounding():
    model = _lora(_base())
    other = copy.deepcopy(model)
    batch = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, grads = _loss_and_grads(model, lambda m: label_only_loss(m, batch)[0])
        ref, ref_grads = _loss_and_grads(other, lambda m: _unfused(m, batch, None))
    assert torch.allclose(loss, ref, rtol=2e-2)
    for name, grad in grads.items():  # measured ~1% (norm of the difference), as far as bf16 is from float32
        assert (grad - ref_grads[name]).norm() < 0.05 * ref_grads[name].norm(), name


def test_heads_that_are_not_a_plain_product_keep_the_unfused_path():
    batch = _batch()
    capped = _base("gemma2", final_logit_softcapping=2.0, head_dim=16)  # tanh-capped logits
    assert plain_head(capped, batch) is None
    lora_head = get_peft_model(_base(), LoraConfig(r=4, target_modules=["lm_head", "q_proj"]))
    assert plain_head(lora_head, batch) is None
    loss, _ = label_only_loss(capped, batch)  # still trains, on the unfused path
    loss.backward()
    assert torch.isfinite(loss)
