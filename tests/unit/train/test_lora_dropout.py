"""LoRA dropout fused into the A projection: peft's values bit for bit, less kept for backward."""

from __future__ import annotations

import copy

import pytest
import torch
from kept import step_keeping
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

from swiftkit.train.lora_dropout import DroppedLinear, fuse_lora_dropout
from swiftkit.train.recompute import checkpoint_kwargs


def _model(dropout=0.1, **lora):
    config = AutoConfig.for_model("llama", vocab_size=300, hidden_size=128, intermediate_size=256,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)
    torch.manual_seed(0)
    return get_peft_model(AutoModelForCausalLM.from_config(config),
                          LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules="all-linear",
                                     init_lora_weights=False, **lora))  # B not zero: A gets a gradient too


def _step(model, granularity="none"):
    """Loss, LoRA gradients and the bytes autograd keeps, at ``granularity``."""
    kwargs = checkpoint_kwargs(granularity, {"use_reentrant": False})
    if kwargs is not None:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return step_keeping(model)


@pytest.mark.parametrize("granularity", ["none", "selective", "full"])
def test_fused_dropout_gives_peft_s_loss_and_gradients_bit_for_bit(granularity):
    model = _model()
    fused = copy.deepcopy(model)
    assert fuse_lora_dropout(fused) == 2 * 7  # 7 linear layers x 2 decoder layers
    loss, grads, kept = _step(model, granularity)
    fused_loss, fused_grads, fused_kept = _step(fused, granularity)
    assert fused_loss == loss
    assert grads.keys() == fused_grads.keys() and len(grads) == 2 * 7 * 2
    for name, grad in grads.items():
        assert grad.abs().sum() > 0, name
        assert torch.equal(fused_grads[name], grad), name
    if granularity == "none":
        assert fused_kept < 0.8 * kept  # no dropped copies and no float masks


def test_the_fused_model_saves_merges_and_evaluates_as_peft_s(tmp_path):
    model = _model()
    fused = copy.deepcopy(model)
    fuse_lora_dropout(fused)
    assert fused.state_dict().keys() == model.state_dict().keys()
    ids = torch.randint(1, 300, (1, 20))
    model.eval(), fused.eval()
    with torch.no_grad():
        assert torch.equal(fused(input_ids=ids).logits, model(input_ids=ids).logits)  # no dropout outside training
    fused.save_pretrained(tmp_path / "adapter")
    from peft import PeftModel

    reloaded = PeftModel.from_pretrained(copy.deepcopy(model.get_base_model()), tmp_path / "adapter")
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids).logits, model(input_ids=ids).logits)
        assert torch.equal(copy.deepcopy(fused).merge_and_unload()(input_ids=ids).logits,
                           copy.deepcopy(model).merge_and_unload()(input_ids=ids).logits)


def test_dora_and_no_dropout_keep_peft_s_path():
    assert fuse_lora_dropout(_model(use_dora=True)) == 0  # DoRA's variant applies the dropout itself
    assert fuse_lora_dropout(_model(dropout=0.0)) == 0


def test_under_bf16_autocast_the_fused_step_matches_peft_s_within_bf16_rounding():
    model = _model()
    fused = copy.deepcopy(model)
    fuse_lora_dropout(fused)
    assert any(isinstance(m, DroppedLinear) for m in fused.modules())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, grads, _ = _step(model)
        fused_loss, fused_grads, _ = _step(fused)
    assert fused_loss == pytest.approx(loss, rel=1e-3)
    for name, grad in grads.items():
        assert fused_grads[name].dtype == torch.float32
        torch.testing.assert_close(fused_grads[name], grad, rtol=0.05, atol=1e-3, msg=name)


@pytest.mark.parametrize("bits", [4, 8])
def test_qlora_layers_fuse_and_match_peft_s_path(tmp_path, bits):
    from tiny import save_tiny_model

    from swiftkit.config import SftConfig
    from swiftkit.models import ResolvedModel
    from swiftkit.models.quantization import effective_quantization
    from swiftkit.recipes import steps
    from swiftkit.train.tuners import apply_lora

    folder = save_tiny_model(tmp_path / "tiny")
    cfg = SftConfig.from_flat({"model": "m", "dataset": ["d.jsonl"], "lora_dropout": 0.1, "quant_method": "bnb",
                               "quant_bits": bits, "init_weights": "gaussian"})
    resolved = ResolvedModel(str(folder), None, None, "local", str(folder))
    model = apply_lora(steps.load_weights(resolved, cfg.model, 0, quantization=effective_quantization(
        cfg.quant, cfg.tuner.train_type)), cfg)
    layer = model.get_base_model().model.layers[0].self_attn.q_proj
    assert type(layer.base_layer).__name__ == ("Linear4bit" if bits == 4 else "Linear8bitLt")
    fused = copy.deepcopy(model)
    assert fuse_lora_dropout(fused) > 0
    loss, grads, _ = _step(model)
    fused_loss, fused_grads, _ = _step(fused)
    assert fused_loss == loss
    assert all(torch.equal(fused_grads[name], grad) for name, grad in grads.items())
