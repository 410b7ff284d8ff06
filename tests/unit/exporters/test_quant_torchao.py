"""--quant_method torchao: int8 / intx weights written from a tiny model, loaded back with plain transformers.

Measured on the tiny llama (fp32, 544 KB of safetensors, 295 KB of it decoder linear weights; the embeddings
and head stay fp32): int8 writes 337 KB (linear weights 3.74x smaller), max |logit error| 0.005 (logits span
+-0.66), top-1 agreement 1.0 over 64 positions; int4 with groups of 32 writes 344 KB (linear weights 3.46x
smaller: the values are stored one per byte, with more scales than int8), error 0.078, top-1 0.92.
"""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch
from quant_tiny_source import file_bytes, linear_bytes, logits, tiny_source, write

from swiftkit.config import ExportConfig, ModelArgs, QuantizeArgs
from swiftkit.core.errors import ConfigError
from swiftkit.exporters.quant_torchao import torchao_method

torch.set_num_threads(1)


def _config(model_dir, **quantize) -> ExportConfig:
    return ExportConfig(model=ModelArgs(model=str(model_dir)), quantize=QuantizeArgs(quant_method="torchao", **quantize))


@pytest.fixture(scope="module")
def fp32_dir(tiny_model_dir):
    return tiny_model_dir("llama", "chatml")


def _load(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder)


def test_label_and_default_bits(fp32_dir):
    method = torchao_method()
    assert method.name == "torchao" and not method.calibration
    assert method.artifact_label(_config(fp32_dir)) == "torchao-int8"  # --quant_bits unset: int8
    assert method.artifact_label(_config(fp32_dir, quant_bits=4)) == "torchao-int4"


def test_int8_writes_a_folder_plain_transformers_loads(fp32_dir, tmp_path):
    source = tiny_source(fp32_dir, QuantizeArgs(quant_method="torchao"), extra_eos=[0])
    stops = source.template.stop_token_ids
    reference = logits(source.model)
    out = write(torchao_method(), source, tmp_path / "out")

    quant = json.loads((out / "config.json").read_text())["quantization_config"]
    assert quant["quant_method"] == "torchao"
    assert quant["quant_type"]["default"]["_type"] == "Int8WeightOnlyConfig"
    assert quant["quant_type"]["default"]["_data"]["granularity"]["_type"] == "PerRow"  # one scale per output row
    assert (out / "tokenizer.json").is_file() and (out / "chat_template.jinja").is_file()
    assert linear_bytes(fp32_dir) / linear_bytes(out) > 3.6  # measured 3.74
    assert file_bytes(out) < 0.65 * file_bytes(fp32_dir)  # measured 0.62 (embeddings and head stay fp32)

    model = _load(out)
    weight = model.model.layers[0].mlp.up_proj.weight
    assert type(weight).__name__ == "Int8Tensor" and weight.qdata.dtype == torch.int8
    assert type(model.lm_head.weight).__name__ == "Parameter"  # the head is not quantized
    got = logits(model)
    assert (got - reference).abs().max().item() < 0.02  # measured 0.005
    assert (got.argmax(-1) == reference.argmax(-1)).float().mean().item() >= 0.95  # measured 1.0
    # the generation config carries the template's end-of-turn tokens next to the source's own eos
    assert model.generation_config.eos_token_id == [0, *[i for i in stops if i != 0]]
    reply = model.generate(torch.tensor([[5, 17, 42]]), max_new_tokens=4, do_sample=False,
                           eos_token_id=None, pad_token_id=0)
    assert reply.shape == (1, 7)


