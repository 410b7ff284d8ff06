"""The dry run's arithmetic against the real thing: bitsandbytes' storage, optimizers' states, the
Trainer's step count, parameter groups, and the fake-tensor activation trace against a real step."""

from __future__ import annotations

import math

import pytest
import torch
from tiny import make_tiny_model

from swiftkit.train import estimate
from swiftkit.train.estimate_trace import TraceBatch, _inputs, _live_bytes_mode, activation_peak
from swiftkit.train.losses import token_cross_entropy


def _infos(module) -> list[estimate.ParamInfo]:
    return [estimate.ParamInfo(n, "mlp", p.numel(), tuple(p.shape), p.element_size(), True, False)
            for n, p in module.named_parameters()]


def _state_bytes(optimizer) -> int:
    """Bytes of every tensor an optimizer keeps per parameter (0-d counters aside), shared ones once."""
    seen, total = set(), 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value) and value.dim() > 0 and value.data_ptr() not in seen:
                seen.add(value.data_ptr())
                total += value.numel() * value.element_size()
    return total


def _step(module, optimizer) -> None:
    module(torch.randn(4, module.in_features)).sum().backward()
    optimizer.step()


@pytest.mark.parametrize("bits,double_quant", [(4, True), (4, False), (8, False)])
def test_bnb_weight_bytes_equal_what_bitsandbytes_stores(bits, double_quant):
    bnb = pytest.importorskip("bitsandbytes")
    weight = torch.randn(384, 320)
    if bits == 4:
        param = bnb.nn.Params4bit(weight, requires_grad=False, compress_statistics=double_quant, quant_type="nf4")
        layer = bnb.nn.Linear4bit(320, 384, bias=False, compute_dtype=torch.float32,
                                  compress_statistics=double_quant, quant_type="nf4")
        layer.weight = param
        layer = layer.to("cpu")
        stored = layer.weight.data.numel() * layer.weight.data.element_size()
        stored += sum(v.numel() * v.element_size() for v in layer.weight.quant_state.as_dict(packed=False).values()
                      if torch.is_tensor(v))
    else:
        layer = bnb.nn.Linear8bitLt(320, 384, bias=False, has_fp16_weights=False)
        layer.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
        layer = layer.to("cpu")
        stored = layer.weight.data.numel() + layer.weight.SCB.numel() * 4
    assert estimate.bnb_weight_bytes(384 * 320, 384, bits, double_quant) == stored


def test_adamw_sgd_adagrad_and_adafactor_states_equal_the_real_optimizers():
    from transformers.optimization import Adafactor

    torch.manual_seed(0)
    cases = [
        ("adamw_torch", None, lambda ps: torch.optim.AdamW(ps, lr=1e-3)),
        ("sgd", "momentum=0.9", lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9)),
        ("sgd", None, lambda ps: torch.optim.SGD(ps, lr=1e-3)),
        ("adagrad", None, lambda ps: torch.optim.Adagrad(ps, lr=1e-3)),
        ("adafactor", None, lambda ps: Adafactor(ps, lr=1e-3, scale_parameter=False, relative_step=False)),
    ]
    for name, optim_args, build in cases:
        layer = torch.nn.Linear(96, 48)
        optimizer = build(layer.parameters())
        _step(layer, optimizer)
        counted, _, assumed = estimate.optimizer_state_bytes(name, _infos(layer), optim_args=optim_args)
        assert (counted, assumed) == (_state_bytes(optimizer), False), name


def test_8bit_adamw_states_equal_bitsandbytes_up_to_its_shared_code_books():
    bnb = pytest.importorskip("bitsandbytes")
    layer = torch.nn.Linear(256, 128)  # the weight takes 8-bit states, the bias (< 4096 values) 32-bit ones
    optimizer = bnb.optim.AdamW8bit(layer.parameters(), lr=1e-3)
    _step(layer, optimizer)
    counted, _, _ = estimate.optimizer_state_bytes("adamw_bnb_8bit", _infos(layer))
    assert counted == _state_bytes(optimizer) - 2 * 256 * 4  # two 256-entry fp32 maps shared by all parameters


def test_an_unknown_optimizer_is_counted_as_adamw_and_said_to_be_assumed():
    infos = _infos(torch.nn.Linear(8, 4))
    counted, how, assumed = estimate.optimizer_state_bytes("adamw_torch", infos, optimizer="my_plugin_optimizer")
    assert assumed and counted == 2 * sum(p.numel * 4 for p in infos) and "assumed" in how


@pytest.mark.parametrize("rows,batch,accumulation,drop_last,expected", [
    (16, 2, 1, False, 8), (17, 2, 1, False, 9), (17, 2, 1, True, 8), (17, 2, 2, False, 5), (3, 4, 8, False, 1),
])
def test_steps_per_epoch_follow_the_trainer(rows, batch, accumulation, drop_last, expected):
    assert estimate.steps_per_epoch(rows, batch, accumulation, drop_last) == expected


