"""--quant_method gptq / awq: what is refused before any weights load (GPTQModel missing, bits, layer shapes)
and, where GPTQModel 7.6 and optimum are installed (not in the dev environment: see the skip reason), a real
quantization of a tiny llama on this CPU loaded back with plain transformers.

Measured where they are installed (2 CPUs, 1 torch thread): quantizing the tiny llama takes ~1 s per method
after GPTQModel's one-time ~30 s build of its CPU packing extension (cached in ~/.cache/gptqmodel).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from types import SimpleNamespace

import pytest
import torch
from quant_tiny_source import logits, tiny_source, write

from swiftkit.config import ModelArgs, QuantizeArgs, QuantizeConfig
from swiftkit.core.errors import ConfigError, SwiftkitError
from swiftkit.exporters.quant_gptq import awq_method, gptq_method

torch.set_num_threads(1)

HAS_GPTQMODEL = importlib.util.find_spec("gptqmodel") is not None
HAS_OPTIMUM = importlib.util.find_spec("optimum") is not None and HAS_GPTQMODEL
REAL = pytest.mark.skipif(
    not HAS_OPTIMUM, reason="needs GPTQModel 7.6 and optimum (pip install 'swiftkit[gptq]'), which the dev "
    "environment leaves out: GPTQModel 7.x pins numpy 2.2.6 and needs protobuf >= 7.34, and swanlab 0.10 needs < 7")
METHODS = {"gptq": gptq_method, "awq": awq_method}


def _config(model_dir, method: str, **quantize) -> QuantizeConfig:
    return QuantizeConfig(model=ModelArgs(model=str(model_dir)), quantize=QuantizeArgs(quant_method=method, **quantize))


@pytest.fixture(scope="module")
def fp32_dir(tiny_model_dir):
    return tiny_model_dir("llama", "chatml")


@pytest.fixture(scope="module")
def kv4_dir(fp32_dir, tmp_path_factory):
    """The tiny llama with 4 kv heads (value projection 64 wide), which AWQ can scale."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama-kv4")
    shutil.copytree(fp32_dir, folder, dirs_exist_ok=True)
    config = AutoConfig.from_pretrained(folder)
    config.num_key_value_heads = 4
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


@pytest.fixture
def garbage_weights_dir(kv4_dir, tmp_path):
    """A tiny model's folder (shapes both methods take) with its weights overwritten by bytes no loader reads."""
    folder = tmp_path / "garbage"
    shutil.copytree(kv4_dir, folder)
    (folder / "model.safetensors").write_bytes(b"these are not safetensors " * 64)
    return folder


@pytest.mark.parametrize("method, why", [
    ("gptq", "auto-gptq does not import with transformers 5"),
    ("awq", "AutoAWQ is deprecated and transformers 5 loads AWQ checkpoints through GPTQModel"),
])
def test_missing_gptqmodel_is_one_line_before_weights_load(method, why, garbage_weights_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    if HAS_GPTQMODEL:
        monkeypatch.setitem(sys.modules, "gptqmodel", None)  # importing it now fails as if not installed
    with pytest.raises(SwiftkitError) as info:
        METHODS[method]().check(_config(garbage_weights_dir, method, group_size=64))
    assert str(info.value) == f"--quant_method {method} needs GPTQModel ({why}): pip install 'swiftkit[{method}]'"
    # Had check() read the weights, it would have failed on them instead.
    with pytest.raises(Exception) as load_error:
        AutoModelForCausalLM.from_pretrained(garbage_weights_dir)
    assert "GPTQModel" not in str(load_error.value)


@pytest.mark.skipif(not HAS_GPTQMODEL, reason="the optimum check runs once GPTQModel imports")
def test_gptq_without_optimum_is_one_line(fp32_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "optimum.gptq", None)
    with pytest.raises(SwiftkitError) as info:
        gptq_method().check(_config(fp32_dir, "gptq", group_size=32))
    assert str(info.value) == ("--quant_method gptq needs optimum (transformers loads GPTQ checkpoints through "
                               "it): pip install 'swiftkit[gptq]'")


@pytest.mark.parametrize("bits", [2, 3, 8])
def test_awq_refuses_bits_other_than_4(bits, garbage_weights_dir):
    """Refused whether or not GPTQModel is installed, before the model's folder is read."""
    with pytest.raises(ConfigError) as info:
        awq_method().check(_config(garbage_weights_dir, "awq", quant_bits=bits))
    assert str(info.value) == (f"--quant_method awq writes 4-bit weights, got --quant_bits {bits}: use --quant_bits "
                               "4, or --quant_method gptq for 2, 3 or 8 bits")


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_gptq_takes_2_3_4_and_8_bits(bits, fp32_dir):
    """The bit width passes; what may still fail is the package check (where GPTQModel is not installed)."""
    try:
        gptq_method().check(_config(fp32_dir, "gptq", quant_bits=bits, group_size=32))
    except SwiftkitError as e:
        assert not HAS_OPTIMUM and "pip install 'swiftkit[gptq]'" in str(e) and "--quant_bits" not in str(e)


def test_gptq_refuses_other_bits_from_a_plugin_config():
    """QuantizeArgs only lets 2/3/4/8 through; a config built another way is still checked."""
    with pytest.raises(ConfigError, match=r"^--quant_method gptq writes 2/3/4/8-bit weights, got --quant_bits 5: "):
        gptq_method().check(SimpleNamespace(quantize=SimpleNamespace(quant_bits=5, group_size=128)))


def test_labels_and_calibration(fp32_dir):
    assert gptq_method().calibration and awq_method().calibration
    assert gptq_method().artifact_label(_config(fp32_dir, "gptq")) == "gptq-int4"  # --quant_bits unset: 4
    assert gptq_method().artifact_label(_config(fp32_dir, "gptq", quant_bits=8)) == "gptq-int8"
    assert awq_method().artifact_label(_config(fp32_dir, "awq")) == "awq-int4"


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_write_refuses_a_group_size_before_quantizing(method, fp32_dir, tmp_path):
    """swiftkit's default --group_size 128 does not fit the tiny model's 64 inputs: refused before the merged
    model is saved for the quantizer (the weights would quantize, then fail to load)."""
    source = tiny_source(fp32_dir, QuantizeArgs(quant_method=method))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConfigError) as info:
        METHODS[method]().write(source, out)
    assert str(info.value).startswith("--group_size 128 does not divide the input size 64 of "
                                      "model.layers.0.self_attn.q_proj")
    assert "use --group_size 64 or -1" in str(info.value)
    assert source._scratch is None and list(out.iterdir()) == []