@pytest.mark.parametrize("group_size", [32, -1])
def test_int4_is_grouped_int4_stored_one_value_per_byte(fp32_dir, tmp_path, group_size):
    source = tiny_source(fp32_dir, QuantizeArgs(quant_method="torchao", quant_bits=4, group_size=group_size))
    original = source.model.model.layers[0].mlp.up_proj.weight.detach().clone()  # 128 x 64
    reference = logits(source.model)
    out = write(torchao_method(), source, tmp_path / "out")

    quant = json.loads((out / "config.json").read_text())["quantization_config"]["quant_type"]["default"]
    assert quant["_type"] == "IntxWeightOnlyConfig"
    assert quant["_data"]["weight_dtype"]["_data"] == "int4"
    granularity = quant["_data"]["granularity"]
    assert granularity == ({"_type": "PerGroup", "_data": {"group_size": 32}, "_version": 1} if group_size == 32
                           else {"_type": "PerAxis", "_data": {"axis": 0}, "_version": 1})

    model = _load(out)
    weight = model.model.layers[0].mlp.up_proj.weight
    assert type(weight).__name__ == "IntxUnpackedToInt8Tensor"
    # int4 values, but unpacked: one int8 byte per weight, so the file is no smaller than int8's
    assert weight.qdata.dtype == torch.int8 and weight.qdata.shape == (128, 64)
    assert weight.qdata.min().item() >= -8 and weight.qdata.max().item() <= 7
    assert weight.scale.shape == ((128, 2) if group_size == 32 else (128, 1))
    groups = 64 if group_size == -1 else group_size
    amax = original.abs().reshape(128, -1, groups).amax(-1, keepdim=True)
    error = (weight.dequantize().float() - original).abs().reshape(128, -1, groups)
    assert (error <= amax / 7 * 0.5 + 1e-6).all()  # within half a quantization step of each group

    int8_out = write(torchao_method(), tiny_source(fp32_dir, QuantizeArgs(quant_method="torchao")), tmp_path / "i8")
    assert file_bytes(out) >= file_bytes(int8_out)  # measured 344 KB (g32) / 337 KB (-1) vs 337 KB
    assert linear_bytes(fp32_dir) / linear_bytes(out) > 3.3  # measured 3.46 (g32), 3.74 (-1)

    got = logits(model)
    assert (got - reference).abs().max().item() < 0.2  # measured 0.078 (g32), 0.077 (-1)
    assert (got.argmax(-1) == reference.argmax(-1)).float().mean().item() >= 0.75  # measured 0.92, 0.875
    reply = model.generate(torch.tensor([[5, 17, 42]]), max_new_tokens=4, do_sample=False,
                           eos_token_id=None, pad_token_id=0)
    assert reply.shape == (1, 7)


def test_int3_and_int2_value_ranges(fp32_dir, tmp_path):
    for bits, low, high in ((3, -4, 3), (2, -2, 1)):
        source = tiny_source(fp32_dir, QuantizeArgs(quant_method="torchao", quant_bits=bits, group_size=32))
        out = write(torchao_method(), source, tmp_path / f"int{bits}")
        weight = _load(out).model.layers[1].self_attn.q_proj.weight
        assert weight.qdata.min().item() >= low and weight.qdata.max().item() <= high
        assert weight.qdata.unique().numel() > 2 ** bits - 2  # the range is used, not collapsed


def _config_only(fp32_dir, tmp_path):
    """A folder with the tiny model's config.json and no weights: a check that needs weights fails on it."""
    folder = tmp_path / "config-only"
    folder.mkdir()
    shutil.copy(fp32_dir / "config.json", folder / "config.json")
    return folder


def test_check_refuses_a_group_size_before_weights_load(fp32_dir, tmp_path):
    folder = _config_only(fp32_dir, tmp_path)
    method = torchao_method()
    with pytest.raises(ConfigError) as info:
        method.check(_config(folder, quant_bits=4, group_size=48))
    message = str(info.value)
    assert "\n" not in message
    assert "--group_size 48 does not divide the input size 64 of model.layers.0.self_attn.q_proj" in message
    assert "use --group_size 32 or -1" in message  # 48 -> the largest power of two <= 48 dividing 64 and 128
    with pytest.raises(ConfigError, match="input size 64 .* use --group_size 64 or -1"):
        method.check(_config(folder, quant_bits=4, group_size=128))  # swiftkit's default group size
    method.check(_config(folder, quant_bits=4, group_size=64))
    method.check(_config(folder, quant_bits=4, group_size=-1))
    method.check(_config(folder, quant_bits=8, group_size=48))  # int8 is per channel: the group size is unused


