"""SwiGLU MLPs keeping two of their four wide activations: the same loss and gradients, less kept."""

from __future__ import annotations

import copy

import pytest
import torch
from kept import step_keeping
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from swiftkit.train.lean_mlp import lean_gated_mlps
from swiftkit.train.lora_dropout import fuse_lora_dropout

LAYERS, INTERMEDIATE, TOKENS = 2, 256, 2 * 48


def _base(model_type="llama", **extra):
    config = AutoConfig.for_model(model_type, vocab_size=300, hidden_size=128, intermediate_size=INTERMEDIATE,
                                  num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=2,
                                  pad_token_id=0, **extra)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config)


def _lora(base, dropout=0.1):
    return get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules="all-linear",
                                           init_lora_weights=False))  # B not zero: A gets a gradient too


def _compare(model, lean):
    loss, grads, kept = step_keeping(model, TOKENS // 2)
    lean_loss, lean_grads, lean_kept = step_keeping(lean, TOKENS // 2)
    assert lean_loss == loss
    assert grads.keys() == lean_grads.keys()
    for name, grad in grads.items():
        assert grad.abs().sum() > 0, name
        assert torch.equal(lean_grads[name], grad), name
    return kept, lean_kept


@pytest.mark.parametrize("fused_dropout", [True, False])
def test_lora_training_gives_the_same_loss_and_gradients_and_keeps_two_wide_tensors_less(fused_dropout):
    model = _lora(_base())
    if fused_dropout:
        fuse_lora_dropout(model)
    lean = copy.deepcopy(model)
    assert lean_gated_mlps(lean) == LAYERS
    kept, lean_kept = _compare(model, lean)
    wide = LAYERS * TOKENS * INTERMEDIATE * 4  # one float32 tensor of the intermediate width, every layer
    # SiLU's output and the product are gone; with peft's own dropout the down projection keeps a dropped
    # copy of the product (not the product itself), so only SiLU's output goes
    assert kept - lean_kept == (2 if fused_dropout else 1) * wide


def test_full_training_gives_the_same_loss_and_gradients_with_less_kept():
    model = _base()
    lean = copy.deepcopy(model)
    assert lean_gated_mlps(lean) == LAYERS
    kept, lean_kept = _compare(model, lean)
    assert kept - lean_kept == 2 * LAYERS * TOKENS * INTERMEDIATE * 4  # the down projection's input too


def test_outside_training_the_forward_is_the_model_s_own():
    model = _lora(_base())
    lean = copy.deepcopy(model)
    lean_gated_mlps(lean)
    ids = torch.randint(1, 300, (1, 20))
    model.eval(), lean.eval()
    with torch.no_grad():
        assert torch.equal(lean(input_ids=ids).logits, model(input_ids=ids).logits)
    assert lean.state_dict().keys() == model.state_dict().keys()
    copied = copy.deepcopy(lean)  # the forward follows the copy, not the original module
    mlp = copied.base_model.model.model.layers[0].mlp
    assert mlp.forward.__self__ is mlp


class _ScaledMLP(nn.Module):
    """Shaped like a SwiGLU MLP, but its forward does something else as well."""

    def __init__(self):
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = nn.Linear(8, 16), nn.Linear(8, 16), nn.Linear(16, 8)
        self.act_fn = nn.SiLU()

    def forward(self, x):
        return 2 * self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class _DroppingMLP(_ScaledMLP):
    """Shaped like a SwiGLU MLP, with a dropout of its own in training."""

    def forward(self, x):
        return self.down_proj(nn.functional.dropout(self.act_fn(self.gate_proj(x)), 0.1, self.training)
                              * self.up_proj(x))


def test_mlps_whose_forward_or_activation_differs_keep_their_own():
    assert lean_gated_mlps(nn.Sequential(_ScaledMLP(), _ScaledMLP())) == 0
    assert lean_gated_mlps(nn.Sequential(_DroppingMLP())) == 0  # the same in eval mode, not in training
    gelu = _base("llama", hidden_act="gelu")
    assert lean_gated_mlps(gelu) == 0
    assert lean_gated_mlps(_base("qwen2")) == LAYERS  # another family with the same MLP