def test_total_steps_are_max_steps_or_the_epochs_rounded_up():
    assert estimate.total_steps(10, 7, 3.0) == 7
    assert estimate.total_steps(10, -1, 2.5) == 25
    assert estimate.total_steps(3, -1, 0.5) == 2


def test_length_histogram_buckets_double_and_end_at_the_longest_row():
    hist = estimate.length_histogram([5, 16, 17, 40, 100])
    assert hist == [{"upto": 16, "rows": 2}, {"upto": 32, "rows": 1}, {"upto": 64, "rows": 1},
                    {"upto": 100, "rows": 1}]
    assert estimate.length_histogram([3]) == [{"upto": 3, "rows": 1}]


def test_parameter_groups_cover_every_tensor_once_and_adapters_are_the_new_ones():
    from peft import LoraConfig, get_peft_model

    model = make_tiny_model("llama")
    base = estimate.base_parameter_names(model)
    tuned = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    count = estimate.count_parameters(tuned, base)
    unique = {id(p): p for p in tuned.parameters()}.values()
    assert count.total == sum(p.numel() for p in unique)
    assert count.trainable == sum(p.numel() for p in unique if p.requires_grad)
    groups = count.groups
    assert groups["adapters"]["trainable"] == groups["adapters"]["total"] == count.trainable
    assert groups["embeddings"]["total"] == tuned.get_input_embeddings().weight.numel()
    assert groups["head"]["total"] == tuned.get_output_embeddings().weight.numel()
    layer = tuned.base_model.model.model.layers[0]
    per_layer_attention = sum(p.numel() for n, p in layer.self_attn.named_parameters() if "lora_" not in n)
    assert groups["attention"]["total"] == 2 * per_layer_attention
    assert groups["norms"]["total"] == sum(p.numel() for n, p in tuned.named_parameters() if "norm" in n)


def _meta_lora_model(config, lora):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return get_peft_model(model, lora)


@pytest.mark.parametrize("padding_free", [True, False])
def test_the_fake_trace_equals_the_live_bytes_of_a_real_step(padding_free):
    """The same forward, loss and backward pass on real tensors, counted by the same dispatch mode:
    the peak traced on fake tensors (no weights) is the real one."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=4, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    real = get_peft_model(make_tiny_model("llama"), lora).train()
    batch = TraceBatch(1, 60, [[20, 25, 15]], 30) if padding_free else TraceBatch(3, 25, None, 25)
    traced = activation_peak(_meta_lora_model(real.config, lora), batch, vocab_size=real.config.vocab_size)

    params = list(real.parameters())
    tracker = _live_bytes_mode()({t.untyped_storage()._cdata for t in [*params, *real.buffers()]})
    inputs = _inputs(batch, "cpu", real.config.vocab_size)
    keep = torch.arange(batch.labelled)
    with tracker:
        logits = real(**inputs, use_cache=False, logits_to_keep=keep).logits
        loss = token_cross_entropy(logits, torch.randint(0, 100, (batch.rows, batch.labelled)))
        loss.backward()
        del loss, logits
    grads = {p.grad.untyped_storage()._cdata for p in params if p.grad is not None}
    peak, grads_at_peak, without = tracker.peaks(grads)
    assert traced["peak"] > 0
    assert math.isclose(traced["peak"], peak, rel_tol=0.02)
    assert math.isclose(traced["peak_without_gradients"], without, rel_tol=0.02)


def test_tied_embeddings_count_once_as_embeddings():
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("llama", vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                  num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    count = estimate.count_parameters(model, estimate.base_parameter_names(model))
    assert count.groups["embeddings"]["total"] == 128 * 32 and count.groups["head"]["total"] == 0
    assert count.tied == ["lm_head.weight = model.embed_tokens.weight"]
    assert count.total == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("bits", [4, 8])
def test_quantized_weight_bytes_equal_a_model_bitsandbytes_loaded(tmp_path, bits):
    """Which weights transformers quantizes (every linear layer but the head) and how they are stored."""
    pytest.importorskip("bitsandbytes")
    from tiny import save_tiny_model
    from transformers import AutoConfig, AutoModelForCausalLM, BitsAndBytesConfig

    path = save_tiny_model(tmp_path / "tiny")
    quant = {"quant_method": "bnb", "quant_bits": bits, "bnb_4bit_use_double_quant": True}
    config = (BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=torch.float32) if bits == 4 else
              BitsAndBytesConfig(load_in_8bit=True))
    loaded = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, quantization_config=config)
    stored = 0
    for module in loaded.modules():
        for param in module.parameters(recurse=False):
            stored += param.numel() * param.element_size()
            state = getattr(param, "quant_state", None)
            if state is not None:
                stored += sum(v.numel() * v.element_size() for v in state.as_dict(packed=False).values()
                              if torch.is_tensor(v))
            if getattr(param, "SCB", None) is not None:
                stored += param.SCB.numel() * param.SCB.element_size()
    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    count = estimate.count_parameters(meta, estimate.base_parameter_names(meta))
    assert estimate.weight_bytes(count, quant)["base"] == stored
