"""QLoRA on the CPU: bitsandbytes 4/8-bit layers really compute forward and backward here, the base
loads quantized from --quant_method/--quant_bits (or --train_type qlora), and LoRA trains on it."""

import pytest

from swiftkit.config import SftConfig
from swiftkit.models import ResolvedModel
from swiftkit.models.quantization import bnb_config, effective_quantization, keep_4bit_trainable_on_cpu
from swiftkit.recipes import steps
from swiftkit.train.tuners import apply_lora


def config(**flags):
    return SftConfig.from_flat({"model": "m", "dataset": ["d.jsonl"], "lora_dropout": 0.0, **flags})


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("qlora-tiny"))


def load(model_dir, cfg):
    resolved = ResolvedModel(str(model_dir), None, None, "local", str(model_dir))
    return steps.load_weights(resolved, cfg.model, 0,
                              quantization=effective_quantization(cfg.quant, cfg.tuner.train_type))


def ids():
    import torch

    return torch.tensor([[5, 17, 42, 99, 7, 3, 64, 12, 88, 30]])


def test_linear4bit_forward_and_backward_run_on_the_cpu():
    """A bitsandbytes Linear4bit on CPU tensors: its output equals x @ dequantize(W)^T, and the input
    gradient flows through it like through that dense matrix (both to float32 rounding)."""
    import bitsandbytes as bnb
    import torch
    from bitsandbytes.functional import dequantize_4bit

    torch.manual_seed(0)
    layer = bnb.nn.Linear4bit(64, 32, bias=False, compute_dtype=torch.float32, quant_type="nf4")
    layer.weight = bnb.nn.Params4bit(torch.randn(32, 64) * 0.05, requires_grad=False, quant_type="nf4")
    layer = layer.to("cpu")
    assert layer.weight.dtype == torch.uint8 and layer.weight.device.type == "cpu"
    dense = dequantize_4bit(layer.weight.data, layer.weight.quant_state)
    x = torch.randn(4, 64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out = layer(x)
    (out * torch.arange(32.0)).sum().backward()
    ref = x_ref @ dense.t()
    (ref * torch.arange(32.0)).sum().backward()
    assert torch.allclose(out, ref, atol=1e-5)
    assert x.grad is not None and torch.allclose(x.grad, x_ref.grad, atol=1e-5)


def test_qlora_alone_means_a_4bit_bitsandbytes_base():
    cfg = config(train_type="qlora")
    quant = effective_quantization(cfg.quant, "qlora")
    assert quant["quant_method"] == "bnb" and quant["quant_bits"] == 4 and quant["bnb_4bit_quant_type"] == "nf4"
    assert effective_quantization(config().quant, "lora") is None
    eight = effective_quantization(config(quant_method="bnb", quant_bits=8).quant, "lora")
    assert eight == {"quant_method": "bnb", "quant_bits": 8}


def test_bnb_config_carries_the_flags():
    import torch

    cfg = config(train_type="qlora", bnb_4bit_quant_type="fp4", bnb_4bit_use_double_quant=False,
                 bnb_4bit_compute_dtype="bfloat16", bnb_4bit_quant_storage="bfloat16")
    bnb = bnb_config(effective_quantization(cfg.quant, "qlora"), "float32")
    assert bnb.load_in_4bit and bnb.bnb_4bit_quant_type == "fp4" and not bnb.bnb_4bit_use_double_quant
    assert bnb.bnb_4bit_compute_dtype == torch.bfloat16 and bnb.bnb_4bit_quant_storage == torch.bfloat16
    default = bnb_config(effective_quantization(config(train_type="qlora").quant, "qlora"), "float32")
    assert default.bnb_4bit_compute_dtype == torch.float32 and default.bnb_4bit_use_double_quant
    assert bnb_config(effective_quantization(config(quant_method="bnb", quant_bits=8).quant, "lora")).load_in_8bit


@pytest.mark.parametrize("flags,layer,weight_dtype", [
    ({"train_type": "qlora"}, "Linear4bit", "uint8"),
    ({"quant_method": "bnb", "quant_bits": 4}, "Linear4bit", "uint8"),
    ({"quant_method": "bnb", "quant_bits": 8}, "Linear8bitLt", "int8"),
])
def test_quantized_base_takes_lora_and_trains(model_dir, flags, layer, weight_dtype):
    import torch

    cfg = config(**flags)
    model = load(model_dir, cfg)
    q = model.model.layers[0].self_attn.q_proj
    assert type(q).__name__ == layer and q.weight.dtype == getattr(torch, weight_dtype)
    assert type(model.lm_head) is torch.nn.Linear  # the head stays in full precision
    tuned = apply_lora(model, cfg)
    trainable = [n for n, p in tuned.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    base = tuned.get_base_model().model.layers[0].self_attn.q_proj.base_layer
    assert type(base).__name__ == layer
    tuned.train()
    out = tuned(input_ids=ids(), labels=ids())
    out.loss.backward()
    grads = {n: p.grad for n, p in tuned.named_parameters() if p.requires_grad}
    assert torch.isfinite(out.loss) and all(g is not None for g in grads.values())
    # lora_B starts at zero, so its gradient is what reaches the lowest layer through the 4-bit weights
    assert grads["base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight"].abs().max() > 0


def test_an_eval_pass_does_not_break_4bit_gradients(model_dir):
    """bitsandbytes repacks 4-bit weights for a CPU inference kernel without a backward after an eval
    pass (e.g. --eval_steps); the loader switches that off, so training after an eval gets the same
    gradients as training without one."""
    import torch

    def grad_after(eval_first: bool):
        torch.manual_seed(0)
        cfg = config(train_type="qlora", init_weights="gaussian")
        tuned = apply_lora(load(model_dir, cfg), cfg)
        if eval_first:
            tuned.eval()
            with torch.no_grad():
                tuned(input_ids=ids())
        tuned.train()
        tuned(input_ids=ids(), labels=ids()).loss.backward()
        return dict(tuned.named_parameters())["base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight"].grad

    plain, after_eval = grad_after(False), grad_after(True)
    assert plain.abs().max() > 0 and torch.allclose(plain, after_eval, atol=1e-7)


def test_keep_trainable_undoes_a_repack_that_already_happened(model_dir):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32,
        quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32))
    q = model.model.layers[0].self_attn.q_proj
    if not q.support_avx512bf16_for_cpu:
        pytest.skip("this CPU has no AVX512-BF16: bitsandbytes never repacks here")
    with torch.no_grad():
        model(input_ids=ids())
    assert q.weight.quant_state.packing_format_for_cpu
    assert keep_4bit_trainable_on_cpu(model) == 14
    assert not q.weight.quant_state.packing_format_for_cpu and not q.support_avx512bf16_for_cpu


