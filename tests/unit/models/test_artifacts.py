"""Exported artifacts load through --model: GGUF files and folders, checkpoints quantized on disk."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
from hosts import registries

from swiftkit.config import InferConfig
from swiftkit.inference import load_for_inference
from swiftkit.models import ModelNotFoundError, check_quantized_loadable, load_model, resolve_model
from swiftkit.models.artifacts import gguf_model_type, read_gguf_fields

CHAT = [{"role": "user", "content": "What is 2+2?"}]


def write_header_gguf(path, arch="llama", name="tiny", eos=2):
    """A GGUF file with metadata only (a token list before the eos id, as real files have), no tensors."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(name)
    writer.add_token_list([f"tok{i}" for i in range(300)])
    writer.add_token_scores([0.0] * 300)
    writer.add_eos_token_id(eos)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_header_fields_are_read_without_loading(tmp_path):
    path = write_header_gguf(tmp_path / "m.gguf", eos=7)
    fields = read_gguf_fields(path, ["general.architecture", "general.name", "tokenizer.ggml.eos_token_id", "nope"])
    assert fields == {"general.architecture": "llama", "general.name": "tiny", "tokenizer.ggml.eos_token_id": 7}
    assert gguf_model_type(path) == "llama"
    assert gguf_model_type(write_header_gguf(tmp_path / "mis.gguf", name="Mistral 7B Instruct")) == "mistral"
    assert gguf_model_type(write_header_gguf(tmp_path / "moe.gguf", arch="qwen2moe")) == "qwen2_moe"
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:200])  # inside the token list: what was read before it, no exception
    assert read_gguf_fields(cut, ["general.architecture", "tokenizer.ggml.eos_token_id"]) == {
        "general.architecture": "llama"}


def test_gguf_file_or_folder_resolves_to_the_folder_with_gguf_file(tmp_path, model_registry):
    folder = tmp_path / "export"
    folder.mkdir()
    write_header_gguf(folder / "model-Q8_0.gguf")
    (folder / "Modelfile").write_text("FROM ./model-Q8_0.gguf\n")
    for given in (folder, folder / "model-Q8_0.gguf"):
        resolved = resolve_model(str(given), registry=model_registry)
        assert (resolved.path, resolved.gguf_file, resolved.source) == (str(folder.resolve()), "model-Q8_0.gguf", "local")
        assert resolved.model_type == "llama" and resolved.name == str(given)

    write_header_gguf(folder / "model-F16.gguf")
    with pytest.raises(ModelNotFoundError, match=r"several GGUF files \(model-F16\.gguf, model-Q8_0\.gguf\): pass "
                                                 r"the path of the one to load"):
        resolve_model(str(folder), registry=model_registry)
    assert resolve_model(str(folder / "model-F16.gguf"), registry=model_registry).gguf_file == "model-F16.gguf"

    fake = tmp_path / "fake.gguf"
    fake.write_text("not a gguf")
    with pytest.raises(ModelNotFoundError, match=r"is not a GGUF file"):
        resolve_model(str(fake), registry=model_registry)


def test_a_folder_with_config_json_ignores_a_stray_gguf(tiny_model_dir, tmp_path, model_registry):
    folder = tmp_path / "hf"
    shutil.copytree(tiny_model_dir("llama"), folder)
    write_header_gguf(folder / "copy.gguf")
    resolved = resolve_model(str(folder), registry=model_registry)
    assert resolved.gguf_file is None and resolved.model_type == "llama"