def test_check_reads_the_base_model_of_adapters(fp32_dir, tmp_path):
    """With --adapters alone, the base named in the run's args.json is the model checked (no weights load)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from swiftkit.config import AdapterArgs

    adapter = tmp_path / "adapter"
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(fp32_dir), LoraConfig(r=2, target_modules=["q_proj"]))
    lora.save_pretrained(adapter)
    (adapter / "args.json").write_text(json.dumps({"model": str(_config_only(fp32_dir, tmp_path))}))
    config = ExportConfig(adapter=AdapterArgs(adapters=[str(adapter)]),
                          quantize=QuantizeArgs(quant_method="torchao", quant_bits=4, group_size=48))
    with pytest.raises(ConfigError, match="--group_size 48 does not divide the input size 64"):
        torchao_method().check(config)


def test_write_refuses_a_group_size_before_quantizing(fp32_dir, tmp_path):
    """A model check() could not read (e.g. a hub id) is checked when written, before anything is saved."""
    source = tiny_source(fp32_dir, QuantizeArgs(quant_method="torchao", quant_bits=4, group_size=96))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConfigError, match="--group_size 96 does not divide the input size 64"):
        torchao_method().write(source, out)
    assert source._scratch is None and list(out.iterdir()) == []


def test_check_without_torchao_is_one_line(fp32_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao", None)  # an import of torchao now fails as if not installed
    with pytest.raises(ConfigError) as info:
        torchao_method().check(_config(fp32_dir))
    assert str(info.value) == ("--quant_method torchao needs the torchao package: pip install 'swiftkit[torchao]'")


@pytest.mark.slow
def test_smollm2_int8(smollm2_gguf_path, tmp_path):
    """The real SmolLM2-135M (fp32 as transformers dequantizes its Q4_1 GGUF) as torchao int8. Measured: 220.5 MB
    against 538.1 MB of fp32 safetensors (the tied embedding/head, 113 MB, stays fp32), max |logit error| 1.6 on
    logits spanning +-31, top-1 agreement 0.96, the same greedy reply."""
    from hosts import templates
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swiftkit.exporters.base import ExportSource
    from swiftkit.models.artifacts import as_plain_model
    from swiftkit.templates import get_template

    folder, name = smollm2_gguf_path.parent, smollm2_gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = as_plain_model(AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)).eval()
    template = get_template(tokenizer, registry=templates())
    model.generation_config.eos_token_id = list(template.stop_token_ids)
    text = tokenizer("The quick brown fox jumps over the lazy dog. Paris is the capital of France, and Berlin is "
                     "the capital of Germany.", return_tensors="pt")["input_ids"]
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    prompt = prompt["input_ids"]
    with torch.no_grad():
        reference = model(text).logits
    reply = model.generate(prompt, max_new_tokens=8, do_sample=False)[0, prompt.shape[1]:]

    config = ExportConfig(model=ModelArgs(model=str(folder)), quantize=QuantizeArgs(quant_method="torchao"))
    source = ExportSource(model=model, tokenizer=tokenizer, template=template, config=config)
    fp32_bytes = file_bytes(source.merged_dir())
    out = write(torchao_method(), source, tmp_path / "out")
    assert file_bytes(out) < 0.45 * fp32_bytes  # measured 0.41
    loaded = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        got = loaded(text).logits
    assert (got - reference).abs().max().item() < 3.0  # measured 1.6
    assert (got.argmax(-1) == reference.argmax(-1)).float().mean().item() >= 0.9  # measured 0.96
    again = loaded.generate(prompt, max_new_tokens=8, do_sample=False)[0, prompt.shape[1]:]
    assert tokenizer.decode(again) == tokenizer.decode(reply)