def test_loftq_starts_closer_to_the_full_precision_model(model_dir):
    """LoftQ's adapters fit W - Q(W): at step 0 the 4-bit base + adapters is nearer the full-precision
    model than the 4-bit base alone (plain QLoRA starts exactly at the 4-bit base)."""
    import torch
    from transformers import AutoModelForCausalLM

    full = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        target = full(input_ids=ids()).logits

    def gap(init):
        cfg = config(train_type="qlora", init_weights=init)
        tuned = apply_lora(load(model_dir, cfg), cfg).eval()
        with torch.no_grad():
            return (tuned(input_ids=ids()).logits - target).abs().max()

    plain, loftq = gap("true"), gap("loftq")
    assert loftq < 0.7 * plain, (loftq, plain)


def test_merged_export_refuses_a_quantized_base(model_dir, tmp_path):
    """`swiftkit export` merges QLoRA adapters into a full-precision base (the dequantized 4-bit weights, or the
    original ones); handed a 4-bit one (merging would round the adapter into 4-bit weights) the merged format
    refuses instead of writing it."""
    from transformers import AutoTokenizer

    from swiftkit.core.errors import SwiftkitError
    from swiftkit.exporters.base import ExportSource
    from swiftkit.exporters.formats import write_merged

    cfg = config(train_type="qlora")
    tuned = apply_lora(load(model_dir, cfg), cfg)
    source = ExportSource(model=tuned, tokenizer=AutoTokenizer.from_pretrained(model_dir), template=None, config=None)
    with pytest.raises(SwiftkitError, match="merged writes full-precision weights"):
        write_merged(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_copying_unquantized_weights_out_of_the_checkpoint_map_keeps_ties_and_values(tmp_path):
    """The loader copies a quantized model's full-precision parameters out of the safetensors map (so
    the map, holding every weight the quantizer read, can go): values unchanged, tied weights still one."""
    import torch
    from tiny import make_tokenizer
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = make_tokenizer()
    cfg = AutoConfig.for_model("llama", vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                               tie_word_embeddings=True)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    reference = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    model = load(tmp_path, config(train_type="qlora"))
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert torch.equal(model.model.embed_tokens.weight, reference.model.embed_tokens.weight)
    assert torch.equal(model.model.norm.weight, reference.model.norm.weight)