def test_awq_refuses_outputs_it_cannot_scale(fp32_dir, tmp_path):
    """The tiny llama's value projection has 2 kv heads x 16 = 32 outputs; GPTQModel's AWQ scales 64 at a time."""
    source = tiny_source(fp32_dir, QuantizeArgs(quant_method="awq", group_size=32))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConfigError) as info:
        awq_method().write(source, out)
    assert str(info.value) == ("--quant_method awq needs layer output sizes that are multiples of 64, but "
                               "model.layers.0.self_attn.v_proj has 32: use --quant_method gptq for this model")
    assert source._scratch is None


def test_write_without_calibration_rows_is_one_line(fp32_dir, tmp_path):
    source = tiny_source(fp32_dir, QuantizeArgs(quant_method="gptq", group_size=32))
    source.calibration = [{"input_ids": [], "attention_mask": []}]
    with pytest.raises(SwiftkitError) as info:
        gptq_method().write(source, tmp_path)
    assert str(info.value) == ("--quant_method gptq needs calibration rows, and --dataset gave none: pass --dataset "
                               "with conversations the model will serve")
    assert source._scratch is None


def test_check_refuses_shapes_from_config_json(fp32_dir, tmp_path):
    """A folder with config.json and no weights: the layer shapes come from the meta-device skeleton."""
    folder = tmp_path / "config-only"
    folder.mkdir()
    shutil.copy(fp32_dir / "config.json", folder / "config.json")
    with pytest.raises(ConfigError, match="--group_size 128 does not divide the input size 64"):
        gptq_method().check(_config(folder, "gptq"))
    with pytest.raises(ConfigError, match="v_proj has 32"):
        awq_method().check(_config(folder, "awq", group_size=32))


# ---- real quantization (GPTQModel and optimum installed) ----

CONVERSATIONS = [
    ("What is the capital of France?", "Paris is the capital of France."),
    ("Write a poem about the sea.", "The sea and the sky, blue over blue."),
    ("Hello! Who are you?", "I am an AI assistant trained to answer questions."),
    ("Add two numbers in Python.", "def add(a, b):\n    return a + b\n"),
    ("Count to ten.", "0 1 2 3 4 5 6 7 8 9 10"),
    ("Say something in Chinese.", "你好，我是一个人工智能助手。"),
    ("What does the fox do?", "The quick brown fox jumps over the lazy dog."),
    ("Name the roles of a chat.", "system user assistant tool"),
]


def _calibration(tokenizer) -> list[dict]:
    rows = []
    for question, answer in CONVERSATIONS:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": question},
                                             {"role": "assistant", "content": answer}], tokenize=True,
                                            return_dict=True)["input_ids"]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": ids})
    return rows


@REAL
@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_quantizes_on_cpu_and_loads_in_plain_transformers(method, fp32_dir, kv4_dir, tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = fp32_dir if method == "gptq" else kv4_dir
    source = tiny_source(model_dir, QuantizeArgs(quant_method=method, group_size=32), extra_eos=[0])
    source.calibration = _calibration(source.tokenizer)
    stops = [0, *(i for i in source.template.stop_token_ids if i != 0)]  # the source's eos, then the template's
    reference = logits(source.model)
    out = write(METHODS[method](), source, tmp_path / "out")

    quant = json.loads((out / "config.json").read_text())["quantization_config"]
    assert (quant["quant_method"], quant["bits"], quant["group_size"]) == (method, 4, 32)
    if method == "gptq":
        assert quant["sym"] is True and quant["desc_act"] is False
    else:
        assert quant["zero_point"] is True and quant["version"] == "gemm"
    with safe_open(out / "model.safetensors", framework="pt") as f:
        names = set(f.keys())
    assert "model.layers.0.mlp.down_proj.qweight" in names and "model.layers.0.mlp.down_proj.weight" not in names
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"] == stops and not generation.get("do_sample", False)

    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template == source.tokenizer.chat_template
    assert not isinstance(model.model.layers[0].mlp.down_proj, torch.nn.Linear)
    got = logits(model)
    cosine = torch.nn.functional.cosine_similarity(got.flatten(), reference.flatten(), dim=0).item()
    top1 = (got.argmax(-1) == reference.argmax(-1)).float().mean().item()
    print(f"{method}: cosine {cosine:.4f}, top-1 {top1:.3f}, max |diff| {(got - reference).abs().max():.4f}")
    assert cosine > 0.98 and top1 > 0.75  # measured: gptq 0.9967 / 0.92, awq 0.9973 / 0.89
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hello"}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    reply = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert reply.shape[1] > prompt["input_ids"].shape[1]