def _quantized_folder(tmp_path, name, quantization_config):
    folder = tmp_path / name
    folder.mkdir()
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "quantization_config": quantization_config}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("method, modules, extra", [
    ("gptq", ("gptqmodel", "optimum"), "gptq"),
    ("awq", ("gptqmodel",), "awq"),
    ("bitsandbytes", ("bitsandbytes",), "qlora"),
    ("torchao", ("torchao",), "torchao"),
])
def test_a_quantized_checkpoint_needs_its_package_before_anything_loads(tmp_path, method, modules, extra):
    folder = _quantized_folder(tmp_path, method, {"quant_method": method, "bits": 4})
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        assert check_quantized_loadable(folder) == method
        return
    with pytest.raises(ModelNotFoundError, match=rf"{method}-quantized checkpoint .* needs {missing[0]}.*"
                                                 rf"pip install 'swiftkit\[{extra}\]'"):
        check_quantized_loadable(folder)
    with pytest.raises(ModelNotFoundError, match=rf"needs {missing[0]}"):  # the folder has no weights: nothing loaded
        load_model(str(folder), registry={})


def test_quantization_method_of_plain_old_and_unlisted_configs(tmp_path, tiny_model_dir):
    assert check_quantized_loadable(tiny_model_dir("llama")) is None
    assert check_quantized_loadable(_quantized_folder(tmp_path, "old", {"load_in_4bit": True})) == "bitsandbytes"
    assert check_quantized_loadable(_quantized_folder(tmp_path, "fp8", {"quant_method": "fp8"})) == "fp8"


def _logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=ids).logits.float()


@pytest.mark.parametrize("kind", ["torchao-int8", "bnb-4bit"])
def test_a_quantized_folder_loads_for_inference_unchanged(tiny_model_dir, tmp_path, kind):
    """A folder quantized on disk loads through --model in float32 on the CPU, stays quantized, and stays close."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, TorchAoConfig

    torch.set_num_threads(1)
    src = tiny_model_dir("llama")
    if kind == "torchao-int8":
        from torchao.quantization import Int8WeightOnlyConfig

        qconfig = TorchAoConfig(Int8WeightOnlyConfig())
    else:
        qconfig = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32)
    folder = tmp_path / kind
    AutoModelForCausalLM.from_pretrained(src, quantization_config=qconfig, dtype=torch.float32).save_pretrained(folder)
    AutoTokenizer.from_pretrained(src).save_pretrained(folder)

    model, template, info = load_for_inference(InferConfig.from_flat({"model": str(folder)}), registries=registries())
    assert info["model_path"] == str(folder.resolve()) and model.hf_quantizer is not None
    assert model.dtype == torch.float32
    ids = torch.tensor([template.encode_prompt(CHAT)])
    diff = (_logits(model, ids) - _logits(AutoModelForCausalLM.from_pretrained(src), ids)).abs().max().item()
    # measured on this tiny model: torchao int8 0.006, bitsandbytes fp4 0.11 (logits of magnitude ~0.5)
    assert 0 < diff < (0.05 if kind == "torchao-int8" else 0.3)
    out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids.shape[1]


@pytest.mark.slow
def test_smollm2_gguf_folder_loads_for_inference_as_a_plain_model(smollm2_gguf_path, tmp_path):
    """The shipped SmolLM2 GGUF, alone in a folder, is an ordinary --model: tokenizer and chat template from the
    file, weights dequantized to float32, no quantizer left (save_pretrained works), sensible greedy reply."""
    import torch

    torch.set_num_threads(1)
    folder = tmp_path / "gguf-export"
    folder.mkdir()
    (folder / smollm2_gguf_path.name).symlink_to(smollm2_gguf_path)
    model, template, info = load_for_inference(InferConfig.from_flat({"model": str(folder)}), registries=registries())
    assert info["model_path"] == str(folder.resolve())
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    assert getattr(model, "hf_quantizer", None) is None and not getattr(model, "is_quantized", False)
    assert template.name == "model" and template.tokenizer.convert_ids_to_tokens(template.stop_token_ids) == ["<|im_end|>"]
    ids = torch.tensor([template.encode_prompt(CHAT)])
    reply = template.decode(model.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1]:])
    assert "4" in reply, reply
    model.save_pretrained(tmp_path / "saved")  # a GGUF-marked model would refuse: "not serializable"
    assert (tmp_path / "saved" / "model.safetensors").is_file()
