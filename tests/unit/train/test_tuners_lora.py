"""LoRA's options through peft, each checked by its defining property on a tiny llama (hidden 64)."""

import math

import pytest
from tiny import eval_logits as logits

from swiftkit.config import SftConfig
from swiftkit.train.errors import TrainError
from swiftkit.train.tuners import apply_lora

ADAPTED = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# logits of a tiny random llama are O(0.1-1); float32 re-association across a rank-8 split stays < 1e-5,
# so 1e-4 separates "unchanged" from any real change (init_weights false moves them by > 1e-2)
UNCHANGED_ATOL = 1e-4


def config(**flags):
    return SftConfig.from_flat({"model": "m", "dataset": ["d.jsonl"], "lora_dropout": 0.0, **flags})


def tiny(arch="llama"):
    from tiny import make_tiny_model

    return make_tiny_model(arch)


def lora_layers(model):
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def test_dora_adds_one_magnitude_vector_per_adapted_module_of_its_out_features():
    tuned = apply_lora(tiny(), config(use_dora=True))
    layers = lora_layers(tuned)
    assert len(layers) == 2 * len(ADAPTED)
    magnitudes = {n: p for n, p in tuned.named_parameters() if "lora_magnitude_vector" in n}
    assert len(magnitudes) == len(layers)
    for name, layer in layers.items():
        (param,) = [p for n, p in magnitudes.items() if n.startswith(name + ".")]
        assert param.shape == (layer.get_base_layer().out_features,) and param.requires_grad
    plain = apply_lora(tiny(), config())
    assert not any("lora_magnitude_vector" in n for n, _ in plain.named_parameters())


@pytest.mark.parametrize("rank,alpha", [(8, 32), (4, 16)])
def test_rslora_scales_by_alpha_over_sqrt_rank(rank, alpha):
    rs = lora_layers(apply_lora(tiny(), config(use_rslora=True, lora_rank=rank, lora_alpha=alpha)))
    plain = lora_layers(apply_lora(tiny(), config(lora_rank=rank, lora_alpha=alpha)))
    for layer in rs.values():
        assert layer.scaling["default"] == pytest.approx(alpha / math.sqrt(rank))
    for layer in plain.values():
        assert layer.scaling["default"] == pytest.approx(alpha / rank)


@pytest.mark.parametrize("init", ["pissa", "pissa_niter_4", "olora", "true", "gaussian"])
def test_base_moving_and_zero_inits_leave_the_output_unchanged(init):
    model = tiny()
    before = logits(model)
    tuned = apply_lora(model, config(init_weights=init))
    assert (logits(tuned) - before).abs().max() < UNCHANGED_ATOL
    if init.startswith(("pissa", "olora")):  # the adapters are not zero: the base moved by B0 A0
        layer = next(iter(lora_layers(tuned).values()))
        assert layer.lora_B["default"].weight.abs().max() > 1e-3


def test_init_weights_false_changes_the_output():
    model = tiny()
    before = logits(model)
    tuned = apply_lora(model, config(init_weights="false"))
    assert (logits(tuned) - before).abs().max() > 1e-2


def test_lora_dtype_sets_the_adapter_weights_dtype():
    import torch

    tuned = apply_lora(tiny(), config(lora_dtype="bfloat16"))
    lora = [p for n, p in tuned.named_parameters() if "lora_" in n]
    assert lora and all(p.dtype == torch.bfloat16 for p in lora)
    assert tuned.get_base_model().model.layers[0].self_attn.q_proj.base_layer.weight.dtype == torch.float32
    assert logits(tuned).dtype == torch.float32


def test_target_regex_replaces_target_modules():
    tuned = apply_lora(tiny(), config(target_regex=r".*layers\.1\.self_attn\.(q|v)_proj"))
    assert sorted(lora_layers(tuned)) == ["base_model.model.model.layers.1.self_attn.q_proj",
                                          "base_model.model.model.layers.1.self_attn.v_proj"]
    with pytest.raises(TrainError, match="--target_regex"):
        apply_lora(tiny(), config(target_regex=r"nothing\.matches"))


def test_lora_bias_all_trains_every_bias():
    model = tiny("qwen2")  # q/k/v projections with biases
    biases = {n for n, _ in model.named_parameters() if n.endswith(".bias")}
    assert biases
    tuned = apply_lora(model, config(lora_bias="all"))
    trained = {n.replace("base_model.model.", "").replace(".base_layer", "") for n, p in tuned.named_parameters()
               if p.requires_grad and n.endswith(".bias")}
    assert trained == biases
    none = apply_lora(tiny("qwen2"), config())
    assert not any(p.requires_grad for n, p in none.named_parameters() if n.endswith(".bias"))


