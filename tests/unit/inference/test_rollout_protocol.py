"""The rollout protocol's pieces: the weights payload, the model identity, replies cut at their stop token, and the
checks every /generate body passes before it reaches a model."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from swiftkit.inference.rollout_protocol import (
    RolloutProtocolError,
    RolloutRequest,
    cut_at_stop,
    decode_weights,
    encode_weights,
    identity_mismatch,
    model_identity,
)
from swiftkit.serving.rollout import parse_generate


def test_weights_round_trip_exactly_with_what_they_are():
    tensors = {"a.weight": torch.randn(3, 4), "b.bias": torch.arange(5, dtype=torch.bfloat16)}
    config = {"peft_type": "LORA", "r": 4, "target_modules": {"q_proj", "v_proj"}}
    back, meta = decode_weights(encode_weights(tensors, kind="adapter", adapter_config=config, step=7))
    assert set(back) == set(tensors) and all(torch.equal(back[k], tensors[k]) for k in tensors)
    assert back["b.bias"].dtype == torch.bfloat16
    assert meta["kind"] == "adapter" and meta["step"] == "7"
    assert meta["adapter_config"] == {"peft_type": "LORA", "r": 4, "target_modules": ["q_proj", "v_proj"]}
    _, meta = decode_weights(encode_weights(tensors, kind="weights"))
    assert meta["kind"] == "weights" and "adapter_config" not in meta


def _safetensors(metadata: dict) -> bytes:
    header = json.dumps({"__metadata__": metadata, "x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    return struct.pack("<Q", len(header)) + header.encode() + b"\0\0\0\0"


@pytest.mark.parametrize("raw,message", [
    (b"abc", "not a safetensors file"),
    (struct.pack("<Q", 10_000) + b"{}", "its header is longer than the body"),
    (_safetensors({"format": "other"}), "lacks the metadata format='swiftkit-rollout-weights'"),
    (_safetensors({"format": "swiftkit-rollout-weights", "kind": "all"}), "unknown weights kind 'all'"),
    (_safetensors({"format": "swiftkit-rollout-weights", "kind": "adapter", "adapter_config": "{}"}),
     "adapter_config must be a peft adapter config"),
])
def test_a_bad_payload_is_an_error_saying_what_is_wrong(raw, message):
    with pytest.raises(RolloutProtocolError, match=message):
        decode_weights(raw)


def test_identity_tells_models_apart_by_architecture_size_and_vocabulary(tiny_model_dir):
    from transformers import AutoConfig, AutoTokenizer, Qwen2Config

    llama = tiny_model_dir("llama", "chatml")
    tok = AutoTokenizer.from_pretrained(llama)
    config = AutoConfig.from_pretrained(llama)
    a = model_identity(config, tok, vocab_size=512)
    assert a["architecture"] == "LlamaForCausalLM" and a["vocab_size"] == 512 and a["hidden_size"] == 64
    assert a["tokenizer"].startswith(f"{len(tok)} tokens, sha256 ")
    assert identity_mismatch(a, dict(a)) is None
    qwen = Qwen2Config(vocab_size=512, hidden_size=64, num_hidden_layers=2, architectures=["Qwen2ForCausalLM"])
    assert identity_mismatch(a, model_identity(qwen, tok)) == (
        "architecture LlamaForCausalLM vs Qwen2ForCausalLM; model_type llama vs qwen2")
    assert identity_mismatch(a, {**a, "vocab_size": 640}) == "vocab_size 512 vs 640"
    assert identity_mismatch(a, {**a, "hidden_size": None}) is None  # unknown on one side: not compared


def test_a_reply_ends_with_the_stop_token_that_ended_it():
    assert cut_at_stop([5, 6, 2, 0, 0], [2, 3]) == ([5, 6, 2], "stop")
    assert cut_at_stop([5, 6, 7], [2]) == ([5, 6, 7], "length")
    assert cut_at_stop([3], [2, 3]) == ([3], "stop")


def body(**values) -> bytes:
    return json.dumps({"prompts": [[1, 2, 3]], **values}).encode()


def test_generate_body_becomes_a_request():
    request = parse_generate(body(n=4, max_tokens=8, temperature=0.7, top_k=5, stop_token_ids=[2], seed=3,
                                  logprobs=True), vocab_size=100, max_model_len=64)
    assert request == RolloutRequest(prompts=[[1, 2, 3]], n=4, max_tokens=8, temperature=0.7, top_k=5,
                                     stop_token_ids=(2,), seed=3, logprobs=True)
    assert parse_generate(body(), vocab_size=None, max_model_len=None).stop_token_ids is None
    assert RolloutRequest(prompts=[[1]], stop_token_ids=(2,)).to_json()["stop_token_ids"] == [2]


@pytest.mark.parametrize("values,param,message", [
    ({"max_token": 5}, "max_token", "Extra inputs are not permitted"),
    ({"n": 0}, "n", "greater than or equal to 1"),
    ({"n": "2"}, "n", "valid integer"),
    ({"temperature": -1}, "temperature", "greater than or equal to 0"),
    ({"prompts": []}, "prompts", "at least 1 item"),
    ({"prompts": [[]]}, "prompts.0", "at least 1 item"),
    ({"prompts": [[1, -2]]}, "prompts.0.1", "greater than or equal to 0"),
    ({"prompts": [[1, 100]]}, "prompts", "token id 100 is outside the served model's vocabulary (100 ids)"),
    ({"stop_token_ids": [100]}, "prompts", "token id 100 is outside"),
    ({"max_tokens": 62}, "max_tokens", "a prompt of 3 tokens plus max_tokens 62 is past the served context of 64"),
])
def test_a_bad_generate_body_names_its_field(values, param, message):
    with pytest.raises(RolloutProtocolError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        parse_generate(body(**values), vocab_size=100, max_model_len=64)
    assert info.value.param == param
