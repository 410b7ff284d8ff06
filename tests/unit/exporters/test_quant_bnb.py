"""--quant_method bnb: bitsandbytes 4-bit and 8-bit checkpoints written from a tiny model, loaded back with
plain transformers on this CPU.

Measured on the tiny llama (fp32, 544 KB of safetensors, 295 KB of it decoder linear weights; the embeddings
and head stay fp32), logits spanning +-0.66, 64 positions: nf4 + double quant writes 313 KB (linear weights
5.3x smaller), max |logit error| 0.066, top-1 agreement 0.875; nf4 without double quant 297 KB (6.8x: on
layers this small the nested scales' fixed tables outweigh what they save); fp4 without double quant 297 KB,
error 0.098, top-1 0.92; int8 330 KB (3.8x), error 0.007, top-1 0.98.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from quant_tiny_source import file_bytes, linear_bytes, logits, tiny_source, write

from swiftkit.config import ExportConfig, ModelArgs, QuantizeArgs
from swiftkit.core.errors import ConfigError
from swiftkit.exporters.quant_bnb import bnb_method

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:MatMul8bitLt. inputs will be cast:UserWarning")


def _config(model_dir, **quantize) -> ExportConfig:
    return ExportConfig(model=ModelArgs(model=str(model_dir)), quantize=QuantizeArgs(quant_method="bnb", **quantize))


@pytest.fixture(scope="module")
def fp32_dir(tiny_model_dir):
    return tiny_model_dir("llama", "chatml")


def _load(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder)


def test_labels_and_default_bits(fp32_dir):
    method = bnb_method()
    assert method.name == "bnb" and not method.calibration
    assert method.artifact_label(_config(fp32_dir)) == "bnb-nf4"  # --quant_bits unset: 4
    assert method.artifact_label(_config(fp32_dir, quant_bits=4, bnb_4bit_quant_type="fp4")) == "bnb-fp4"
    assert method.artifact_label(_config(fp32_dir, quant_bits=8)) == "bnb-int8"


def test_nf4_is_bitsandbytes_standard_layout_and_reloads(fp32_dir, tmp_path):
    import bitsandbytes.functional as bnb_functional
    from safetensors import safe_open

    source = tiny_source(fp32_dir, QuantizeArgs(quant_method="bnb"), extra_eos=[0])
    stops = source.template.stop_token_ids
    original = source.model.model.layers[0].mlp.up_proj.weight.detach().clone()
    reference = logits(source.model)
    out = write(bnb_method(), source, tmp_path / "out")

    quant = json.loads((out / "config.json").read_text())["quantization_config"]
    assert quant["quant_method"] == "bitsandbytes" and quant["load_in_4bit"] and not quant["load_in_8bit"]
    assert quant["bnb_4bit_quant_type"] == "nf4" and quant["bnb_4bit_use_double_quant"] is True
    assert quant["bnb_4bit_compute_dtype"] == "float32"  # the model's dtype
    assert (out / "tokenizer.json").is_file() and (out / "chat_template.jinja").is_file()
    assert linear_bytes(fp32_dir) / linear_bytes(out) > 4.8  # measured 5.3
    assert file_bytes(out) < 0.6 * file_bytes(fp32_dir)  # measured 0.58

    # the stored weight is bitsandbytes' own 4-bit packing of the source weight (not the CPU-repacked form)
    with safe_open(out / "model.safetensors", framework="pt") as f:
        stored = f.get_tensor("model.layers.0.mlp.up_proj.weight")
        assert "model.layers.0.mlp.up_proj.weight.quant_state.bitsandbytes__nf4" in f.keys()  # noqa: SIM118
    packed, _ = bnb_functional.quantize_4bit(original, blocksize=64, quant_type="nf4", compress_statistics=True)
    assert stored.dtype == torch.uint8 and stored.shape == (128 * 64 // 2, 1)
    assert torch.equal(stored, packed)

    model = _load(out)
    assert type(model.model.layers[0].mlp.up_proj).__name__ == "Linear4bit"
    assert type(model.lm_head).__name__ == "Linear"  # the head is not quantized
    first = logits(model)  # the first eval pass repacks the layers for bitsandbytes' CPU kernel
    second = logits(model)
    assert torch.equal(first, second)
    assert (first - reference).abs().max().item() < 0.2  # measured 0.066
    assert (first.argmax(-1) == reference.argmax(-1)).float().mean().item() >= 0.75  # measured 0.875
    assert model.generation_config.eos_token_id == [0, *[i for i in stops if i != 0]]
    reply = model.generate(torch.tensor([[5, 17, 42]]), max_new_tokens=4, do_sample=False,
                           eos_token_id=None, pad_token_id=0)
    assert reply.shape == (1, 7)


def test_fp4_without_double_quant(fp32_dir, tmp_path):
    config = QuantizeArgs(quant_method="bnb", bnb_4bit_quant_type="fp4", bnb_4bit_use_double_quant=False)
    source = tiny_source(fp32_dir, config)
    reference = logits(source.model)
    out = write(bnb_method(), source, tmp_path / "out")
    quant = json.loads((out / "config.json").read_text())["quantization_config"]
    assert quant["bnb_4bit_quant_type"] == "fp4" and quant["bnb_4bit_use_double_quant"] is False
    model = _load(out)
    assert model.model.layers[0].mlp.up_proj.weight.quant_state.quant_type == "fp4"
    assert model.model.layers[0].mlp.up_proj.weight.quant_state.nested is False
    got = logits(model)
    assert (got - reference).abs().max().item() < 0.25  # measured 0.098
    assert (got.argmax(-1) == reference.argmax(-1)).float().mean().item() >= 0.75  # measured 0.92
    assert linear_bytes(fp32_dir) / linear_bytes(out) > 6.0  # measured 6.8


def test_int8(fp32_dir, tmp_path):
    source = tiny_source(fp32_dir, QuantizeArgs(quant_method="bnb", quant_bits=8))
    original = source.model.model.layers[1].self_attn.o_proj.weight.detach().clone()
    reference = logits(source.model)
    out = write(bnb_method(), source, tmp_path / "out")

    quant = json.loads((out / "config.json").read_text())["quantization_config"]
    assert quant["quant_method"] == "bitsandbytes" and quant["load_in_8bit"] and not quant["load_in_4bit"]
    assert linear_bytes(fp32_dir) / linear_bytes(out) > 3.6  # measured 3.8
    assert file_bytes(out) < 0.65 * file_bytes(fp32_dir)  # measured 0.61

    model = _load(out)
    layer = model.model.layers[1].self_attn.o_proj
    assert type(layer).__name__ == "Linear8bitLt" and layer.weight.dtype == torch.int8
    # row-wise absmax int8: weight * SCB / 127 is the source weight to within about half a step per row
    # (measured 0.53 steps at most: bitsandbytes rounds the weights to float16 before quantizing them)
    restored = layer.weight.float() * layer.weight.SCB.unsqueeze(1) / 127
    assert ((restored - original).abs() <= original.abs().amax(1, keepdim=True) / 127 * 0.6).all()
    got = logits(model)
    assert (got - reference).abs().max().item() < 0.02  # measured 0.007
    assert (got.argmax(-1) == reference.argmax(-1)).float().mean().item() >= 0.95  # measured 0.98
    reply = model.generate(torch.tensor([[5, 17, 42]]), max_new_tokens=4, do_sample=False,
                           eos_token_id=None, pad_token_id=0)
    assert reply.shape == (1, 7)


def test_check_refuses_other_bit_widths_without_a_model(tmp_path):
    missing = tmp_path / "no-model-here"  # nothing is read: the bit width alone decides
    for bits in (2, 3):
        with pytest.raises(ConfigError) as info:
            bnb_method().check(_config(missing, quant_bits=bits))
        assert str(info.value) == (f"--quant_method bnb supports --quant_bits 4 or 8, got {bits}; for 2 or 3 bits "
                                   "use --quant_method torchao or gptq")
    bnb_method().check(_config(missing, quant_bits=4))
    bnb_method().check(_config(missing, quant_bits=8))


def test_check_without_bitsandbytes_is_one_line(fp32_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # an import of bitsandbytes now fails as if not installed
    with pytest.raises(ConfigError) as info:
        bnb_method().check(_config(fp32_dir))
    assert str(info.value) == "--quant_method bnb needs the bitsandbytes package: pip install 'swiftkit[qlora]'"