def test_modules_to_save_and_trainable_parameters_are_saved_with_the_adapter(tmp_path):
    """--modules_to_save and --trainable_parameters modules train fully (not adapted) and the adapter
    folder alone reproduces them in plain peft."""
    import torch
    from peft import PeftModel

    model = tiny()
    tuned = apply_lora(model, config(modules_to_save=["lm_head"],
                                     trainable_parameters=["model.layers.0.self_attn.q_proj"]))
    names = {n for n, p in tuned.named_parameters() if p.requires_grad}
    assert any("lm_head.modules_to_save" in n for n in names)
    assert any("layers.0.self_attn.q_proj.modules_to_save" in n for n in names)
    assert not any("layers.0.self_attn.q_proj.lora_" in n for n in names)  # trained fully, not adapted
    assert any("layers.1.self_attn.q_proj.lora_A" in n for n in names)
    with torch.no_grad():  # stand-in for training: move every trainable weight
        for p in tuned.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    expected = logits(tuned)
    tuned.save_pretrained(tmp_path)
    plain = PeftModel.from_pretrained(tiny(), tmp_path)
    assert torch.allclose(logits(plain), expected, atol=1e-5)


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_a_base_moving_adapter_is_converted_on_save_for_the_original_base(tmp_path, init):
    """The conversion callback saves B A - B0 A0 as a rank-2r LoRA: plain peft on the ORIGINAL base
    reproduces the model trained on the moved base."""
    import torch
    from peft import PeftModel
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from swiftkit.train.tuner_callbacks import AdapterConversion

    tuned = apply_lora(tiny(), config(init_weights=init, lora_rank=4))
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    state = TrainerState()
    callback = AdapterConversion()
    callback.on_train_begin(args, state, TrainerControl(), model=tuned)
    with torch.no_grad():  # stand-in for training
        for p in tuned.parameters():
            if p.requires_grad:
                p.add_(0.02 * torch.randn_like(p))
    expected = logits(tuned)
    state.global_step = 3
    ckpt = tmp_path / "checkpoint-3"
    tuned.save_pretrained(ckpt)  # what the trainer writes
    callback.on_save(args, state, TrainerControl(), model=tuned)
    plain = PeftModel.from_pretrained(tiny(), ckpt)
    assert plain.peft_config["default"].r == 8
    assert torch.allclose(logits(plain), expected, atol=UNCHANGED_ATOL)
    assert sorted(p.name for p in ckpt.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]


def test_eva_needs_enough_labelled_tokens():
    import torch

    from swiftkit.train.tuners_peft import eva_initialise

    tuned = apply_lora(tiny(), config(init_weights="eva"))
    batch = {"input_ids": torch.tensor([[1, 2, 3]]), "labels": torch.tensor([[-100, 2, 3]])}
    with pytest.raises(TrainError, match="at least 16 labelled tokens"):
        eva_initialise(tuned, [batch])


def test_eva_initialises_from_the_data_and_leaves_the_output_unchanged():
    import torch

    from swiftkit.train.tuners_peft import eva_initialise

    model = tiny()
    before = logits(model)
    tuned = apply_lora(model, config(init_weights="eva"))
    # one batch, repeated by peft until the layers' input components converge (fast on fixed data)
    tokens = torch.randint(1, 400, (4, 24), generator=torch.Generator().manual_seed(0))
    batches = [{"input_ids": tokens, "attention_mask": torch.ones_like(tokens), "labels": tokens.clone()}]
    a_before = {n: p.clone() for n, p in tuned.named_parameters() if "lora_A" in n}
    eva_initialise(tuned, batches)
    assert (logits(tuned) - before).abs().max() < UNCHANGED_ATOL
    moved = [n for n, p in tuned.named_parameters() if "lora_A" in n and n in a_before
             and (p.shape != a_before[n].shape or not torch.equal(p, a_before[n]))]
    assert moved


def test_corda_runs_or_names_the_missing_package():
    import importlib.util

    import torch

    from swiftkit.train.tuners_peft import corda_preprocess

    model = tiny()
    tokens = torch.randint(1, 400, (4, 24))
    batches = [{"input_ids": tokens, "attention_mask": torch.ones_like(tokens)}]
    if importlib.util.find_spec("attr") is None:
        with pytest.raises(TrainError, match="needs the attrs package, which is not installed: pip install attrs"):
            corda_preprocess(model, config(init_weights="corda"), batches)
        return
    before = logits(model)
    corda_preprocess(model, config(init_weights="corda"), batches)
    tuned = apply_lora(model, config(init_weights="corda"))
    assert (logits(tuned) - before).abs().max() < UNCHANGED_ATOL


@pytest.mark.parametrize("flags,message", [
    ({"init_weights": "loftq"}, "add --quant_method bnb --quant_bits 4"),
    ({"init_weights": "pissa", "use_dora": True}, "--use_dora with --init_weights pissa"),
])
def test_impossible_init_combinations_are_refused(flags, message):
    with pytest.raises(TrainError, match=message):
        apply_lora(tiny(), config(**flags))


def test_moe_routers_written_as_linear_layers_get_no_adapter_and_the_model_trains():
    # Llama 4's router is a linear layer whose forward returns (scores, logits): an adapter around it would
    # break the forward, so all-linear leaves it out and adapts the attention and shared-expert layers
    import torch
    from transformers import Llama4ForCausalLM, Llama4TextConfig

    torch.manual_seed(0)
    model = Llama4ForCausalLM(Llama4TextConfig(
        vocab_size=64, hidden_size=32, intermediate_size=32, intermediate_size_mlp=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, num_local_experts=2, num_experts_per_tok=1,
        interleave_moe_layer_step=1, attention_chunk_size=64))
    routers = [n for n, m in model.named_modules() if type(m).__name__ == "Llama4Router"]
    assert len(routers) == 2
    tuned = apply_lora(model, config())
    adapted = lora_layers(tuned)
    assert adapted and not any(name.endswith(".router") for name in adapted)
    assert any(".shared_expert." in name for name in adapted)
    ids = torch.randint(0, 64, (1, 8))
    loss = tuned(input_ids=ids, labels=ids).loss
    loss.backward()
    assert math.isfinite(loss.item())
